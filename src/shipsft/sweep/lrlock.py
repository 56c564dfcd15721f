"""`shipsft sweep --lr-lock CONFIG`: lock the learning rate and warmup with a short sweep before the full run.

The full run's own recipe is kept (its batch: LR and batch size go together), and every trial trains one pass over
`examples` examples drawn by the run's seeded shuffle (train.max_steps = examples / batch, so no example is seen
twice and the last steps' training loss is already a held-out number). Task evals are switched off (generation is
the slow part and the outcome is a loss); eval loss on data.eval is the outcome when the config has one, else the
final training loss. The grid (default: the config's LR x 0.25, 0.5, 1, 2.5, 5 and warmup_ratio 0, 0.03, 0.1) runs
as a normal sweep (`<output.dir>/lr-lock-<config>/`: resumable, with sweep.csv and sweep.html), in an order that
spends a time budget well: the config's own warmup at every LR first, nearest LRs first, then the other warmups.
When the budget runs out, no further trial starts, and the choice is made from the finished ones (and says so).

Rule: the lowest outcome; a smaller LR whose outcome is within 0.5% of it is preferred (less drift from the base
model, farther from divergence). The chosen values are written into a copy of the config, with a comment saying how
they were chosen.

    result = lr_lock(Path("config.yaml"), [], examples=1000, budget_s=1800)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from shipsft.config import apply_overrides, check_paths, load_config
from shipsft.data.pipeline import prepare
from shipsft.errors import ConfigError
from shipsft.model.locate import load_tokenizer
from shipsft.sweep.results import outcome_of
from shipsft.sweep.run import SweepResult, plan_sweep, summarize
from shipsft.sweep.trials import run_trial, trial_state, write_plan
from shipsft.train.loop import Progress, Silent
from shipsft.train.preempt import StopRequest
from shipsft.steps.resolve import resolve

LR_FACTORS = (0.25, 0.5, 1.0, 2.5, 5.0)
WARMUPS = (0.0, 0.03, 0.1)
TOLERANCE = 0.005  # a smaller LR within 0.5% of the best outcome is preferred


@dataclass
class LrLock:
    config_out: Path
    lr: float | None
    warmup_ratio: float | None
    outcome: str
    rule: str
    steps: int
    batch: str
    examples: int
    rows: list[dict]  # lr, warmup_ratio, status, outcome
    not_run: list[str] = field(default_factory=list)  # trials the budget left out
    spent_s: float = 0.0
    sweep: SweepResult | None = None


def sweep_spec(config: Path, overrides: list[str], lrs: list[float], warmups: list[float], steps: int,
               batch: dict, out_dir: Path) -> dict:
    """The SWEEP.yaml of a lock-in: a grid of optim.lr x optim.warmup_ratio on the config's recipe."""
    common = {}
    for text in overrides:
        key, _, value = text.partition("=")
        common[key.strip()] = yaml.safe_load(value) if value.strip() else None
    common.update({"train.max_steps": steps, "train.epochs": 1, **batch, "optim.warmup_steps": None,
                   "train.save_every": None, "train.eval_every": None, "eval": {}, "output.export": None})
    return {"base": str(config.resolve()), "set": common, "mode": "grid",
            "levers": {"optim.lr": lrs, "optim.warmup_ratio": warmups},
            "outcome": "auto", "output": {"dir": str(out_dir.parent), "name": out_dir.name}}


def lr_lock(config: Path, overrides: list[str], examples: int, budget_s: float, lrs: list[float] | None = None,
            warmups: list[float] | None = None, out: Path | None = None, progress: Progress | None = None,
            stop: StopRequest | None = None) -> LrLock:
    progress = progress or Silent()
    config = Path(config)
    cfg = load_config(config, overrides)
    check_paths(cfg, config)
    tok = load_tokenizer(cfg.model)
    prep = prepare(cfg.data, tok, "train", strict=False, rejects_path=None)
    lengths = prep.lengths
    if not len(lengths):
        raise ConfigError([f"{config}: data.train has no usable example (run `shipsft audit {config}`)"])
    resolved = resolve(cfg, prep)
    train, one_pass = resolved.config.train, resolved.plan.steps_per_epoch
    per_step = len(lengths) / one_pass
    steps = max(1, min(one_pass, math.ceil(examples / per_step)))
    batch = ({"train.batch_size": train.batch_size} if train.batch_size else
             {"train.batch_size": None, "train.batch_tokens": train.batch_tokens})
    batch_text = (f"{train.batch_size} examples" if train.batch_size else f"{train.batch_tokens:,} tokens") + "/step"
    lrs = lrs or [float(f"{cfg.optim.lr * f:.3g}") for f in LR_FACTORS]
    warmups = warmups or list(WARMUPS)
    # absolute: output.dir is read from the working folder (as `shipsft train` does), while a sweep file's output.dir
    # is read from the sweep file's folder
    out_dir = (Path(cfg.output.dir) / f"lr-lock-{config.stem}").resolve()
    spec_file = out_dir / "lr-lock.yaml"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text("# written by shipsft sweep --lr-lock; `shipsft sweep` on this file resumes it\n" +
                         yaml.safe_dump(sweep_spec(config, overrides, lrs, warmups, steps, batch, out_dir),
                                        sort_keys=False))
    spec, base, ex, paths = plan_sweep(spec_file)
    write_plan(paths, spec, base, ex)
    base_warmup = cfg.optim.warmup_ratio if cfg.optim.warmup_ratio is not None else 0.0
    near = min(warmups, key=lambda w: abs(w - base_warmup))
    order = sorted(ex.trials, key=lambda t: (float(t.overrides["optim.warmup_ratio"]) != near,
                                             abs(math.log(float(t.overrides["optim.lr"]) / cfg.optim.lr))))
    progress.note(f"lr lock-in: {len(lrs)} LRs x {len(warmups)} warmups, {steps} steps of {batch_text} each "
                  f"(~{min(examples, len(lengths)):,} examples), budget {budget_s:.0f} s; sweep folder {paths.root}")
    started, durations, not_run = time.perf_counter(), [], []
    for t in order:
        if trial_state(paths, t.name) == "done":
            continue
        spent = time.perf_counter() - started
        expect = sum(durations) / len(durations) if durations else 0.0
        if spent + expect > budget_s:
            not_run.append(t.name)
            continue
        progress.note(f"lr lock-in trial {t.name}")
        t0 = time.perf_counter()
        run_trial(paths, t, ex.configs[t.name], progress, stop)
        durations.append(time.perf_counter() - t0)
    if not_run:
        progress.note(f"budget of {budget_s:.0f} s spent: {len(not_run)} trial(s) not run ({', '.join(not_run)})")
    result = summarize(paths, spec, base, ex)
    outcome = result.outcome
    rows = [{"trial": r["name"], "lr": float(ex.configs[r["name"]].optim.lr),
             "warmup_ratio": float(ex.configs[r["name"]].optim.warmup_ratio), "status": r["status"],
             "outcome": outcome_of(r, outcome) if r["status"] == "done" else None} for r in result.rows]
    rule = (f"the lowest {outcome}; a smaller LR within {TOLERANCE:.1%} of it is preferred (less drift, farther from "
            "divergence)")
    chosen = choose(rows)
    out = out or config.with_name(f"{config.stem}.lr-locked.yaml")
    lock = LrLock(out, chosen["lr"] if chosen else None, chosen["warmup_ratio"] if chosen else None, outcome, rule,
                  steps, batch_text, min(examples, len(lengths)), rows, not_run,
                  time.perf_counter() - started, result)
    if chosen is None:
        raise ConfigError([f"lr lock-in: no trial finished with a finite {outcome} (see {paths.csv}); nothing "
                           "written. Fix: lower the LRs (--lr), or raise --budget"])
    write_locked(config, overrides, out, lock, paths.csv)
    return lock


def choose(rows: list[dict]) -> dict | None:
    """The row with the lowest outcome, or the smallest LR whose outcome is within TOLERANCE of it (ties: the lower
    outcome); None when no row has an outcome."""
    ok = [r for r in rows if r["outcome"] is not None]
    if not ok:
        return None
    best = min(r["outcome"] for r in ok)
    return min((r for r in ok if r["outcome"] <= best + TOLERANCE * abs(best)), key=lambda r: (r["lr"], r["outcome"]))


def write_locked(config: Path, overrides: list[str], out: Path, lock: LrLock, table: Path) -> None:
    """A copy of the config with optim.lr and optim.warmup_ratio set (optim.warmup_steps removed) and a comment
    saying how they were chosen. Comments of the original are not kept (the YAML is re-written); paths stay as
    written when the copy sits beside the original, else they are made absolute."""
    raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    raw = apply_overrides(raw, overrides)
    if out.resolve().parent != config.resolve().parent:
        cfg = load_config(config, overrides)
        data = raw.setdefault("data", {})
        for key in ("train", "eval"):
            if key in data:
                data[key] = getattr(cfg.data, key)
        for raw_suite, suite in zip((raw.get("eval") or {}).get("suites") or [], cfg.eval.suites):
            raw_suite["data"] = suite.data
    optim = raw.setdefault("optim", {})
    optim.pop("warmup_steps", None)
    optim["lr"] = lock.lr
    optim["warmup_ratio"] = lock.warmup_ratio
    done = sorted((r for r in lock.rows if r["outcome"] is not None), key=lambda r: r["outcome"])
    runner = next((r for r in done if (r["lr"], r["warmup_ratio"]) != (lock.lr, lock.warmup_ratio)), None)
    chosen = next(r for r in done if (r["lr"], r["warmup_ratio"]) == (lock.lr, lock.warmup_ratio))
    header = [
        f"optim.lr and optim.warmup_ratio chosen by `shipsft sweep --lr-lock {config}` on "
        f"{time.strftime('%Y-%m-%d')}: {len(done)} of {len(lock.rows)} trials (LR x warmup_ratio) of {lock.steps} "
        f"steps ({lock.batch}, ~{lock.examples:,} examples, one pass);",
        f"rule: {lock.rule}.",
        f"chosen lr {lock.lr:g}, warmup_ratio {lock.warmup_ratio:g}: {lock.outcome} {chosen['outcome']:.4f}" +
        (f"; next: lr {runner['lr']:g}, warmup_ratio {runner['warmup_ratio']:g}: {runner['outcome']:.4f}"
         if runner else "") + f". Every trial: {table}",
    ]
    if lock.not_run:
        header.append(f"the time budget left {len(lock.not_run)} trial(s) out: {', '.join(lock.not_run)}")
    text = yaml.safe_dump(raw, sort_keys=False)
    lines = []
    in_optim = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_optim = line.startswith("optim:")
        if in_optim and line.startswith("  lr:"):
            line += "  # locked by shipsft sweep --lr-lock (see the top of this file)"
        lines.append(line)
    out.write_text("".join(f"# {h}\n" for h in header) + "\n".join(lines) + "\n", encoding="utf-8")
