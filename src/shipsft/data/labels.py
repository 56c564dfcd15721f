"""Masks become labels here, and only here: one function, one ignore constant, one next-token shift, and the one
definition of "trained tokens".

`mask[t]` says token t is trained (the model must learn to produce it). The model's logits at position t predict
token t+1, so the label at position t is `ids[t+1]` when token t+1 is trained, else IGNORE_INDEX; the last
position has nothing to predict. The loss then scores logits[t] against labels[t] with no further shift.

A packed row is a concatenation of such label lists, so the target at every example boundary (the last position
of each example, which would otherwise predict the next example's first token) is IGNORE_INDEX by construction.

Trained tokens are counted on the labels after the shift (failure mode 2 in docs/failure-modes.md: counting
unshifted tokens over-counts by one per row). `n_targets(mask)` is the same count read off the mask without building
the labels: the targets are exactly mask[1:].
"""
from __future__ import annotations

from typing import Any, Sequence

IGNORE_INDEX = -100  # the value torch.nn.functional.cross_entropy skips by default


def labels_from_mask(ids: Sequence[int], mask: Sequence[bool]) -> list[int]:
    if len(ids) != len(mask):
        raise ValueError(f"ids and mask differ in length: {len(ids)} vs {len(mask)}")
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids[1:], mask[1:])]
    labels.append(IGNORE_INDEX)
    return labels


def count_trained(labels: Any) -> int:
    """Trained targets in a label list or a label tensor (any shape): labels that are not IGNORE_INDEX."""
    if hasattr(labels, "ne"):  # a torch tensor
        return int(labels.ne(IGNORE_INDEX).sum())
    return sum(1 for x in labels if x != IGNORE_INDEX)


def n_targets(mask: Sequence[bool]) -> int:
    """count_trained(labels_from_mask(ids, mask)) without building the labels: the first token is never a target."""
    return sum(mask[1:])
