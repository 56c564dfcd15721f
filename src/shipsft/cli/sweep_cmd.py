"""`shipsft sweep SWEEP.yaml [--emit] [--trial N] [--retry-failed]` and `shipsft sweep --lr-lock CONFIG
[--examples N] [--budget 30m] [--lr X ...] [--warmup R ...] [--out NEW.yaml] [--set k=v ...]`.

    shipsft sweep sweep.yaml                  run every trial here, one after another (finished ones skipped, a
                                              killed one resumed), print the table, write sweep.json/csv/html
    shipsft sweep sweep.yaml --emit           one launch line per trial for a scheduler (SLURM array / torchrun)
    shipsft sweep sweep.yaml --trial 3        run (or resume, or skip) that one trial: what each --emit line does
    shipsft sweep --lr-lock config.yaml       a short LR x warmup sweep, then config.lr-locked.yaml
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from shipsft.cli.console import RichProgress, VerboseOpt, console, fail, quiet
from shipsft.errors import ConfigError, ShipError


def parse_duration(text: str) -> float:
    """'30m', '1h', '90s', '45' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", text.lower())
    if not m:
        raise ConfigError([f"--budget {text!r}: expected a duration such as 30m, 1h or 900s"])
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _cell(v) -> str:
    return "–" if v is None else escape(str(v))


def show_table(result, show_pick: bool = True) -> None:
    """The trials table (short lever names; the measured columns that fit the terminal, in the order they matter,
    and the names of those left out, which sweep.csv and sweep.html keep), then the variance decomposition, the
    pick (unless the caller applies its own rule, as --lr-lock does) and the Pareto front."""
    from shipsft.sweep.trials import short_names

    s = result.summary
    levers = list(s["levers"])
    short = short_names(levers)
    rows = s["trials"]
    tasks, more = table_metrics(s)
    # in the order they matter: what the sweep is judged by, then drift, then cost
    measured = [*((t.replace("/", "/\n", 1), lambda r, t=t: (r.get("task") or {}).get(t), "{:.4g}") for t in tasks),
                ("eval\nloss", lambda r: r.get("eval_loss"), "{:.4f}"),
                ("KL to\nbase", lambda r: r.get("kl_to_base"), "{:.4f}"),
                ("probe\nKL", lambda r: r.get("probe_kl"), "{:.4f}"),
                ("probe\nloss +", lambda r: r.get("general_loss_increase"), "{:.4f}"),
                ("train\nloss", lambda r: r.get("train_loss"), "{:.4f}"),
                ("params", lambda r: r.get("trainable_params"), "{:,}"),
                ("tokens", lambda r: r.get("trained_tokens"), "{:,}"), ("wall s", lambda r: r.get("wall_s"), "{:.3g}")]
    # a column nothing measured says nothing, nor does params when every trial trains the same ones
    measured = [m for m in measured if any(m[1](r) is not None for r in rows)
                and not (m[0] == "params" and len({m[1](r) for r in rows}) == 1)]
    show_seed, show_status = bool(s["seeds"]), any(r["status"] != "done" for r in rows)
    fixed = [max(len(r["name"]) + 2 for r in rows)] + [max(len(short[k]), *(len(str(r["levels"][k])) for r in rows))
                                                        for k in levers]
    fixed += [4] * show_seed + [max(len(str(r["status"])) + 6 for r in rows)] * show_status
    room = console.width - sum(w + 2 for w in fixed)
    fits, left_out = [], []
    for m in measured:  # columns while they fit the terminal (rich would cut every cell to an ellipsis)
        w = max(*(len(x) for x in m[0].split("\n")),
                *(1 if m[1](r) is None else len(m[2].format(m[1](r))) for r in rows)) + 2
        if w <= room:
            fits.append(m)
            room -= w
        else:
            left_out.append(m[0].replace("\n", " ").replace("/ ", "/"))
    measured, more = fits, left_out + more
    title = f"sweep {s['sweep']} ({s['mode']}; outcome {s['outcome']}" + ("; * = picked)" if show_pick else ")")
    table = Table(title=escape(title),
                  box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)
    table.add_column("trial", no_wrap=True)
    for k in levers:
        table.add_column(escape(short[k]))
    if show_seed:
        table.add_column("seed", justify="right")
    if show_status:
        table.add_column("status")
    for name, _, _ in measured:
        table.add_column(escape(name), justify="right")
    picked = set(s["pick"].get("trials") or []) if show_pick else set()
    for r in rows:
        status = r["status"] if r["status"] != "failed" else f"failed ({r.get('exit_code')})"
        table.add_row(_cell(r["name"]) + (" *" if r["name"] in picked else ""),
                      *(_cell(r["levels"][k]) for k in levers),
                      *([_cell(r["seed"])] if show_seed else []), *([_cell(status)] if show_status else []),
                      *("–" if get(r) is None else fmt.format(get(r)) for _, get, fmt in measured))
    console.print(table)
    if more:
        console.print(escape(f"{len(more)} more columns per trial in {result.paths.csv} and {result.paths.html}: "
                             f"{', '.join(more)}"), soft_wrap=True)
    for line in decomposition_lines(s["decomposition"]):
        console.print(escape(line), soft_wrap=True)
    p = s["pick"]
    if show_pick:
        console.print(escape(f"pick rule: {p['rule']}"), soft_wrap=True)
        if p["cell"]:
            console.print(escape(f"picked: {p['cell']} ({p['metric']} {p['value']:.4g})" + (
                f"; {p['versus_base']}" if p.get("versus_base") else "") + f"; config {p['config']}"), soft_wrap=True)
        else:
            console.print("picked: none qualifies" + escape("; " + "; ".join(p["excluded"])), soft_wrap=True)
    if s.get("pareto"):
        q = s["pareto"]
        console.print(escape(f"Pareto front ({q['metric']} up, {q['kl']} down): {', '.join(q['front']) or 'none'}"),
                      soft_wrap=True)
    console.print(escape(f"wrote {result.paths.json}, {result.paths.csv}, {result.paths.html}"), soft_wrap=True)


def table_metrics(s: dict) -> tuple[list[str], list[str]]:
    """(task metrics the table shows, the others): the sweep's outcome and the metrics its pick and Pareto front
    are judged by get a column; the rest (a probe with three slices adds nine) would squeeze an 80-column table
    into ellipses, so they stay in sweep.csv / sweep.html."""
    measured = sorted({k for r in s["trials"] for k in (r.get("task") or {})})
    pick, pareto = s.get("pick") or {}, s.get("pareto") or {}
    named = [s.get("outcome"), pick.get("metric"), pareto.get("metric"), pareto.get("kl"),
             *(c.get("metric") for c in pick.get("constraints") or [])]
    shown = [m for m in measured if m in named]
    return shown, [m for m in measured if m not in shown]


def decomposition_lines(d: dict) -> list[str]:
    lines = [f"variance of {d['outcome']} over {d['n']} trials (eta-squared, main-effects ANOVA):"]
    floor = {"seed": "the seed noise floor", "residual": "the residual"}.get(d["error"])
    for x in d["levers"]:
        verdict = ("" if x.get("inside_noise") is None else
                   f"  (F {x['f']:.3g}, p {x['p']:.3g}: {'inside' if x['inside_noise'] else 'above'} {floor})")
        lines.append(f"  {x['name']:<28} {100 * x['share']:6.2f}%{verdict}")
    lines.append(f"  {'interactions':<28} {100 * d['interactions']['share']:6.2f}%")
    if d.get("seed"):
        lines.append(f"  {'seed (noise floor)':<28} {100 * d['seed']['share']:6.2f}%")
    total = sum(x["share"] for x in d["levers"]) + d["residual"]
    lines.append(f"  {'residual (= the two above)':<28} {100 * d['residual']:6.2f}%   total {100 * total:.2f}%")
    lines += [f"  note: {n}" for n in d.get("notes", [])]
    return lines


def sweep(
    target: Path = typer.Argument(..., help="SWEEP.yaml; with --lr-lock, a run config"),
    lr_lock: bool = typer.Option(False, "--lr-lock", help="Lock LR and warmup with a short sweep on a subset, then "
                                 "write a config with the chosen values"),
    emit: bool = typer.Option(False, "--emit", help="Print one launch command per trial (for a cluster scheduler) "
                              "instead of running them"),
    launcher: Optional[str] = typer.Option(None, "--launcher", help="With --emit: a prefix such as "
                                           "'torchrun --nproc-per-node 8'"),
    trial: Optional[str] = typer.Option(None, "--trial", help="Run only this trial (its index or name)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run trials that failed before again"),
    examples: Optional[int] = typer.Option(None, "--examples", min=1, help="--lr-lock: examples per trial "
                                           "(default 1000)"),
    budget: Optional[str] = typer.Option(None, "--budget", help="--lr-lock: time budget, e.g. 30m (default 30m)"),
    lr: Optional[list[float]] = typer.Option(None, "--lr", help="--lr-lock: an LR to try (repeatable; default the "
                                             "config's x 0.25, 0.5, 1, 2.5, 5)"),
    warmup: Optional[list[float]] = typer.Option(None, "--warmup", help="--lr-lock: a warmup_ratio to try "
                                                 "(repeatable; default 0, 0.03, 0.1)"),
    out: Optional[Path] = typer.Option(None, "--out", help="--lr-lock: where the new config goes (default "
                                       "CONFIG.lr-locked.yaml beside it)"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="--lr-lock: dotted override of the config"),
    verbose: bool = VerboseOpt,
) -> None:
    """Run a sweep (one lever at a time, grid, or seeds) and print the results table, the variance decomposition and
    the pick; or lock LR and warmup (--lr-lock)."""
    try:
        lock_only = {"--examples": examples, "--budget": budget, "--lr": lr, "--warmup": warmup, "--out": out,
                     "--set": overrides}
        sweep_only = {"--emit": emit, "--launcher": launcher, "--trial": trial, "--retry-failed": retry_failed}
        wrong = [k for k, v in (sweep_only if lr_lock else lock_only).items() if v]
        if wrong:
            raise ConfigError([f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply "
                               f"{'with' if lr_lock else 'without'} --lr-lock. Fix: remove "
                               f"{'it' if len(wrong) == 1 else 'them'}"])
        if launcher and not emit:
            raise ConfigError(["--launcher only applies with --emit"])
        if emit:
            from shipsft.sweep.run import plan_sweep
            from shipsft.sweep.trials import emit_lines, write_plan

            spec, base, ex, paths = plan_sweep(target)
            write_plan(paths, spec, base, ex)
            for line in emit_lines(target, ex.trials, launcher):
                console.print(escape(line), soft_wrap=True)
            return
    except ShipError as e:
        fail(e)
    from shipsft.cli.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()  # trials train in this process: the same allocator `shipsft train` uses
    from shipsft.train.preempt import Preempted, StopRequest

    progress, stop = RichProgress(details=verbose), StopRequest()
    try:
        with stop.installed(), quiet(verbose):  # each trial's library output into its train.log unless -v
            if lr_lock:
                from shipsft.sweep.lrlock import lr_lock as run_lock

                res = run_lock(target, overrides or [], examples or 1000, parse_duration(budget or "30m"), lr, warmup,
                               out, progress, stop)
                show_table(res.sweep, show_pick=False)
                console.print(escape(f"chosen: lr {res.lr:g}, warmup_ratio {res.warmup_ratio:g} ({res.rule}); "
                                     f"wrote {res.config_out}"), soft_wrap=True)
                return
            from shipsft.sweep.run import run_sweep

            result = run_sweep(target, progress, stop, trial=trial, retry_failed=retry_failed)
    except Preempted as e:
        progress.stop()
        e.lines.append(f"resume the sweep with: shipsft sweep {' '.join(sys.argv[2:])}")
        fail(e)
    except ShipError as e:
        progress.stop()
        fail(e)
    if trial is not None:
        console.print(escape(f"trial {result.name}: {result.status}" + (f" (exit {result.exit_code})"
                                                                          if result.exit_code else "")))
        raise typer.Exit(0 if result.status != "failed" else result.exit_code or 1)
    show_table(result)
