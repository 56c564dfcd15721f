"""Metric sinks. `metrics.jsonl` in the run folder always: one JSON object per line, flushed per line so a killed
run keeps its curve, and valid JSON even when a loss is NaN (written as null; the step says `"skipped": true`).
Every record also reaches the run's trackers (`runs/trackers/`: TensorBoard, MLflow, W&B, trackio), numbers only.

    with MetricsSink(folder, trackers=build_trackers(cfg.track, folder, resumed=False)) as sink:
        sink.write({"step": 1, "loss": 2.31, "lr": 2e-4})
        sink.log_run_files()                      # audit, report, config, manifest, promotion as artifacts
"""
from __future__ import annotations

from pathlib import Path

from shipsft.runs.jsonio import JsonlWriter, jsonl_records, read_jsonl
from shipsft.runs.layout import RunFolder
from shipsft.runs.trackers import Resume, Trackers, run_files


class MetricsSink:
    def __init__(self, folder: RunFolder, resume_offsets: tuple[int, int] | None = None,
                 trackers: Trackers | None = None):
        """`resume_offsets`: the bytes of metrics.jsonl / eval.jsonl a checkpoint accounts for; lines a killed run
        wrote after that checkpoint are cut, so a resumed run's curves have no duplicated steps. `trackers`: started
        here, told which steps the cut lines held (the killed run sent those to them already)."""
        resume = Resume(*cut_steps(folder.metrics, resume_offsets[0]), offset=resume_offsets[0]) \
            if resume_offsets is not None else None
        if resume_offsets is not None:
            for path, size in zip((folder.metrics, folder.evals), resume_offsets):
                if path.exists():
                    with open(path, "r+b") as f:
                        f.truncate(size)
        self._metrics = JsonlWriter(folder.metrics)
        self._evals = JsonlWriter(folder.evals)
        self.folder = folder
        self.trackers = trackers
        self.trackers_closed = False
        self.problems: list[str] = trackers.problems if trackers is not None else []  # trackers dropped mid-run
        if trackers is not None:
            trackers.start(resume)

    def offsets(self) -> tuple[int, int]:
        """Bytes written so far to metrics.jsonl and eval.jsonl (saved in every checkpoint)."""
        return self._metrics.tell(), self._evals.tell()

    def write(self, record: dict) -> None:
        """A training record: {"step", "loss", "lr", ...} or {"step", "eval_loss"}."""
        offset = self._metrics.tell()
        self._metrics.write(record)
        if self.trackers is not None:
            self.trackers.log(record, offset)

    def write_eval(self, record: dict) -> None:
        """A task eval: {"kind": baseline|smoke|full, "step", "metrics", "samples", ...}."""
        self._evals.write(record)

    def log_run_files(self) -> None:
        """The run's audit, report, resolved config, manifest and promotion decision, as tracker artifacts."""
        if self.trackers is not None:
            self.trackers.artifacts(run_files(self.folder))

    def tracker_notes(self) -> list[str]:
        """One line per tracker: where it logs and the command to view it."""
        return self.trackers.notes() if self.trackers is not None else []

    def news(self) -> list[str]:
        """Lines about trackers since the last call (one stopped answering, one is back), for the progress display."""
        return self.trackers.news() if self.trackers is not None else []

    def close(self, status: str = "FINISHED") -> None:
        """status (for the trackers): FINISHED, FAILED, or KILLED (stopped by a signal, resumable)."""
        self._metrics.close()
        self._evals.close()
        if self.trackers is not None and not self.trackers_closed:
            self.trackers.close(status)
            self.trackers_closed = True  # kept: what they reported at the end is read through news()

    def __enter__(self) -> "MetricsSink":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close("FINISHED" if kind is None else "FAILED")


class SilentSink:
    """The sink of every rank but rank 0 in a multi-process run: the loop writes through it as it does on rank 0,
    and nothing reaches a file (rank 0 alone writes the run folder)."""

    problems: list[str] = []

    def offsets(self) -> tuple[int, int]:
        return (0, 0)

    def write(self, record: dict) -> None:
        pass

    def write_eval(self, record: dict) -> None:
        pass

    def log_run_files(self) -> None:
        pass

    def tracker_notes(self) -> list[str]:
        return []

    def news(self) -> list[str]:
        return []

    def close(self, status: str = "FINISHED") -> None:
        pass


def read_metrics(folder: RunFolder) -> list[dict]:
    return read_jsonl(folder.metrics)


def read_evals(folder: RunFolder) -> list[dict]:
    return read_jsonl(folder.evals)


def cut_steps(path: Path, offset: int) -> tuple[int | None, int | None]:
    """(first, last) step of the complete lines of metrics.jsonl after `offset` bytes (what a resume cuts), or
    (None, None). A line a kill cut in half is not a record."""
    steps = [r["step"] for _, r in jsonl_records(path, offset) if isinstance(r.get("step"), int)]
    return (min(steps), max(steps)) if steps else (None, None)
