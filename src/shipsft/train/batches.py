"""Data order: which packed rows each optimizer step trains on.

Every epoch visits every row once, in an order shuffled by (train.seed, epoch), so a run is reproducible from its
config. Where a run is in the data is a `Cursor`: the epoch and how many rows of that epoch's order were trained.
Rows are fixed units (the packer's output for data.max_length), so the cursor does not depend on the batch size.

    cursor = Cursor()
    epoch, epoch_end, idx = next_rows(cursor, n_rows=len(rows), rows_per_step=8, seed=42)
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Cursor:
    epoch: int = 0
    position: int = 0  # rows of this epoch's order already trained


def epoch_order(n_rows: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n_rows))
    random.Random(seed + epoch).shuffle(order)
    return order


def next_rows(cursor: Cursor, n_rows: int, rows_per_step: int, seed: int) -> tuple[int, bool, list[int]]:
    """(epoch, whether this step ends the epoch, row indices) of the next optimizer step; advances the cursor.
    The last step of an epoch takes what is left, so no row is dropped or repeated within an epoch."""
    order = epoch_order(n_rows, seed, cursor.epoch)
    idx = order[cursor.position:cursor.position + rows_per_step]
    epoch = cursor.epoch
    cursor.position += len(idx)
    epoch_end = cursor.position >= n_rows
    if epoch_end:
        cursor.epoch, cursor.position = cursor.epoch + 1, 0
    return epoch, epoch_end, idx


def micro_batches(idx: list[int], batch_rows: int) -> list[list[int]]:
    return [idx[j:j + batch_rows] for j in range(0, len(idx), batch_rows)]
