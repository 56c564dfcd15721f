"""Data order: which examples each optimizer step trains on, and how they become rows.

Every epoch visits every example once, in an order shuffled by (train.seed, epoch), so a run is reproducible from its
config. A step takes the next train.batch_size examples of that order (or, with train.batch_tokens, examples until
that many tokens), packs them into rows of data.max_length, and splits the rows into micro-batches of at most
train.micro_batch_tokens tokens. Where a run is in the data is a `Cursor`: the epoch and how many examples of that
epoch's order are done. It counts examples, not batches, so a resume with another batch size or another number of
processes neither repeats nor skips one.

    cursor = Cursor()
    epoch, epoch_end, idx = next_examples(cursor, lengths, BatchRule(examples=8), seed=42)
"""
from __future__ import annotations

import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Cursor:
    epoch: int = 0
    position: int = 0  # examples of this epoch's order already trained


@dataclass(frozen=True)
class BatchRule:
    """How many examples one optimizer step takes: a fixed number, or as many as fit in a token budget."""

    examples: int | None = None
    tokens: int | None = None


def epoch_order(n: int, seed: int, epoch: int) -> Sequence[int]:
    """The examples of one epoch in their shuffled order: random.Random(seed + epoch).shuffle of 0..n-1, in an int32
    array (4 bytes an example, where a list of ints costs ~36: a million examples' order is 4 MB). The last order is
    kept, so a loop that asks once per step shuffles once per epoch."""
    key = (n, seed, epoch)
    if _LAST_ORDER.get("key") != key:
        order = array("i", range(n)) if n < 2**31 else array("q", range(n))
        random.Random(seed + epoch).shuffle(order)  # the same draws as on a list: the same order
        _LAST_ORDER.update(key=key, order=order)
    return _LAST_ORDER["order"]


_LAST_ORDER: dict = {}


def take(order: Sequence[int], position: int, lengths: Sequence[int], rule: BatchRule) -> list[int]:
    """The examples of the next step from `position` of an epoch's order (never past its end)."""
    if rule.examples is not None:
        return list(order[position:position + rule.examples])
    idx, used = [], 0
    for k in range(position, len(order)):
        i = order[k]
        if idx and used + lengths[i] > rule.tokens:
            break
        idx.append(i)
        used += int(lengths[i])
    return idx


def next_examples(cursor: Cursor, lengths: Sequence[int], rule: BatchRule, seed: int) -> tuple[int, bool, list[int]]:
    """(epoch, whether this step ends the epoch, example indices) of the next optimizer step; advances the cursor.
    The last step of an epoch takes what is left, so no example is dropped or repeated within an epoch."""
    order = epoch_order(len(lengths), seed, cursor.epoch)
    idx = take(order, cursor.position, lengths, rule)
    epoch = cursor.epoch
    cursor.position += len(idx)
    epoch_end = cursor.position >= len(lengths)
    if epoch_end:
        cursor.epoch, cursor.position = cursor.epoch + 1, 0
    return epoch, epoch_end, idx


def steps_from(lengths: Sequence[int], rule: BatchRule, seed: int, epochs: float, start: Cursor) -> int:
    """Optimizer steps from `start` to the end of `epochs` epochs (a fraction of the last epoch counts its first
    steps), walking the same orders the loop will walk."""
    n, steps = len(lengths), 0
    cursor = Cursor(start.epoch, start.position)
    while cursor.epoch < epochs:
        last_fraction = epochs - cursor.epoch
        order = epoch_order(n, seed, cursor.epoch)
        epoch_steps, pos = [], cursor.position
        while pos < n:
            pos += len(take(order, pos, lengths, rule))
            epoch_steps.append(pos)
        if last_fraction < 1:  # stop once this share of the epoch's examples is done
            epoch_steps = [p for p in epoch_steps if p <= max(1, round(last_fraction * n))] or epoch_steps[:1]
        steps += len(epoch_steps)
        cursor = Cursor(cursor.epoch + 1, 0)
    return steps


def walk(lengths: Sequence[int], rule: BatchRule, seed: int, steps: int):
    """(epoch, whether the step ends its epoch, example indices) of the first `steps` optimizer steps of a run, in the
    order the loop takes them (`next_examples` from a fresh cursor): what the audit and the memory planner walk to see
    the loop's own micro-batches."""
    cursor = Cursor()
    for _ in range(steps):
        yield next_examples(cursor, lengths, rule, seed)
