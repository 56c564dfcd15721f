"""Packing: best-fit-decreasing into rows of `max_length` tokens, with attention that never crosses examples.

A packed row of three examples A (3 tokens), B (2) and C (3), max_length 8:

    ids          a0 a1 a2 b0 b1 c0 c1 c2
    position_ids  0  1  2  0  1  0  1  2      <- restart at 0 per example
    seq_lens     [3, 2, 3]
    labels       .. .. -100 .. -100 .. .. -100 <- each example's last target is IGNORE (labels_from_mask)

    allowed attention (block-diagonal causal, built by transformers from the position_ids reset when the model is
    called with position_ids, no attention_mask and use_cache=False):
        a0: a0          b0: b0          c0: c0
        a1: a0 a1       b1: b0 b1       c1: c0 c1
        a2: a0 a1 a2                    c2: c0 c1 c2

Nothing is dropped or cropped silently: an example longer than `max_length` is an error by default (with the count
and the fix); with `overlong: truncate` it is cut to `max_length`, and every cut that removes trained tokens is
counted and reported. Padding (only at the end of a batch's shorter rows) forms its own position run, never
attended to by real tokens, and carries IGNORE labels.

    prep = prepare(cfg, tokenizer, "train")
    batch = collate(prep.rows[:4], pad_id=tokenizer.pad_token_id)
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipsft.data.labels import IGNORE_INDEX, labels_from_mask
from shipsft.data.types import Example, Rendered
from shipsft.errors import DataError


@dataclass(slots=True)
class Row:
    ids: list[int]
    labels: list[int]
    position_ids: list[int]
    seq_lens: list[int]
    example_idx: list[int]  # index into the rendered list, one per packed example

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass
class PackResult:
    rows: list[Row]
    efficiency: float  # real tokens / (rows * max_length) for packed rows
    n_truncated: int = 0
    n_answer_cut: int = 0  # truncations that removed trained tokens


def _row_of(items: list[tuple[int, list[int], list[int]]]) -> Row:
    ids, labels, pos, lens, idx = [], [], [], [], []
    for i, tok_ids, tok_labels in items:
        ids.extend(tok_ids)
        labels.extend(tok_labels)
        pos.extend(range(len(tok_ids)))
        lens.append(len(tok_ids))
        idx.append(i)
    return Row(ids, labels, pos, lens, idx)


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of item indices: longest item first, each into the fullest bin that still has room.

    The open bins are kept in a list sorted by remaining room, so each placement is a bisect (O(log bins) search).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    room: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index)
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(room, (n, -1))
        if k < len(room):
            left, b = room.pop(k)
            bins[b].append(i)
            if left - n > 0:
                bisect.insort(room, (left - n, b))
        else:
            bins.append([i])
            if capacity - n > 0:
                bisect.insort(room, (capacity - n, len(bins) - 1))
    return bins


def truncate_overlong(rendered: list[Rendered], max_length: int, overlong: str) -> tuple[int, int]:
    """Enforce max_length before packing. Returns (n_truncated, n_answer_cut); raises when overlong='error'."""
    over = [r for r in rendered if len(r.ids) > max_length]
    if not over:
        return 0, 0
    if overlong == "error":
        worst = max(over, key=lambda r: len(r.ids))
        lines = [f"{len(over)} example(s) are longer than data.max_length={max_length} tokens "
                 f"(longest: {worst.source}, {len(worst.ids)} tokens)."]
        lines += [f"  {r.source}: {len(r.ids)} tokens" for r in over[:10]]
        if len(over) > 10:
            lines.append(f"  ... and {len(over) - 10} more")
        lines.append(f"Fix: raise data.max_length (e.g. --set data.max_length={_round_up(len(worst.ids))}), "
                     "remove them, or set data.overlong: truncate (cut answers are counted and reported).")
        raise DataError(lines)
    answer_cut = 0
    for r in over:
        if any(r.mask[max_length:]):
            answer_cut += 1
        r.ids, r.mask, r.truncated = r.ids[:max_length], r.mask[:max_length], True
    return len(over), answer_cut


def _round_up(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def pack_examples(rendered: list[Rendered], max_length: int, *, packing: bool = True,
                  overlong: str = "error") -> PackResult:
    n_trunc, n_cut = truncate_overlong(rendered, max_length, overlong)
    items = [(i, r.ids, labels_from_mask(r.ids, r.mask)) for i, r in enumerate(rendered)]
    if packing:
        bins = best_fit_decreasing([len(r.ids) for r in rendered], max_length)
        rows = [_row_of([items[i] for i in sorted(b)]) for b in bins]
        slots = len(rows) * max_length
    else:
        rows = [_row_of([it]) for it in items]
        slots = len(rows) * max((len(r.ids) for r in rendered), default=0)
    real = sum(len(r.ids) for r in rendered)
    return PackResult(rows, real / slots if slots else 0.0, n_trunc, n_cut)


def collate(rows: list[Row], pad_id: int) -> dict[str, Any]:
    """Rows -> LongTensors [B, T] (T = longest row). Padding gets IGNORE labels and its own position run."""
    import torch

    T = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
    pos = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r.ids)
        ids[b, :n] = torch.tensor(r.ids)
        labels[b, :n] = torch.tensor(r.labels)
        pos[b, :n] = torch.tensor(r.position_ids)
        pos[b, n:] = torch.arange(T - n)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "n_real": sum(len(r.ids) for r in rows)}


# ------------------------------------------------------------------------------------------------------------
# The whole pipeline for one split: files -> examples -> rendered -> rows


@dataclass
class Prepared:
    split: str
    examples: list[Example]
    rendered: list[Rendered]
    rows: list[Row]
    efficiency: float
    format: str
    renderer: Any
    notes: list[str] = field(default_factory=list)
    files: list[Any] = field(default_factory=list)  # formats.FileInfo: path, sha256, n_records, licenses
    n_rejected: int = 0
    n_truncated: int = 0
    n_answer_cut: int = 0
    fingerprint: str = ""  # sha256 over data file hashes, the data config and every (ids, mask)

    @property
    def n_tokens(self) -> int:
        return sum(len(r.ids) for r in self.rendered)

    @property
    def n_trained(self) -> int:
        return sum(r.n_trained for r in self.rows)


def token_fingerprint(rendered: list[Rendered]) -> str:
    """sha256 over every sequence's length, ids and mask (numpy: ~0.1 s for 11 M tokens)."""
    import numpy as np

    lengths = np.fromiter((len(r.ids) for r in rendered), dtype=np.int64, count=len(rendered))
    total = int(lengths.sum())
    ids = np.fromiter((t for r in rendered for t in r.ids), dtype=np.int64, count=total)
    mask = np.fromiter((m for r in rendered for m in r.mask), dtype=np.uint8, count=total)
    h = hashlib.sha256(lengths.tobytes())
    h.update(ids.tobytes())
    h.update(mask.tobytes())
    return h.hexdigest()


def load_split(cfg, split: str = "train", rejects_tag: str | None = None):
    """Read and validate one split's files (formats.LoadResult). Skipped records go to the configured rejects
    file, else to <output.dir>/rejects-<tag>.jsonl (tag: the split, or e.g. "audit")."""
    from shipsft.data.formats import load_examples

    paths = cfg.data.train if split == "train" else cfg.data.eval
    if not paths:
        raise DataError([f"data.{split}: no files configured. Fix: set data.{split} to one or more JSONL/JSON/"
                         "Parquet/CSV files or saved datasets folders."])
    rejects = cfg.data.rejects_file
    if rejects is None and cfg.data.on_invalid == "skip":
        rejects = str(Path(cfg.output.dir) / f"rejects-{rejects_tag or split}.jsonl")
    return load_examples(paths, fmt=cfg.data.format, on_invalid=cfg.data.on_invalid, rejects_path=rejects)


def renderer_for(cfg, tokenizer, examples: list[Example]):
    """The configured renderer; a chat template is only required when some example is a conversation."""
    from shipsft.data.render import load_renderer

    return load_renderer(tokenizer, cfg.data, need_template=any(ex.kind == "chat" for ex in examples))


def prepare(cfg, tokenizer, split: str = "train", renderer=None) -> Prepared:
    """Load, validate, render, check and pack one split of the configured data."""
    loaded = load_split(cfg, split)
    r = renderer or renderer_for(cfg, tokenizer, loaded.examples)
    rendered = _render_cached(r, loaded, cfg.data)
    n_trunc, n_cut = truncate_overlong(rendered, cfg.data.max_length, cfg.data.overlong)
    check_trained(rendered, r.mode, truncated=bool(n_trunc))  # after truncation: a fully cut answer is caught too
    packed = pack_examples(rendered, cfg.data.max_length, packing=cfg.data.packing, overlong=cfg.data.overlong)
    packed.n_truncated, packed.n_answer_cut = n_trunc, n_cut
    notes = list(loaded.notes)
    n_split = sum(1 for x in rendered if x.turn is not None)
    if n_split:
        notes.append(f"the chat template is not prefix-stable (it rewrites earlier turns): {n_split} sequences were "
                     "made one per assistant turn, each trained on that turn only")
    if packed.n_truncated:
        notes.append(f"{packed.n_truncated} example(s) truncated to {cfg.data.max_length} tokens; "
                     f"{packed.n_answer_cut} of them lost trained (answer) tokens")
    h = hashlib.sha256()
    for f in loaded.files:
        h.update(str(getattr(f, "sha256", "")).encode())
    h.update(repr(sorted(cfg.data.model_dump(mode="json").items())).encode())
    h.update(token_fingerprint(rendered).encode())
    return Prepared(split, loaded.examples, rendered, packed.rows, packed.efficiency, loaded.format, r, notes,
                    list(loaded.files), loaded.n_rejected, packed.n_truncated, packed.n_answer_cut, h.hexdigest()[:16])


def _render_cached(r, loaded, data_cfg) -> list[Rendered]:
    """Render through the fingerprint-keyed cache (failure mode 15: never tokenise an unchanged set twice)."""
    from shipsft.data import cache
    from shipsft.data.render import render_examples

    knobs = data_cfg.model_dump(mode="json", exclude={"train", "eval", "max_length", "packing", "overlong"})
    # paths are part of the key: every cached Rendered carries its "file:line" source
    key = cache.cache_key([f"{getattr(f, 'path', '')}:{getattr(f, 'sha256', '')}" for f in loaded.files]
                          + [str(len(loaded.examples))], knobs,
                          cache.tokenizer_fingerprint(r.tokenizer))
    rendered = cache.load(key)
    if rendered is None:
        rendered = render_examples(r, loaded.examples)
        cache.store(key, rendered)
    return rendered


def render_examples_checked(r, examples: list[Example]) -> list[Rendered]:
    """Render, then refuse examples that would train on nothing (failure modes 7 and 13)."""
    from shipsft.data.render import render_examples

    rendered = render_examples(r, examples)
    check_trained(rendered, r.mode)
    return rendered


def check_trained(rendered: list[Rendered], mode: str, truncated: bool = False) -> None:
    empty = [x for x in rendered if x.n_trained == 0]
    if not empty:
        return
    lines = [f"{len(empty)} example(s) have zero trained tokens after rendering and masking "
             f"(mask mode {mode!r}), so they would teach nothing:"]
    lines += [f"  {x.source}" + (" (its answer was cut by truncation)" if x.truncated else "") for x in empty[:10]]
    if len(empty) > 10:
        lines.append(f"  ... and {len(empty) - 10} more")
    fix = "check that each example has an assistant answer inside the trained part (data.mask), or remove them"
    if truncated:
        fix += "; raise data.max_length so truncation keeps the answers"
    lines.append(f"Fix: {fix}.")
    raise DataError(lines)
