"""`shipsft suite build` end to end: trace files in, suite files out that `shipsft eval` reads, and (slow) win_rate
on the failure suite, judged by a real llama.cpp server (tests/judge_server.py) between two models."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from judge_server import judge_server, judge_server_skip_reason, requests_in
from typer.testing import CliRunner

from shipsft.cli.main import app
from shipsft.config import SuiteConfig
from shipsft.eval.items import load_suite_examples
from shipsft.eval.judge import order_score, parse_verdict
from shipsft.model.locate import embedded_gguf
from shipsft.runs.predictions import read_predictions

from helpers import save_tiny_model

NAMES = ["Ann", "Bo", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivo", "Jo"]
PATTERNS = {
    "refund": "Please refund order {n} for {name}, the parcel arrived broken and the box was wet.",
    "track": "Where is my parcel right now? The tracking number is {n} and the name on it is {name}.",
    "address": "I would like to change the delivery address of order {n} to {name} street, house {n}.",
}


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "300"})
    return res.exit_code, res.output


def write_traces(tmp_path):
    rows = []
    for k, label in enumerate(["refund", "track", "address"] * 12):  # 10+ per label: labels
        q = PATTERNS[label].format(n=1000 + 37 * k, name=NAMES[k % 10])
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": label}],
                     "trace_id": f"t{k}"})
    rows[3]["feedback"] = "thumbs_down"  # two failures without a correction, one with
    rows[7]["outcome"] = "bad"
    rows[5].update(feedback="bad", correction="track")
    rows[6]["feedback"] = "good"
    rows.append(dict(rows[0], trace_id="copy"))
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "train.jsonl").write_text(json.dumps({"messages": rows[1]["messages"]}) + "\n")
    return tmp_path / "traces.jsonl"


def test_suite_build_writes_suites_eval_reads(tmp_path):
    traces = write_traces(tmp_path)
    out = tmp_path / "suites"
    code, text = run("suite", "build", traces, "--train", tmp_path / "train.jsonl", "--out", out, "--size", "9")
    assert code == 0, text
    assert "37 traces: 3 marked bad, 1 good, 33 unrated; 3 prompt patterns" in text
    # train.jsonl holds one track request: every track trace has a sentence pattern training saw (t7, a failure, too)
    assert "dropped 12: leaks into training" in text and "dropped 1: exact duplicate" in text
    assert "dropped 13: not sampled" in text  # 37 - 2 failures - 13 dropped - 9 sampled
    suite = [json.loads(line) for line in (out / "suite.jsonl").read_text().splitlines()]
    assert len(suite) == 9 and {r["label"] for r in suite} == {"refund", "address"}
    assert {r["cluster"] for r in suite} == {0, 2}
    assert all(re.fullmatch(rf"{traces}:\d+", r["trace_source"]) and r["trace_id"] for r in suite)
    config = yaml.safe_load((out / "suites.yaml").read_text())["suites"]
    assert [(s["name"], s["metrics"]) for s in config] == [
        ("traces", ["exact_match"]), ("failures", ["exact_match"]), ("failures_uncorrected", ["win_rate"])]
    for entry in config:  # each file loads as an eval suite: the last assistant turn is the reference
        examples = load_suite_examples(SuiteConfig(**entry), allow_any_role_order=False)
        assert examples and all(ex.messages[-1]["role"] == "assistant" for ex in examples)
    uncorrected = [json.loads(line) for line in (out / "failures_uncorrected.jsonl").read_text().splitlines()]
    assert [(r["trace_id"], r["feedback"], r["rejected"]) for r in uncorrected] == [
        ("t3", "thumbs_down", "refund")]
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(suite) + 1 + len(uncorrected) + len(dropped) == 37  # nothing lost
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["records"] == manifest["traces"] == 37 and manifest["leak_check"] and manifest["seed"] == 0
    # the training data named by a run config (data.train, relative to the config) is checked the same way
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"model": {"path": "smollm2"}, "data": {"train": "train.jsonl"}}))
    code, text = run("suite", "build", traces, "--config", tmp_path / "run.yaml", "--out", tmp_path / "again")
    assert code == 0 and "dropped 12: leaks into training" in text, text


def test_a_bad_feedback_value_is_one_line_with_the_fix(tmp_path):
    traces = write_traces(tmp_path)
    lines = traces.read_text().splitlines()
    lines[4] = json.dumps({**json.loads(lines[4]), "feedback": "so-so"})
    traces.write_text("\n".join(lines) + "\n")
    code, text = run("suite", "build", traces, "--out", tmp_path / "suites")
    assert code == 2 and "Traceback" not in text
    assert f"{traces}:5: 'feedback' is 'so-so', which is neither bad nor good. Fix: use one of" in text
    assert not (tmp_path / "suites").exists()  # nothing half-written


def test_win_rate_mistakes_fail_before_any_model_loads(tmp_path):
    suite = tmp_path / "s.jsonl"
    suite.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": "hello"}]}) + "\n")
    no_model = tmp_path / "no-such-model"  # never loaded: each mistake is caught first
    cases = [
        (["--metric", "win_rate", "--judge-url", "http://127.0.0.1:9/v1"], "win_rate compares the model's answers "
         "with a baseline's, and none is given. Fix: --baseline MODEL"),
        (["--metric", "win_rate", "--baseline", no_model], "metric 'win_rate' needs eval.judge_url"),
        (["--metric", "exact_match", "--judge-url", "http://127.0.0.1:9/v1"],
         "--judge-url / --judge-model are given but no suite is scored by judge or win_rate"),
    ]
    for extra, says in cases:
        code, text = run("eval", no_model, "--suite", suite, *extra)
        assert code == 2 and says in text and "Traceback" not in text, text


@pytest.mark.slow
def test_win_rate_on_the_failure_suite_with_a_real_judge(tmp_path):
    """Two random tiny models answer the failure suite; SmolLM2-135M served by llama.cpp judges each pair in both
    orders. A 135M judge's verdicts say nothing about quality: this checks the plumbing on a real server."""
    reason = judge_server_skip_reason()
    if reason:
        pytest.skip(reason)
    traces = write_traces(tmp_path)
    assert run("suite", "build", traces, "--out", tmp_path / "suites")[0] == 0
    suite = tmp_path / "suites" / "failures_uncorrected.jsonl"
    tuned, base = save_tiny_model(tmp_path / "tuned", seed=1), save_tiny_model(tmp_path / "base", seed=2)
    log = tmp_path / "requests.jsonl"
    with judge_server(embedded_gguf(), log) as url:
        code, text = run("eval", tuned, "--suite", suite, "--baseline", base, "--metric", "win_rate",
                         "--judge-url", url, "--judge-model", "smollm2", "--out", tmp_path / "eval" / "eval.json")
    assert code == 0, text
    preds = read_predictions(tmp_path / "eval" / "predictions.jsonl")
    asked = requests_in(log)
    assert len(preds) == 2 and len(asked) == 4  # two examples, each in both orders
    for p in preds:
        assert p["output"] != p["base_output"]
        orders = [f"[Answer A]\n{p['output']}\n\n[Answer B]\n{p['base_output']}\n\n",  # tuned as A
                  f"[Answer A]\n{p['base_output']}\n\n[Answer B]\n{p['output']}\n\n"]  # then as B
        pair = [[a for a in asked if order in a["request"]["messages"][0]["content"]] for order in orders]
        assert [len(x) for x in pair] == [1, 1]  # each order asked exactly once (the log is in completion order)
        first = pair[0][0]["request"]
        assert first["temperature"] == 0 and first["model"] == "smollm2"
        assert first["response_format"]["json_schema"]["schema"]["properties"]["verdict"]["enum"] == ["A", "B", "tie"]
        verdicts = [parse_verdict(x[0]["reply"]["choices"][0]["message"]["content"]) for x in pair]
        # the grammar makes even a 135M judge answer with a verdict (which one is the model's business: SmolLM2
        # mostly picks answer A whichever it is, the position bias the second order cancels)
        assert all(v in ("A", "B", "tie") for v in verdicts)
        score = (order_score(verdicts[0], "A") + order_score(verdicts[1], "B")) / 2
        assert p["judge"]["win_rate"] == {"tuned_as_a": verdicts[0], "tuned_as_b": verdicts[1], "score": score}
        assert p["scores"]["win_rate"] == score
        assert p["base_scores"] == {"win_rate": 0.5}  # the baseline against itself: a tie, no request
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    row, = result["suites"]["failures_uncorrected"]["rows"]
    tuned = sum(p["scores"]["win_rate"] for p in preds) / 2
    assert (row["metric"], row["n"], row["base"], row["tuned"]) == ("win_rate", 2, 0.5, tuned)
    assert row["delta"] == pytest.approx(tuned - 0.5) and row["lo"] <= row["delta"] <= row["hi"]
