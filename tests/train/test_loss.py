"""Loss: the masked mean of the worked example in docs/architecture.md, exact trained-token counts, chunked
linear+CE == textbook CE (value and gradients), packed == unpacked. (Gradient accumulation 4x1 == 1x4 == 2x2 is
tested through the loop itself: tests/train/test_loop.py.)"""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_llama
from shipsft.data.labels import IGNORE_INDEX, labels_from_mask
from shipsft.data.pack import collate, pack_examples
from shipsft.data.types import Rendered
from shipsft.data.labels import count_trained
from shipsft.train.dist import loss_scale
from shipsft.train.loss import batch_ce_sum, linear_ce_sum, neftune_hook


def reference_ce_sum(model, batch):
    """The textbook computation (full logits, F.cross_entropy with ignore_index): the oracle."""
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def test_masked_mean_of_the_worked_example():
    """Per-token CE 0.10 2.80 1.40 0.20 0.10 | 1.20 0.90 0.40 with only the last three trained: the loss is
    2.5 / 3 = 0.8333 (summed over trained tokens, divided by their count), not the all-token mean 0.8875."""
    ce = torch.tensor([0.10, 2.80, 1.40, 0.20, 0.10, 1.20, 0.90, 0.40], dtype=torch.float64)
    # a 2-way head whose CE at position i (one-hot h_i, target 0) is exactly ce[i]: logits [0, log(e^ce - 1)]
    head = torch.nn.Linear(8, 2, bias=False).double()
    with torch.no_grad():
        head.weight.zero_()
        head.weight[1] = torch.log(torch.expm1(ce))
    h = torch.eye(8, dtype=torch.float64)
    labels = torch.tensor([IGNORE_INDEX] * 5 + [0, 0, 0])
    keep = labels != IGNORE_INDEX
    assert linear_ce_sum(h, head, torch.zeros(8, dtype=torch.long)).item() == pytest.approx(7.1, abs=1e-9)
    loss = linear_ce_sum(h[keep], head, labels[keep]) * loss_scale(count_trained(labels))
    assert loss.item() == pytest.approx(2.5 / 3, abs=1e-9)


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
    packed = pack_examples(rendered, 32, True)
    batch = collate(packed.rows, pad_id=0)
    expected = sum(r.n_trained for r in rendered)  # mask[1:]: token 0 can never be a target
    assert expected == 3 + 9 + 4 + 6
    assert count_trained(batch["labels"]) == expected == sum(r.n_trained for r in packed.rows)
    labels = labels_from_mask(rendered[0].ids, rendered[0].mask)
    assert count_trained(torch.tensor(labels)) == count_trained(labels) == 3
    # a mask that trains token 0 too: token 0 has no predecessor, so 6 trained mask positions are 5 targets
    whole = Rendered("t.jsonl:9", list(range(3, 9)), [True] * 6)
    assert whole.n_trained == 5
    assert count_trained(labels_from_mask(whole.ids, whole.mask)) == 5
    assert count_trained(collate(pack_examples([whole], 32, True).rows, pad_id=0)["labels"]) == 5


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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (liger-kernel's fused linear CE)")
def test_cuda_liger_fused_ce_equals_the_chunked_ce_value_and_grads():
    """On CUDA with liger-kernel installed, linear_ce_sum takes liger's fused kernel instead of the chunked CE (the
    chunked path still runs when per-token values are asked for): both give the same sum and gradients."""
    pytest.importorskip("liger_kernel", reason="liger-kernel is not installed")
    torch.manual_seed(0)
    h = torch.randn(300, 64, device="cuda", requires_grad=True)
    head = torch.nn.Linear(64, 1000, bias=False, device="cuda")
    y = torch.randint(0, 1000, (300,), device="cuda")
    got = []
    for per_token in (None, torch.empty(300, device="cuda")):  # None: liger's kernel; a buffer: the chunked CE
        h.grad, head.weight.grad = None, None
        loss = linear_ce_sum(h, head, y, chunk_rows=128, per_token=per_token)
        loss.backward()
        got.append((loss.detach(), h.grad.clone(), head.weight.grad.clone()))
    (fused, *fused_grads), (chunked, *chunked_grads) = got
    torch.testing.assert_close(fused, chunked, rtol=1e-5, atol=1e-3)
    for a, b in zip(fused_grads, chunked_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _batch_from(rendered, max_length, packing=True, pad_id=0):
    return collate(pack_examples(rendered, max_length, packing).rows, pad_id)


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
        one_by_one = sum(float(batch_ce_sum(model, collate(pack_examples([r], 64, True).rows, 0))) for r in rendered)
        assert float(batch_ce_sum(model, packed)) == pytest.approx(one_by_one, rel=1e-5)
    # and the same loss when the three are padded rows of one batch (pad forms its own position run)
    padded = _batch_from(rendered, max_length=64, packing=False)
    assert padded["input_ids"].shape == (3, 30)
    with torch.no_grad():
        assert float(batch_ce_sum(model, padded)) == pytest.approx(one_by_one, rel=1e-5)


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
