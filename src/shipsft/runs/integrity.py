"""A saved folder proves its bytes: when a save finishes, its `COMPLETE` marker records every file's size and sha256;
before anything loads the folder (a resume, `export`, `eval RUN`, `chat RUN`, `shipsft verify`) the files are checked
against it.

Why every byte and not the safetensors header: a truncated copy changes the size, but a bit flipped inside a tensor
(a disk or memory error, a bad copy between machines) leaves header and size as they were; only a hash of the data
finds it. Hashing costs one read of the folder, several files at a time (hashlib releases the GIL); what that costs
per GB is measured by `bench/hashing.py` (bench/results/hashing.json, docs/faults.md): a LoRA checkpoint is hashed in
milliseconds, a full fine-tune's in about the time it took to write.

    seal(tmp)                  # the last write of a save: COMPLETE = {"files": {"adapter_model.safetensors": ...}}
    check(folder)              # [] when every recorded file is there, same size, same sha256; else one line each

A marker written by an older shipsft (the text "ok") records no files: such a folder counts as complete and is
loaded unchecked (`recorded` returns None), with a note where a command says what it checked.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shipsft.runs.layout import COMPLETE

FORMAT = 1  # the marker's layout version (a future change to what it records bumps it)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def files_of(root: Path) -> list[str]:
    """Every file under `root` but the marker, as POSIX paths relative to it, sorted."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p != root / COMPLETE)


def hashes(root: Path, names: list[str]) -> list[str]:
    """sha256 of each named file under `root`, several files at a time (hashlib releases the GIL while hashing)."""
    workers = max(1, min(8, os.cpu_count() or 1, len(names)))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda n: file_sha256(Path(root) / n), names))


def digest(root: Path) -> dict[str, dict]:
    """{relative path: {"size", "sha256"}} of every file under `root` but the marker."""
    names = files_of(root)
    return {n: {"size": (Path(root) / n).stat().st_size, "sha256": h} for n, h in zip(names, hashes(root, names))}


def seal(root: Path, files: dict[str, dict] | None = None) -> dict[str, dict]:
    """Write `root`/COMPLETE recording `files` (default: the digest of `root` now), fsynced. Returns what it
    recorded."""
    files = digest(root) if files is None else files
    write_marker(Path(root) / COMPLETE, files)
    return files


def write_marker(path: Path, files: dict[str, dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": FORMAT, "files": files}, indent=1, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def recorded(root: Path) -> dict[str, dict] | None:
    """The files the marker records, or None for a marker that records none (an older shipsft's "ok"). Raises
    FileNotFoundError when there is no marker."""
    text = (Path(root) / COMPLETE).read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data.get("files") if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def check(root: Path) -> list[str]:
    """One line per problem of a sealed folder (each names the file and what is wrong); [] when it is intact or was
    sealed by an older shipsft. Sizes are compared before any hashing, so a truncated file is found at once."""
    root = Path(root)
    if not (root / COMPLETE).is_file():
        return [f"{root}: no {COMPLETE} marker (its save did not finish, or it was not written by shipsft)"]
    try:
        files = recorded(root)
    except OSError as e:
        return [f"{root / COMPLETE}: cannot be read ({e.strerror or e})"]
    if files is None:
        return []
    problems = []
    present = set(files_of(root))
    for name, rec in files.items():
        path = root / name
        if name not in present:
            problems.append(f"{path}: missing ({rec['size']} bytes when it was saved)")
        elif (size := path.stat().st_size) != rec["size"]:
            how = "truncated" if size < rec["size"] else "grown"
            problems.append(f"{path}: {size} bytes, {rec['size']} when it was saved ({how})")
    problems += [f"{root / name}: not part of the save (a file added after it)" for name in sorted(present - set(files))]
    if problems:
        return problems
    names = list(files)
    return [f"{root / n}: sha256 {h[:12]}..., {files[n]['sha256'][:12]}... when it was saved (same size, other bytes: "
            "a disk or copy error)" for n, h in zip(names, hashes(root, names)) if h != files[n]["sha256"]]


def mismatches(files: dict[str, dict], expected: dict[str, dict], where: Path) -> list[str]:
    """Lines for the files of `files` whose size or hash differs from `expected` (a copy checked against the
    record of what it was copied from)."""
    return [f"{where / n}: differs from the record of the folder it was copied from (sha256 {rec['sha256'][:12]}..., "
            f"expected {expected[n]['sha256'][:12]}...)" for n, rec in files.items()
            if n in expected and expected[n] != rec]


def replace_file(root: Path, name: str, text: str) -> None:
    """Rewrite one file of a sealed folder (an export's model card, updated after the parity check) and its entry
    in the marker, each atomically: the folder stays sealed."""
    root = Path(root)
    path = root / name
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    files = recorded(root) if (root / COMPLETE).exists() else None
    if files is None:
        return
    files[name] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    marker_tmp = root / f".{COMPLETE}.tmp{os.getpid()}"
    try:
        write_marker(marker_tmp, files)
        os.replace(marker_tmp, root / COMPLETE)
    finally:
        marker_tmp.unlink(missing_ok=True)
