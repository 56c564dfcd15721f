"""Stopping a run without losing it: a preemption signal finishes the current optimizer step, saves a checkpoint and
exits with the command that resumes it (a failed save is runs/checkpoint.py's CheckpointWriteError).

    stop = StopRequest()
    with stop.installed():        # SIGTERM / SIGINT set stop.signal; a second SIGINT exits at once (130)
        fit(setup, stop=stop)     # raises Preempted after the checkpoint is on disk

Exit codes follow the shell's convention for a process ended by a signal: 128 + signal number, 143 for SIGTERM
(schedulers such as SLURM and Kubernetes send it before killing) and 130 for SIGINT (Ctrl-C).
"""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from shipsft.errors import ShipError


class StopRequest:
    """Set by a signal handler; the loop checks it once per optimizer step."""

    def __init__(self):
        self.signal: int | None = None

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signal is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the step or the save
        self.signal = signum

    @contextlib.contextmanager
    def installed(self):
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Preempted(ShipError):
    """The run stopped on a signal after saving a checkpoint. The CLI adds the resume command to `lines`."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__([f"stopped by {name} after step {step}; checkpoint saved in {checkpoint}"])
        self.step, self.run_folder = step, Path(checkpoint).parents[1]
