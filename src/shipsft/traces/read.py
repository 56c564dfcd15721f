"""Trace files -> `Trace`s: the logged conversation and what production knows about it.

A trace is one record in any format shipsft reads for training (data/formats.py: messages, sharegpt, alpaca,
prompt_completion; JSONL, JSON, Parquet, CSV), with an answer to score (the last assistant turn, or the completion),
and these optional fields beside the conversation:

    trace_id | id | request_id   the trace's id in your logging system (the first one present), kept as provenance
    feedback | outcome           how the answer was judged: bad ("bad", "down", "thumbs_down", "negative", "fail",
                                 "failed", "failure", "error", "wrong", "incorrect", "rejected", false, 0, -1) or good
                                 ("good", "up", "thumbs_up", "positive", "pass", "passed", "success", "ok", "correct",
                                 "accepted", true, 1); absent or null = unrated. Case and spaces do not matter.
    correction                   the answer that should have been given (a string), for a trace marked bad

Anything else is a mistake reported at its file:line with the fix, all problems at once (DataError), nothing skipped.

    traces = read_traces(["logs/2026-06.jsonl"], fmt="auto")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipsft.data.formats import FileInfo, adapt_record, detect_format, read_records
from shipsft.data.types import Example
from shipsft.errors import DataError

ID_FIELDS = ("trace_id", "id", "request_id")
OUTCOME_FIELDS = ("feedback", "outcome")
CORRECTION_FIELD = "correction"
BAD = {"bad", "down", "thumbs_down", "thumbsdown", "negative", "fail", "failed", "failure", "error", "wrong",
       "incorrect", "rejected"}
GOOD = {"good", "up", "thumbs_up", "thumbsup", "positive", "pass", "passed", "success", "ok", "correct", "accepted"}


@dataclass
class Trace:
    source: str  # "file:line" of the record
    example: Example
    trace_id: str | None
    outcome: str  # "bad" | "good" | "unrated"
    feedback: object  # the value as logged (written back as provenance)
    correction: str | None


def outcome_of(value: object) -> str | None:
    """'bad', 'good' or 'unrated' for a feedback value; None when it is none of the accepted ones."""
    if value is None:
        return "unrated"
    if isinstance(value, bool):
        return "good" if value else "bad"
    if isinstance(value, (int, float)):
        return {1: "good", 0: "bad", -1: "bad"}.get(value)  # type: ignore[call-overload]
    if isinstance(value, str):
        word = value.strip().lower().replace("-", "_").replace(" ", "_")
        return "bad" if word in BAD else "good" if word in GOOD else None
    return None


def _trace(row: dict, ex: Example, source: str) -> tuple[Trace | None, list[str]]:
    problems = []
    named = [k for k in OUTCOME_FIELDS if row.get(k) is not None]
    if len(named) == 2 and outcome_of(row[named[0]]) != outcome_of(row[named[1]]):
        problems.append(f"'feedback' ({row['feedback']!r}) and 'outcome' ({row['outcome']!r}) disagree. Fix: keep "
                        "one of them")
    value = row.get(named[0]) if named else None
    outcome = outcome_of(value)
    if outcome is None:
        problems.append(f"{named[0]!r} is {value!r}, which is neither bad nor good. Fix: use one of "
                        f"{', '.join(sorted(BAD))}, false, 0, -1 (bad) or {', '.join(sorted(GOOD))}, true, 1 (good), "
                        "or null (unrated)")
    correction = row.get(CORRECTION_FIELD)
    if correction is not None and (not isinstance(correction, str) or not correction.strip()):
        problems.append(f"'{CORRECTION_FIELD}' must be the corrected answer as a non-empty string, got "
                        f"{correction!r}")
    elif correction is not None and outcome != "bad":
        problems.append(f"'{CORRECTION_FIELD}' is given but the trace is not marked bad ({value!r}). Fix: mark it "
                        "bad (feedback: bad) or drop the correction")
    if ex.kind == "text" or (ex.kind == "chat" and not any(m.get("role") == "assistant" for m in ex.messages or [])):
        problems.append("no answer to score (a trace needs a final assistant turn, or a completion)")
    if problems:
        return None, problems
    tid = next((row[k] for k in ID_FIELDS if row.get(k) is not None), None)
    return Trace(source, ex, None if tid is None else str(tid), outcome or "unrated", value, correction), []


def read_traces(paths: list[str | Path], fmt: str = "auto") -> tuple[list[Trace], list[FileInfo], str]:
    """(traces in file order, each file's provenance, the format used). Raises DataError listing every problem."""
    problems: list[str] = []
    loaded = []
    for p in paths:
        try:
            loaded.append(read_records(p))
        except DataError as e:
            problems.extend(e.lines)
    records = [r for recs, _ in loaded for r in recs]
    if fmt == "auto" and records:
        found = detect_format(records)
        if found is None:
            problems.append(f"{records[0].source}: no trace format recognised (a 'messages', 'conversations', "
                            "'prompt'/'completion' or 'instruction'/'output' column). Fix: log conversations in "
                            "the OpenAI messages shape, or name the format with --format")
        fmt = found[0] if found else fmt
    traces: list[Trace] = []
    if not problems:
        for rec in records:
            ex, bad = adapt_record(rec, fmt, allow_any_role_order=False)
            if ex is not None:
                trace, bad = _trace(rec.data, ex, rec.source)
                if trace is not None:
                    traces.append(trace)
            problems.extend(f"{rec.source}: {b}" for b in bad)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DataError(shown)
    return traces, [info for _, info in loaded], fmt
