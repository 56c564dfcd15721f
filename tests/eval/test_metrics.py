"""Exact tests for the task metrics, the judge hook (against a real HTTP server on 127.0.0.1) and the statistics."""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from shipsft.config import EvalConfig, SuiteConfig
from shipsft.data.types import Example
from shipsft.errors import ConfigError
from shipsft.eval.judge import Judge
from shipsft.eval.metrics import (
    aggregate,
    bootstrap_mean,
    lcs_length,
    normalize,
    paired_bootstrap,
    resolve_metric,
    resolve_metrics,
    rouge_l,
    score_all,
    spearman,
    token_f1,
)


def score(name, pred, ref, ex=None):
    return score_all([resolve_metric(name)], pred, ref, ex)


def test_normalize():
    assert normalize("  The  Capital\n is PARIS. ") == "the capital is paris"
    assert normalize("«Paris»!?") == "paris"
    assert normalize("...") == ""
    assert normalize("U.S.A.") == "u.s.a"  # only the ends lose punctuation


@pytest.mark.parametrize(
    "name,pred,ref,expected",
    [
        ("exact_match", " Paris. ", "paris", 1.0),
        ("exact_match", "Paris, France", "Paris", 0.0),
        ("exact_match_raw", "Paris", "Paris", 1.0),
        ("exact_match_raw", "Paris.", "Paris", 0.0),
        ("contains", "I think it is PARIS, France.", "Paris", 1.0),
        ("contains", "Lyon", "Paris", 0.0),
        ("regex:^\\d{4}-\\d{2}-\\d{2}$", "2024-01-31", "", 1.0),
        ("regex:^\\d{4}-\\d{2}-\\d{2}$", "Jan 31", "", 0.0),
        ("json_valid", '{"a": 1}', "", 1.0),
        ("json_valid", '```json\n{"a": 1}\n```', "", 1.0),
        ("json_valid", "{'a': 1}", "", 0.0),
        ("json_valid", '{"a": 1} trailing', "", 0.0),
    ],
)
def test_simple_metrics(name, pred, ref, expected):
    assert score(name, pred, ref) == {name: expected}


def test_json_field_match_per_field():
    ref = '{"name": "Alice", "age": 31, "city": "Paris"}'
    got = score("json_field_match", '{"name": "Alice", "age": 30}', ref)
    assert got == {"json_field_match": pytest.approx(1 / 3), "json_field_match/name": 1.0,
                   "json_field_match/age": 0.0, "json_field_match/city": 0.0}
    assert score("json_field_match", "not json", ref)["json_field_match"] == 0.0
    with pytest.raises(ConfigError, match="non-empty JSON object"):
        score("json_field_match", "{}", "plain text", Example(source="suite.jsonl:3"))
    # aggregation: a field only counts the examples whose reference has it
    rows = [score("json_field_match", '{"a": 1, "b": 2}', '{"a": 1, "b": 3}'),
            score("json_field_match", '{"a": 1}', '{"a": 1}')]
    agg = aggregate(rows)
    assert agg["json_field_match/a"] == 1.0 and agg["json_field_match/b"] == 0.0
    assert agg["json_field_match"] == pytest.approx((0.5 + 1.0) / 2)


def call(name: str, **args) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}) + "</tool_call>"


def test_tool_call_match_scores_name_and_each_argument():
    ref = call("book_table", restaurant="Saffron Lounge", people=2, time="16:45")
    tm = lambda pred, r=ref: score("tool_call_match", pred, r)["tool_call_match"]  # noqa: E731
    assert tm(ref) == 1.0
    # Llama's "parameters" wrapper, 2.0 for 2: the same call
    assert tm('{"name": "book_table", "parameters": {"restaurant": "Saffron Lounge", "people": 2.0, '
              '"time": "16:45"}}') == 1.0
    # "Two" for 2 and no time: name + restaurant right of (name + 3 arguments)
    assert tm(call("book_table", restaurant="Saffron Lounge", people="Two")) == pytest.approx(2 / 4)
    # an invented argument counts against: (name + restaurant + people + time) of (name + 4 argument names)
    assert tm(call("book_table", restaurant="Saffron Lounge", people=2, time="16:45", note="x")) == pytest.approx(4 / 5)
    assert tm(call("set_alarm", restaurant="Saffron Lounge", people=2, time="16:45")) == 0.0  # another function
    assert tm("I booked it.") == 0.0 and tm(ref.replace("</tool_call>", "")[:-2]) == 0.0  # no call; cut-off JSON
    # two calls, either order; one of two found = half; an extra call dilutes
    two = call("a", x=1) + "\n" + call("b", y=True)
    assert tm(call("b", y=True) + call("a", x=1), two) == 1.0
    assert tm(call("a", x=1), two) == 0.5
    assert tm(call("a", x=1) + call("a", x=2), call("a", x=1)) == 0.5
    assert tm(call("b", y=1), call("b", y=True)) == 0.5  # 1 is not true
    # the answer after a tool result has no call: exact match (normalised)
    assert tm("Your table is booked.", "your table is booked") == 1.0 and tm(ref, "Your table is booked.") == 0.0


def test_token_f1_squad():
    assert token_f1("The Eiffel Tower!", "eiffel tower") == 1.0  # articles and punctuation dropped
    # pred tokens [paris, france, capital], ref [paris]: P=1/3, R=1, F1=0.5
    assert token_f1("Paris France capital", "Paris") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("x", "y") == 0.0
    # repeated tokens count with multiplicity: pred [a1 a1 b], ref [a1 b b] overlap 2 -> P=R=2/3
    assert token_f1("a1 a1 b", "a1 b b") == pytest.approx(2 / 3)


def test_rouge_l():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    # pred 4 tokens, ref 4 tokens, LCS 3 -> P=R=3/4
    assert rouge_l("the cat sat down", "the cat lay down") == pytest.approx(0.75)
    # pred "police killed the gunman" vs ref "police kill the gunman": LCS 3 of 4 each
    assert rouge_l("police killed the gunman", "Police kill the gunman.") == pytest.approx(0.75)
    assert rouge_l("", "") == 1.0 and rouge_l("a", "b") == 0.0


def test_custom_metric_and_errors(tmp_path, monkeypatch):
    (tmp_path / "my_metrics.py").write_text(
        "def length_ratio(prediction, reference, example):\n"
        "    return min(len(prediction), len(reference)) / max(len(prediction), len(reference))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert score("my_metrics:length_ratio", "abcd", "ab") == {"my_metrics:length_ratio": 0.5}
    with pytest.raises(ConfigError) as e:
        resolve_metrics(["no_such_module_xyz:f", "my_metrics:missing", "exact_mach", "regex:("])
    text = "\n".join(e.value.lines)
    assert "cannot import module 'no_such_module_xyz'" in text
    assert "has no function 'missing'" in text
    assert "did you mean 'exact_match'" in text
    assert "invalid regular expression" in text
    sys.modules.pop("my_metrics", None)


class _Judge(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.seen.append((self.path, body))
        prompt = body["messages"][-1]["content"]
        # grade like a strict judge: full marks when the candidate contains the reference
        ref = prompt.split("Reference answer:\n")[1].split("\n\n")[0]
        cand = prompt.split("Candidate answer:\n")[1]
        content = "Score: 1" if ref.lower() in cand.lower() else "0.25"
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def judge_at(url: str, model: str = "judge") -> Judge:
    """The judge settings a config with this endpoint resolves to (every other judge setting at its default)."""
    return Judge.of(EvalConfig(suites=[SuiteConfig(name="s", data="s.jsonl", metrics=["judge"])], judge_url=url,
                               judge_model=model))


def test_judge_against_local_server():
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        judge = resolve_metric("judge", judge_at(url, "grader"))
        ex = Example(source="s.jsonl:1", messages=[{"role": "user", "content": "Capital of France?"},
                                                   {"role": "assistant", "content": "Paris"}])
        assert score_all([judge], "It is Paris.", "Paris", ex) == {"judge": 1.0}
        assert score_all([judge], "Lyon", "Paris", ex) == {"judge": 0.25}
        path, body = _Judge.seen[0]
        assert path == "/v1/chat/completions" and body["model"] == "grader" and body["temperature"] == 0
        assert "Capital of France?" in body["messages"][0]["content"]
    finally:
        server.shutdown()
    with pytest.raises(ConfigError, match="needs eval.judge_url"):
        resolve_metric("judge")
    dead = resolve_metric("judge", judge_at(f"http://127.0.0.1:{server.server_port}"))
    server.server_close()
    with pytest.raises(ConfigError, match="judge at .* failed"):
        dead.fn("a", "b", None)


def test_paired_bootstrap_is_fixed_and_paired():
    base = [0.0] * 50 + [1.0] * 50
    tuned = [1.0] * 100
    d = paired_bootstrap(base, tuned)
    assert (d.base, d.tuned, d.delta) == (0.5, 1.0, 0.5)
    assert d.lo < 0.5 < d.hi and d.lo > 0.35 and d.hi < 0.65
    assert paired_bootstrap(base, tuned) == d  # fixed seed: the same interval every time
    # identical systems: the delta and both ends of the interval are exactly 0 (pairing cancels the noise)
    same = paired_bootstrap([0.3, 0.9, 0.1], [0.3, 0.9, 0.1])
    assert (same.delta, same.lo, same.hi) == (0.0, 0.0, 0.0)


def test_cis_resample_whole_sentence_patterns_when_the_eval_has_them():
    """Examples of one phrasing succeed or fail together: two patterns of 10 examples each, one all right and one all
    wrong, say 0.5 with an interval that spans everything a new pattern could score, not +-0.2."""
    scores, clusters = [1.0] * 10 + [0.0] * 10, [0] * 10 + [7] * 10
    assert bootstrap_mean(scores)[0] == 0.5 and bootstrap_mean(scores)[1] > 0.25  # examples resampled one by one
    assert bootstrap_mean(scores, clusters=clusters) == (0.5, 0.0, 1.0)  # 2 patterns: a resample holds 0, 1 or 2
    d = paired_bootstrap([0.0] * 20, scores, clusters=clusters)
    assert (d.delta, d.lo, d.hi) == (0.5, 0.0, 1.0)
    # unequal patterns: a resample's mean is over its examples (a pattern of 3 weighs 3, one of 1 weighs 1)
    assert bootstrap_mean([1.0, 1.0, 1.0, 0.0], clusters=["a", "a", "a", "b"], n_resamples=4000)[1:] == (0.0, 1.0)
    # one pattern per example is the plain bootstrap, draw for draw
    values = [0.1, 0.9, 0.4, 1.0, 0.0, 0.7, 0.3]
    assert bootstrap_mean(values, clusters=list(range(7))) == bootstrap_mean(values)
    assert paired_bootstrap(values[::-1], values, clusters=[5, 3, 1, 0, 2, 4, 6]) == paired_bootstrap(values[::-1],
                                                                                                       values)


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks [1,2,3.5,3.5] vs y ranks [1,2,3,4] -> rho = 0.9487
    assert spearman([1, 2, 3, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
