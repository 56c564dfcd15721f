"""Rendered-data cache keyed by fingerprint, so an unchanged dataset is never tokenised twice.

Key = sha256 of (data file hashes, the data config, the tokenizer's vocabulary + chat template + special tokens,
RENDER_VERSION). Any change to one of them is a new key. An entry is a store folder (data/store.py: token ids and
masks as flat int32 / uint8 files, sources and texts as UTF-8, an index of offsets; no pickles), written as the data
streams through rendering and read back lazily, so a set larger than memory is cached the same way. Loading from the
cache is many times faster than rendering again (bench/prepare.py measures both).

Disable with SHIPSFT_NO_CACHE=1: the store then goes to a temporary folder removed when the process ends.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from shipsft.data.store import RenderedStore, StoreWriter

RENDER_VERSION = "3"  # bump when render/mask semantics change (2: turn ends read off the template's structure; 3:
# entries are store folders)
COMPLETE = "COMPLETE"  # written last into an entry: without it the folder is not used


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


def load(key: str) -> RenderedStore | None:
    """The cached store of `key`, or None (a missing or damaged entry is simply rebuilt)."""
    d = _dir()
    if d is None or not (d / key / COMPLETE).exists():
        return None
    try:
        return RenderedStore(d / key)
    except (OSError, ValueError, KeyError):
        return None


def writer(key: str) -> "CacheWriter":
    """A StoreWriter into a temporary folder that becomes the entry of `key` when complete (or a scratch folder
    under SHIPSFT_NO_CACHE)."""
    d = _dir()
    if d is None:
        tmp = Path(tempfile.mkdtemp(prefix="shipsft-store-"))
        atexit.register(shutil.rmtree, tmp, True)
        return CacheWriter(tmp / "store", None)
    return CacheWriter(d / f"{key}.tmp{os.getpid()}", d / key)


class CacheWriter(StoreWriter):
    """A StoreWriter whose `close()` moves the finished store into place atomically, marked COMPLETE."""

    def __init__(self, folder: Path, final: Path | None):
        super().__init__(folder)
        self.final = final

    def abort(self) -> None:
        """Drop a half-written entry (rendering failed or was interrupted)."""
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> RenderedStore:
        self.finish()
        (self.folder / COMPLETE).write_text("")
        if self.final is None:
            return RenderedStore(self.folder)
        try:
            os.rename(self.folder, self.final)  # atomic; fails when the entry exists
        except OSError:  # another process (another rank) wrote the same entry first: the same content, keep theirs
            shutil.rmtree(self.folder, ignore_errors=True)
        return RenderedStore(self.final)
