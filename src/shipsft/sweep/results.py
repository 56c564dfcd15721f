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

import math

from shipsft.runs.layout import RunFolder
from shipsft.runs.manifest import read_manifest
from shipsft.runs.sinks import read_evals, read_metrics

LAST_STEPS = 10  # as train/loop.py's FitResult.train_loss
DRIFT = ("kl_to_base", "probe_kl", "probe_loss", "general_loss_increase")
ORDER = ("train_loss", "eval_loss", "kl_to_base", "probe_kl", "general_loss_increase", "trainable_params",
         "trained_tokens", "steps", "wall_s", "train_s")


def finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def collect(folder: RunFolder) -> dict:
    """Outcome columns of one run folder (None where the run did not measure it)."""
    metrics = read_metrics(folder)
    steps = [m for m in metrics if "loss" in m and "step" in m]
    losses = [v for v in (finite(m.get("loss")) for m in steps if not m.get("skipped")) if v is not None]
    row: dict = {"train_loss": sum(losses[-LAST_STEPS:]) / len(losses[-LAST_STEPS:]) if losses else None}
    evl = [m for m in metrics if "eval_loss" in m and "loss" not in m]
    full = [e for e in read_evals(folder) if e.get("kind") == "full"]
    last = full[-1]["metrics"] if full else {}
    row["eval_loss"] = finite(evl[-1]["eval_loss"]) if evl else finite(last.get("eval_loss"))
    for k in DRIFT:
        row[k] = finite(last.get(k))
    row["task"] = {k: finite(v) for k, v in sorted(last.items()) if "/" in k and not k.endswith("/eval_loss")}
    manifest = read_manifest(folder)
    row["trainable_params"] = manifest.get("trainable_params")
    row["total_params"] = manifest.get("total_params")
    row["steps"] = manifest.get("steps", steps[-1]["step"] if steps else 0)
    row["wall_s"] = manifest.get("wall_s")
    row["resumed"] = len(manifest.get("resumes", []))
    row["trained_tokens"] = sum(int(m.get("trained_tokens") or 0) for m in steps)
    tps = finite(steps[-1].get("trained_tok_s")) if steps else None  # cumulative: trained tokens / training time
    row["train_s"] = round(row["trained_tokens"] / tps, 1) if tps else None
    return row


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
