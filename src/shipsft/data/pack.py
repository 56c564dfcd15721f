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
attended to by real tokens, and carries IGNORE labels (masked by position, never by token id: with pad == eos a
mask by id would erase every trained end-of-turn token, failure mode 10).

    rows = pack_examples(rendered, max_length=512, packing=True).rows
    batch = collate(rows[:4], pad_id=padding_id(tokenizer))
    groups = micro_batches(step_examples, Batching(max_length=512, packing=True, micro_tokens=4096))
"""
from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from shipsft.config import DataConfig, TrainConfig
from shipsft.data.labels import IGNORE_INDEX, count_trained, labels_from_mask
from shipsft.data.types import Rendered
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
        return count_trained(self.labels)


@dataclass
class PackResult:
    rows: list[Row]
    efficiency: float  # real tokens / (rows * max_length) for packed rows
    left_out: list[int]  # indices of examples longer than max_length (not in any row)


def _row_of(items: list[tuple[int, list[int], list[int]]]) -> Row:
    ids, labels, pos, lens, idx = [], [], [], [], []
    for i, tok_ids, tok_labels in items:
        ids.extend(tok_ids)
        labels.extend(tok_labels)
        pos.extend(range(len(tok_ids)))
        lens.append(len(tok_ids))
        idx.append(i)
    return Row(ids, labels, pos, lens, idx)


def placements(sizes, capacity: int) -> Iterator[int]:
    """The bin each item goes to, items taken in the order given (longest first for best-fit-decreasing): the
    fullest bin that still has room (the least room >= the item, the earliest such bin on a tie), else a new bin.

    Open bins are kept by their remaining room (at most `capacity` values): a heap of bin indices per room value and
    one Python int whose bit r says that some bin has room r, so the best fit is the lowest set bit at or above the
    item's size. Each placement costs O(log bins), whatever the number of open bins (a sorted list of them costs a
    memmove of the whole list per insertion, quadratic on a million sequences)."""
    heaps: dict[int, list[int]] = {}
    has_room = 0
    n_bins = 0
    for n in sizes:
        n = int(n)
        above = has_room >> n
        if above:
            r = n + (above & -above).bit_length() - 1
            b = heapq.heappop(heaps[r])
            if not heaps[r]:
                has_room &= ~(1 << r)
            left = r - n
        else:
            b, left = n_bins, capacity - n
            n_bins += 1
        yield b
        if left > 0:
            heapq.heappush(heaps.setdefault(left, []), b)
            has_room |= 1 << left


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of item indices: longest item first (ties in index order), each into the fullest bin that still has
    room (`placements`)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    for i, b in zip(order, placements((lengths[i] for i in order), capacity)):
        if b == len(bins):
            bins.append([])
        bins[b].append(i)
    return bins


def packed_row_count(lengths: np.ndarray, capacity: int) -> int:
    """How many rows best-fit-decreasing packs these lengths into, without building the rows (a million sequences:
    a few seconds and two arrays of their size)."""
    order = np.sort(np.asarray(lengths, dtype=np.int64))[::-1]
    return max(placements(order, capacity), default=-1) + 1


def overlong_error(over: list[Rendered], max_length: int, n_over: int | None = None) -> DataError:
    """The error naming the sequences longer than max_length: `over` lists them (or the first ones and the longest,
    with `n_over` the count of them all)."""
    worst = max(over, key=lambda r: len(r.ids))
    n_over = len(over) if n_over is None else n_over
    lines = [f"{n_over} example(s) are longer than data.max_length={max_length} tokens "
             f"(longest: {worst.source}, {len(worst.ids)} tokens)."]
    lines += [f"  {r.source}: {len(r.ids)} tokens" for r in over[:10]]
    if n_over > 10:
        lines.append(f"  ... and {n_over - 10} more")
    lines.append(f"Fix: raise data.max_length (e.g. --set data.max_length={round_up(len(worst.ids))}), "
                 "remove them, or set data.overlong: truncate (cut answers are counted and reported).")
    return DataError(lines)


def truncated(rendered: list[Rendered], max_length: int) -> list[Rendered]:
    """The sequences cut to max_length (data.overlong: truncate), marked `truncated`; the others as they are. (A
    store on disk truncates as a view: data/store.py.)"""
    return [Rendered(x.source, x.ids[:max_length], x.mask[:max_length], x.text, x.turn, x.n_prompt_tokens, True)
            if len(x.ids) > max_length else x for x in rendered]


def round_up(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


def pack_examples(rendered: list[Rendered], max_length: int, packing: bool) -> PackResult:
    """Rows of at most `max_length` tokens. Examples longer than that are never cut here: they are left out and
    listed in `left_out` (the pipeline truncates them first when data.overlong says so, or reports them)."""
    fits = [i for i, r in enumerate(rendered) if len(r.ids) <= max_length]
    items = {i: (i, rendered[i].ids, labels_from_mask(rendered[i].ids, rendered[i].mask)) for i in fits}
    if packing:
        bins = best_fit_decreasing([len(rendered[i].ids) for i in fits], max_length)
        rows = [_row_of([items[fits[k]] for k in sorted(b)]) for b in bins]
        slots = len(rows) * max_length
    else:
        rows = [_row_of([items[i]]) for i in fits]
        slots = len(rows) * max((len(rendered[i].ids) for i in fits), default=0)
    real = sum(len(rendered[i].ids) for i in fits)
    left_out = [i for i, r in enumerate(rendered) if len(r.ids) > max_length]
    return PackResult(rows, real / slots if slots else 0.0, left_out)


def join_rows(rows: list[Row], max_tokens: int) -> list[Row]:
    """Consecutive rows end to end, in rows of at most `max_tokens` (a longer row stays alone): each micro-batch
    becomes one row with no padding. Only for attention that isolates documents by their position_ids whatever the
    row length (model/attention.py: `rows_join`); a joined row holds exactly the documents, labels and position runs
    of the rows it joins, so the loss and every gradient are those of the padded batch."""
    out: list[Row] = []
    for r in rows:
        last = out[-1] if out else None
        if last is not None and len(last.ids) + len(r.ids) <= max_tokens:
            out[-1] = Row(last.ids + r.ids, last.labels + r.labels, last.position_ids + r.position_ids,
                          last.seq_lens + r.seq_lens, last.example_idx + r.example_idx)
        else:
            out.append(r)
    return out


@dataclass(frozen=True)
class Batching:
    """How the examples of one optimizer step become micro-batches, as the loop builds them: packed into rows of
    `max_length` (or one example per row without packing), the rows joined end to end when attention is per document
    (`joined`: model/attention.py's rows_join says when), then grouped into micro-batches of at most `micro_tokens`
    padded tokens (train.micro_batch_tokens). The loop, the audit's padding figures and the memory planner all build
    micro-batches through `micro_batches` with one of these."""

    max_length: int
    packing: bool
    micro_tokens: int
    joined: bool = False

    @classmethod
    def of(cls, data: DataConfig, train: TrainConfig, joined: bool) -> "Batching":
        """The batching of a resolved run's config sections (data.max_length a number)."""
        return cls(data.max_length, data.packing, train.micro_batch_tokens, joined)


def micro_batches(examples: list[Rendered], b: Batching) -> list[list[Row]]:
    """The micro-batches (groups of rows) of one optimizer step's examples; a row's example_idx indexes `examples`."""
    rows = pack_examples(examples, b.max_length, b.packing).rows
    if b.joined:
        rows = join_rows(rows, b.micro_tokens)
    return group_rows(rows, b.micro_tokens)


def padded_tokens(group: list[Row]) -> tuple[int, int]:
    """(real tokens, positions) of a micro-batch as `collate` lays it out: every row padded to the longest."""
    return sum(len(r.ids) for r in group), len(group) * max(len(r.ids) for r in group)


def padding_id(tokenizer, stop_ids: list[int] | tuple[int, ...] = ()) -> int:
    """The id padding positions hold: the tokenizer's pad token, else the first stop id (the end of turn generation
    stops at), else its eos, else 0. Which id it is changes no result: padding is masked by position (its own
    position run, IGNORE labels; left padding in generation is masked by the attention mask), so it only has to be
    a valid id. The one place this choice is made (training, evals, export parity, chat)."""
    for candidate in (tokenizer.pad_token_id, *stop_ids[:1], tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


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


def group_rows(rows: list[Row], max_tokens: int) -> list[list[Row]]:
    """Consecutive rows in groups whose padded size (rows x the longest row) stays within `max_tokens`, at least
    one row each: the micro-batches of one optimizer step (train.micro_batch_tokens)."""
    groups: list[list[Row]] = []
    cur: list[Row] = []
    longest = 0
    for r in rows:
        width = max(longest, len(r.ids))
        if cur and (len(cur) + 1) * width > max_tokens:
            groups.append(cur)
            cur, width = [], len(r.ids)
        cur.append(r)
        longest = width
    if cur:
        groups.append(cur)
    return groups
