"""The summary `shipsft train` closes with, drawn from the run folder it wrote (runs/summary.py): promoted or not, the
gate table, the before/after table, what it cost, where the files are, and the commands that come next.

    show_closing(console, summarize(Path("runs/quickstart")))
"""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipsft.report.svg import duration
from shipsft.runs.summary import RunSummary


def number(v: float | None, digits: int = 4) -> str:
    return "–" if v is None else f"{v:.{digits}g}"


def score(v: float | None) -> str:
    """A task metric (a share, 0 to 1) as the eval tables print it."""
    return "–" if v is None else f"{v:.3f}"


def verdict(r: RunSummary) -> str:
    """The decision in one line of rich markup."""
    if r.promoted is None and r.status == "finished":
        return "[bold]FINISHED[/], not eval-gated (no eval suites): it ships its last weights"
    if r.promoted is None:
        return f"[yellow]{escape(r.status)}[/] at step {r.steps}" + (f" of {r.total_steps}" if r.total_steps else "")
    if not r.promoted:
        return f"[bold red]NOT PROMOTED[/] — {escape(r.message.removeprefix('NOT PROMOTED: '))}"
    if not r.metric:  # no eval suites: the last checkpoint ships, not eval-gated
        return f"[bold green]PROMOTED[/] step {r.step} (no eval suites: not eval-gated)"
    base = f" (base {score(r.base_value)})" if r.base_value is not None else ""
    return f"[bold green]PROMOTED[/] step {r.step}: {escape(r.metric)} {score(r.value)}{base}"


def gate_table(r: RunSummary) -> Table | None:
    if not r.gates:
        return None
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title=f"gates at step {r.step}",
              title_justify="left")
    for col, justify in (("gate", "left"), ("value", "right"), ("needed", "left"), ("", "left")):
        t.add_column(col, justify=justify, overflow="fold")
    for g in r.gates:
        ok = "[green]pass[/]" if g.get("passed") else f"[red]fail by {number(g.get('miss'))}[/]"
        t.add_row(escape(g["metric"]), number(g.get("value")), f"{g['op']} {number(g.get('threshold'))}", ok)
    return t


def before_after_table(r: RunSummary) -> Table | None:
    if not r.before_after:
        return None
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col, justify in (("metric", "left"), ("base", "right"), (f"step {r.step}", "right"), ("delta", "right"),
                         ("95% CI", "right")):
        t.add_column(col, justify=justify, overflow="fold", no_wrap=col != "metric")
    for row in r.before_after:
        color = "green" if row["lo"] > 0 else "red" if row["hi"] < 0 else "white"
        t.add_row(escape(f"{row['suite']}/{row['metric']}"), f"{row['base']:.3f}", f"{row['tuned']:.3f}",
                  f"[{color}]{row['delta']:+.3f}[/]", f"[{row['lo']:+.3f}, {row['hi']:+.3f}]")
    return t


def cost_line(r: RunSummary) -> str:
    parts = []
    if r.eval_loss is not None:
        before = f"{number(r.base_eval_loss)} -> " if r.base_eval_loss is not None else ""
        parts.append(f"eval loss {before}{number(r.eval_loss)}")
    if r.kl is not None:
        parts.append(f"KL to base {number(r.kl, 3)}")
    rate = f" ({r.trained_tok_s:,.0f} trained tok/s)" if r.trained_tok_s else ""
    parts.append(f"{r.steps} steps in {duration(r.seconds)}{rate}")
    return " · ".join(parts)


def next_commands(r: RunSummary) -> list[str]:
    run = str(r.path)
    if r.promoted or (r.promoted is None and r.status == "finished"):
        score = f"shipsft eval {run} --failures 10" if r.promoted else f"shipsft eval {run} --suite FILE"
        return [score, f"shipsft export {run}", f"shipsft chat {run}"]
    return [f"shipsft eval {run} --failures 10", f"shipsft compare {run} RUN  (against another run)"]


def show_closing(console: Console, r: RunSummary) -> None:
    console.rule(escape(str(r.path)), align="left")
    console.print(verdict(r), soft_wrap=True)
    for table in (gate_table(r), before_after_table(r)):
        if table is not None:
            console.print(table)
    console.print(escape(cost_line(r)), soft_wrap=True)
    shown = [name for name in ("report", "final", "adapter", "model", "log", "predictions") if name in r.files]
    console.print(escape("files  " + ", ".join(r.files[n].name + ("/" if r.files[n].is_dir() else "")
                                               for n in shown) + f"  (in {r.path})"), soft_wrap=True)
    for i, command in enumerate(next_commands(r)):
        console.print(escape(("next   " if i == 0 else "       ") + command), soft_wrap=True)
