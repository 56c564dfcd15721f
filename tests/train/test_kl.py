"""KL-regularised SFT (train/kl.py): the KL term and its gradient against a hand computation, zero at step 0 (policy ==
reference), the chunked form equal to full logits, and the loop's loss = CE + kl_coef x KL over the step's trained
tokens (split into micro-batches or not)."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from helpers import cfg_for, conversations, examples_for, fit_run, rows_for, tiny_model, tiny_tokenizer
from shipsft.config import MethodConfig, RunConfig
from shipsft.data.labels import IGNORE_INDEX
from shipsft.data.pack import collate
from shipsft.model.load import apply_method
from shipsft.train.kl import ADAPTER, batch_ce_kl_sums, linear_kl_sum, reference_for
from shipsft.train.loss import batch_ce_sum


def test_kl_and_gradient_of_one_position_by_hand():
    """h = [1, 0] through W = [[1, 0], [0, 1], [0, 0]] gives logits [1, 0, 0]; the reference logits are all 0
    (uniform q = 1/3). KL = sum_v p_v log(3 p_v), dKL/dz_v = p_v (log(3 p_v) - KL), dKL/dh = dKL/dz @ W."""
    e = math.e
    p = [e / (e + 2), 1 / (e + 2), 1 / (e + 2)]
    kl = sum(pv * math.log(3 * pv) for pv in p)  # 0.12328...
    dz = [pv * (math.log(3 * pv) - kl) for pv in p]
    head = torch.nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    h = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    got = linear_kl_sum(h, head, torch.zeros(1, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64), None)
    got.backward()
    assert got.item() == pytest.approx(kl, rel=1e-12) and round(kl, 5) == 0.12328
    assert h.grad.tolist()[0] == pytest.approx([dz[0], dz[1]], rel=1e-12)
    # dKL/dW_v = dz_v * h: only the first column is non-zero
    assert head.weight.grad[:, 0].tolist() == pytest.approx(dz, rel=1e-12)
    assert head.weight.grad[:, 1].tolist() == [0.0, 0.0, 0.0]


def batch_of(n: int = 6):
    rows = rows_for(conversations(n, 3), max_length=128)
    return {k: v for k, v in collate(rows, tiny_tokenizer().pad_token_id).items() if torch.is_tensor(v)}


def full_logits_kl(model, reference, batch) -> torch.Tensor:
    """The same quantity from full logits, written plainly: sum over trained positions of KL(p || q)."""
    keep = batch["labels"] != IGNORE_INDEX
    kw = dict(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    logp = torch.log_softmax(model(**kw).logits[keep], -1)
    with torch.no_grad():
        if reference == ADAPTER:
            model.eval()
            with model.disable_adapter():
                ref = model(**kw).logits[keep]
            model.train()
        else:
            ref = reference(**kw).logits[keep]
    return (logp.exp() * (logp - torch.log_softmax(ref, -1))).sum()


def lora_model(perturb: bool, lm_head: bool = False):
    method = MethodConfig.model_validate({"name": "lora", "lora": {
        "r": 4, "alpha": 8, **({"modules_to_save": ["lm_head"]} if lm_head else {})}})
    model = apply_method(method, tiny_model(seed=1).double(), False)
    if perturb:  # move the policy away from the base: LoRA B starts at zero (KL 0), so set it
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name or ("modules_to_save" in name and "lm_head" in name):
                    p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)
    return model.train()


@pytest.mark.parametrize("lm_head", [False, True])
def test_chunked_kl_and_gradient_equal_full_logits_with_the_adapter_off(lm_head):
    model = lora_model(perturb=True, lm_head=lm_head)
    batch = batch_of()
    want = full_logits_kl(model, ADAPTER, batch)
    want.backward()
    want_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ce, kl = batch_ce_kl_sums(model, batch, ADAPTER, chunk_rows=7)  # several chunks, the last one partial
    kl.backward()
    assert kl.item() > 1e-3 and kl.item() == pytest.approx(want.item(), rel=1e-9)
    assert ce.item() == pytest.approx(batch_ce_sum(model, batch).item(), rel=1e-12)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, want_grads[n], rtol=1e-8, atol=1e-12)
    assert model.training  # the base pass ran in eval mode and switched back


def test_kl_is_exactly_zero_at_step_zero():
    """A fresh LoRA adapter (B = 0) leaves the model equal to its base: KL and its gradient are exactly 0."""
    model = lora_model(perturb=False)
    batch = batch_of()
    ce, kl = batch_ce_kl_sums(model, batch, ADAPTER)
    kl.backward(retain_graph=True)
    assert kl.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    ce.backward()
    assert any(p.grad is not None and p.grad.any() for p in model.parameters())  # the CE does move it


def test_full_finetuning_against_a_frozen_copy():
    model = tiny_model(seed=2).double()
    base = copy.deepcopy(model)
    reference = reference_for("full", model, lambda: base)
    assert reference is base and not reference.training and not any(p.requires_grad for p in reference.parameters())
    batch = batch_of()
    assert batch_ce_kl_sums(model, batch, reference)[1].item() == 0.0
    with torch.no_grad():
        model.get_output_embeddings().weight.add_(0.02)
        model.model.layers[0].mlp.up_proj.weight.mul_(1.1)
    want = full_logits_kl(model, reference, batch)
    want.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    kl = batch_ce_kl_sums(model, batch, reference, chunk_rows=5)[1]
    kl.backward()
    assert kl.item() == pytest.approx(want.item(), rel=1e-9) and kl.item() > 0
    for p, g in zip(model.parameters(), want_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-8, atol=1e-12)


def test_lora_reference_is_the_adapter_and_needs_peft():
    assert reference_for("lora", lora_model(perturb=False)) == ADAPTER
    with pytest.raises(TypeError, match="peft"):
        reference_for("lora", tiny_model())


def test_loop_logs_ce_and_kl_normalised_by_the_step(tmp_path):
    """loss = loss_ce + kl_coef x loss_kl each step; step 1 has KL 0 (and so trains exactly like kl_coef 0); the
    split into micro-batches does not change the KL (one denominator per optimizer step)."""
    examples = examples_for(conversations(48))
    start = lora_model(perturb=False)
    runs = {}
    for name, coef, micro in (("plain", 0.0, 4096), ("kl", 0.5, 4096), ("kl-micro", 0.5, 64)):
        cfg = cfg_for(tmp_path / name, method={"name": "lora", "lora": {"r": 4, "alpha": 8}}, data={"max_length": 64},
                      train={"batch_size": 16, "max_steps": 3, "precision": "fp32", "kl_coef": coef,
                             "micro_batch_tokens": micro},
                      optim={"lr": 5e-2, "schedule": "constant", "warmup_steps": 0})
        runs[name] = fit_run(cfg, copy.deepcopy(start), tiny_tokenizer(), examples, None, tmp_path / name).history
    plain, kl, micro = runs["plain"], runs["kl"], runs["kl-micro"]
    assert "loss_kl" not in plain[0]
    assert kl[0]["loss_kl"] == 0.0 and kl[0]["loss"] == plain[0]["loss"]
    assert kl[1]["loss_ce"] == pytest.approx(plain[1]["loss"], rel=1e-9)  # the same weights after step 1
    assert kl[1]["loss_kl"] > 0
    for rec in kl + micro:
        assert rec["loss"] == pytest.approx(rec["loss_ce"] + 0.5 * rec["loss_kl"], rel=1e-12)
    assert micro[0]["micro_batches"] > 1
    for a, b in zip(kl, micro):
        assert b["loss_kl"] == pytest.approx(a["loss_kl"], rel=1e-9, abs=1e-15)
        assert b["loss_ce"] == pytest.approx(a["loss_ce"], rel=1e-9)


def test_kl_coef_config():
    assert RunConfig().train.kl_coef == 0.0
    with pytest.raises(Exception, match="fsdp2"):
        RunConfig.model_validate({"train": {"kl_coef": 0.1, "distributed": "fsdp2"}})
    with pytest.raises(Exception, match="greater than or equal to 0"):
        RunConfig.model_validate({"train": {"kl_coef": -1}})
