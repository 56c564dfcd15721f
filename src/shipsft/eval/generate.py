"""Batched greedy generation for evals: length-sorted, LEFT-padded batches whose rows leave as soon as they end.

    outputs = generate(model, tokenizer, [it.prompt_ids for it in items], stop_ids=ids, max_new_tokens=40,
                       batch_size=8, amp=torch.bfloat16)

What makes it fast (bench/eval_speed.py measures each against transformers' `generate`):
- prompts are sorted by length, so a batch pads little; outputs come back in the input order;
- a row leaves the batch the step it emits a stop token (`items.stop_ids`): its KV cache rows are dropped and it
  costs nothing more, where `model.generate` keeps decoding every row until the slowest one ends;
- only the last position goes through the LM head (`logits_to_keep=1`), and there is no per-step logits
  processing: greedy is one argmax;
- the generation budget defaults to the suite's longest reference plus a margin (`eval/suites.py`), not a fixed
  128 tokens that a rambling base model always uses up;
- batches are as large as memory allows (`eval.batch_size: auto`, `batches`): on a CPU a decode step's cost is
  mostly per step, not per row, so auto takes MAX_ROWS rows or the rows whose KV cache and prefill activations fit
  in KV_BUDGET, whichever is fewer (the measurement behind both is beside them).

Greedy tokens equal `model.generate(do_sample=False)`'s (tests/eval/test_generate_speedups.py): the same left
padding, position ids counted from each row's first real token, and the same KV cache. Works unchanged for a peft
LoRA model (no merge) and for a full model. Memory stays flat: one batch's KV cache and its last-position logits,
never [N, seq, vocab] (failure mode 16).
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable

import torch

from shipsft.data.pack import padding_id


# per-row decode cost on the project's 2-core AVX2 EPYC (SmolLM2-135M, 110-token prompts, 32 new tokens): 1157 ms
# in batches of 8, 648 in 32, 523 in 64, 488 in 128; past 64 rows the gain is 7% for twice the memory
# (hand-timed with greedy_ids). With KV_BUDGET: 64 rows for SmolLM2 at 300 positions, 6 for a Llama-3.2-1B
# at 2,000 in fp32.
MAX_ROWS = 64
KV_BUDGET = 2 * 2**30  # bytes one generation batch may hold in KV cache + prefill activations


def bytes_per_position(config, dtype_bytes: int) -> int:
    """Memory one row costs per position: its K and V in every layer, plus the prefill's MLP activations (gate, up
    and their product, held one layer at a time)."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    mlp = getattr(cfg, "intermediate_size", None) or 4 * cfg.hidden_size
    return (2 * cfg.num_hidden_layers * kv_heads * head_dim + 3 * mlp) * dtype_bytes


def batches(lengths: list[int], max_new_tokens: int, batch_size: int | str, per_position: int) -> list[list[int]]:
    """Indices of the prompts grouped into generation batches, shortest prompts first. A fixed `batch_size` cuts the
    sorted prompts into runs of that many rows; `auto` grows each batch while its rows x (longest prompt +
    max_new_tokens) x `per_position` bytes stay within KV_BUDGET, up to MAX_ROWS (at least one row)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if batch_size != "auto":
        return [order[k:k + int(batch_size)] for k in range(0, len(order), int(batch_size))]
    out: list[list[int]] = []
    for i in order:  # sorted: the newest prompt is the batch's longest
        cost = (len(out[-1]) + 1) * (lengths[i] + max_new_tokens) * per_position if out else 0
        if not out or len(out[-1]) >= MAX_ROWS or cost > KV_BUDGET:
            out.append([])
        out[-1].append(i)
    return out


def model_batches(model, prompts: list[list[int]], max_new_tokens: int, batch_size: int | str) -> list[list[int]]:
    """`batches` for these prompts on this model (a peft wrapper included): its shape and weight dtype price a
    position."""
    per_position = bytes_per_position(_lm(model).config, next(model.parameters()).element_size())
    return batches([len(p) for p in prompts], max_new_tokens, batch_size, per_position)


def left_pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask, padded on the left so every row ends at the last column."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def _lm(model):
    """The causal LM under a peft wrapper (its forward runs the adapters), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_kwarg(lm) -> str:
    """transformers 5 names the cache argument `cache` (`past_key_values` is its deprecated alias)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _new_cache(lm):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=lm.config)
    except TypeError:  # older transformers: no config argument
        return DynamicCache()


@torch.no_grad()
def greedy_ids(model, prompts: list[list[int]], *, stop_ids: list[int], max_new_tokens: int, pad_id: int,
               ) -> list[list[int]]:
    """Greedy continuation ids of one batch of prompts, each cut before its first stop token."""
    lm = _lm(model)
    device = next(lm.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    cache, key = _new_cache(lm), _cache_kwarg(lm)
    position = (mask.cumsum(-1) - 1).clamp_min(0)
    stops = torch.tensor(sorted(set(stop_ids)), device=device)
    rows = torch.arange(len(prompts), device=device)  # which prompt each live batch row is
    out: list[list[int]] = [[] for _ in prompts]
    logits = lm(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1,
                **{key: cache}).logits
    last = position[:, -1]
    for step in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1)
        done = torch.isin(nxt, stops)
        for r, t in zip(rows.tolist(), nxt.tolist()):
            out[r].append(t)
        if step + 1 == max_new_tokens:
            break
        if done.any():  # finished rows leave the batch: their cache rows are dropped
            keep = (~done).nonzero().flatten()
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            rows, nxt, mask, last = rows[keep], nxt[keep], mask[keep], last[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        last = last + 1
        logits = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], use_cache=True,
                    logits_to_keep=1, **{key: cache}).logits
    stop_set = set(stop_ids)
    return [next((seq[:k] for k, t in enumerate(seq) if t in stop_set), seq) for seq in out]


# on a 2-core AVX512-BF16 CPU, 8 quickstart prompts x 24 tokens took 19 s in fp32 and 10 s under bf16 autocast
# (a shared machine, so absolute times are high; the ratio held in two repeats)
@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], *, stop_ids: list[int], max_new_tokens: int,
             batch_size: int | str, amp: torch.dtype | None, advance: Callable[[int], None] | None = None
             ) -> list[str]:
    """Greedy continuations of tokenised prompts, decoded up to (not including) the first stop token.

    Prompts are sorted by length so each batch pads little (`batches`); the outputs come back in the input order.
    `amp` (the run's autocast dtype, bf16 on CPUs with native bf16) runs the decode under autocast, as training
    does (about twice as fast where bf16 is native: the measurement is above this function).
    """
    pad = padding_id(tokenizer, stop_ids)
    was_training = model.training
    model.eval()
    outputs: list[str] = [""] * len(prompts)
    device_type = next(model.parameters()).device.type
    try:
        for chunk in model_batches(model, prompts, max_new_tokens, batch_size):
            with torch.autocast(device_type, dtype=amp) if amp is not None else contextlib.nullcontext():
                new = greedy_ids(model, [prompts[i] for i in chunk], stop_ids=stop_ids,
                                 max_new_tokens=max_new_tokens, pad_id=pad)
            for i, seq in zip(chunk, new):
                outputs[i] = tokenizer.decode(seq, skip_special_tokens=True)
            if advance is not None:  # a progress bar: this many more prompts answered
                advance(len(chunk))
    finally:
        model.train(was_training)
    return outputs
