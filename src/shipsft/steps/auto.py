"""What `auto` means for the batch and the number of epochs, with the reason for each choice (printed at the start of
a run and written into its config.yaml as plain numbers). `data.max_length: auto` is resolved by the data pipeline
(the longest rendered example; data/pipeline.py); `resolve.py` puts the two together.

Why these rules. A small data set needs enough optimizer steps to learn: one epoch of 1,200 examples in steps of 64
examples is 19 updates, in steps of 8 (TRL's per-device batch) it is 150 (`bench/recipe.py` compares the defaults
with TRL's on generated tasks; docs/benchmarks.md shows what it measured). Large sets want a larger batch for a
stable gradient (64-512 examples per step is the usual SFT range); past that, more steps of the same size add
little. So:

    batch_size  examples / 100, rounded down to a power of two, kept within [8, 64]
                (300 -> 8, 1,200 -> 8, 3,000 -> 16, 10,000 -> 64)
    epochs      enough passes for about MIN_STEPS optimizer steps, at most MAX_EPOCHS (more passes over a small set
                memorise it), at least 1

    train, reasons = auto_train(cfg.train, lengths)     # lengths: one per training sequence
"""
from __future__ import annotations

import math

from shipsft.config import TrainConfig
from shipsft.steps.batches import BatchRule, Cursor, steps_from

MIN_BATCH, MAX_BATCH = 8, 64
EXAMPLES_PER_STEP_RATIO = 100  # batch = examples / 100 before clamping
MIN_STEPS = 120  # optimizer steps a run should reach before epochs stop growing
MAX_EPOCHS = 3


def auto_batch_size(n_examples: int) -> int:
    raw = max(1, n_examples // EXAMPLES_PER_STEP_RATIO)
    return max(MIN_BATCH, min(MAX_BATCH, 2 ** int(math.log2(raw))))


def auto_train(train: TrainConfig, lengths: list[int]) -> tuple[TrainConfig, list[str]]:
    """`train` with batch_size / epochs turned from 'auto' into numbers (for examples of these token lengths), and
    one reason per choice made."""
    n_examples = len(lengths)
    reasons = []
    updates = {}
    if train.batch_size == "auto":
        updates["batch_size"] = auto_batch_size(n_examples)
        reasons.append(f"train.batch_size auto -> {updates['batch_size']} examples per optimizer step "
                       f"({n_examples:,} examples / {EXAMPLES_PER_STEP_RATIO}, a power of two within "
                       f"[{MIN_BATCH}, {MAX_BATCH}]: a small set needs enough optimizer steps to learn)")
    if train.epochs == "auto":
        rule = BatchRule(examples=updates.get("batch_size", train.batch_size), tokens=train.batch_tokens)
        per_epoch = max(1, steps_from(lengths, rule, train.seed, 1, Cursor()))
        epochs = max(1, min(MAX_EPOCHS, math.ceil(MIN_STEPS / per_epoch)))
        updates["epochs"] = float(epochs)
        why = (f"{per_epoch} steps per epoch already reach {MIN_STEPS}" if epochs == 1 else
               f"{per_epoch} steps per epoch; {epochs} passes give {epochs * per_epoch} steps"
               + (f", capped at {MAX_EPOCHS} passes (more would memorise a small set)" if epochs == MAX_EPOCHS
                  and epochs * per_epoch < MIN_STEPS else ""))
        reasons.append(f"train.epochs auto -> {epochs} ({why}; about {MIN_STEPS} optimizer steps is the aim)")
    return train.model_copy(update=updates), reasons
