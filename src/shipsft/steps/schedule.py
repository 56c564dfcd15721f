"""The step arithmetic of a run and its learning-rate schedule: how many optimizer steps, how many examples each
takes, the warmup, and the LR at every step. The audit asks this module instead of re-deriving it.

The schedule is a plain function of the optimizer step, `lr_at`, applied once per optimizer step (DESIGN invariant
5 in docs/architecture.md): there is no scheduler object to forget to step, or to step per micro-batch.

    plan = plan_steps(lengths, cfg.train)
    lr = lr_at(step, plan.total_steps, warmup_steps(cfg.optim, plan.total_steps), cfg.optim)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from shipsft.config import OptimConfig, TrainConfig
from shipsft.steps.batches import BatchRule, Cursor, steps_from


@dataclass(frozen=True)
class StepPlan:
    rule: BatchRule  # examples (or tokens) per optimizer step
    steps_per_epoch: int
    total_steps: int
    epochs: float  # passes over the data the run will make (max_steps may cut or extend train.epochs)


def batch_rule(train: TrainConfig) -> BatchRule:
    if train.batch_size in (None, "auto") and train.batch_tokens is None:
        raise ValueError("train.batch_size is still 'auto': resolve it first (steps/resolve.py)")
    return BatchRule(examples=train.batch_size, tokens=train.batch_tokens)


def plan_steps(lengths: list[int], train: TrainConfig) -> StepPlan:
    """The plan for examples of these token lengths (train.epochs and the batch already resolved from 'auto')."""
    rule = batch_rule(train)
    per_epoch = max(1, steps_from(lengths, rule, train.seed, 1, Cursor()))
    if train.max_steps:
        return StepPlan(rule, per_epoch, train.max_steps, train.max_steps / per_epoch)
    total = max(1, steps_from(lengths, rule, train.seed, float(train.epochs), Cursor()))
    return StepPlan(rule, per_epoch, total, float(train.epochs))


def replan_from(plan: StepPlan, lengths: list[int], train: TrainConfig, step: int, cursor: Cursor) -> StepPlan:
    """The plan of a run resumed with a different batch (--resume-force): the steps already done, then what is left
    of train.epochs at the new batch, walked from the data cursor."""
    if train.max_steps:
        return plan
    total = step + steps_from(lengths, plan.rule, train.seed, float(train.epochs), cursor)
    return StepPlan(plan.rule, plan.steps_per_epoch, max(total, step), plan.epochs)


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
