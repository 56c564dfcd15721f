"""Masks become labels here, and only here: one function, one ignore constant, one next-token shift.

`mask[t]` says token t is trained (the model must learn to produce it). The model's logits at position t predict
token t+1, so the label at position t is `ids[t+1]` when token t+1 is trained, else IGNORE_INDEX; the last
position has nothing to predict. The loss then scores logits[t] against labels[t] with no further shift.

A packed row is a concatenation of such label lists, so the target at every example boundary (the last position
of each example, which would otherwise predict the next example's first token) is IGNORE_INDEX by construction.
"""
from __future__ import annotations

IGNORE_INDEX = -100  # the value torch.nn.functional.cross_entropy skips by default


def labels_from_mask(ids: list[int], mask: list[bool]) -> list[int]:
    if len(ids) != len(mask):
        raise ValueError(f"ids and mask differ in length: {len(ids)} vs {len(mask)}")
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids[1:], mask[1:])]
    labels.append(IGNORE_INDEX)
    return labels


def count_trained(labels: list[int]) -> int:
    """Number of trained targets, counted on the labels after the shift (failure mode 2: never from ids)."""
    return sum(1 for x in labels if x != IGNORE_INDEX)
