"""User-facing errors: each names the file, the line/example and the fix, and maps to an exit code.

The CLI catches `ShipError` subclasses and prints their lines without a traceback; anything else is a bug
in shipsft and keeps its traceback.
"""
from __future__ import annotations


class ShipError(Exception):
    """A problem with the user's input. `lines` are printed one per line; `exit_code` is the process status."""

    exit_code = 2

    def __init__(self, lines: list[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class ConfigError(ShipError):
    """Invalid run configuration."""


class DataError(ShipError):
    """Invalid training or eval data (file:line named in every line)."""


class TemplateError(ShipError):
    """The chat template is missing, raises, or cannot be trained on safely."""


class AuditFailed(ShipError):
    """The pre-flight audit found errors; training refuses to start."""

    exit_code = 1


class NotPromoted(ShipError):
    """No checkpoint passed every gate."""

    exit_code = 3


class TrainingDiverged(ShipError):
    """The loss or gradient stayed non-finite for several optimizer steps in a row."""

    exit_code = 4
