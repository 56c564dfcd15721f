"""`shipsft runs [DIR] [--html]` and `shipsft compare RUN RUN ... [--out FILE]`: the runs you made, browsable.

    shipsft runs                      every run under runs/ (output.dir's default), oldest first: status, steps,
                                      decision, the selection metric, KL to the base, time
    shipsft runs runs --html          and runs/index.html, linking every run's report.html and audit.html
    shipsft compare runs/a runs/b     the runs side by side: their numbers and the settings that differ, and
                                      compare.html (beside the first run) with their curves overlaid

Everything is read from the run folders (runs/summary.py); nothing is re-measured.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from shipsft.cli.closing import number, score
from shipsft.cli.console import console, fail
from shipsft.config import OutputConfig
from shipsft.errors import ConfigError, ShipError
from shipsft.report.svg import duration
from shipsft.runs.jsonio import write_text_atomic
from shipsft.runs.layout import is_run_folder
from shipsft.runs.summary import RunSummary, curves, differing, find_runs, settings, summarize

DEFAULT_DIR = Path(OutputConfig.model_fields["dir"].default)


def decision(r: RunSummary) -> str:
    return {True: f"promoted (step {r.step})", False: "not promoted", None: "–"}[r.promoted]


def steps(r: RunSummary) -> str:
    return f"{r.steps:,}" + (f"/{r.total_steps:,}" if r.total_steps and r.total_steps != r.steps else "")


def record(r: RunSummary, name: str, page_dir: Path) -> dict:
    """A run as the pages take it (report/runs.py): its summary, its name, links relative to the page."""
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(r).items() if k != "files"}
    out["name"] = name
    for key, file in (("href", "report"), ("audit_href", "audit")):
        if file in r.files:
            out[key] = os.path.relpath(r.files[file].resolve(), page_dir.resolve())
    return out


def runs(
    folder: Path = typer.Argument(DEFAULT_DIR, help="A folder of runs (output.dir), a sweep folder, or one run"),
    html: bool = typer.Option(False, "--html", help="Also write FOLDER/index.html linking every run's report"),
) -> None:
    """The runs under a folder: status, steps, promoted or not, the selection metric, KL to the base, time."""
    try:
        list_runs(Path(folder), html)
    except ShipError as e:  # a folder without runs, a damaged metrics file: one line each
        fail(e)


def list_runs(root: Path, html: bool) -> None:
    found = find_runs(root)
    if not found:
        raise ConfigError([f"{root}: no run folders here (a run folder holds config.yaml and manifest.json). "
                           f"Fix: give the folder `shipsft train` writes runs into (output.dir, default "
                           f"{DEFAULT_DIR})"])
    rows = [(str(p.relative_to(root)) if p != root else p.name, summarize(p)) for p in found]
    metrics = {r.metric for _, r in rows if r.metric}
    shared = metrics.pop() if len(metrics) == 1 else None  # one selection metric: its name heads the column
    # oldest first (the order they started in; index.html shows the times)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  title=escape(f"{len(rows)} run(s) in {root}, oldest first"), title_justify="left")
    for col, justify in (("run", "left"), ("status", "left"), ("steps", "right"), ("promoted", "left"),
                         (shared or "selection metric", "right" if shared else "left"), ("KL", "right"),
                         ("time", "right")):
        table.add_column(escape(col), justify=justify, overflow="fold", no_wrap=col != "run")
    for name, r in rows:
        metric = score(r.value) if shared else f"{r.metric} {score(r.value)}" if r.metric else "–"
        promoted = {True: f"yes (step {r.step})", False: "no", None: "–"}[r.promoted]
        table.add_row(escape(name), escape(r.status), steps(r), promoted, escape(metric), number(r.kl, 3),
                      duration(r.seconds))
    console.print(table)
    if html:
        from shipsft.report.runs import render_index

        page = root / "index.html"
        write_text_atomic(page, render_index(str(root), [record(r, name, root) for name, r in rows]))
        console.print(escape(f"wrote {page}"), soft_wrap=True)


def compare(
    run: list[Path] = typer.Argument(..., help="Two or more run folders"),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the page (default: compare.html beside "
                                                           "the first run)"),
) -> None:
    """Runs side by side: their numbers, the settings that differ, and compare.html with the curves overlaid."""
    try:
        compare_runs(run, out)
    except ShipError as e:
        fail(e)


def compare_runs(run: list[Path], out: Path | None) -> None:
    from shipsft.report.runs import render_compare

    if len(run) < 2:
        raise ConfigError([f"compare {run[0]}: give two or more run folders, e.g. shipsft compare runs/a runs/b"])
    missing = [p for p in run if not is_run_folder(p)]
    if missing:
        raise ConfigError([f"{p}: not a run folder (no config.yaml + manifest.json). Fix: give the folders "
                           "`shipsft train` wrote, e.g. runs/quickstart" for p in missing])
    page = out or Path(run[0]).parent / "compare.html"
    names = [p.name for p in run]
    if len(set(names)) < len(names):  # the same name in two folders: say which folder
        names = [f"{p.parent.name}/{p.name}" for p in run]
    summaries = [summarize(p) for p in run]
    records = [{**record(r, n, page.parent), "settings": settings(p), **curves(p)}
               for n, r, p in zip(names, summaries, run)]
    differ = differing([r["settings"] for r in records])
    show_numbers(names, summaries)
    show_settings(records, differ)
    write_text_atomic(page, render_compare(records, differ))
    console.print(escape(f"wrote {page}"), soft_wrap=True)


def show_numbers(names: list[str], summaries: list[RunSummary]) -> None:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", overflow="fold")
    for n in names:
        table.add_column(escape(n), justify="right", overflow="fold")
    metric = next((r.metric for r in summaries if r.metric), None)
    rows = [("status", [r.status for r in summaries]), ("steps", [steps(r) for r in summaries]),
            ("decision", [decision(r) for r in summaries]),
            *([(metric, [score(r.value if r.metric == metric else None) for r in summaries]),
               ("  base", [score(r.base_value if r.metric == metric else None) for r in summaries])]
              if metric else []),
            ("KL to base", [number(r.kl, 3) for r in summaries]),
            ("train loss", [number(r.train_loss) for r in summaries]),
            ("eval loss", [number(r.eval_loss) for r in summaries]),
            ("time", [duration(r.seconds) for r in summaries])]
    for label, cells in rows:
        table.add_row(escape(label), *(escape(c) for c in cells))
    console.print(table)


def show_settings(records: list[dict], differ: list[str]) -> None:
    n = len({k for r in records for k in r["settings"]})
    if not differ:
        console.print(f"settings: all {n} the same")
        return
    console.print(f"settings that differ: {len(differ)} of {n}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("setting", overflow="fold")
    for r in records:
        table.add_column(escape(r["name"]), overflow="fold")
    for k in differ:
        table.add_row(escape(k), *(escape(str(r["settings"].get(k, "(absent)"))) for r in records))
    console.print(table)
