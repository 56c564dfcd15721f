"""Optimizers and the LR schedule: the worked schedule example, decay groups, optional optimizers' errors."""
from __future__ import annotations

import pytest
import torch

from helpers import tiny_llama
from shipsft.config import OptimConfig, RunConfig
from shipsft.errors import ConfigError
from shipsft.train.optim import build_optimizers, decay_groups, set_lr
from shipsft.steps.schedule import lr_at as _lr_at
from shipsft.steps.schedule import warmup_steps


def lr_at(step, total, warmup, peak, schedule="cosine", min_lr_ratio=0.1):
    optim = {"lr": peak, "schedule": schedule, "warmup_steps": warmup}
    if schedule != "constant":
        optim["min_lr_ratio"] = min_lr_ratio
    return _lr_at(step, total, warmup, OptimConfig(**optim))


def test_schedule_worked_example():
    # T=10 steps, W=2 warmup steps, peak 2e-5, floor 10% of the peak
    T, W, peak = 10, 2, 2e-5
    assert lr_at(0, T, W, peak) == pytest.approx(1e-5, rel=1e-12)  # half the peak, not zero
    assert lr_at(1, T, W, peak) == pytest.approx(2e-5, rel=1e-12)  # last warmup step: the peak
    # step 5: progress 3/8, cosine term 0.5 * (1 + cos(3pi/8)) = 0.69134 -> 2e-5 * (0.1 + 0.9 * 0.69134)
    assert lr_at(5, T, W, peak) == pytest.approx(1.44441e-5, rel=1e-5)
    # step 9: progress 7/8, cosine term 0.03806 -> 2.685e-6, still above the 2e-6 floor
    assert lr_at(9, T, W, peak) == pytest.approx(2.6852e-6, rel=1e-4)
    assert lr_at(9, T, W, peak) > 0.1 * peak
    lrs = [lr_at(s, T, W, peak) for s in range(T)]
    assert lrs[2] == lrs[1] == peak  # decay starts at progress 0 (cosine term 1)
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))  # then strictly decays


def test_linear_and_constant_schedules_and_no_warmup():
    assert lr_at(0, 10, 0, 1.0, "constant") == 1.0 and lr_at(9, 10, 2, 1.0, "constant") == 1.0
    assert lr_at(0, 10, 2, 1.0, "constant") == 0.5
    # linear: progress (s - W) / (T - W); at s = W + (T - W) / 2 it is halfway between peak and floor
    assert lr_at(6, 10, 2, 1.0, "linear", 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(0, 4, 0, 1.0, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_at(2, 4, 0, 1.0, "cosine", 0.0) == pytest.approx(0.5)


def test_warmup_steps_from_ratio_or_explicit():
    o = OptimConfig()
    assert o.warmup_ratio == 0.03 and warmup_steps(o, 100) == 3 and warmup_steps(o, 10) == 1
    o = OptimConfig(warmup_steps=7)
    assert warmup_steps(o, 100) == 7 and warmup_steps(o, 5) == 5


def test_decay_only_on_weight_matrices():
    model = tiny_llama(vocab_size=64, attention_bias=True)
    groups = decay_groups(model.named_parameters(), 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    plain = {names[id(p)] for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert "model.layers.0.self_attn.q_proj.weight" in decayed and "model.embed_tokens.weight" in decayed
    assert "model.layers.0.self_attn.q_proj.bias" in plain and "model.norm.weight" in plain
    assert "model.layers.1.input_layernorm.weight" in plain
    assert not any(n.endswith("bias") or "norm" in n for n in decayed)
    assert len(decayed) + len(plain) == len(list(model.parameters()))


def _one_step(opts, model):
    x = torch.randint(0, 64, (1, 8))
    model(input_ids=x, labels=x).loss.backward()
    for o in opts:
        o.step()


@pytest.mark.parametrize("name", ["adamw", "adafactor", "muon"])
def test_available_optimizers_build_and_step(name):
    model = tiny_llama(vocab_size=64).train()
    cfg = RunConfig.model_validate({"optim": {"name": name, "lr": 1e-3, "weight_decay": 0.01}, "method": {"name": "full"}})
    before = [p.detach().clone() for p in model.parameters()]
    opts = build_optimizers(cfg.optim, model)
    set_lr(opts, 5e-4)
    assert all(g["lr"] == 5e-4 for o in opts for g in o.param_groups)
    _one_step(opts, model)
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed == len(before)
    if name == "muon":  # Muon takes the hidden matrices; embeddings and norms go to an AdamW beside it
        assert isinstance(opts[0], torch.optim.Muon) and isinstance(opts[1], torch.optim.AdamW)
        assert all(p.ndim == 2 for g in opts[0].param_groups for p in g["params"])


@pytest.mark.parametrize("name,package,module", [("lion", "lion-pytorch", "lion_pytorch"),
                                                 ("schedule_free_adamw", "schedulefree", "schedulefree")])
def test_missing_optimizer_package_names_it(name, package, module, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError, installed or not
    cfg = RunConfig.model_validate({"optim": {"name": name}})
    with pytest.raises(ConfigError, match=f"pip install {package}"):
        build_optimizers(cfg.optim, tiny_llama(vocab_size=64))


def test_adamw_8bit_refused_on_cpu():
    cfg = RunConfig.model_validate({"optim": {"name": "adamw_8bit"}})
    with pytest.raises(ConfigError, match="CUDA GPU"):
        build_optimizers(cfg.optim, tiny_llama(vocab_size=64))
