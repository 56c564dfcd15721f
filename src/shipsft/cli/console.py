"""Terminal output: the consoles, user errors printed one line each (never a traceback), the progress bars a run
reports to, and `quiet`, which keeps the libraries' progress bars and warnings off the terminal unless -v.

What a default `shipsft train` shows: one line per phase (data, audit, model, the base model's eval loss), one bar
for training (step, loss, lr, trained tokens/s, time left) and one for each eval's generations, then the closing
summary (cli/closing.py). The reasons behind automatic choices ("note: ..." lines) and whatever the libraries
print go to the run's train.log; `-v` shows them as well.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from shipsft.errors import ShipError
from shipsft.runs.log import RunLog

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
OWN = "shipsft"  # the logger of the console's own lines; every other logger is a library's
own_log = logging.getLogger(OWN)  # the console's own lines, into train.log
own_log.addHandler(logging.NullHandler())  # outside `quiet` they go nowhere (never to logging's stderr fallback)

VerboseOpt = typer.Option(False, "--verbose", "-v", help="Also show the reasons behind automatic choices and the "
                                                         "libraries' own progress bars and warnings (a training run "
                                                         "keeps them in its train.log either way)")
# read by tqdm (bars made with tqdm directly, e.g. transformers' GGUF loader) and datasets when they are imported
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def fail(e: ShipError) -> None:
    for line in e.lines:  # escaped: user text such as "[insert name]" must print as it is, not as markup
        err_console.print(f"[bold red]error:[/] {escape(line)}", markup=True, soft_wrap=True)
        own_log.error(line)
    raise typer.Exit(e.exit_code)


def say(text: str) -> None:
    console.print(escape(text), soft_wrap=True)


class ScreenFilter(logging.Filter):
    """-v: the libraries' records on stderr (the console's own lines are on stdout already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(OWN)


@contextmanager
def quiet(verbose: bool = False) -> Iterator[RunLog]:
    """For one command: the libraries' log records and Python warnings go to a RunLog (the run's train.log once the
    run folder exists: runs/log.py), and unless `verbose` their progress bars are off and nothing of theirs reaches
    the terminal. Each library's own switch is used (transformers' logging, huggingface_hub's and datasets' progress
    bars, tqdm's environment variable, the warnings module); everything is put back on exit."""
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    if not verbose:
        os.environ.update(QUIET_ENV)
    root, handler = logging.getLogger(), RunLog()
    screen = logging.StreamHandler(sys.stderr) if verbose else None
    saved_level, saved_own = root.level, own_log.level
    root.addHandler(handler)
    if screen is not None:
        screen.addFilter(ScreenFilter())
        root.addHandler(screen)
    root.setLevel(logging.WARNING)  # the libraries' warnings and errors; the console's own lines at INFO
    own_log.setLevel(logging.INFO)
    with warnings.catch_warnings():  # the filters and the warnings hook come back as they were
        logging.captureWarnings(True)  # warnings become records of the "py.warnings" logger
        from transformers.utils import logging as hf_logging  # imported here: its import-time warnings are caught

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_default_handler()  # transformers' records go to the root logger's handlers instead
        hf_logging.enable_propagation()
        if not verbose:
            hf_logging.disable_progress_bar()  # transformers' bars and huggingface_hub's
            if "datasets" in sys.modules:
                sys.modules["datasets"].disable_progress_bars()
        try:
            yield handler
        finally:
            if bars:
                hf_logging.enable_progress_bar()
            if not verbose and "datasets" in sys.modules:
                sys.modules["datasets"].enable_progress_bars()
            hf_logging.disable_propagation()
            hf_logging.enable_default_handler()
            logging.captureWarnings(False)
            root.removeHandler(handler)
            if screen is not None:
                root.removeHandler(screen)
            handler.close()
            root.setLevel(saved_level)
            own_log.setLevel(saved_own)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class RichProgress:
    """A run's Progress (train/loop.py) on the terminal: one rich display holding the training bar and, while an
    eval generates, that eval's bar; plain lines for everything else. `details`: print the "note: ..." lines too
    (they always reach train.log). `closing`: end with the run's summary (cli/closing.py) instead of its lines."""

    def __init__(self, out: Console | None = None, details: bool = True, closing: bool = False):
        self.console = out or console
        self.details, self.closing = details, closing
        self._bar: Progress | None = None
        self._train: TaskID | None = None
        self._eval: TaskID | None = None

    def _display(self) -> Progress:
        if self._bar is None:
            self._bar = Progress(TextColumn("{task.description} {task.completed}/{task.total}"), BarColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console)
            self._bar.start()
        return self._bar

    def start(self, total: int) -> None:
        self._train = self._display().add_task("step", total=total, info="")

    def step(self, record: dict) -> None:
        if self._bar is not None and self._train is not None:
            self._bar.update(self._train, completed=record["step"],
                             info=f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
                                  f"{record['trained_tok_s']:,.0f} trained tok/s")

    def note(self, text: str) -> None:
        own_log.info(text)
        if self.details or not text.startswith("note: "):
            self.console.print(escape(text), soft_wrap=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()  # the training bar's last state stays on the screen
        self._bar = self._train = self._eval = None

    def eval_start(self, label: str, total: int) -> None:
        self._eval = self._display().add_task(f"eval {label}", total=total, info="generations")

    def eval_step(self, n: int) -> None:
        if self._bar is not None and self._eval is not None:
            self._bar.advance(self._eval, n)

    def eval_stop(self) -> None:
        if self._bar is not None and self._eval is not None:
            # gone from the screen (the closing summary holds the numbers); the display itself stays up, empty,
            # until the training bar's stop: stopping an empty one would leave a blank line
            self._bar.remove_task(self._eval)
        self._eval = None

    def summary(self, folder: Path, lines: list[str]) -> None:
        for line in lines:
            own_log.info(line)
        if not self.closing:
            for line in lines:
                self.console.print(escape(line), soft_wrap=True)
            return
        from shipsft.cli.closing import show_closing
        from shipsft.runs.summary import summarize

        show_closing(self.console, summarize(folder))
