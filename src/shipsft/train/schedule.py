"""The step arithmetic of a run and its learning-rate schedule: how many optimizer steps, how many rows each takes,
the warmup, and the LR at every step. The audit asks this module instead of re-deriving it.

The schedule is a plain function of the optimizer step, `lr_at`, applied once per optimizer step (DESIGN invariant
5 in docs/architecture.md): there is no scheduler object to forget to step, or to step per micro-batch.

    plan = plan_steps(n_rows=len(rows), train=cfg.train)
    lr = lr_at(step, plan.total_steps, warmup_steps(cfg.optim, plan.total_steps), cfg.optim)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from shipsft.config import OptimConfig, TrainConfig


@dataclass(frozen=True)
class StepPlan:
    rows_per_step: int  # packed rows per optimizer step (batch_rows x grad_accum)
    steps_per_epoch: int
    total_steps: int
    epochs: float  # passes over the data the run will make (max_steps may cut or extend train.epochs)


def plan_steps(n_rows: int, train: TrainConfig) -> StepPlan:
    per_step = train.batch_rows * train.grad_accum
    per_epoch = max(1, math.ceil(n_rows / per_step))
    total = train.max_steps or max(1, math.ceil(train.epochs * per_epoch))
    epochs = train.epochs if train.max_steps is None else total * per_step / max(n_rows, 1)
    return StepPlan(per_step, per_epoch, total, epochs)


def replan_from(plan: StepPlan, n_rows: int, train: TrainConfig, step: int, epoch: int, position: int) -> StepPlan:
    """The plan of a run resumed with a different batch (--resume-force): the steps already done, then what is left
    of train.epochs at the new rows per step, counted from the data cursor (epoch, rows of it done)."""
    if train.max_steps:
        return plan
    left_in_epoch = math.ceil((n_rows - position) / plan.rows_per_step)
    later = max(0.0, train.epochs - epoch - 1)
    total = step + left_in_epoch + math.ceil(later * plan.steps_per_epoch)
    return StepPlan(plan.rows_per_step, plan.steps_per_epoch, max(total, step), plan.epochs)


def warmup_steps(optim: OptimConfig, total_steps: int) -> int:
    if optim.warmup_steps is not None:
        return min(optim.warmup_steps, total_steps)
    return min(math.ceil(optim.warmup_ratio * total_steps), total_steps)


def lr_at(step: int, total: int, warmup: int, optim: OptimConfig) -> float:
    """LR for optimizer step `step` (0-based) of `total`, peak optim.lr.

    Warmup: peak * (step + 1) / warmup, so step 0 already takes a small real step (half the peak when warmup = 2)
    and the last warmup step is at the peak. Then, with progress p = (step - warmup) / (total - warmup):
    cosine  peak * (r + (1 - r) * 0.5 * (1 + cos(pi * p)))  (r = min_lr_ratio; the floor r * peak is approached,
            not reached, at the last step), linear  peak * (r + (1 - r) * (1 - p)),  constant  peak.
    """
    peak = optim.lr
    if step < warmup:
        return peak * (step + 1) / warmup
    if optim.schedule == "constant" or total <= warmup:
        return peak
    p = min((step - warmup) / (total - warmup), 1.0)
    shape = 0.5 * (1 + math.cos(math.pi * p)) if optim.schedule == "cosine" else 1 - p
    r = optim.min_lr_ratio
    return peak * (r + (1 - r) * shape)
