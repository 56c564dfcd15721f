"""Per-document attention (shipsft.model.attention): document boundaries from position_ids, cost sum(len^2), the
same logits and gradients as SDPA's masked pass, and transformers' SDPA path for caches and padding masks.
(Packed == each example alone for 5 architectures: tests/data/test_pack.py, parametrised over this path too.)"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_llama
from shipsft.data.pack import collate, pack_examples
from shipsft.data.types import Rendered
from shipsft.model import attention
from shipsft.model.attention import document_lengths, per_document_mask, plan_buckets, register


def _rendered(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Rendered(f"a.jsonl:{i + 1}", torch.randint(3, 120, (n,), generator=g).tolist(), [k >= 1 for k in range(n)])
            for i, n in enumerate(lengths)]


def _pair(seed=0):
    """The same tiny Llama twice: SDPA with transformers' mask, and per-document attention."""
    sdpa, docs = tiny_llama(seed=seed), tiny_llama(seed=seed)
    docs.set_attn_implementation(register())
    return sdpa, docs


def test_document_lengths_from_position_restarts():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 2, 3, 4, 0, 1, 2]])
    assert document_lengths(pos) == [[3, 2, 3], [5, 3]]
    assert document_lengths(torch.arange(6)[None]) == [[6]]
    # collate's padding is its own position run: a document of its own, after the real ones
    batch = collate(pack_examples(_rendered([5, 3, 6]), 8, True).rows, pad_id=0)
    assert [sum(r) for r in document_lengths(batch["position_ids"])] == [8, 8]
    assert document_lengths(batch["position_ids"]) == [[6, 2], [5, 3]]
    # left-padded eval rows (positions clamped at 0): each pad is alone, the prompt is one document
    assert document_lengths(torch.tensor([[0, 0, 0, 1, 2]])) == [[1, 1, 3]]


def test_packed_batch_logits_and_gradients_equal_sdpa_masked_pass():
    sdpa, docs = _pair()
    batch = collate(pack_examples(_rendered([7, 5, 9, 3, 11, 4, 6, 20], seed=1), 24, True).rows, pad_id=0)
    assert batch["input_ids"].shape[0] > 1 and any(len(r) > 1 for r in document_lengths(batch["position_ids"]))
    kw = dict(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    out_a, out_b = sdpa(**kw).logits, docs(**kw).logits
    torch.testing.assert_close(out_b, out_a, atol=1e-5, rtol=0)
    out_a.square().mean().backward()
    out_b.square().mean().backward()
    for (name, pa), pb in zip(sdpa.named_parameters(), docs.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_buckets_group_similar_lengths_and_scatter_back_exactly():
    # rows of 16: [9, 7] and [5, 3, 4, 4]; longest first: 9, 7 (>= 0.7 x 9) | 5, 4, 4 (>= 3.5) | 3
    plan = plan_buckets([[9, 7], [5, 3, 4, 4]], 16)
    assert [tuple(b.shape) for b in plan.buckets] == [(2, 9), (3, 5), (1, 3)]
    assert plan.buckets[0][1].tolist() == [9, 10, 11, 12, 13, 14, 15, 16 - 7, 16 - 7]  # 7 tokens + 2 pad slots
    assert plan.buckets[2][0].tolist() == [21, 22, 23]  # row 1's second document
    # every flat token maps back to the slot that holds it
    slots = torch.cat([b.flatten() for b in plan.buckets])
    assert slots[plan.back].tolist() == list(range(32))


def test_attention_cost_is_the_sum_of_squared_document_lengths(monkeypatch):
    """Every score the per-document path computes belongs to one document: with equal lengths exactly sum(len^2)
    per layer; with mixed lengths at most twice that (the bucket padding bound), far below rows x T^2."""
    _, docs = _pair()
    seen = []
    real = F.scaled_dot_product_attention

    def counting(q, k, v, **kw):
        seen.append(q.shape[0] * q.shape[-2] * k.shape[-2])
        assert kw.get("is_causal") is True and kw.get("attn_mask") is None
        return real(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    layers = docs.config.num_hidden_layers
    for lengths, max_length in (([6, 6, 6, 6], 12), ([7, 5, 9, 3, 11, 2], 24)):
        seen.clear()
        batch = collate(pack_examples(_rendered(lengths), max_length, True).rows, pad_id=0)
        with torch.no_grad():
            docs(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        exact = sum(n * n for row in document_lengths(batch["position_ids"]) for n in row)
        b, t = batch["input_ids"].shape
        if len(set(lengths)) == 1:
            assert sum(seen) == layers * exact
        assert layers * exact <= sum(seen) <= 2 * layers * exact and sum(seen) < layers * b * t * t


def test_mask_function_builds_no_mask_for_full_passes_and_sdpa_masks_otherwise():
    assert per_document_mask(2, 16, 16) is None
    pad = torch.ones(2, 16, dtype=torch.bool)
    pad[0, :3] = False
    mask = per_document_mask(2, 16, 16, attention_mask=pad)
    assert mask is not None and mask.shape == (2, 1, 16, 16) and not mask[0, :, :, :3].any()
    window = type("Cfg", (), {"sliding_window": 8})()
    assert per_document_mask(1, 16, 16, config=window, allow_is_causal_skip=False) is not None


def test_sliding_window_shorter_than_the_row_uses_the_masked_path():
    """Mistral-style sliding window (4 tokens) over documents of up to 9: per-document == SDPA's windowed mask."""
    import transformers as T

    def tiny(attn):
        torch.manual_seed(0)
        cfg = T.MistralConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                              attn_implementation="sdpa")
        model = T.MistralForCausalLM(cfg).eval()
        if attn:
            model.set_attn_implementation(register())
        return model

    batch = collate(pack_examples(_rendered([9, 5, 7]), 24, True).rows, pad_id=0)
    kw = dict(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    with torch.no_grad():
        torch.testing.assert_close(tiny(True)(**kw).logits, tiny(False)(**kw).logits, atol=1e-5, rtol=0)


def test_left_padded_eval_and_cached_generation_match_sdpa():
    """Eval (left padding + attention_mask) and KV-cache decoding go through transformers' SDPA path."""
    sdpa, docs = _pair(seed=3)
    prompts = [[5, 9, 11, 40, 7], [8, 3], [60, 61, 62, 63, 64, 65, 66]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        a = sdpa(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        b = docs(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    torch.testing.assert_close(b[mask.bool()], a[mask.bool()], atol=1e-5, rtol=0)
    gen = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(docs.generate(**gen), sdpa.generate(**gen))


def test_isolation_test_fails_when_documents_are_ignored(monkeypatch):
    """The protection is real: treating the whole row as one document breaks packed == alone."""
    _, docs = _pair()
    rs = _rendered([6, 5])
    batch = collate(pack_examples(rs, 16, True).rows, pad_id=0)
    monkeypatch.setattr(attention, "document_lengths", lambda pos: [[pos.shape[1]]] * pos.shape[0])
    attention._plan_cache.clear()
    with torch.no_grad():
        packed = docs(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        second = docs(input_ids=torch.tensor([rs[1].ids]), use_cache=False).logits[0]
    n0 = batch["position_ids"][0].tolist().index(0, 1)
    assert not torch.allclose(packed[0, n0:n0 + len(rs[1].ids)], second, atol=1e-3)
    attention._plan_cache.clear()


def test_cuda_varlen_kernel_is_optional():
    """flash-attn's varlen kernel is used only on CUDA with bf16/fp16; elsewhere the lookup is a clean None."""
    fn = attention._flash_varlen()
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        assert fn is None
    else:
        assert callable(fn)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (flash-attn varlen path)")
def test_cuda_packed_logits_equal_sdpa():
    sdpa, docs = (m.to("cuda", torch.bfloat16) for m in _pair())
    batch = collate(pack_examples(_rendered([7, 5, 9, 3, 11]), 24, True).rows, pad_id=0)
    kw = dict(input_ids=batch["input_ids"].cuda(), position_ids=batch["position_ids"].cuda(), use_cache=False)
    with torch.no_grad():
        torch.testing.assert_close(docs(**kw).logits, sdpa(**kw).logits, atol=3e-2, rtol=0)


@pytest.mark.slow
def test_packed_rows_stay_isolated_under_torch_compile():
    """train.compile with packing (allowed with per_document): the attention runs uncompiled and finds the
    documents itself, so a compiled decoder's packed logits equal the uncompiled ones (== each example alone,
    tests/data/test_pack.py). aot_eager traces like inductor without its minutes of code generation."""
    from shipsft.config import RunConfig

    assert RunConfig.model_validate({"train": {"compile": True}}).train.compile  # packing + per_document: allowed
    _, docs = _pair()
    batch = collate(pack_examples(_rendered([7, 5, 9, 3]), 16, True).rows, pad_id=0)
    kw = dict(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    with torch.no_grad():
        eager = docs(**kw).logits
        docs.model.compile(backend="aot_eager")
        torch.testing.assert_close(docs(**kw).logits, eager, atol=1e-5, rtol=0)


def test_joined_rows_give_the_padded_batch_loss_and_gradients():
    """The loop joins a micro-batch's rows into one (data/pack.py: join_rows) when attention is per document: the
    summed loss and every gradient equal the padded batch's, and no position is padding."""
    from shipsft.data.pack import join_rows
    from shipsft.train.loss import batch_ce_sum

    _, docs = _pair(seed=2)
    rs = [Rendered(r.source, r.ids, [k >= 2 for k in range(len(r.ids))])
          for r in _rendered([7, 5, 9, 3, 11, 4, 6, 20], seed=4)]
    rows = pack_examples(rs, 24, True).rows
    padded, joined = collate(rows, pad_id=0), collate(join_rows(rows, 4096), pad_id=0)
    n = sum(len(r.ids) for r in rs)
    assert joined["input_ids"].shape == (1, n) and padded["input_ids"].numel() > n
    grads = []
    for batch in (padded, joined):
        docs.zero_grad()
        loss = batch_ce_sum(docs, batch)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in docs.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-4, rtol=1e-6)
    for (name, _), a, b in zip(docs.named_parameters(), grads[0][1], grads[1][1]):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4, msg=name)


def test_rows_join_only_where_documents_stay_isolated_at_any_row_length():
    from transformers import Gemma3TextConfig, Qwen2Config

    from shipsft.config import ModelConfig, TrainConfig
    from shipsft.model.attention import rows_join

    llama, train = tiny_llama().config, TrainConfig()
    assert rows_join(ModelConfig(), train, llama)  # per_document is the default
    assert not rows_join(ModelConfig(attn_implementation="sdpa"), train, llama)  # masked: cost grows with the row
    assert not rows_join(ModelConfig(), TrainConfig(neftune_alpha=5), llama)  # noise scaled by the row length
    gemma3 = Gemma3TextConfig(sliding_window=512, num_hidden_layers=6)  # 5 of 6 layers slide over 512 tokens
    assert not rows_join(ModelConfig(), train, gemma3)
    assert rows_join(ModelConfig(), TrainConfig(micro_batch_tokens=512), gemma3)
    assert rows_join(ModelConfig(), train, Qwen2Config(sliding_window=128, use_sliding_window=False))


def test_short_bf16_buckets_attend_in_fp32_on_the_cpu_and_longer_ones_in_bf16():
    """Under bf16 autocast (q, k in fp32 from the rotary embeddings, v in bf16, as a Llama layer hands them over) a
    bucket at most FP32_WIDTH wide is computed in fp32 and returned in bf16; a wider one is autocast's bf16 call.
    Gradients reach every input in its own dtype."""
    from shipsft.model.attention import FP32_WIDTH, causal_attention

    g = torch.Generator().manual_seed(0)
    for width in (FP32_WIDTH, FP32_WIDTH + 1):
        q, k = torch.randn(2, 6, width, 16, generator=g), torch.randn(2, 2, width, 16, generator=g)
        v = torch.randn(2, 2, width, 16, generator=g).bfloat16()
        q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
        kw = dict(is_causal=True, enable_gqa=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = causal_attention(q, k, v, **kw)
            bf16 = F.scaled_dot_product_attention(q, k, v, **kw)
        fp32 = F.scaled_dot_product_attention(q, k, v.float(), **kw).bfloat16()
        assert out.dtype == torch.bfloat16
        if width <= FP32_WIDTH:
            assert torch.equal(out, fp32) and not torch.equal(out, bf16)
        else:
            assert torch.equal(out, bf16)
        out.float().sum().backward()
        assert (q.grad.dtype, k.grad.dtype, v.grad.dtype) == (torch.float32, torch.float32, torch.bfloat16)
    plain = torch.randn(1, 2, 8, 16, generator=g)  # fp32 without autocast: SDPA as is
    assert torch.equal(causal_attention(plain, plain, plain, is_causal=True),
                       F.scaled_dot_product_attention(plain, plain, plain, is_causal=True))
