"""predictions.jsonl: every eval example's prediction, one strict-JSON object per line (runs/jsonio.py).

    {"kind": "full", "step": 150, "suite": "heldout", "source": "data/eval.jsonl:12", "prompt": "...",
     "reference": "...", "output": "...", "scores": {"exact_match": 0.0, "json_field_match": 0.67,
     "json_field_match/product": 0.0, ...}, "base_output": "...", "base_scores": {...}}

`base_output` / `base_scores` are there when a baseline ran (the base model on the same example). The training loop
writes the lines of each full eval (kind "full", with its step); `shipsft eval` writes kind "eval" lines, next to its
--out file or into the run folder it evaluated. A write replaces only the lines of its own kind from its step on
(all of them without a step), so a resumed run holds each step once and `shipsft eval RUN` keeps the training lines.

    write_predictions(folder.predictions, rows, kind="full", step=150)
    rows = read_predictions(folder.predictions)
    worst(rows, 5)           # the five worst (lowest mean of the top-level metric scores first), failures only
    field_failures(rows)     # {"heldout": {"product": 12, "urgency": 3}}: wrong fields of JSON answers per suite
"""
from __future__ import annotations

from pathlib import Path

from shipsft.runs.jsonio import dumps, read_jsonl, write_text_atomic


def write_predictions(path: Path, rows: list[dict], kind: str, step: int | None = None) -> Path:
    """Write `rows` as kind `kind` (and `step`), atomically, keeping the file's other lines (module docstring)."""
    path = Path(path)
    kept = [r for r in read_jsonl(path) if not _replaced(r, kind, step)] if path.exists() else []
    stamp = {"kind": kind, **({"step": step} if step is not None else {})}
    lines = [dumps(r) for r in kept] + [dumps({**stamp, **r}) for r in rows]
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def _replaced(row: dict, kind: str, step: int | None) -> bool:
    if row.get("kind") != kind:
        return False
    return step is None or row.get("step") is None or row["step"] >= step


def read_predictions(path: Path, kind: str | None = None, step: int | None = None) -> list[dict]:
    """The lines of the file ([] when it does not exist), only those of `kind` / `step` when given."""
    return [r for r in read_jsonl(Path(path))
            if (kind is None or r.get("kind") == kind) and (step is None or r.get("step") == step)]


def metric_scores(scores: dict[str, float]) -> dict[str, float]:
    """The top-level metrics of a score dict (json_field_match, not its per-field json_field_match/<field>)."""
    return {k: v for k, v in scores.items() if "/" not in k and v is not None}


def example_score(row: dict) -> float:
    """One number per example for ordering: the mean of its top-level metric scores (1.0 = right on every one)."""
    top = metric_scores(row.get("scores") or {})
    return sum(top.values()) / len(top) if top else 0.0


def failed(row: dict) -> bool:
    return any(v < 1.0 for v in metric_scores(row.get("scores") or {}).values())


def worst(rows: list[dict], n: int) -> list[dict]:
    """The `n` worst failures, worst first (ties keep file order, so the output is stable)."""
    return sorted((r for r in rows if failed(r)), key=example_score)[:n]


def wrong_fields(row: dict) -> list[str]:
    """Fields of a JSON answer the prediction got wrong (from its json_field_match/<field> scores)."""
    return [k.split("/", 1)[1] for k, v in (row.get("scores") or {}).items()
            if k.startswith("json_field_match/") and v is not None and v < 1.0]


def field_failures(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Per suite, how many examples got each JSON field wrong, most often wrong first."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = out.setdefault(r.get("suite", ""), {})
        for f in wrong_fields(r):
            counts[f] = counts.get(f, 0) + 1
    return {s: dict(sorted(c.items(), key=lambda kv: -kv[1])) for s, c in out.items() if c}


def failure_summary(path: Path, step: int | None, n: int = 10) -> dict | None:
    """What report.html shows about failures: the full eval at `step` (the promoted one; None = the last full eval
    in the file): how many examples failed, the worst `n`, and the wrong JSON fields per suite. None without
    predictions (a run without eval suites, or one written before predictions existed)."""
    rows = read_predictions(path, kind="full")
    if not rows:
        return None
    step = step if any(r.get("step") == step for r in rows) else max(r.get("step") or 0 for r in rows)
    rows = [r for r in rows if r.get("step") == step]
    per_suite: dict[str, int] = {}
    for r in rows:
        per_suite[r.get("suite", "")] = per_suite.get(r.get("suite", ""), 0) + 1
    return {"step": step, "n": len(rows), "n_failed": sum(failed(r) for r in rows), "worst": worst(rows, n),
            "by_field": field_failures(rows), "n_by_suite": per_suite}
