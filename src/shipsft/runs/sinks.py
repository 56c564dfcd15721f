"""Metric sinks. `metrics.jsonl` in the run folder always: one JSON object per line, flushed per line so a killed
run keeps its curve, and valid JSON even when a loss is NaN (written as null; the step says `"skipped": true`).

    with MetricsSink(folder) as sink:
        sink.write({"step": 1, "loss": 2.31, "lr": 2e-4})
"""
from __future__ import annotations

from shipsft.runs.jsonio import JsonlWriter, read_jsonl
from shipsft.runs.layout import RunFolder


class MetricsSink:
    def __init__(self, folder: RunFolder, resume_offsets: tuple[int, int] | None = None):
        """`resume_offsets`: the bytes of metrics.jsonl / eval.jsonl a checkpoint accounts for; lines a killed run
        wrote after that checkpoint are cut, so a resumed run's curves have no duplicated steps."""
        if resume_offsets is not None:
            for path, size in zip((folder.metrics, folder.evals), resume_offsets):
                if path.exists():
                    with open(path, "r+b") as f:
                        f.truncate(size)
        self._metrics = JsonlWriter(folder.metrics)
        self._evals = JsonlWriter(folder.evals)

    def offsets(self) -> tuple[int, int]:
        """Bytes written so far to metrics.jsonl and eval.jsonl (saved in every checkpoint)."""
        return self._metrics.tell(), self._evals.tell()

    def write(self, record: dict) -> None:
        """A training record: {"step", "loss", "lr", ...} or {"step", "eval_loss"}."""
        self._metrics.write(record)

    def write_eval(self, record: dict) -> None:
        """A task eval: {"kind": baseline|smoke|full, "step", "metrics", "samples", ...}."""
        self._evals.write(record)

    def close(self) -> None:
        self._metrics.close()
        self._evals.close()

    def __enter__(self) -> "MetricsSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(folder: RunFolder) -> list[dict]:
    return read_jsonl(folder.metrics)


def read_evals(folder: RunFolder) -> list[dict]:
    return read_jsonl(folder.evals)
