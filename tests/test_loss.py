"""Loss: masked mean (seed 004), exact trained-token counts, chunked linear+CE == textbook CE (value and
gradients), packed == unpacked, and gradient accumulation 4x1 == 1x4."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_llama
from shipsft.data.labels import IGNORE_INDEX, labels_from_mask
from shipsft.data.pack import collate, pack_examples
from shipsft.data.types import Rendered
from shipsft.loss import (batch_ce_sum, linear_ce_sum, masked_mean, neftune_hook, reference_ce_sum,
                          trained_token_count)


def test_masked_mean_reproduces_seed_004_walkthrough():
    ce = torch.tensor([0.10, 2.80, 1.40, 0.20, 0.10, 1.20, 0.90, 0.40])
    mask = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    assert masked_mean(ce, mask).item() == pytest.approx(2.5 / 3, abs=1e-7)  # 0.8333, not the naive 0.8875
    assert ce.mean().item() == pytest.approx(0.8875, abs=1e-7)


def _rendered(lengths_and_masks, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (n, first_trained) in enumerate(lengths_and_masks):
        ids = torch.randint(3, 120, (n,), generator=g).tolist()
        out.append(Rendered(f"t.jsonl:{i + 1}", ids, [t >= first_trained for t in range(n)]))
    return out


def test_trained_token_count_is_exact_after_the_shift():
    # failure mode 2: counting from ids or per row over-counts; the count must equal the mask's targets exactly
    rendered = _rendered([(8, 5), (13, 4), (5, 1), (21, 15)])
    packed = pack_examples(rendered, max_length=32)
    batch = collate(packed.rows, pad_id=0)
    expected = sum(r.n_trained for r in rendered)  # mask[1:]: token 0 can never be a target
    assert expected == 3 + 9 + 4 + 6
    assert trained_token_count(batch["labels"]) == expected
    labels = labels_from_mask(rendered[0].ids, rendered[0].mask)
    assert trained_token_count(torch.tensor(labels)) == 3


@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_linear_ce_matches_full_logits_value_and_grads(with_bias):
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(16, 50, bias=with_bias).double()
    y = torch.randint(0, 50, (37,))
    ours = linear_ce_sum(h, head, y, chunk_rows=8)  # 5 chunks, the last one partial
    ours.backward(torch.tensor(0.5, dtype=torch.float64))
    got = (h.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone() if with_bias else None)
    h.grad = None
    head.zero_grad()
    ref = F.cross_entropy(head(h), y, reduction="sum")
    (ref * 0.5).backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(got[0], h.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], head.weight.grad, rtol=1e-10, atol=1e-12)
    if with_bias:
        torch.testing.assert_close(got[2], head.bias.grad, rtol=1e-10, atol=1e-12)


def test_frozen_head_gets_no_grad_and_no_grad_mode_computes_only_the_value():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 20, bias=False).requires_grad_(False)
    h = torch.randn(10, 8)
    with torch.no_grad():
        v = linear_ce_sum(h, head, torch.randint(0, 20, (10,)), chunk_rows=4)
    assert v.requires_grad is False and torch.isfinite(v)
    h.requires_grad_(True)
    linear_ce_sum(h, head, torch.randint(0, 20, (10,)), chunk_rows=4).backward()
    assert head.weight.grad is None and h.grad is not None


def _batch_from(rendered, max_length, packing=True, pad_id=0):
    return collate(pack_examples(rendered, max_length=max_length, packing=packing).rows, pad_id)


def test_model_loss_matches_reference_cross_entropy_with_grads():
    model = tiny_llama(vocab_size=128).train()
    batch = _batch_from(_rendered([(20, 8), (30, 3), (12, 6)]), max_length=64)
    ours = batch_ce_sum(model, batch, chunk_rows=5)
    ours.backward()
    g_ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = reference_ce_sum(model, batch)
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, p in zip(g_ours, model.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-6)


def test_packed_loss_equals_unpacked_loss():
    # failure modes 4-5: one packed row of three examples == the three examples run one by one
    model = tiny_llama(vocab_size=128)
    rendered = _rendered([(20, 8), (30, 3), (12, 6)])
    packed = _batch_from(rendered, max_length=64)
    assert packed["input_ids"].shape == (1, 62)
    with torch.no_grad():
        one_by_one = sum(float(batch_ce_sum(model, collate(pack_examples([r], 64).rows, 0))) for r in rendered)
        assert float(batch_ce_sum(model, packed)) == pytest.approx(one_by_one, rel=1e-5)
    # and the same loss when the three are padded rows of one batch (pad forms its own position run)
    padded = _batch_from(rendered, max_length=64, packing=False)
    assert padded["input_ids"].shape == (3, 30)
    with torch.no_grad():
        assert float(batch_ce_sum(model, padded)) == pytest.approx(one_by_one, rel=1e-5)


def test_grad_accumulation_4x1_equals_1x4_update():
    # failure modes 1 and 3: four micro-batches of one row give the same AdamW update as one batch of four
    rendered = _rendered([(40, 30), (25, 5), (33, 20), (18, 2)], seed=1)
    rows = pack_examples(rendered, max_length=40, packing=False).rows
    # fp64 so the comparison measures the normalisation, not fp32 summation order (Adam's first step is
    # ~lr * sign(g), which turns a 1e-9 difference in a near-zero gradient into a full lr-sized one)
    base = tiny_llama(vocab_size=128).double().train()
    updated = []
    for micro in ([rows], [[r] for r in rows]):
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batches = [collate(m, 0) for m in micro]
        n_step = sum(trained_token_count(b["labels"]) for b in batches)
        for b in batches:
            (batch_ce_sum(model, b) / n_step).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        updated.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*updated):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert any(not torch.equal(a, p) for a, p in zip(updated[0], base.parameters()))


def test_neftune_noise_only_in_train_mode_and_scaled_by_alpha_over_sqrt_Ld():
    emb = torch.nn.Embedding(10, 32)
    handle = emb.register_forward_hook(neftune_hook(5.0))
    ids = torch.zeros(2, 50, dtype=torch.long)
    clean = emb.weight[0]
    noisy = emb(ids) - clean
    bound = 5.0 / (50 * 32) ** 0.5
    assert noisy.abs().max() <= bound + 1e-7 and noisy.abs().max() > 0.9 * bound
    emb.eval()
    assert torch.equal(emb(ids)[0, 0], clean)
    handle.remove()
    emb.train()
    assert torch.equal(emb(ids)[0, 0], clean)
