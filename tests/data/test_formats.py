"""Data formats -> Examples: every format in every file type, auto detection, validation messages, skip mode.

    pytest tests/data/test_formats.py
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shipsft.data import formats
from shipsft.data.formats import read_records
from shipsft.errors import DataError


def load_examples(paths, fmt="auto", on_invalid="error", rejects_path=None, allow_any_role_order=False):
    """formats.load_examples with the settings a default DataConfig gives (the library takes them explicitly)."""
    return formats.load_examples(paths, fmt, on_invalid, rejects_path, allow_any_role_order)


def examples_from_dataset(ds, name="<dataset>", fmt="auto"):
    return formats.examples_from_dataset(ds, name, fmt, "error", None, False)

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "data"
FIXTURES = ["messages", "sharegpt", "alpaca", "prompt_completion", "prompt_completion_chat", "text"]
FORMAT_OF = {"prompt_completion_chat": "prompt_completion"}


def _records(fixture: str) -> list[dict]:
    return [json.loads(line) for line in (ASSETS / f"{fixture}.jsonl").read_text().splitlines()]


def _write(tmp_path: Path, kind: str, records: list[dict]) -> Path:
    """The same records as one file (or saved datasets folder) of the given kind."""
    if kind == "jsonl":
        p = tmp_path / "d.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif kind == "json":
        p = tmp_path / "d.json"
        p.write_text(json.dumps(records, indent=2))
    elif kind == "json_data":
        p = tmp_path / "d.json"
        p.write_text(json.dumps({"data": records}))
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pydict(_columns(records)), p)
    elif kind == "csv":
        p = tmp_path / "d.csv"
        cols = list(dict.fromkeys(k for r in records for k in r))
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in records:  # lists go in as JSON strings: CSV has no lists
                w.writerow([json.dumps(r[c]) if isinstance(r.get(c), (list, dict)) else r.get(c, "") for c in cols])
    elif kind == "dataset_dir":
        import datasets

        p = tmp_path / "saved"
        datasets.Dataset.from_dict(_columns(records)).save_to_disk(str(p))
    else:
        raise AssertionError(kind)
    return p


def _columns(records: list[dict]) -> dict[str, list]:
    # from_pylist/from_list take the columns of the first row only; a real export has the union of all rows
    cols = dict.fromkeys(k for r in records for k in r)
    return {k: [r.get(k) for r in records] for k in cols}


def _content(ex) -> tuple:
    return (ex.kind, ex.messages, ex.n_prompt, ex.prompt, ex.completion, ex.text, ex.tools)


def _lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _errors(*args, **kwargs) -> list[str]:
    with pytest.raises(DataError) as e:
        load_examples(*args, **kwargs)
    assert e.value.exit_code == 2
    return e.value.lines


GOOD = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'


# ---------------------------------------------------------------------------------------------------------------
# Every format in every file type it can come in


# A chat prompt/completion needs lists, which CSV cannot hold (a JSON string there is plain text: no sniffing).
KINDS = ["jsonl", "json", "json_data", "parquet", "csv", "dataset_dir"]
CASES = [(f, k) for f in FIXTURES for k in KINDS if not (f == "prompt_completion_chat" and k == "csv")]


@pytest.mark.parametrize("fixture,kind", CASES)
def test_every_format_in_every_file_type(tmp_path, fixture, kind):
    expected = load_examples(ASSETS / f"{fixture}.jsonl")
    path = _write(tmp_path, kind, _records(fixture))
    res = load_examples([path])
    fmt = FORMAT_OF.get(fixture, fixture)
    assert res.format == fmt and res.n_rejected == 0
    assert [_content(e) for e in res.examples] == [_content(e) for e in expected.examples]
    first = {"jsonl": ":1", "csv": ":2"}.get(kind, ":#0")  # CSV line 1 is the header
    assert res.examples[0].source == f"{path}{first}"
    assert res.files[0].n_records == len(expected.examples)
    assert res.notes[0].startswith(f"format auto -> {fmt} (")
    if kind != "csv":  # CSV writes "" for a missing cell, which is a value
        assert [e.meta for e in res.examples] == [e.meta for e in expected.examples]


def test_adapted_conversations_exactly():
    by = {f: load_examples(ASSETS / f"{f}.jsonl").examples for f in FIXTURES}
    assert by["alpaca"][0].messages == [{"role": "user", "content": "Translate to French.\n\nGood morning"},
                                        {"role": "assistant", "content": "Bonjour"}]
    assert by["alpaca"][1].messages == [{"role": "system", "content": "Answer with one word."},
                                        {"role": "user", "content": "Name a prime number."},
                                        {"role": "assistant", "content": "7"}]
    assert by["sharegpt"][0].messages == [{"role": "system", "content": "You are terse."},
                                          {"role": "user", "content": "What is 2+2?"},
                                          {"role": "assistant", "content": "4"}]
    # LLaMA-Factory tool turns: function_call -> assistant tool_calls, observation -> tool; tools string decoded
    assert by["sharegpt"][1].messages[1:3] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 C, sunny"}]
    assert by["sharegpt"][1].tools[0]["name"] == "get_weather"
    pc, pc_chat, text = by["prompt_completion"][0], by["prompt_completion_chat"][0], by["text"][0]
    assert (pc.kind, pc.prompt, pc.completion, pc.messages) == ("completion_text", "The capital of France is",
                                                                " Paris.", None)
    assert (pc_chat.kind, pc_chat.n_prompt, [m["role"] for m in pc_chat.messages]) == (
        "chat", 2, ["system", "user", "assistant"])
    assert (text.kind, text.text, text.meta) == ("text", "The quick brown fox jumps over the lazy dog.",
                                                 {"source": "pangrams"})


def test_alpaca_history_and_whitespace_input(tmp_path):
    p = _lines(tmp_path / "a.jsonl", json.dumps(
        {"instruction": "And 3+3?", "input": "  ", "output": "6", "history": [["2+2?", "4"]]}))
    assert load_examples(p).examples[0].messages == [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]


def test_tool_calls_pass_through_unchanged(tmp_path):
    row = _records("messages")[2]
    ex = load_examples(ASSETS / "messages.jsonl").examples[2]
    assert ex.tools == row["tools"]
    call, tool = ex.messages[1], ex.messages[2]
    assert call == {"role": "assistant", "content": "", "tool_calls": row["messages"][1]["tool_calls"]}
    assert tool == {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1", "name": "get_weather"}
    # unknown per-message keys pass through too (templates may use them); null keys are dropped
    p = _lines(tmp_path / "t.jsonl", json.dumps({"messages": [
        {"role": "user", "content": "Hi", "name": "bob", "tool_calls": None},
        {"role": "assistant", "content": "Hey", "reasoning_content": "greet back"}]}))
    assert load_examples(p).examples[0].messages == [
        {"role": "user", "content": "Hi", "name": "bob"},
        {"role": "assistant", "content": "Hey", "reasoning_content": "greet back"}]


def test_content_parts_are_joined_and_noted(tmp_path):
    p = _lines(tmp_path / "p.jsonl", json.dumps({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hi"}]}))
    res = load_examples(p)
    assert res.examples[0].messages[0] == {"role": "user", "content": "Hello there"}
    assert "1 message(s) had content-part lists; their text parts were joined into one string" in res.notes


def test_meta_provenance_and_file_info(tmp_path):
    res = load_examples(ASSETS / "messages.jsonl")
    assert [e.meta for e in res.examples] == [{"id": "m1", "license": "cc-by-4.0"}, {"id": "m2", "license": "cc-by-4.0"},
                                              {"id": "m3", "license": "apache-2.0"}]
    (info,) = res.files
    blob = (ASSETS / "messages.jsonl").read_bytes()
    assert (info.path, info.sha256, info.n_records, info.n_rejected, info.format, info.licenses) == (
        str(ASSETS / "messages.jsonl"), hashlib.sha256(blob).hexdigest(), 3, 0, "messages", ["apache-2.0", "cc-by-4.0"])
    # long text columns stay out of meta (memory), short scalars stay in
    p = _lines(tmp_path / "m.jsonl", json.dumps({"id": 7, "notes": "x" * 300, "ok": True, "tags": ["a"],
                                                 "text": "hello"}))
    assert load_examples(p).examples[0].meta == {"id": 7, "ok": True}


def test_line_numbers_skip_blank_lines_and_keep_u2028(tmp_path):
    row = json.dumps({"text": "a\u2028b"}, ensure_ascii=False)  # a raw U+2028 inside a JSON string
    p = tmp_path / "t.jsonl"
    p.write_text("\n" + row + "\n\n   \n" + row + "\n")
    res = load_examples(p)
    assert [e.source for e in res.examples] == [f"{p}:2", f"{p}:5"]
    assert res.examples[0].text == "a\u2028b"


def test_csv_line_numbers_with_multiline_cells(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('instruction,input,output\n"Say\ntwo lines",,ok\nSecond,,fine\n')
    res = load_examples(p)
    assert [e.source for e in res.examples] == [f"{p}:2", f"{p}:4"]
    assert res.examples[0].messages[0]["content"] == "Say\ntwo lines"


# ---------------------------------------------------------------------------------------------------------------
# Auto detection


def test_auto_detection_note_and_explicit_setting(tmp_path):
    p = _lines(tmp_path / "train.jsonl", GOOD)
    assert load_examples(p).notes == [f"format auto -> messages (column 'messages' in {p})"]
    assert load_examples(p, fmt="messages").notes == ["format messages (set explicitly)"]


def test_auto_priority_and_first_valid_record(tmp_path):
    # a record with both messages and text is messages; non-object records before it are not looked at
    p = _lines(tmp_path / "d.jsonl", "[1]", json.dumps({"text": "x", "messages": json.loads(GOOD)["messages"]}))
    res = load_examples(p, on_invalid="skip")
    assert (res.format, res.n_rejected, len(res.examples)) == ("messages", 1, 1)


def test_auto_over_several_files(tmp_path):
    a, b = _lines(tmp_path / "a.jsonl", GOOD), _lines(tmp_path / "b.jsonl", GOOD, GOOD)
    res = load_examples([a, b])
    assert res.notes == [f"format auto -> messages (column 'messages' in {a}, {b})"]
    assert [f.n_records for f in res.files] == [1, 2] and len(res.examples) == 3


def test_mixed_formats_across_files_are_an_error(tmp_path):
    a = _lines(tmp_path / "a.jsonl", GOOD)
    b = _lines(tmp_path / "b.jsonl", '{"instruction": "x", "output": "y"}')
    assert _errors([a, b]) == [
        f"the data files mix formats: {a} is messages (column 'messages'); {b} is alpaca (columns 'instruction', "
        "'output'); convert them to one format (one run reads one format)"]


def test_undetectable_format_names_the_line_and_the_missing_column(tmp_path):
    p = _lines(tmp_path / "d.jsonl", '{"question": "q", "answer": "a"}')
    assert _errors(p) == [
        f"{p}:1: cannot detect the data format: the record has columns 'question', 'answer'; expected "
        "'messages' -> messages; 'conversations' -> sharegpt; 'prompt' + 'completion' -> prompt_completion; "
        "'instruction' + 'output' -> alpaca; 'text' -> text (or set data.format)"]
    # an Alpaca record without its answer: the closest format and exactly what it lacks
    p = _lines(tmp_path / "a.jsonl", '{"instruction": "Add 2+2", "input": ""}')
    assert _errors(p) == [f"{p}:1: cannot detect the data format: the record has columns 'instruction', 'input'; "
                          "format alpaca also needs 'output' (or set data.format)"]
    # a JSON array on a JSONL line
    p = _lines(tmp_path / "l.jsonl", '[{"role": "user", "content": "Hi"}]')
    assert _errors(p) == [f"{p}:1: the record is a list, not an object: each record must be one JSON object such as "
                          '{"messages": [...]} (one per line in JSONL)']


@pytest.mark.parametrize("messages, problem", [
    ([("user", "a"), ("user", "b"), ("assistant", "c")],
     "messages[1]: two user messages in a row (messages[0] and [1]). Fix: merge them into one user message"),
    ([("user", "a"), ("assistant", "b"), ("assistant", "c")],
     "messages[2]: two assistant messages in a row (messages[1] and [2])"),
    ([("user", "a"), ("system", "be terse"), ("assistant", "c")],
     "messages[1]: a system message after messages[0]"),
    ([("user", "a"), ("tool", "18C"), ("assistant", "c")],
     "messages[1]: a tool result after a user message, not after an assistant tool call"),
])
def test_roles_out_of_order_are_errors_unless_allowed(tmp_path, messages, problem):
    record = {"messages": [{"role": r, "content": c} for r, c in messages]}
    p = _lines(tmp_path / "r.jsonl", GOOD, json.dumps(record))
    [line, summary] = _errors(p)
    assert line.startswith(f"{p}:2: {problem}") and "data.allow_any_role_order: true" in line, line
    assert summary.startswith("1 of 2 records are invalid")
    assert len(load_examples(p, allow_any_role_order=True).examples) == 2


def test_unknown_format_setting():
    assert _errors("x.jsonl", fmt="sharegtp") == [
        "unknown data format 'sharegtp'; use one of auto, messages, sharegpt, alpaca, prompt_completion, text"
        " — did you mean 'sharegpt'?"]


# ---------------------------------------------------------------------------------------------------------------
# Validation: each malformed input gives this exact message, with file:line and the message index

M = "messages"
BAD_RECORDS = [
    ('{"messages": [}', "invalid JSON at column 15: Expecting value"),
    ("[1, 2]", "record must be a JSON object, got list"),
    ('{"msgs": []}', "missing 'messages' (format messages; the record has columns 'msgs')"),
    ('{"conversations": [{"from": "human", "value": "x"}]}',
     "missing 'messages' (format messages; the record has columns 'conversations') — is this format sharegpt?"),
    ('{"messages": "hello"}', "'messages' is a string that is not JSON (column 1: Expecting value); it must be a list"),
    ('{"messages": 3}', "'messages' must be a list, got number"),
    ('{"messages": []}', "'messages' is empty"),
    ('{"messages": [{"role": "user", "content": "Hi"}, "Hello"]}',
     "messages[1]: must be an object with 'role' and 'content', got string"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"content": "Hello"}]}',
     "messages[1]: missing 'role' (one of system, user, assistant, tool)"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, '
     '{"role": "asistant", "content": "Hello"}]}',
     "messages[2]: role 'asistant' is not one of system, user, assistant, tool — did you mean 'assistant'?"),
    ('{"messages": [{"role": "human", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}',
     "messages[0]: role 'human' is not one of system, user, assistant, tool — did you mean 'user'?"),
    ('{"messages": [{"role": "narrator", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}',
     "messages[0]: role 'narrator' is not one of system, user, assistant, tool"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " \\n "}]}',
     "messages[1]: assistant content is empty"),
    ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "Hello"}]}',
     "messages[0]: user content is empty"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}]}', "messages[1]: missing 'content'"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": 42}]}',
     "messages[1]: content must be a string, got number"),
    ('{"messages": [{"role": "user", "content": {"text": "Hi"}}, {"role": "assistant", "content": "Hello"}]}',
     "messages[0]: content must be a string, got object"),
    ('{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, '
     '{"role": "assistant", "content": "Hello"}]}',
     "messages[0]: content[0] is a 'image_url' part; only text parts {\"type\": \"text\", \"text\": ...} "
     "can be trained on"),
    ('{"messages": [{"role": "system", "content": "Be nice"}, {"role": "user", "content": "Hi"}]}',
     "messages: no assistant message to train on (roles: system, user)"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": "get_weather()"}]}',
     "messages[1]: tool_calls must be a list, got string"),
    ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "tools": [1]}',
     "'tools' must be a list of tool schemas (objects)"),
]


@pytest.mark.parametrize("line,message", BAD_RECORDS)
def test_malformed_messages_record(tmp_path, line, message):
    p = _lines(tmp_path / "train.jsonl", GOOD, line)  # line 1 is valid so format auto settles on messages
    assert _errors(p) == [f"{p}:2: {message}", "1 of 2 records are invalid: fix them, or set data.on_invalid: skip "
                                                "to skip them (each is written to the rejects file with its reason)"]


def test_assistant_tool_call_without_content_is_valid(tmp_path):
    call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    p = _lines(tmp_path / "t.jsonl", json.dumps({"messages": [{"role": "user", "content": "Go"}, call,
                                                              {"role": "tool", "content": ""},
                                                              {"role": "assistant", "content": "Done"}]}))
    assert load_examples(p).examples[0].messages[1] == {"role": "assistant", "content": "", **call}


OTHER_FORMATS = [
    ("sharegpt", '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gtp", "value": "Hello"}]}',
     "conversations[1]: from 'gtp' is not one of system, human, user, gpt, assistant, tool, function_call, "
     "observation — did you mean 'gpt'?"),
    ("sharegpt", '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": ""}]}',
     "conversations[1]: assistant value is empty"),
    ("sharegpt", '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt"}]}',
     "conversations[1]: missing 'value'"),
    ("sharegpt", '{"conversations": [{"from": "human", "value": "Hi"}, {"value": "Hello"}]}',
     "conversations[1]: missing 'from' (one of system, human, user, gpt, assistant, tool, function_call, observation)"),
    ("sharegpt", '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "function_call", "value": "f("}]}',
     "conversations[1]: function_call value: not JSON (column 1: Expecting value)"),
    ("alpaca", '{"instruction": "Do it", "input": ""}',
     "missing 'output' (format alpaca; the record has columns 'instruction', 'input')"),
    ("alpaca", '{"instruction": " ", "output": "ok"}', "'instruction' is empty (it is the user message)"),
    ("alpaca", '{"instruction": "Do it", "output": ""}',
     "'output' is empty (it is the assistant message to train on)"),
    ("alpaca", '{"instruction": "Do it", "input": 5, "output": "ok"}', "'input' must be a string, got number"),
    ("prompt_completion", '{"prompt": "Hi", "completion": [{"role": "assistant", "content": "Hello"}]}',
     "'prompt' and 'completion' must both be strings (plain text) or both lists of messages (chat); "
     "got string and list"),
    ("prompt_completion", '{"prompt": "Hi", "completion": "   "}', "'completion' is empty (it is the text to train on)"),
    ("prompt_completion", '{"prompt": [{"role": "user", "content": "Hi"}], '
                          '"completion": [{"role": "user", "content": "Hello"}]}',
     "completion: no assistant message to train on (roles: user)"),
    ("prompt_completion", '{"prompt": [{"role": "user", "content": "Hi"}], '
                          '"completion": [{"role": "assistant", "content": 1}]}',
     "completion[0]: content must be a string, got number"),
    ("text", '{"text": ""}', "'text' is empty (nothing to train on)"),
    ("text", '{"text": ["a"]}', "'text' must be a string, got list"),
]


@pytest.mark.parametrize("fmt,line,message", OTHER_FORMATS)
def test_malformed_other_formats(tmp_path, fmt, line, message):
    p = _lines(tmp_path / "train.jsonl", line)
    assert _errors(p, fmt=fmt)[0] == f"{p}:1: {message}"


def test_file_level_problems(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    blank_csv = tmp_path / "h.csv"
    blank_csv.write_text("instruction,output\n")
    bad_json = tmp_path / "b.json"
    bad_json.write_text('{"text": "a"}\n{"text": "b"}\n')
    top = tmp_path / "top.json"
    top.write_text('{"train": []}')
    latin = tmp_path / "l.jsonl"
    latin.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    other = tmp_path / "d.txt"
    other.write_text("hello")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.md").write_text("not data")
    missing = tmp_path / "nope.jsonl"
    lines = _errors([empty, blank_csv, bad_json, top, latin, other, folder, missing], fmt="text")
    assert lines == [
        f"{empty}: the file is empty (no records)",
        f"{blank_csv}: the file is empty (no records)",
        f"{bad_json}:2: invalid JSON at column 1: Extra data (one JSON object per line? name the file .jsonl)",
        f"{top}: the top level is an object with keys 'train'; expected a list of records or {{\"data\": [...]}}",
        f"{latin}:2: not valid UTF-8 (byte 0xe9); save the file as UTF-8",
        f"{other}: unsupported file type '.txt' (use .jsonl, .json or .csv, each also compressed as .gz, .zst, .bz2, "
        ".xz (t.jsonl.gz), .parquet (any codec inside), a folder written by datasets' save_to_disk, a dataset "
        "repository folder or a hub dataset id)",
        f"{folder}: is a folder with no data files (*.parquet, *.arrow, *.jsonl, *.json, *.csv, *.tsv, *.txt, "
        "*.jsonl.gz, *.json.gz) and no dataset card (README.md). Fix: give a data file, a dataset repository folder, "
        "or a folder written by datasets' save_to_disk",
        f"{missing}: file not found",
    ]


def test_csv_row_with_wrong_cell_count(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("instruction,output\nSay hi,Hi\nSay a, b,c\n")
    assert _errors(p)[0] == f"{p}:3: the row has 3 cells but the header has 2 columns (an unquoted comma?)"


def test_all_problems_collected_across_files_and_capped(tmp_path):
    a = _lines(tmp_path / "a.jsonl", GOOD, *['{"messages": []}'] * 15)
    b = _lines(tmp_path / "b.jsonl", *['{"messages": [{"role": "user", "content": 1}]}'] * 10)
    lines = _errors([a, b])
    assert len(lines) == 22
    assert lines[0] == f"{a}:2: 'messages' is empty"
    assert lines[15] == f"{b}:1: messages[0]: content must be a string, got number"
    # the record with a bad message gets no extra "no assistant" line: that one is a consequence, not a cause
    assert lines[19] == f"{b}:5: messages[0]: content must be a string, got number"
    assert lines[20] == "... and 5 more"
    assert lines[21].startswith("25 of 26 records are invalid: ")


def test_several_problems_in_one_record_are_all_named(tmp_path):
    p = _lines(tmp_path / "d.jsonl", GOOD, json.dumps({"messages": [
        {"role": "usr", "content": "Hi"}, {"role": "assistant", "content": ""}, {"role": "user", "content": None}]}))
    assert _errors(p)[:3] == [
        f"{p}:2: messages[0]: role 'usr' is not one of system, user, assistant, tool — did you mean 'user'?",
        f"{p}:2: messages[1]: assistant content is empty",
        f"{p}:2: messages[2]: missing 'content'"]


# ---------------------------------------------------------------------------------------------------------------
# Skip mode: nothing dropped silently


def test_skip_mode_writes_rejects_and_counts_add_up(tmp_path):
    a = _lines(tmp_path / "a.jsonl", GOOD, '{"messages": [}', GOOD,
               '{"messages": [{"role": "user", "content": "Hi"}, {"role": "asistant", "content": "x"}]}')
    b = _lines(tmp_path / "b.jsonl", GOOD, "[3]")
    rejects = tmp_path / "run" / "rejects.jsonl"
    res = load_examples([a, b], on_invalid="skip", rejects_path=rejects)
    assert (len(res.examples), res.n_rejected) == (3, 3)
    assert [(f.n_records, f.n_rejected) for f in res.files] == [(4, 2), (2, 1)]
    assert sum(f.n_records for f in res.files) == len(res.examples) + res.n_rejected
    assert [e.source for e in res.examples] == [f"{a}:1", f"{a}:3", f"{b}:1"]
    assert res.notes[-1] == f"skipped 3 invalid record(s) of 6 (on_invalid=skip); each is in {rejects} with its reason"
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert rows == [
        {"source": f"{a}:2", "reason": "invalid JSON at column 15: Expecting value", "record": '{"messages": [}'},
        {"source": f"{a}:4", "reason": "messages[1]: role 'asistant' is not one of system, user, assistant, tool"
                                       " — did you mean 'assistant'?",
         "record": {"messages": [{"role": "user", "content": "Hi"}, {"role": "asistant", "content": "x"}]}},
        {"source": f"{b}:2", "reason": "record must be a JSON object, got list", "record": [3]},
    ]


def test_skip_mode_without_rejects_file_lists_reasons_in_notes(tmp_path):
    p = _lines(tmp_path / "a.jsonl", GOOD, '{"messages": []}')
    res = load_examples(p, on_invalid="skip")
    assert res.notes[1:] == ["skipped 1 invalid record(s) of 2 (on_invalid=skip); no rejects file given, the first ones:",
                             f"  {p}:2: 'messages' is empty"]


def test_skip_mode_rewrites_a_stale_rejects_file(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text('{"old": 1}\n')
    res = load_examples(_lines(tmp_path / "a.jsonl", GOOD), on_invalid="skip", rejects_path=rejects)
    assert res.n_rejected == 0 and rejects.read_text() == ""


def test_skip_mode_with_nothing_left_is_an_error(tmp_path):
    q = _lines(tmp_path / "b.jsonl", '{"messages": []}', '{"messages": 1}')
    assert _errors(q, fmt="messages", on_invalid="skip", rejects_path=tmp_path / "r.jsonl") == [
        f"no valid records left: all 2 records were rejected (see {tmp_path / 'r.jsonl'})"]


def test_skip_mode_still_fails_on_file_level_problems(tmp_path):
    assert _errors([tmp_path / "nope.jsonl"], on_invalid="skip") == [f"{tmp_path / 'nope.jsonl'}: file not found"]


# ---------------------------------------------------------------------------------------------------------------
# datasets objects


def test_datasets_object_and_license():
    import datasets

    ds = datasets.Dataset.from_dict(_columns(_records("messages")), info=datasets.DatasetInfo(license="mit"))
    res = examples_from_dataset(ds, name="hub:demo")
    expected = load_examples(ASSETS / "messages.jsonl")
    assert [_content(e) for e in res.examples] == [_content(e) for e in expected.examples]
    assert [e.source for e in res.examples] == ["hub:demo:#0", "hub:demo:#1", "hub:demo:#2"]
    assert res.files[0].licenses == ["apache-2.0", "cc-by-4.0", "mit"]
    assert res.notes == ["format auto -> messages (column 'messages' in hub:demo)"]


def test_datasets_object_errors_name_the_row():
    import datasets

    ds = datasets.Dataset.from_list([{"text": "ok"}, {"text": " "}])
    with pytest.raises(DataError) as e:
        examples_from_dataset(ds)
    assert e.value.lines[0] == "<dataset>:#1: 'text' is empty (nothing to train on)"
    with pytest.raises(DataError) as e:
        examples_from_dataset(datasets.DatasetDict({"train": ds}), name="dd")
    assert e.value.lines == ["dd: is a DatasetDict with splits train; pass one split, e.g. ds['train']"]


def test_saved_dataset_dict_folder_points_at_a_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "a"}])}).save_to_disk(str(tmp_path / "dd"))
    assert _errors(tmp_path / "dd") == [
        f"{tmp_path / 'dd'}: is a saved DatasetDict with splits train; give one split's folder, e.g. "
        f"{tmp_path / 'dd' / 'train'}"]
    assert load_examples(tmp_path / "dd" / "train").examples[0].text == "a"


def test_read_records_keeps_raw_line_of_bad_json(tmp_path):
    records, info = read_records(_lines(tmp_path / "a.jsonl", GOOD, "{oops"))
    assert (records[1].raw, records[1].error) == ("{oops", "invalid JSON at column 2: Expecting property name "
                                                           "enclosed in double quotes")
    assert info.n_records == 2


# ---------------------------------------------------------------------------------------------------------------
# Speed and the CLI


def test_a_large_file_loads_every_record_in_order(tmp_path):
    """20k conversations: nothing dropped or reordered, ids kept in meta (speed is bench/prepare.py's job)."""
    import gc

    p = tmp_path / "big.jsonl"
    with p.open("w") as f:
        for i in range(20_000):
            f.write(json.dumps({"id": i, "messages": [
                {"role": "system", "content": "You are terse."}, {"role": "user", "content": f"What is {i}+1?"},
                {"role": "assistant", "content": str(i + 1)}]}) + "\n")
    res = load_examples(p)
    assert [ex.meta["id"] for ex in res.examples] == list(range(20_000))
    assert res.examples[-1].messages[2]["content"] == "20000" and res.examples[-1].source == f"{p}:20000"
    assert gc.isenabled()  # loading pauses the cyclic GC and always turns it back on


def test_cli_prints_one_line_per_problem_exit_2_no_traceback(tmp_path):
    data = _lines(tmp_path / "bad.jsonl", GOOD, '{"messages": [{"role": "user", "content": "Hi"}, '
                                                '{"role": "asistant", "content": "x"}]}')
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model: {path: smollm2}\ndata: {train: [bad.jsonl]}\n")
    env = {**os.environ, "COLUMNS": "400"}  # rich wraps at the terminal width; the error line must stay one line
    out = subprocess.run([sys.executable, "-m", "shipsft", "preview", str(cfg)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert (f"error: {data}:2: messages[1]: role 'asistant' is not one of system, user, assistant, tool — "
            "did you mean 'assistant'?") in out.stderr.splitlines()


def test_gc_is_back_on_after_loading_and_after_an_error(tmp_path):
    import gc

    load_examples(_lines(tmp_path / "a.jsonl", GOOD))
    assert gc.isenabled()
    _errors(_lines(tmp_path / "b.jsonl", "{"))
    assert gc.isenabled()


def test_cli_every_malformed_case_is_one_line_with_file_and_line(tmp_path):
    """Each malformed-input case of the foundation issue through the real CLI: one line each naming file:line (and
    the message index), exit code 2, no traceback, every problem reported in the same run."""
    bad = [
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "ok"}',  # invalid JSON
        '{"messages": [{"content": "Hi"}, {"role": "assistant", "content": "ok"}]}',  # missing role
        '{"messages": [{"role": "human", "content": "Hi"}, {"role": "assistant", "content": "ok"}]}',  # unknown
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}',  # empty answer
        '{"messages": [{"role": "user", "content": "Hi"}]}',  # no assistant turn
        '{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "ok"}]}',  # non-string
    ]
    data = _lines(tmp_path / "bad.jsonl", GOOD, *bad)
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model: {path: smollm2}\ndata: {train: [bad.jsonl]}\n")
    out = subprocess.run([sys.executable, "-m", "shipsft", "preview", str(cfg)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    for line_no, needle in [(2, "invalid JSON"), (3, "messages[0]"), (4, "messages[0]: role 'human'"),
                            (5, "messages[1]"), (6, "no assistant"), (7, "messages[0]")]:
        hits = [ln for ln in lines if ln.startswith(f"error: {data}:{line_no}:")]
        assert hits and needle in hits[0], (line_no, needle, lines)
    assert "6 of 7 records are invalid" in out.stderr
