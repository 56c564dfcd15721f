"""win_rate without a model: verdict parsing, the two-order score, the prompt, the settings, and the no-request path
(tests/cli/test_suite_cmd.py asks a real llama.cpp judge)."""
from __future__ import annotations

import pytest
from helpers import dead_url

from shipsft.config import WIN_RATE_PROMPT, EvalConfig, SuiteConfig
from shipsft.data.types import Example
from shipsft.errors import ConfigError
from shipsft.eval.items import EvalItem
from shipsft.eval.judge import Comparison, Judge, endpoint, fill, parse_verdict, question_text, with_pairwise
from shipsft.eval.metrics import resolve_metric, resolve_metrics, score_all
from shipsft.eval.suites import SuiteRun, before_after, predictions


def win_rate_config(url: str | None, **kw) -> EvalConfig:
    return EvalConfig(suites=[SuiteConfig(name="s", data="s.jsonl", metrics=["exact_match", "win_rate"])],
                      judge_url=url, **kw)


@pytest.mark.parametrize("reply, verdict", [
    ('{"verdict": "A"}', "A"),
    ('{\n    "verdict": "B"\n}', "B"),
    ('```json\n{"verdict": "tie"}\n```', "tie"),
    ("After careful thought: [[B]]", "B"),
    ("[[C]]", "tie"),  # MT-Bench's tie
    ("A.", "A"),
    (" tie ", "tie"),
    ('The answer "A" is better than "B" in this context.', None),  # what SmolLM2-135M says without response_format
    ('{"verdict": "maybe"}', None),
    ("", None),
])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_both_orders_cancel_position_bias():
    # tuned as answer A first, then as answer B
    assert Comparison("A", "A").score == 0.5  # a judge that always answers A: a tie, whatever the answers
    assert Comparison("B", "B").score == 0.5
    assert Comparison("A", "B").score == 1.0  # picked the tuned answer in both positions
    assert Comparison("B", "A").score == 0.0
    assert Comparison("tie", "B").score == 0.75
    assert Comparison("tie", "tie").score == 0.5
    assert Comparison("A", None).score is None  # one order unparsed: the example does not count


def test_fill_keeps_json_braces_and_the_endpoint_path():
    text = fill(WIN_RATE_PROMPT, question="Q?", answer_a="first", answer_b="second", reference="R")
    assert "[Request]\nQ?\n\n[Answer A]\nfirst\n\n[Answer B]\nsecond" in text
    assert text.endswith('{"verdict": "tie"} if neither is.') and "{answer_a}" not in text
    assert fill("{reference} | {answer_a} {answer_b}", reference="R", answer_a="a", answer_b="b") == "R | a b"
    for url in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/chat/completions"):
        assert endpoint(url) == "http://h:1/v1/chat/completions"


def test_settings_are_checked_at_start_up():
    with pytest.raises(ValueError, match=r"win_rate_prompt: misses \{answer_b\}; names unknown fields \{answer\}"):
        win_rate_config("http://h/v1", win_rate_prompt="{answer_a} vs {answer}")
    with pytest.raises(ValueError, match="eval.judge_concurrency is set but no suite uses the judge metric"):
        EvalConfig(suites=[SuiteConfig(name="s", data="s.jsonl")], judge_concurrency=8)
    with pytest.raises(ConfigError, match="metric 'win_rate' needs eval.judge_url"):
        resolve_metrics(["exact_match", "win_rate"], Judge.of(win_rate_config(None)))
    cfg = win_rate_config("http://127.0.0.1:9/v1", judge_model="grader", judge_concurrency=2)
    judge = Judge.of(cfg)
    assert judge == Judge("http://127.0.0.1:9/v1/chat/completions", "grader", 64, 2, WIN_RATE_PROMPT)
    m = resolve_metric("win_rate", judge)
    assert m.pairwise and m.fn is judge
    assert score_all([m, resolve_metric("exact_match")], "Paris", "paris") == {"exact_match": 1.0}  # not per answer


def _item(k: int, question: str, reference: str) -> EvalItem:
    ex = Example(source=f"s.jsonl:{k}", messages=[{"role": "user", "content": question},
                                                  {"role": "assistant", "content": reference}])
    return EvalItem(ex.source, [], [], [], reference, question, ex)


def test_identical_answers_tie_without_a_request_and_the_baseline_ties_itself():
    metrics = resolve_metrics(["exact_match", "win_rate"], Judge.of(win_rate_config(dead_url())))
    items = [_item(1, "Capital of France?", "Paris"), _item(2, "2+2?", "4")]
    base = SuiteRun(["Paris", "5"], [{"exact_match": 1.0}, {"exact_match": 0.0}], {"exact_match": 0.5})
    own = with_pairwise(metrics, items, base, base.outputs)  # the baseline against itself: no request is made
    assert [s["win_rate"] for s in own.scores] == [0.5, 0.5] and own.metrics == {"exact_match": 0.5, "win_rate": 0.5}
    assert own.details == [{"win_rate": {"tuned_as_a": "tie", "tuned_as_b": "tie", "score": 0.5,
                                         "same_answer": True}}] * 2
    tuned = SuiteRun([" Paris", "4"], [{"exact_match": 1.0}, {"exact_match": 1.0}], {"exact_match": 1.0})
    with pytest.raises(ConfigError, match="judge at .* failed"):  # a different answer must be judged
        with_pairwise(metrics, items, tuned, base.outputs)
    rows = before_after("s", own.scores, own.scores)
    assert [(r["metric"], r["base"], r["tuned"], r["delta"]) for r in rows] == [
        ("exact_match", 0.5, 0.5, 0.0), ("win_rate", 0.5, 0.5, 0.0)]
    assert predictions("s", items, own, base)[0]["judge"]["win_rate"]["same_answer"] is True
    unchanged = resolve_metrics(["exact_match"])
    assert with_pairwise(unchanged, items, base, ["x", "y"]) is base  # no pairwise metric: nothing to do


def test_the_judge_reads_the_conversation_before_the_answer():
    one = _item(1, "Capital of France?", "Paris")
    assert question_text(one) == "Capital of France?"
    ex = Example(source="s.jsonl:2", messages=[
        {"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "And of Spain?"},
        {"role": "assistant", "content": "Madrid"}])
    many = EvalItem(ex.source, [], [], [], "Madrid", "", ex)
    assert question_text(many) == ("system: Answer in one word.\n\nuser: Capital of France?\n\nassistant: Paris\n\n"
                                   "user: And of Spain?")
