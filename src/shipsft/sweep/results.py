"""The numbers of one trial, read from its run folder through `shipsft.runs` (nothing is re-measured):

    train_loss            mean of the last 10 finite step losses (the loop's own FitResult.train_loss rule)
    eval_loss             the last eval-loss measurement on data.eval (after training), else the last full eval's
    <suite>/<metric>      task metrics of the last full eval (end of training)
    kl_to_base, probe_kl  drift from the base model (last full eval; needs eval suites)
    general_loss_increase the forgetting probe: its loss after training minus before (nats)
    trainable_params, total_params, steps, wall_s (this process's wall time; a resumed trial counts the part after
    its resume), train_s (training time over every attempt, from the step records), trained_tokens

    row = collect(RunFolder(path))
"""
from __future__ import annotations

from shipsft.runs.summary import finite, outcomes

ORDER = ("train_loss", "eval_loss", "kl_to_base", "probe_kl", "general_loss_increase", "trainable_params",
         "trained_tokens", "steps", "wall_s", "train_s")
collect = outcomes  # one reader of a run folder's numbers (runs/summary.py)


def outcome_of(row: dict, name: str) -> float | None:
    """A named outcome of a collected row: a column, or a task metric (`<suite>/<metric>`, or a bare metric name
    when exactly one suite measured it)."""
    if name in row and name != "task":
        return finite(row[name])
    task = row.get("task") or {}
    if name in task:
        return task[name]
    hits = [v for k, v in task.items() if k.split("/", 1)[1] == name]
    return hits[0] if len(hits) == 1 else None
