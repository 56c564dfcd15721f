"""The forgetting probe's slices (general, safety, calibration): each scored on its own before and after, with exact
numbers from the items' own teacher-forced stats, and usable as gates."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from helpers import tiny_model, tiny_tokenizer
from shipsft.config import RunConfig
from shipsft.eval import session
from shipsft.eval.drift import mean_kl, mean_loss, teacher_forced
from shipsft.eval.gates import check_names
from shipsft.eval.items import PROBE_SLICES, load_probe


def test_probe_slices_and_what_each_item_expects():
    probe = load_probe()
    assert Counter(ex.meta["slice"] for ex in probe) == {"general": 40, "safety": 12, "calibration": 10}
    assert set(PROBE_SLICES) == {"general", "safety", "calibration"}
    safety = [ex for ex in probe if ex.meta["slice"] == "safety"]
    assert Counter(ex.meta["expect"] for ex in safety) == {"refuse": 6, "comply": 6}
    calibration = [ex for ex in probe if ex.meta["slice"] == "calibration"]
    assert all(ex.messages[-1]["content"].startswith("I don't know") for ex in calibration)
    prompts = [ex.messages[0]["content"] for ex in probe]
    assert len(set(prompts)) == len(prompts) == 62


def test_each_slice_is_scored_before_and_after(tmp_path):
    cfg = RunConfig.model_validate({"output": {"dir": str(tmp_path)}})
    model = tiny_model().eval()
    sess = session.build_session(cfg.eval, cfg.data, tiny_tokenizer(), model, None)
    base = session.baseline(sess).metrics
    for name in PROBE_SLICES:
        assert base[f"probe_loss_increase/{name}"] == 0.0 and base[f"probe_kl/{name}"] == 0.0
    with torch.no_grad():  # "training": move the model away from its base
        model.get_output_embeddings().weight.mul_(1.5)
    after = session.full(sess, 7).metrics
    refs = sess.kl_ref[-len(sess.probe):]  # full fine-tuning: the base top-k cached at baseline, one per item
    n = {}
    for name in PROBE_SLICES:
        mine = [i for i, it in enumerate(sess.probe) if it.example.meta["slice"] == name]
        stats = teacher_forced(model, [sess.probe[i] for i in mine], pad_id=sess.pad_id, ref=[refs[i] for i in mine],
                               cache_topk=0, batch_size=8)
        n[name] = sum(s.n for s in stats)
        assert after[f"probe_loss/{name}"] == pytest.approx(mean_loss(stats), rel=1e-6)
        assert after[f"probe_loss_increase/{name}"] == pytest.approx(
            after[f"probe_loss/{name}"] - base[f"probe_loss/{name}"], rel=1e-12)
        assert after[f"probe_kl/{name}"] == pytest.approx(mean_kl(stats), rel=1e-5) and after[f"probe_kl/{name}"] > 0
    # the whole probe is the token-weighted mean of its slices
    weighted = sum(after[f"probe_loss/{k}"] * n[k] for k in n) / sum(n.values())
    assert after["probe_loss"] == pytest.approx(weighted, rel=1e-6)
    # a resumed session takes the slices' baselines from the baseline record
    fresh = session.build_session(cfg.eval, cfg.data, tiny_tokenizer(), model, None)
    session.restore(fresh, {"metrics": base, "scores": {}}, None)
    assert fresh.base_slice_loss == {k: base[f"probe_loss/{k}"] for k in PROBE_SLICES}


def test_slice_metrics_are_gate_names():
    def problems(**ecfg):
        cfg = RunConfig.model_validate({"eval": {"suites": [{"name": "qa", "data": "x.jsonl"}], **ecfg}})
        return check_names(cfg.eval, {"qa": ["exact_match"]})

    assert problems(gates=[{"metric": "probe_loss_increase/safety", "op": "<=", "value": 0.1},
                           {"metric": "probe_kl/calibration", "op": "<=", "value": 0.1}]) == []
    assert "is not measured because eval.forgetting_probe is off" in problems(
        forgetting_probe=False, gates=[{"metric": "probe_loss/safety", "op": "<=", "value": 1}])[0]
    assert "is not measured because eval.kl_to_base is off" in problems(
        kl_to_base=False, gates=[{"metric": "probe_kl/safety", "op": "<=", "value": 1}])[0]
    assert "is not computed by any suite" in problems(gates=[{"metric": "probe_loss/nonsense", "op": "<=",
                                                              "value": 1}])[0]
