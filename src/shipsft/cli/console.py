"""Terminal output: the consoles, user errors printed one line each (never a traceback), and the progress bar the
training loop reports to."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from shipsft.errors import ShipError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(e: ShipError) -> None:
    for line in e.lines:  # escaped: user text such as "[insert name]" must print as it is, not as markup
        err_console.print(f"[bold red]error:[/] {escape(line)}", markup=True, soft_wrap=True)
    raise typer.Exit(e.exit_code)


def say(text: str) -> None:
    console.print(escape(text), soft_wrap=True)


class RichProgress:
    """The training loop's Progress (train/loop.py) as a rich progress bar plus plain notes."""

    def __init__(self, out: Console | None = None):
        self.console = out or console
        self._bar: Progress | None = None
        self._task = None

    def start(self, total: int) -> None:
        self._bar = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                             TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  "
                                        "{task.fields[tps]:.0f} trained tok/s"),
                             TimeRemainingColumn(), console=self.console, transient=False)
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, loss=float("nan"), lr=0.0, tps=0.0)

    def step(self, record: dict) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=record["step"], loss=record["loss"], lr=record["lr"],
                             tps=record["trained_tok_s"])

    def note(self, text: str) -> None:
        self.console.print(escape(text), soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
