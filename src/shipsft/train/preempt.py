"""Stopping a run without losing it: a preemption signal finishes the current optimizer step, saves a checkpoint and
exits with the command that resumes it; a full disk or an unwritable folder is one line, and the previous checkpoint
stays intact.

    stop = StopRequest()
    with stop.installed():        # SIGTERM / SIGINT set stop.signal; a second SIGINT exits at once (130)
        fit(setup, stop=stop)     # raises Preempted after the checkpoint is on disk

Exit codes follow the shell's convention for a process ended by a signal: 128 + signal number, 143 for SIGTERM
(schedulers such as SLURM and Kubernetes send it before killing) and 130 for SIGINT (Ctrl-C).
"""
from __future__ import annotations

import contextlib
import errno
import shutil
import signal
from pathlib import Path

from shipsft.errors import ShipError
from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.layout import RunFolder


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


class CheckpointWriteError(ShipError):
    """A save failed (disk full, folder not writable); the run stops and its previous checkpoint is intact."""

    def __init__(self, lines: list[str], run_folder: Path):
        super().__init__(lines)
        self.run_folder = run_folder


def checkpoint_write_error(folder: RunFolder, st, e: OSError, what: Path | None = None) -> CheckpointWriteError:
    target = what or folder.checkpoint(st.step)
    free = shutil.disk_usage(folder.root).free if folder.root.exists() else 0
    previous = complete_checkpoints(folder)
    kept = f"the previous checkpoint {previous[-1][1]} is intact" if previous else "no earlier checkpoint exists"
    need = sum(p.stat().st_size for p in previous[-1][1].rglob("*") if p.is_file()) if previous else 0
    why = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    size = f" (about {need / 2**20:.0f} MB needed, {free / 2**20:.0f} MB free)" if need else ""
    return CheckpointWriteError([f"could not write {target}: {why}{size}; {kept}. Fix: free space in "
                                 f"{folder.root.parent} or set output.dir to a disk with room, then resume."],
                                folder.root)
