"""`shipsft sweep SWEEP.yaml`: expand the trials, run them one after another (finished ones skipped, a killed one
resumed), then collect every trial's numbers and write the results into the sweep folder:

    <output.dir>/<name>/
      plan.json            the trials (name, cell, lever levels, seed, the keys each sets) and the base's hash
      trials/<name>.yaml   each trial's run config (`shipsft train` runs it as it is)
      runs/<name>/         each trial's run folder
      sweep.json           every trial's numbers, the variance decomposition, the pick and the Pareto front
      sweep.csv            one row per trial
      sweep.html           per-lever effect plots, variance shares, the Pareto front (report/sweep.py)

    result = run_sweep(Path("sweep.yaml"), progress=Silent())
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.config import load_config
from shipsft.errors import ConfigError
from shipsft.report.sweep import render_sweep
from shipsft.runs.jsonio import write_json, write_text_atomic
from shipsft.sweep.anova import Decomposition, better_mode, cell_means, decompose, pareto_front, pick_best
from shipsft.sweep.results import ORDER, collect, outcome_of
from shipsft.sweep.spec import SweepSpec, load_sweep
from shipsft.sweep.trials import (BASE, Expanded, SweepPaths, Trial, TrialResult, as_override, expand, run_trial,
                                  select, sweep_paths, trial_state, write_plan)
from shipsft.train.loop import Progress, Silent
from shipsft.train.preempt import StopRequest


@dataclass
class SweepResult:
    paths: SweepPaths
    spec: SweepSpec
    trials: list[Trial]
    rows: list[dict]  # one per trial: name, cell, seed, levels, status, and the collected numbers
    outcome: str
    decomposition: Decomposition
    summary: dict  # what sweep.json holds
    ran: list[TrialResult] = field(default_factory=list)


def plan_sweep(sweep_file: Path) -> tuple[SweepSpec, Path, Expanded, SweepPaths]:
    spec, base = load_sweep(sweep_file)
    ex = expand(spec, base, sweep_file)
    return spec, base, ex, sweep_paths(spec, sweep_file)


def run_sweep(sweep_file: Path, progress: Progress | None = None, stop: StopRequest | None = None,
              trial: str | None = None, retry_failed: bool = False) -> SweepResult | TrialResult:
    """Run every trial (or only `trial`, a name or index: one line of `--emit`), then write the results. A
    `--trial` run writes only its run folder; `shipsft sweep SWEEP.yaml` afterwards skips it and writes the table."""
    progress = progress or Silent()
    spec, base, ex, paths = plan_sweep(Path(sweep_file))
    write_plan(paths, spec, base, ex)
    if trial is not None:
        t = select(ex.trials, trial)
        return run_trial(paths, t, ex.configs[t.name], progress, stop, retry_failed)
    ran = []
    todo = [t for t in ex.trials if trial_state(paths, t.name) != "done"]
    progress.note(f"sweep {paths.root.name}: {len(ex.trials)} trials ({spec.mode}), {len(ex.trials) - len(todo)} "
                  f"finished before, {len(todo)} to run")
    for i, t in enumerate(ex.trials, 1):
        if trial_state(paths, t.name) == "done":
            continue
        progress.note(f"trial {i}/{len(ex.trials)}: {t.name}")
        started = time.perf_counter()
        res = run_trial(paths, t, ex.configs[t.name], progress, stop, retry_failed)
        ran.append(res)
        if res.status == "failed":
            progress.note(f"trial {t.name} failed (exit {res.exit_code}): {res.error[0] if res.error else ''}")
        else:
            progress.note(f"trial {t.name} done in {time.perf_counter() - started:.0f} s"
                          + (f" (resumed from {res.resumed_from})" if res.resumed_from else ""))
    result = summarize(paths, spec, base, ex)
    result.ran = ran
    return result


def default_outcome(spec: SweepSpec, base: Path) -> str:
    if spec.outcome != "auto":
        return spec.outcome
    cfg = load_config(base, [as_override(k, v) for k, v in spec.set.items()])
    return "eval_loss" if cfg.data.eval else "train_loss"


def summarize(paths: SweepPaths, spec: SweepSpec, base: Path, ex: Expanded) -> SweepResult:
    """Collect every trial's numbers from its run folder and write sweep.json, sweep.csv and sweep.html."""
    rows = []
    for t in ex.trials:
        state = trial_state(paths, t.name)
        row = {"name": t.name, "cell": t.cell, "seed": t.seed, "levels": t.levels,
               "status": {"done": "done", "failed": "failed"}.get(state, "not run")}
        if state == "done":
            row.update(collect(paths.run(t.name)))
        elif state == "failed":
            from shipsft.runs.jsonio import read_json

            failed = read_json(paths.failure(t.name))
            row.update(exit_code=failed.get("exit_code"), error=failed.get("error", []))
        rows.append(row)
    outcome = default_outcome(spec, base)
    levers = list(spec.levers)
    y = [outcome_of(r, outcome) if r["status"] == "done" else None for r in rows]
    main = decompose(outcome, [r["levels"] for r in rows], [r["cell"] for r in rows], y, levers)
    task_names = sorted({k for r in rows for k in (r.get("task") or {})})
    others = {}
    for name in ("train_loss", "eval_loss", "kl_to_base", "general_loss_increase", *task_names):
        if name == outcome:
            continue
        ys = [outcome_of(r, name) if r["status"] == "done" else None for r in rows]
        if sum(v is not None for v in ys) >= 2:
            others[name] = decompose(name, [r["levels"] for r in rows], [r["cell"] for r in rows], ys, levers)
    metric_names = [*ORDER, *task_names]
    cells = cell_means([r["name"] for r in rows], [r["cell"] for r in rows],
                       [{m: outcome_of(r, m) for m in metric_names} if r["status"] == "done" else {} for r in rows])
    pick_metric = spec.pick.metric or outcome
    base_cell = next((t.cell for t in ex.trials if all(t.levels[k] == ex.base_levels[k] for k in levers)), None)
    pick = pick_best(cells, pick_metric, spec.pick.mode,
                     [(g.metric, g.op, g.value) for g in spec.pick.constraints], base_cell)
    pareto_metric = spec.pareto.metric or (task_names[0] if task_names else None)
    pareto = None
    if pareto_metric is not None:
        front = pareto_front(cells, pareto_metric, spec.pareto.kl)
        pareto = {"metric": pareto_metric, "kl": spec.pareto.kl, "front": front,
                  "points": [{"cell": c.name, "metric": c.values.get(pareto_metric), "kl": c.values.get(spec.pareto.kl)}
                             for c in cells if c.values.get(pareto_metric) is not None
                             and c.values.get(spec.pareto.kl) is not None]}
    summary = {
        "sweep": paths.root.name, "mode": spec.mode, "base": str(base), "base_cell": base_cell or BASE,
        "outcome": outcome, "outcome_mode": better_mode(outcome),
        "levers": {k: {"keys": spec.lever_keys(k), "levels": ex.lever_levels[k], "base": ex.base_levels[k]}
                   for k in levers},
        "seeds": spec.seeds, "trials": rows, "decomposition": main.to_json(),
        "other_decompositions": {k: d.to_json() for k, d in others.items()},
        "cells": [{"name": c.name, "trials": c.trials, "values": c.values, "spread": c.spread} for c in cells],
        "pick": {"metric": pick_metric, "rule": pick.rule, "cell": pick.cell, "value": pick.value,
                 "excluded": pick.excluded, "versus_base": pick.versus_base,
                 "trials": next((c.trials for c in cells if c.name == pick.cell), []),
                 "config": str(paths.config(next(c.trials for c in cells if c.name == pick.cell)[0]))
                 if pick.cell else None},
        "pareto": pareto,
    }
    write_json(paths.json, summary)
    write_text_atomic(paths.csv, to_csv(rows, levers, task_names))
    write_text_atomic(paths.html, render_sweep(summary))
    return SweepResult(paths, spec, ex.trials, rows, outcome, main, summary)


CSV_COLUMNS = ("train_loss", "eval_loss", "kl_to_base", "probe_kl", "general_loss_increase", "trainable_params",
               "trained_tokens", "steps", "wall_s", "train_s", "resumed")


def to_csv(rows: list[dict], levers: list[str], task_names: list[str]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["trial", "cell", "seed", *levers, "status", *CSV_COLUMNS[:2], *task_names, *CSV_COLUMNS[2:]])
    for r in rows:
        task = r.get("task") or {}
        cols = [r.get(c) for c in CSV_COLUMNS]
        w.writerow([r["name"], r["cell"], "" if r["seed"] is None else r["seed"], *(r["levels"][k] for k in levers),
                    r["status"], *("" if v is None else v for v in cols[:2]),
                    *("" if task.get(m) is None else task[m] for m in task_names),
                    *("" if v is None else v for v in cols[2:])])
    return out.getvalue()


def require_finished(result: SweepResult) -> None:
    """For callers that need every trial: one line per trial that did not finish."""
    missing = [r["name"] for r in result.rows if r["status"] != "done"]
    if missing:
        raise ConfigError([f"sweep {result.paths.root}: {len(missing)} trial(s) did not finish: {', '.join(missing)}"])
