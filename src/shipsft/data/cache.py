"""Rendered-data cache keyed by fingerprint, so an unchanged dataset is never tokenised twice.

Key = sha256 of (data file hashes, the data config, the tokenizer's vocabulary + chat template + special tokens,
RENDER_VERSION). Any change to one of them is a new key. Stored without pickles: token ids and masks as one flat
int32 / uint8 array each in a .npz, sources/texts/turns as JSON. Loading from the cache is many times faster than
rendering again (bench/prepare.py measures both).

Disable with SHIPSFT_NO_CACHE=1.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from shipsft.data.types import Rendered

RENDER_VERSION = "2"  # bump when render/mask semantics change (2: turn ends read off the template's structure)


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr(tokenizer.chat_template).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def cache_key(file_hashes: list[str], data_cfg: dict, tok_fp: str) -> str:
    h = hashlib.sha256(RENDER_VERSION.encode())
    for f in file_hashes:
        h.update(f.encode())
    h.update(json.dumps(data_cfg, sort_keys=True, default=str).encode())
    h.update(tok_fp.encode())
    return h.hexdigest()[:24]


def _dir() -> Path | None:
    if os.environ.get("SHIPSFT_NO_CACHE"):
        return None
    from shipsft.config import cache_dir

    return cache_dir() / "prepared"


def load(key: str) -> list[Rendered] | None:
    d = _dir()
    if d is None or not (d / f"{key}.json").exists():
        return None
    try:
        meta = json.loads((d / f"{key}.json").read_text())
        arrays = np.load(d / f"{key}.npz")
    except (OSError, ValueError):
        return None  # a damaged cache entry is simply rebuilt
    ids, mask, offsets = arrays["ids"], arrays["mask"].astype(bool), arrays["offsets"]
    out = []
    for k, (source, text, turn, npt) in enumerate(meta["items"]):
        a, b = int(offsets[k]), int(offsets[k + 1])
        out.append(Rendered(source, ids[a:b].tolist(), mask[a:b].tolist(), text, turn, npt))
    return out


def store(key: str, rendered: list[Rendered]) -> None:
    d = _dir()
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(r.ids) for r in rendered], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.fromiter((t for r in rendered for t in r.ids), dtype=np.int32, count=int(offsets[-1]))
    mask = np.fromiter((m for r in rendered for m in r.mask), dtype=np.uint8, count=int(offsets[-1]))
    tmp = d / f"{key}.tmp{os.getpid()}.npz"
    np.savez(tmp, ids=ids, mask=mask, offsets=offsets)
    os.replace(tmp, d / f"{key}.npz")
    items = [[r.source, r.text, r.turn, r.n_prompt_tokens] for r in rendered]
    tmpj = d / f"{key}.tmp{os.getpid()}.json"
    tmpj.write_text(json.dumps({"items": items}))
    os.replace(tmpj, d / f"{key}.json")  # written last: its presence means the entry is complete
