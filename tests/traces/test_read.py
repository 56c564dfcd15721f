"""Trace files -> Traces: ids, feedback words, corrections, and every mistake named at its file:line."""
from __future__ import annotations

import json

import pytest

from shipsft.errors import DataError
from shipsft.traces.read import outcome_of, read_traces


def chat(q: str, a: str) -> list[dict]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("value, outcome", [
    ("bad", "bad"), ("Thumbs Down", "bad"), ("thumbs-down", "bad"), (False, "bad"), (0, "bad"), (-1, "bad"),
    ("GOOD", "good"), ("up", "good"), (True, "good"), (1, "good"), (None, "unrated"),
    ("meh", None), (3, None), (0.5, None), ({"score": 1}, None),
])
def test_feedback_values(value, outcome):
    assert outcome_of(value) == outcome


def test_ids_outcomes_and_corrections_are_read(tmp_path):
    path = write(tmp_path / "t.jsonl", [
        {"messages": chat("a?", "x"), "trace_id": "T1", "id": "ignored", "feedback": "bad", "correction": "y"},
        {"messages": chat("b?", "x"), "id": 7, "outcome": "good"},
        {"conversations": [{"from": "human", "value": "c?"}, {"from": "gpt", "value": "z"}]},
    ][:2])
    traces, files, fmt = read_traces([path])
    assert fmt == "messages" and files[0].n_records == 2 and len(files[0].sha256) == 64
    assert [(t.source, t.trace_id, t.outcome, t.feedback, t.correction) for t in traces] == [
        (f"{path}:1", "T1", "bad", "bad", "y"), (f"{path}:2", "7", "good", "good", None)]
    assert traces[0].example.messages == chat("a?", "x")


def test_every_mistake_is_named_at_its_line(tmp_path):
    path = write(tmp_path / "t.jsonl", [
        {"messages": chat("a?", "x"), "feedback": "meh"},
        {"messages": chat("b?", "x"), "feedback": "good", "correction": "y"},
        {"messages": chat("c?", "x"), "feedback": "bad", "outcome": "good"},
        {"messages": chat("d?", "x"), "feedback": "bad", "correction": ""},
        {"messages": [{"role": "user", "content": "e?"}]},
        {"messages": chat("f?", "x"), "feedback": "bad"},
    ])
    with pytest.raises(DataError) as e:
        read_traces([path])
    lines = e.value.lines
    assert lines[0].startswith(f"{path}:1: 'feedback' is 'meh', which is neither bad nor good. Fix: use one of bad, ")
    assert lines[1] == f"{path}:2: 'correction' is given but the trace is not marked bad ('good'). Fix: mark it bad " \
                       "(feedback: bad) or drop the correction"
    assert lines[2] == f"{path}:3: 'feedback' ('bad') and 'outcome' ('good') disagree. Fix: keep one of them"
    assert lines[3] == f"{path}:4: 'correction' must be the corrected answer as a non-empty string, got ''"
    assert lines[4].startswith(f"{path}:5: ")  # the format's own check: a conversation needs an assistant turn
    assert len(lines) == 5  # line 6 is fine
