"""The one place a run is resolved: `auto` turned into numbers and the optimizer steps counted, on the token lengths
the loop will train.

Every part that needs the step count calls this: `shipsft train` (train/run.py), the audit's recipe check
(audit/run.py), the memory planner (sweep/plan.py), the LR lock-in (sweep/lrlock.py) and `shipsft init`
(recipe/starter.py). The lengths are those of the sequences as training sees them, after `data.overlong: truncate`
cut them, so with `train.batch_tokens` the audit, the planner and the loop take the same examples into each step.

    r = resolve(cfg, prepared)
    r.config      # cfg with data.max_length, train.batch_size and train.epochs as numbers
    r.plan        # StepPlan: examples (or tokens) per step, steps per epoch, total steps
    r.reasons     # one line per automatic choice, printed at the start of a run and written into init's config
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shipsft.config import RunConfig
from shipsft.steps.auto import auto_train
from shipsft.steps.schedule import StepPlan, plan_steps


class Split(Protocol):
    """What `resolve` reads of a prepared training split (data/pipeline.py: Prepared, or `TokenLengths`)."""

    max_length: int  # data.max_length as the pipeline resolved it ('auto' -> the longest example, rounded up)

    @property
    def lengths(self) -> list[int]: ...  # token length of every training sequence, after any truncation


@dataclass(frozen=True)
class TokenLengths:
    """A split given by its token lengths alone (examples rendered outside data/pipeline.py: tests, benches)."""

    lengths: list[int]
    max_length: int


@dataclass(frozen=True)
class Resolved:
    config: RunConfig
    plan: StepPlan
    reasons: list[str]


def resolve(cfg: RunConfig, prepared: Split) -> Resolved:
    """`cfg` with data.max_length, train.batch_size and train.epochs resolved from `auto`, the step plan over the
    lengths the loop trains, and the reason for each automatic choice of the batch and the epochs (the pipeline
    gives the reason for data.max_length in its notes)."""
    lengths = prepared.lengths
    train, reasons = auto_train(cfg.train, lengths)
    data = cfg.data.model_copy(update={"max_length": prepared.max_length})
    return Resolved(cfg.model_copy(update={"data": data, "train": train}), plan_steps(lengths, train), reasons)
