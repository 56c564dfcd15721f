"""The run folder's train.log: the console's own lines and what the libraries said (their warnings and log records)
while the console kept them off the screen (cli/console.py: `quiet`). Nothing a library says is lost: it is here.

A `RunLog` is a logging handler on the root logger. It holds the records it gets until a run folder exists, then
writes them and every later one to that folder's train.log (appending: a resumed run continues its log).

    handler = RunLog()
    logging.getLogger().addHandler(handler)
    ...
    log_to(folder.log)          # Run.start / Run.resumed: every RunLog on the root logger writes there from now on
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RunLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self.held: list[logging.LogRecord] = []
        self.path: Path | None = None
        self.stream: TextIO | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            self.held.append(record)
        else:
            self.write(record)

    def write(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # logging's contract: a handler never raises into the code that logged
            self.handleError(record)

    def open(self, path: Path) -> None:
        """Write to `path` from now on, starting with the records held so far."""
        if self.path == Path(path):
            return
        self.close_stream()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path, self.stream = Path(path), open(path, "a", encoding="utf-8")
        held, self.held = self.held, []
        for record in held:
            self.write(record)

    def close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def close(self) -> None:
        self.close_stream()
        super().close()


def log_to(path: Path) -> None:
    """Every RunLog on the root logger writes to `path` from now on (none attached: nothing happens)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RunLog):
            handler.open(path)
