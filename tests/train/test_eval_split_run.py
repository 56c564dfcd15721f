"""data.eval_split: `shipsft train` holds out the split init would (whole sentence patterns here), writes both parts
into the run folder, trains on the one and scores the other as a suite, and the run's config.yaml says so; the
combinations it cannot serve are start-up errors."""
from __future__ import annotations

import json

import pytest
import yaml
from patterns_data import records, templated

from helpers import save_tiny_model
from shipsft.config import load_config
from shipsft.data.formats import load_examples
from shipsft.data.skeleton import prompt_and_answers, seen_patterns
from shipsft.errors import ConfigError


@pytest.mark.slow
def test_training_holds_out_whole_patterns_and_records_the_split(tmp_path):
    from shipsft.train.run import run_train

    texts, _ = templated(240)
    (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(texts)))
    model = save_tiny_model(tmp_path / "tiny-model")
    cfg = {"model": {"path": str(model)}, "data": {"train": "tickets.jsonl", "eval_split": {"size": 50}},
           "train": {"max_steps": 1, "batch_size": 8, "precision": "fp32"},
           "eval": {"gates": [{"metric": "json_valid", "op": ">=", "value": 0}], "kl_to_base": False,
                    "forgetting_probe": False},
           "output": {"dir": str(tmp_path / "runs"), "name": "t"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert run_train(load_config(tmp_path / "c.yaml"), config_path=tmp_path / "c.yaml", skip_audit=True) == 0
    run = tmp_path / "runs" / "t"
    saved = load_config(run / "config.yaml")
    assert saved.data.eval_split is None and saved.data.train == [str(run / "split" / "train.jsonl")]
    suite = saved.eval.suites[0]
    assert (suite.name, suite.data, suite.metrics) == ("heldout", str(run / "split" / "eval.jsonl"),
                                                       ["json_valid", "json_field_match", "exact_match"])
    assert saved.eval.select_metric == "heldout/json_field_match"
    train = load_examples([run / "split" / "train.jsonl"], "auto", "error", None, False).examples
    held = load_examples([run / "split" / "eval.jsonl"], "auto", "error", None, False).examples
    assert len(train) + len(held) == 240 and len(held) == 60  # 3 whole patterns of 20 (one per label)
    assert not any(seen_patterns([prompt_and_answers(e) for e in train], [prompt_and_answers(e) for e in held]))
    promo = json.loads((run / "promotion.json").read_text())
    assert promo["select_metric"] == "heldout/json_field_match"  # every eval example is unseen: no slices


@pytest.mark.parametrize("data, says", [
    ({"sources": [{"path": "a.jsonl"}], "eval_split": {}}, "data.eval_split splits data.train, and there is a "
                                                           "mixture"),
    ({"eval_split": {}}, "data.eval_split splits data.train, and there is none"),
    ({"train": "a.jsonl", "format": "text", "eval_split": {}}, "data.eval_split needs answers to score"),
])
def test_what_eval_split_cannot_serve_is_a_startup_error(tmp_path, data, says):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": data}))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml")
    assert any(says in line for line in e.value.lines), e.value.lines


def test_eval_settings_need_a_suite_or_a_split(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    gates = {"gates": [{"metric": "exact_match", "value": 0.5}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"train": "a.jsonl", "eval_split": {}}, "eval": gates}))
    assert load_config(tmp_path / "c.yaml").eval.gates[0].metric == "exact_match"  # the split's suite reads it
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"train": "a.jsonl", "eval_split": {}}, "eval": {
        "suites": [{"name": "heldout", "data": "a.jsonl"}]}}))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml")
    assert any("already has a suite named 'heldout'" in line for line in e.value.lines)
