"""Seen vs unseen sentence patterns in every eval: a suite holding both kinds is also scored on each slice
(`<suite>.seen/...`, `<suite>.unseen/...`) with bootstrap CIs, predictions carry their slice, gates / selection /
early stopping read the unseen slice (eval.pattern_slice), and a training run and `shipsft eval RUN` report them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from patterns_data import PATTERNS, examples, records, templated
from typer.testing import CliRunner

from helpers import save_tiny_model
from shipsft.config import EvalConfig
from shipsft.eval import gates
from shipsft.eval.items import EvalItem
from shipsft.eval.metrics import aggregate
from shipsft.eval.suites import Suite, SuiteRun, mark_patterns, pattern_rows, predictions, suite_metrics

TRAIN_PATTERNS = {k: v[:3] for k, v in PATTERNS.items()}
NEW_PATTERNS = {k: v[3:] for k, v in PATTERNS.items()}


def eval_texts():
    """4 eval examples of trained patterns, then 4 of new ones."""
    return (templated(4, seed=2, patterns=TRAIN_PATTERNS)[0] + templated(4, seed=3, patterns=NEW_PATTERNS)[0])


def suite_of(texts) -> Suite:
    items = [EvalItem(ex.source, [], [], [], ex.messages[-1]["content"], "", ex) for ex in examples(texts, "e.jsonl")]
    return Suite("heldout", items, [], 8)


def test_a_suite_with_both_kinds_is_scored_on_each_slice():
    suite = suite_of(eval_texts())
    mark_patterns([suite], examples(templated(90, seed=1, patterns=TRAIN_PATTERNS)[0]))
    assert suite.patterns == ["seen"] * 4 + ["unseen"] * 4 and suite.sliced
    scores = [{"exact_match": v} for v in (1, 1, 1, 0, 0, 1, 0, 0)]
    run = SuiteRun(["out"] * 8, scores, aggregate(scores))
    assert suite_metrics(suite, run) == {"heldout/exact_match": 0.5, "heldout.seen/exact_match": 0.75,
                                         "heldout.unseen/exact_match": 0.25}
    base = [{"exact_match": 0.0}] * 8
    rows = pattern_rows(suite, scores, base)
    assert [(r["slice"], r["n"], r["tuned"], r["base"], r["delta"]) for r in rows] == [
        ("seen", 4, 0.75, 0.0, 0.75), ("unseen", 4, 0.25, 0.0, 0.25)]
    assert all(r["tuned_lo"] <= r["tuned"] <= r["tuned_hi"] and r["lo"] <= r["delta"] <= r["hi"] for r in rows)
    # the unseen four are written in three patterns, the first and the last in one: the CI resamples patterns, so a
    # resample may hold only the pattern of the one right answer (3 times: 1/27 of the resamples, over 2.5%)
    assert suite.clusters[4:] == [4, 5, 6, 4]
    assert rows[1]["tuned_lo"] == 0.0 and rows[1]["tuned_hi"] == 1.0
    preds = predictions("heldout", suite.items, run, None, suite.patterns, suite.clusters)
    assert [p["pattern"] for p in preds] == suite.patterns
    assert [p["pattern_cluster"] for p in preds] == suite.clusters
    # one kind only: no slices
    one = suite_of(eval_texts()[:4])
    mark_patterns([one], examples(templated(90, seed=1, patterns=TRAIN_PATTERNS)[0]))
    assert not one.sliced and pattern_rows(one, scores[:4]) == []
    assert suite_metrics(one, SuiteRun([], scores[:4], aggregate(scores[:4]))) == {"heldout/exact_match": 0.75}


def ecfg(**kw) -> EvalConfig:
    return EvalConfig.model_validate({"suites": [{"name": "heldout", "data": "h.jsonl"},
                                                 {"name": "other", "data": "o.jsonl"}], **kw})


def test_gates_selection_and_early_stopping_read_the_unseen_slice():
    cfg = ecfg(gates=[{"metric": "exact_match", "value": 0.5}, {"metric": "kl_to_base", "op": "<=", "value": 1},
                      {"metric": "other/exact_match", "value": 0.1}, {"metric": "heldout.seen/exact_match",
                                                                        "value": 0.1}],
               early_stopping={"metric": "heldout/json_field_match/category"})
    sliced = gates.for_slices(cfg, ["heldout"])
    assert sliced.select_metric == "heldout.unseen/exact_match"  # null: the first suite's first metric
    assert [g.metric for g in sliced.gates] == ["heldout.unseen/exact_match", "kl_to_base", "other/exact_match",
                                                "heldout.seen/exact_match"]
    assert sliced.early_stopping.metric == "heldout.unseen/json_field_match/category"
    assert gates.for_slices(cfg.model_copy(update={"pattern_slice": "all"}), ["heldout"]) == cfg.model_copy(
        update={"pattern_slice": "all"})
    assert gates.for_slices(cfg, []) == cfg
    # two checkpoints: the first is better on the whole suite, the second on the unseen slice
    evals = [{"step": 1, "metrics": {"heldout/exact_match": 0.9, "heldout.seen/exact_match": 1.0,
                                     "heldout.unseen/exact_match": 0.5, "kl_to_base": 0.1, "other/exact_match": 1}},
             {"step": 2, "metrics": {"heldout/exact_match": 0.85, "heldout.seen/exact_match": 0.9,
                                     "heldout.unseen/exact_match": 0.7, "kl_to_base": 0.1, "other/exact_match": 1}}]
    plain = ecfg()
    ckpts = {1: Path("c1"), 2: Path("c2")}
    assert gates.choose(plain, evals, ckpts, Path("final")).step == 1
    chosen = gates.choose(gates.for_slices(plain, ["heldout"]), evals, ckpts, Path("final"))
    assert (chosen.step, chosen.select_metric, chosen.value) == (2, "heldout.unseen/exact_match", 0.7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the production loop on a tiny model whose eval suite holds 4 trained and 4 new patterns."""
    from shipsft.config import load_config
    from shipsft.train.run import run_train

    root = tmp_path_factory.mktemp("patterns")
    model = save_tiny_model(root / "tiny-model")
    for name, texts in (("train", templated(48, seed=1, patterns=TRAIN_PATTERNS)[0]), ("eval", eval_texts())):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(texts)))
    cfg = {"model": {"path": str(model)}, "data": {"train": "train.jsonl"},
           "train": {"max_steps": 2, "batch_size": 24, "precision": "fp32"},
           "eval": {"suites": [{"name": "heldout", "data": "eval.jsonl", "max_new_tokens": 4,
                                "metrics": ["exact_match", "json_valid"]}],
                    "gates": [{"metric": "json_valid", "op": ">=", "value": 0}],
                    "kl_to_base": False, "forgetting_probe": False},
           "output": {"dir": str(root / "runs"), "name": "t"}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert run_train(load_config(root / "config.yaml"), config_path=root / "config.yaml", skip_audit=True) == 0
    return root


def test_a_training_run_reports_the_slices_and_selects_on_the_unseen_one(trained):
    from shipsft.runs.jsonio import read_json, read_jsonl
    from shipsft.runs.predictions import read_predictions

    run = trained / "runs" / "t"
    full = [e for e in read_jsonl(run / "eval.jsonl") if e["kind"] == "full"][-1]
    assert {"heldout.seen/exact_match", "heldout.unseen/json_valid", "heldout/exact_match"} <= set(full["metrics"])
    rows = read_predictions(run / "predictions.jsonl", kind="full", step=full["step"])
    assert [r["pattern"] for r in rows] == ["seen"] * 4 + ["unseen"] * 4
    assert full["metrics"]["heldout.unseen/json_valid"] == pytest.approx(
        sum(r["scores"]["json_valid"] for r in rows[4:]) / 4)
    promo = read_json(run / "promotion.json")
    assert promo["select_metric"] == "heldout.unseen/exact_match"
    assert [g["metric"] for g in promo["gates"]] == ["heldout.unseen/json_valid"]
    assert [(r["slice"], r["metric"], r["n"]) for r in promo["patterns"]] == [
        ("seen", "exact_match", 4), ("seen", "json_valid", 4), ("unseen", "exact_match", 4),
        ("unseen", "json_valid", 4)]
    html = (run / "report.html").read_text()
    assert "Seen vs unseen sentence patterns" in html and "<td>heldout.unseen</td><td>json_valid</td><td>4</td>" in html
    audit = read_json(run / "audit.json")
    assert any(f["check"] == "contamination.patterns" and f["severity"] == "warning"  # 4 of 8: half
               for f in audit["findings"])


def test_shipsft_eval_of_a_run_prints_the_slices_with_cis(trained, monkeypatch):
    from shipsft.cli.console import console
    from shipsft.cli.main import app

    monkeypatch.setattr(console, "width", 160)  # the console is made once, at the width of whoever imported it first

    run = trained / "runs" / "t"
    res = CliRunner().invoke(app, ["eval", str(run), "--out", str(trained / "out" / "eval.json")],
                             env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert "sentence patterns seen in training vs unseen" in res.output
    assert "heldout.unseen/exact_match" in res.output and "heldout.seen/json_valid" in res.output
    out = json.loads((trained / "out" / "eval.json").read_text())
    assert [(r["slice"], r["metric"]) for r in out["patterns"]][:2] == [("seen", "exact_match"), ("seen", "json_valid")]
    assert all({"tuned_lo", "tuned_hi", "delta", "lo", "hi"} <= set(r) for r in out["patterns"])
    rows = [json.loads(x) for x in (trained / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["pattern"] for r in rows] == ["seen"] * 4 + ["unseen"] * 4
