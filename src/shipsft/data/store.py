"""Rendered sequences on disk, read back one by one: the training set as a sequence that does not live in memory.

A store is a folder of flat arrays, written once by `StoreWriter` as rendering goes (data/pipeline.py streams the
data files through it) and read by `RenderedStore`, which behaves like the list of `Rendered` it replaces
(`len`, `store[i]`, slices, iteration), so the loop, the step cursor and the audit take it unchanged:

    ids.bin, mask.bin        every sequence's token ids (int32) and trained mask (uint8), end to end
    index.npz                offsets into them (int64, N + 1), each sequence's trained-token count, prompt length,
                             turn (-1: none) and the example it came from; offsets into the two text files
    sources.bin, texts.bin   each sequence's "file:line" source and rendered text (UTF-8, end to end)

Only the per-sequence numbers are held in memory (about 36 bytes a sequence); ids, masks and texts are read with
`os.pread` when asked for, never memory-mapped, so a pass over a million sequences leaves the process's resident
memory where it was (the pages stay in the kernel's page cache, which is not the process's). Truncation
(data.overlong: truncate) is a view (`truncated(max_length)`), not a rewrite. `is_store` / `token_lengths` /
`trained_counts` read the same numbers from a store or from a plain list of `Rendered`.

    w = StoreWriter(folder); w.append(rendered_chunk); ...; store = w.close()
    store[12].ids, store.lengths, store.n_trained
"""
from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from shipsft.data.labels import n_targets
from shipsft.data.types import Rendered

CHUNK = 65_536  # sequences per read in the whole-store passes (fingerprint, iteration)
_FILES = ("ids.bin", "mask.bin", "sources.bin", "texts.bin")


class StoreWriter:
    """Appends rendered sequences to a new store folder; `close()` writes the index and returns the store."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self.files = {name: (self.folder / name).open("wb") for name in _FILES}
        self.lengths: list[np.ndarray] = []
        self.numbers: list[np.ndarray] = []  # per sequence: n_trained, n_prompt_tokens, turn, example
        self.source_lens: list[np.ndarray] = []
        self.text_lens: list[np.ndarray] = []
        self.n_examples = 0

    def append(self, rendered: list[Rendered], first_example: int | None = None,
               example_of: list[int] | None = None) -> None:
        """Add a chunk; `example_of[k]` is the example index of rendered[k] (a template that is not prefix-stable
        gives several sequences per example), default one example per sequence from `first_example`."""
        if not rendered:
            return
        start = self.n_examples if first_example is None else first_example
        ex = np.asarray(example_of if example_of is not None else range(start, start + len(rendered)),
                        dtype=np.int64)
        self.n_examples = max(self.n_examples, int(ex.max()) + 1)
        lens = np.fromiter((len(r.ids) for r in rendered), dtype=np.int64, count=len(rendered))
        ids = np.fromiter((t for r in rendered for t in r.ids), dtype=np.int32, count=int(lens.sum()))
        mask = np.fromiter((m for r in rendered for m in r.mask), dtype=np.uint8, count=int(lens.sum()))
        self.files["ids.bin"].write(ids.tobytes())
        self.files["mask.bin"].write(mask.tobytes())
        src = [r.source.encode() for r in rendered]
        txt = [r.text.encode() for r in rendered]
        self.files["sources.bin"].write(b"".join(src))
        self.files["texts.bin"].write(b"".join(txt))
        self.lengths.append(lens)
        self.source_lens.append(np.fromiter(map(len, src), dtype=np.int64, count=len(src)))
        self.text_lens.append(np.fromiter(map(len, txt), dtype=np.int64, count=len(txt)))
        self.numbers.append(np.array([[r.n_trained, r.n_prompt_tokens, -1 if r.turn is None else r.turn]
                                      for r in rendered], dtype=np.int64).reshape(-1, 3))
        self.numbers[-1] = np.concatenate([self.numbers[-1], ex[:, None]], axis=1)

    def close(self) -> "RenderedStore":
        self.finish()
        return RenderedStore(self.folder)

    def finish(self) -> None:
        """Close the files and write the index."""
        for f in self.files.values():
            f.close()
        cat = (lambda parts, width=None: np.concatenate(parts) if parts
               else np.zeros((0, width) if width else 0, dtype=np.int64))
        numbers = cat(self.numbers, 4)
        np.savez(self.folder / "index.npz", offsets=_offsets(cat(self.lengths)),
                 n_trained=numbers[:, 0].astype(np.int32), n_prompt=numbers[:, 1].astype(np.int32),
                 turn=numbers[:, 2].astype(np.int32), example=numbers[:, 3].astype(np.int64),
                 source_offsets=_offsets(cat(self.source_lens)), text_offsets=_offsets(cat(self.text_lens)))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths, dtype=np.int64)])


class RenderedStore(Sequence):
    """A read-only sequence of `Rendered` backed by a store folder (module docstring)."""

    def __init__(self, folder: Path, limit: int | None = None, base: "RenderedStore | None" = None):
        self.folder = Path(folder)
        self.limit = limit  # a truncated view: sequences cut to this many tokens
        self.base = base  # a view keeps the store whose files it reads open
        if base is None:
            with np.load(self.folder / "index.npz") as idx:
                self.offsets, self.full_n_trained = idx["offsets"], idx["n_trained"]
                self.n_prompt, self.turn, self.example = idx["n_prompt"], idx["turn"], idx["example"]
                self.source_offsets, self.text_offsets = idx["source_offsets"], idx["text_offsets"]
            self.fds = {name: os.open(self.folder / name, os.O_RDONLY) for name in _FILES}
            weakref.finalize(self, _close_all, self.fds)
        else:
            for k in ("offsets", "full_n_trained", "n_prompt", "turn", "example", "source_offsets",
                      "text_offsets", "fds"):
                setattr(self, k, getattr(base, k))
        self.full_lengths = np.diff(self.offsets)
        self.lengths = self.full_lengths if limit is None else np.minimum(self.full_lengths, limit)
        self.n_trained = self.full_n_trained
        if limit is not None:
            cut = np.flatnonzero(self.full_lengths > limit)
            self.n_trained = self.full_n_trained.copy()
            for i in cut.tolist():
                self.n_trained[i] = n_targets(self._read("mask.bin", 1, self.offsets[i], self.offsets[i] + limit))

    def truncated(self, limit: int) -> "RenderedStore":
        """The same sequences cut to `limit` tokens (data.overlong: truncate)."""
        return RenderedStore(self.folder, limit, base=self)

    def __len__(self) -> int:
        return len(self.full_lengths)

    def _read(self, name: str, itemsize: int, start: int, stop: int) -> np.ndarray:
        n = int(stop - start)
        buf = os.pread(self.fds[name], n * itemsize, int(start) * itemsize) if n else b""
        return np.frombuffer(buf, dtype=np.int32 if itemsize == 4 else np.uint8)

    def _text(self, name: str, offsets: np.ndarray, i: int) -> str:
        a, b = int(offsets[i]), int(offsets[i + 1])
        return os.pread(self.fds[name], b - a, a).decode() if b > a else ""

    def source(self, i: int) -> str:
        return self._text("sources.bin", self.source_offsets, i)

    def source_of_example(self, k: int) -> str:
        """The source of example k (its first sequence's)."""
        return self.source(int(np.searchsorted(self.example, k)))

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step == 1:
                return self.block(start, max(start, stop))
            return [self[k] for k in range(start, stop, step)]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.block(i, i + 1)[0]

    def block(self, s: int, e: int) -> list[Rendered]:
        """Sequences s..e-1, read with one pread per file."""
        a, b = int(self.offsets[s]), int(self.offsets[e])
        ids, mask = self._read("ids.bin", 4, a, b), self._read("mask.bin", 1, a, b).astype(bool)
        sa, sb, ta, tb = (int(self.source_offsets[s]), int(self.source_offsets[e]), int(self.text_offsets[s]),
                          int(self.text_offsets[e]))
        sources = os.pread(self.fds["sources.bin"], sb - sa, sa) if sb > sa else b""
        texts = os.pread(self.fds["texts.bin"], tb - ta, ta) if tb > ta else b""
        out = []
        for k in range(s, e):
            x, n = int(self.offsets[k]) - a, int(self.lengths[k])
            turn = int(self.turn[k])
            out.append(Rendered(
                sources[int(self.source_offsets[k]) - sa:int(self.source_offsets[k + 1]) - sa].decode(),
                ids[x:x + n].tolist(), mask[x:x + n].tolist(),
                texts[int(self.text_offsets[k]) - ta:int(self.text_offsets[k + 1]) - ta].decode(),
                None if turn < 0 else turn, int(self.n_prompt[k]), n < int(self.full_lengths[k])))
        return out

    def __iter__(self) -> Iterator[Rendered]:
        for s in range(0, len(self), 4096):
            yield from self.block(s, min(s + 4096, len(self)))

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(lengths, ids, mask) of consecutive runs of sequences, as truncation leaves them: what a pass over every
        token (the fingerprint) reads, `size` sequences at a time."""
        for s in range(0, len(self), size):
            e = min(s + size, len(self))
            a, b = int(self.offsets[s]), int(self.offsets[e])
            ids, mask = self._read("ids.bin", 4, a, b), self._read("mask.bin", 1, a, b)
            if self.limit is not None and (self.full_lengths[s:e] > self.limit).any():
                keep = np.concatenate([np.arange(self.offsets[k], self.offsets[k] + self.lengths[k]) - a
                                       for k in range(s, e)])
                ids, mask = ids[keep], mask[keep]
            yield self.lengths[s:e], ids, mask



class StoreSubset(Sequence):
    """Some sequences of a store, in store order (the audit's sample), read on access like the store itself: holding
    a hundred thousand of them costs their index, not their tokens."""

    def __init__(self, store: RenderedStore, positions: np.ndarray):
        self.store, self.positions = store, np.asarray(positions, dtype=np.int64)
        self.lengths, self.n_trained = store.lengths[self.positions], store.n_trained[self.positions]
        self.n_prompt = store.n_prompt[self.positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.store[int(k)] for k in self.positions[i]]
        return self.store[int(self.positions[i])]

    def __iter__(self) -> Iterator[Rendered]:
        """Runs of consecutive positions are read as one block."""
        pos = self.positions
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        for run in np.split(pos, breaks) if len(pos) else []:
            for s in range(0, len(run), 4096):
                part = run[s:s + 4096]
                yield from self.store.block(int(part[0]), int(part[-1]) + 1)


def _close_all(fds: dict) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def is_store(rendered) -> bool:
    return isinstance(rendered, RenderedStore)


def indexed(rendered) -> bool:
    """A store or a subset of one: its per-sequence numbers are arrays, its sequences are read on access."""
    return isinstance(rendered, (RenderedStore, StoreSubset))


def token_lengths(rendered) -> np.ndarray:
    """Each sequence's token count (after truncation), from a store's index or a list's sequences."""
    if indexed(rendered):
        return rendered.lengths
    return np.fromiter((len(r.ids) for r in rendered), dtype=np.int64, count=len(rendered))


def trained_counts(rendered) -> np.ndarray:
    """Each sequence's trained-token count, from a store's index or a list's sequences."""
    if indexed(rendered):
        return rendered.n_trained
    return np.fromiter((r.n_trained for r in rendered), dtype=np.int64, count=len(rendered))


def prompt_counts(rendered) -> np.ndarray:
    """Each sequence's prompt length (tokens before its first trained one), from a store's index or a list."""
    if indexed(rendered):
        return rendered.n_prompt.astype(np.int64)
    return np.fromiter((r.n_prompt_tokens for r in rendered), dtype=np.int64, count=len(rendered))
