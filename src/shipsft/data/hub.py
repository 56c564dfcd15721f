"""Datasets named by Hugging Face Hub id (`data.train: org/name`) or given as a dataset repository folder (data
files + a README.md whose `configs:` name them), read through the one `datasets.load_dataset(folder, config,
split=...)` call.

A hub id is first resolved to its cached snapshot folder with huggingface_hub (cache first, downloaded when online,
the cache alone under HF_HUB_OFFLINE=1): its README.md, then only the data files of the chosen config (every data
file when the card names no configs). The snapshot folder's name is the commit, recorded in the run's manifest. The
split takes `datasets`' slicing (`train[:10%]`, `train[100:200]`); the records then go through the same format
detection as any file (data/formats.py).

    repo = load_repo("HuggingFaceTB/smoltalk", DatasetRef(config="all", split="train[:1%]"))
    repo.dataset, repo.name, repo.commit
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from shipsft.config import DEFAULT_SPLITS, DataConfig, hub_cache_dir, hub_endpoint, hub_offline, is_hub_id
from shipsft.errors import DataError, hub_error

CARD = "README.md"
# the files `datasets` reads as data when a card names no configs (its own packaged formats)
DATA_FILES = ["*.parquet", "*.arrow", "*.jsonl", "*.json", "*.csv", "*.tsv", "*.txt", "*.jsonl.gz", "*.json.gz"]


@dataclass(frozen=True)
class DatasetRef:
    """Which part of a dataset repository to read: its config (null = the default one) and split."""

    config: str | None = None
    split: str = "train"
    key: str = "data.train"  # the config key that names the dataset, for the messages


@dataclass
class RepoSplit:
    dataset: Any  # datasets.Dataset (Arrow-backed, memory-mapped from the datasets cache)
    name: str  # how its records are named: "org/name/split" or "org/name/config/split"
    sha256: str  # what was read: the commit (or the folder's files), the config and the split
    commit: str | None  # the hub commit; None for a local folder
    licenses: list[str]


def ref_for(data: DataConfig, split: str) -> DatasetRef:
    """The config and split that data.train ("train") or data.eval ("eval") reads of a dataset repository."""
    chosen = data.split if split == "train" else data.eval_dataset_split
    return DatasetRef(data.config, chosen or DEFAULT_SPLITS[split], f"data.{split}")


def is_repo_folder(p: Path) -> bool:
    """A folder `datasets.load_dataset` reads as a repository (not a folder written by save_to_disk)."""
    return p.is_dir() and not (p / "state.json").exists() and not (p / "dataset_dict.json").exists()


def load_repo(ref: str, want: DatasetRef) -> RepoSplit:
    """One split of a hub dataset id or a local dataset repository folder."""
    folder = Path(ref)
    commit = None
    if folder.is_dir() and not (folder / CARD).exists() and not any(
            q.is_file() and any(fnmatch(q.name, pat) for pat in DATA_FILES) for q in folder.rglob("*")):
        raise DataError(f"{ref}: is a folder with no data files ({', '.join(DATA_FILES)}) and no dataset card "
                        f"({CARD}). Fix: give a data file, a dataset repository folder, or a folder written by "
                        "datasets' save_to_disk")
    if not folder.is_dir():
        if not is_hub_id(ref):
            raise DataError(f"{ref}: file not found")
        folder = snapshot(ref, want.config, want.key)
        commit = folder.name
    # "org/name/train" (never "org/name:train": rich prints ":train:" as an emoji)
    name = "/".join([ref] + ([want.config] if want.config else []) + [want.split])
    ds = open_split(folder, ref, want)
    card = folder / CARD
    license = card_data(card).get("license") if card.exists() else None
    identity = commit or files_digest(folder)
    sha = hashlib.sha256(f"{identity}|{want.config}|{want.split}".encode()).hexdigest()
    return RepoSplit(ds, name, sha, commit, [license] if isinstance(license, str) else list(license or []))


def open_split(folder: Path, ref: str, want: DatasetRef):
    """`datasets.load_dataset` on the folder, its errors as one line naming the id and the fix."""
    import datasets

    try:
        ds = datasets.load_dataset(str(folder), name=want.config, split=want.split,
                                   cache_dir=os.environ.get("HF_DATASETS_CACHE") or None)
    except ValueError as e:
        msg = str(e).splitlines()[0]
        if "BuilderConfig" in msg or "Config name is missing" in msg:
            raise DataError(f"{ref}: {msg}. Fix: set data.config to one of them") from None
        if "split" in msg.lower():
            fix = "data.eval_dataset_split" if want.key == "data.eval" else "data.split"
            raise DataError(f"{ref}: split {want.split!r}: {msg} Fix: set {fix} to one of them") from None
        raise DataError(f"{ref}: `datasets` cannot read it: {msg}") from None
    except (OSError, datasets.exceptions.DatasetGenerationError) as e:
        raise DataError(f"{ref}: `datasets` cannot read it ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                        ) from None
    if len(ds) == 0:
        raise DataError(f"{ref}: split {want.split!r} is empty (no records)")
    return ds


def snapshot(repo_id: str, config: str | None, key: str) -> Path:
    """The cached snapshot of a hub dataset with its card and the chosen config's data files (downloaded when
    online): the card first, to learn which files the config reads, then those files at the card's commit."""
    from huggingface_hub import snapshot_download

    cache, offline = hub_cache_dir(), hub_offline()
    try:
        where = dict(repo_type="dataset", cache_dir=cache, endpoint=hub_endpoint(), local_files_only=offline)
        folder = Path(snapshot_download(repo_id, allow_patterns=[CARD], **where))
        patterns = config_files(folder / CARD, config) if (folder / CARD).exists() else None
        folder = Path(snapshot_download(repo_id, revision=folder.name, allow_patterns=[CARD] + (patterns or DATA_FILES),
                                        **where))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several types; hub_error names each
        raise hub_error(e, key, repo_id, "dataset", None, str(cache), offline) from None
    return folder


def card_data(card: Path) -> dict:
    """The YAML front matter of a dataset card (README.md), as huggingface_hub reads it."""
    from huggingface_hub import DatasetCard

    return DatasetCard.load(card).data.to_dict()


def config_files(card: Path, config: str | None) -> list[str] | None:
    """The data file patterns of `config` (else the card's default config) as the card's `configs:` list them; None
    when the card names no configs or not this one (then every data file is fetched and `datasets` decides)."""
    configs = [c for c in card_data(card).get("configs") or [] if isinstance(c, dict)]
    if config is not None:
        chosen = [c for c in configs if c.get("config_name") == config]
    else:
        chosen = ([c for c in configs if c.get("default")] or [c for c in configs if c.get("config_name") == "default"]
                  or (configs if len(configs) == 1 else []))
    if not chosen:
        return None
    files = chosen[0].get("data_files")
    out: list[str] = []
    for entry in files if isinstance(files, list) else [files]:
        paths = entry.get("path") if isinstance(entry, dict) else entry
        out += [paths] if isinstance(paths, str) else [p for p in paths or [] if isinstance(p, str)]
    return out or None


def files_digest(folder: Path) -> str:
    """sha256 over a local repository folder's files (names and bytes, read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    for q in sorted(q for q in folder.rglob("*") if q.is_file() and ".cache" not in q.relative_to(folder).parts):
        digest.update(str(q.relative_to(folder)).encode() + b"\0")
        with q.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
