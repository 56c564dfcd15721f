"""The recipe-task generators of bench/recipe.py (bench/recipe_tasks): sizes, determinism, an unseen slice that
shares no template or entity with training, answers that follow the text.

    .venv/bin/python -m pytest tests/bench/test_recipe_tasks.py -q
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from contextlib import redirect_stdout
from functools import cache
from pathlib import Path

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench.recipe_tasks import (TASKS, answer, classify_json, extract_entities, rewrite_format,
                                 schedule_chat, tool_call, write_task)
from bench.recipe_tasks.__main__ import main as cli_main
from bench.recipe_tasks._common import dumps, user_texts

NAMES = sorted(TASKS)
JSON_TASKS = ["classify_json", "extract_entities"]
KNOWN_METRICS = {"exact_match", "json_valid", "json_field_match", "rouge_l", "token_f1", "tool_call_match"}
TRAIN_SIZES = {"classify_json": (1000, 1400), "extract_entities": (1200, 1700), "rewrite_format": (700, 900),
               "tool_call": (500, 700), "schedule_chat": (800, 1000)}


@cache
def gen(name: str, seed: int = 0):
    return TASKS[name](seed)


def first_user(record: dict) -> str:
    return user_texts(record)[0]


def file_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.jsonl"))}


TOOL_CALL = re.compile(r"^<tool_call>(.*)</tool_call>$", re.DOTALL)


def parse_tool_call(text: str) -> dict:
    m = TOOL_CALL.match(text)
    assert m, text
    return json.loads(m.group(1))


# ------------------------------------------------------------------------------------------------------------------
# Shape and sizes


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_sizes(name):
    d = gen(name)
    assert d.name == name and d.description
    assert set(d.metrics) <= KNOWN_METRICS and d.primary_metric in d.metrics
    lo, hi = TRAIN_SIZES[name]
    assert lo <= len(d.train) <= hi and 300 <= len(d.train) <= 3000
    assert 150 <= len(d.eval) <= 300
    n_seen, n_unseen = len(d.eval_slice("seen")), len(d.eval_slice("unseen"))
    assert n_seen + n_unseen == len(d.eval)
    assert 0.4 <= n_seen / len(d.eval) <= 0.6
    ids = [r["id"] for r in d.train + d.eval]
    assert len(set(ids)) == len(ids) and set(ids) == set(d.meta)
    for r in d.train:
        assert set(r) == {"messages", "id"}
    for r in d.eval:
        assert set(r) == {"messages", "id", "slice"} and r["slice"] in ("seen", "unseen")
    for r in d.train + d.eval:
        msgs = r["messages"]
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"] for m in msgs)
        roles = [m["role"] for m in msgs]
        assert roles[0] == "system" and roles[-1] == "assistant"
        assert roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
    # short answers (tens of tokens): < 200 characters
    assert max(len(answer(r)) for r in d.train + d.eval) < 200


# ------------------------------------------------------------------------------------------------------------------
# Determinism


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_files_different_seed_differs(name, tmp_path):
    a = write_task(TASKS[name](0), tmp_path / "a")
    b = write_task(TASKS[name](0), tmp_path / "b")
    c = write_task(TASKS[name](1), tmp_path / "c")
    assert set(a) == {"train", "eval", "eval_seen", "eval_unseen"}
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key
        assert a[key].read_bytes() != c[key].read_bytes(), key


def test_cli_output_independent_of_hash_seed(tmp_path):
    """Two processes with different PYTHONHASHSEED write byte-identical files, equal to the in-process API's."""
    digests = []
    for hash_seed in ("0", "4242"):
        out = tmp_path / f"h{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-m", "bench.recipe_tasks", "--task", "all", "--out", str(out), "--seed", "3",
                        "--quiet"], cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
        digests.append(file_digest(out))
    assert digests[0] == digests[1] and len(digests[0]) == 4 * len(TASKS)
    for name in NAMES:
        write_task(TASKS[name](3), tmp_path / "api" / name)
    assert file_digest(tmp_path / "api") == digests[0]


# ------------------------------------------------------------------------------------------------------------------
# Leakage


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("name", NAMES)
def test_unseen_slice_shares_no_template_or_entity_with_train(name, seed):
    d = gen(name, seed)
    train_templates = {t for r in d.train for t in d.meta[r["id"]]["templates"]}
    train_entities = {e for r in d.train for e in d.meta[r["id"]]["entities"]}
    unseen = d.eval_slice("unseen")
    for r in unseen:
        m = d.meta[r["id"]]
        assert not set(m["templates"]) & train_templates, (r["id"], m["templates"])
        assert not set(m["entities"]) & train_entities, (r["id"], m["entities"])
        assert m["templates"] and m["entities"]
    # the seen slice is built from training templates only
    for r in d.eval_slice("seen"):
        assert set(d.meta[r["id"]]["templates"]) <= train_templates
    # no train entity (a name, product, city, org, label... not a bare number) occurs in an unseen prompt
    words = sorted(e for e in train_entities if not e.replace(".", "").isdigit())
    pattern = re.compile(r"(?<![\w@.])(" + "|".join(map(re.escape, words)) + r")(?![\w@])")
    for r in unseen:
        hit = pattern.search(first_user(r))
        assert hit is None, (r["id"], hit and hit.group(0))


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("name", NAMES)
def test_no_eval_user_message_occurs_in_train(name, seed):
    d = gen(name, seed)
    train_users = {u for r in d.train for u in user_texts(r)}
    assert len({first_user(r) for r in d.train}) == len(d.train)  # no duplicate prompts in train
    eval_users = [u for r in d.eval for u in user_texts(r)]
    assert not set(eval_users) & train_users
    assert len(set(eval_users)) == len(eval_users)


# ------------------------------------------------------------------------------------------------------------------
# References: valid JSON where JSON, deterministic functions of the input


@pytest.mark.parametrize("name", JSON_TASKS)
def test_json_answers_compact_fixed_order(name):
    keys = {"classify_json": ["category", "urgency", "product"],
            "extract_entities": ["person", "org", "date", "amount"]}[name]
    d = gen(name)
    for r in d.train + d.eval:
        ref = answer(r)
        obj = json.loads(ref)
        assert isinstance(obj, dict) and list(obj) == keys
        assert ref == dumps(obj) and "\n" not in ref


def test_tool_call_answers():
    d = gen("tool_call")
    for r in d.train + d.eval:
        msgs, m = r["messages"], d.meta[r["id"]]["fields"]
        call = parse_tool_call(msgs[2]["content"])
        assert list(call) == ["name", "arguments"] and call["name"] == m["tool"]
        assert msgs[2]["content"] == "<tool_call>" + dumps(call) + "</tool_call>"
        shown = re.findall(r"^- (\w+)\(([^)]*)\)", msgs[0]["content"], re.MULTILINE)
        assert 3 <= len(shown) <= 5
        signature = dict(shown)[call["name"]].split(", ")
        assert list(call["arguments"]) == signature
        assert call["arguments"] == m["arguments"]
        if m["two_turn"]:
            assert len(msgs) == 5 and msgs[3]["content"].startswith("Tool result: ")
            json.loads(msgs[3]["content"][len("Tool result: "):])
            assert not answer(r).startswith("<tool_call>") and answer(r).endswith((".", ")."))
        else:
            assert len(msgs) == 3


def test_classify_labels_follow_the_text():
    d = gen("classify_json")
    body_label, cue_label = {}, {}
    for r in d.train + d.eval:
        f, text, ref = d.meta[r["id"]]["fields"], first_user(r), json.loads(answer(r))
        assert ref == {"category": f["category"], "urgency": f["urgency"], "product": f["product"]}
        assert body_label.setdefault(f["body"], f["category"]) == f["category"]  # a template has one category
        assert cue_label.setdefault(f["cue"], f["urgency"]) == f["urgency"]      # a cue has one urgency
        assert ref["product"] in text
        assert ref["category"] in classify_json.CATEGORIES and ref["urgency"] in classify_json.URGENCIES
    assert classify_json.SYSTEM in d.train[0]["messages"][0]["content"]


def test_extract_reference_follows_the_text():
    d = gen("extract_entities")
    for r in d.train + d.eval:
        f, text, ref = d.meta[r["id"]]["fields"], first_user(r), json.loads(answer(r))
        assert ref["person"] in text and ref["org"] in text
        assert f["date_text"] in text and f["amount_text"] in text
        y, mo, da = map(int, ref["date"].split("-"))
        assert f["date_text"] in extract_entities.date_forms(dt.date(y, mo, da))
        assert f["amount_text"] in extract_entities.amount_forms(f["cents"])
        assert ref["amount"] == f["cents"] / 100
        digits = re.sub(r"[^\d.]", "", f["amount_text"])
        assert float(digits) == ref["amount"]


def test_rewrite_reference_follows_the_text():
    d = gen("rewrite_format")
    full = {abbr: full for full, abbrs in rewrite_format.STREET_TYPES for abbr in abbrs + [full]}
    for r in d.train + d.eval:
        f, text, ref = d.meta[r["id"]]["fields"], first_user(r), answer(r)
        lines = ref.split("\n")
        assert [ln.split(": ", 1)[0] for ln in lines] == ["Name", "Street", "City", "Postcode"]
        name, street, city, pc = (ln.split(": ", 1)[1] for ln in lines)
        assert name in text and city in text and re.search(rf"\b{pc}\b", text) and re.fullmatch(r"\d{5}", pc)
        number, rest = street.split(" ", 1)
        assert re.search(rf"\b{number}\b", text)
        base, written_type = f["written_street"].rsplit(" ", 1)
        assert f["written_street"] in text and rest == f"{base} {full[written_type]}"


def test_tool_call_arguments_follow_the_text():
    d = gen("tool_call")
    codes = {s.lower(): c for c, forms in tool_call.CURRENCIES.items() for s in forms}
    for r in d.train + d.eval:
        call = parse_tool_call(r["messages"][2]["content"])
        text, args, tool = first_user(r), call["arguments"], call["name"]
        low = text.lower()
        for key, value in args.items():
            if key == "unit":
                assert (value == "fahrenheit") == ("fahrenheit" in low or "°f" in low)
            elif tool == "convert_currency" and key in ("from", "to"):
                assert any(s in low and codes[s] == value for s in codes)
            elif key == "time":
                found = set()
                for tm in re.finditer(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s?(am|pm)?(?![\w:])", low):
                    if tm.group(2) or tm.group(3):
                        hh, mm, ampm = int(tm.group(1)), int(tm.group(2) or 0), tm.group(3)
                        if ampm:
                            hh = hh % 12 + (12 if ampm == "pm" else 0)
                        found.add(f"{hh:02d}:{mm:02d}")
                assert found == {value}, text
            elif key in ("people", "passengers"):
                assert re.search(rf"\b({value}|{tool_call.NUMBER_WORDS[value]})\b", low)
            elif key == "amount":
                assert re.sub(r"(?<=\d),(?=\d)", "", text).count(str(value)) >= 1
            else:
                assert str(value).lower() in low, (key, value, text)


# ------------------------------------------------------------------------------------------------------------------
# Balance, variety, distractors


def test_classify_label_balance():
    d = gen("classify_json")
    for part in (d.train, d.eval_slice("seen"), d.eval_slice("unseen")):
        refs = [json.loads(answer(r)) for r in part]
        for key, labels in (("category", classify_json.CATEGORIES), ("urgency", classify_json.URGENCIES)):
            counts = Counter(x[key] for x in refs)
            assert set(counts) == set(labels)
            assert max(counts.values()) / len(refs) <= 0.40, (key, counts)
            assert min(counts.values()) / len(refs) >= 0.10, (key, counts)


def test_tool_call_balance_and_two_turn_share():
    d = gen("tool_call")
    for part in (d.train, d.eval_slice("seen"), d.eval_slice("unseen")):
        metas = [d.meta[r["id"]]["fields"] for r in part]
        two = sum(m["two_turn"] for m in metas) / len(part)
        assert 0.15 <= two <= 0.25
        counts = Counter(m["tool"] for m in metas)
        assert set(counts) == set(tool_call.TOOLS) and max(counts.values()) / len(part) < 0.2


@pytest.mark.parametrize("name", NAMES)
def test_template_variety(name):
    d = gen(name)
    main_prefix = {"classify_json": "body-", "extract_entities": "sent-", "rewrite_format": "addr-",
                   "tool_call": "req-", "schedule_chat": ("full-", "notime-", "neither-")}[name]

    def mains(records):
        return {t for r in records for t in d.meta[r["id"]]["templates"] if t.startswith(main_prefix)}
    train, unseen = mains(d.train), mains(d.eval_slice("unseen"))
    assert len(train) >= 20 and len(unseen) >= 8 and len(train | unseen) >= 30
    lengths = sorted(len(first_user(r)) for r in d.train)
    assert lengths[-1] >= 2 * lengths[0]  # short and long prompts
    if name == "classify_json":
        for cat in classify_json.CATEGORIES:
            assert len(classify_json.BODIES[cat]) >= 30
            assert len({t for t in train if t.startswith(f"body-{cat}-")}) >= 20
            assert len({t for t in unseen if t.startswith(f"body-{cat}-")}) >= 5
        typos = ("recieved", "chargd", "teh ", "cant ", "wheres", "were do", "pls ")
        all_bodies = " ".join(t.lower() for ts in classify_json.BODIES.values() for t in ts)
        assert sum(t in all_bodies for t in typos) >= 5


def test_extract_distractor_numbers():
    """Copying the first number of the text is wrong for most examples."""
    d = gen("extract_entities")
    wrong = 0
    for r in d.train:
        f = d.meta[r["id"]]["fields"]
        first = re.search(r"\d[\d,]*(?:\.\d+)?", first_user(r)).group(0)
        wrong += first not in f["amount_text"]
    assert wrong / len(d.train) >= 0.4
    with_extra_number = sum(len(re.findall(r"\d+", first_user(r))) >= 5 for r in d.train)
    assert with_extra_number / len(d.train) >= 0.3


def test_rewrite_and_classify_distractors():
    d = gen("rewrite_format")
    five_digit = sum(len(re.findall(r"\b\d{5}\b", first_user(r))) >= 2 for r in d.train)
    assert five_digit / len(d.train) >= 0.05
    fields = [d.meta[r["id"]]["fields"] for r in d.train]
    abbreviated = sum(f["written_street"] != f["street"].split(" ", 1)[1] for f in fields)
    assert 0.2 <= abbreviated / len(d.train) <= 0.6
    d = gen("classify_json")
    two_products = sum(len(d.meta[r["id"]]["entities"]) == 4 for r in d.train)
    assert two_products / len(d.train) >= 0.15


# ------------------------------------------------------------------------------------------------------------------
# Files and CLI


def test_write_task_files(tmp_path):
    d = gen("rewrite_format")
    paths = write_task(d, tmp_path / "out")
    rows = {k: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] for k, p in paths.items()}
    assert rows["train"] == d.train and rows["eval"] == d.eval
    assert rows["eval"] == rows["eval_seen"] + rows["eval_unseen"]
    assert {r["slice"] for r in rows["eval_unseen"]} == {"unseen"}


def test_cli_prints_counts_and_samples(tmp_path):
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli_main(["--task", "extract_entities", "--out", str(tmp_path), "--seed", "0"]) == 0
    out = buf.getvalue()
    d = gen("extract_entities")
    assert re.search(rf"train\s+{len(d.train)} examples", out)
    assert re.search(r"eval unseen\s+100 examples", out) and "answer chars mean" in out
    assert out.count("[extract_entities-train-") == 2 and out.count("[extract_entities-unseen-") == 2
    assert (tmp_path / "eval_unseen.jsonl").exists()


def test_schedule_chat_asks_for_what_is_missing_and_confirms_normalised():
    d = gen("schedule_chat")
    missing = Counter()
    for r in d.train + d.eval:
        f, msgs = d.meta[r["id"]]["fields"], r["messages"]
        missing[f["missing"]] += 1
        h, m = map(int, f["time"].split(":"))
        assert f["time_text"] in schedule_chat.time_forms(h, m) and f["day_text"] in schedule_chat.day_forms(f["day"])
        assert answer(r) == f"Booked the {f['topic']} with {f['person']} on {f['day']} at {f['time']}."
        said = " ".join(user_texts(r)).lower()
        assert f["person"].lower() in said and f["topic"] in said
        assert f["time_text"].lower() in said and f["day_text"].lower() in said
        if f["missing"] == "none":
            assert len(msgs) == 3
        else:  # the question names what is missing, then the user's reply gives it
            assert len(msgs) == 5 and msgs[2]["content"] == schedule_chat.ASK[f["missing"]].format(Day=f["day"])
            assert f["time_text"].lower() in msgs[3]["content"].lower()
    assert set(missing) == {"none", "time", "both"} and max(missing.values()) - min(missing.values()) <= 2
