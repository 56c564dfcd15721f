"""Per-document attention for packed rows: the cost is sum(len_i^2) over the documents, not rows x max_length^2.

A packed row holds several documents whose position_ids restart at 0 (`shipsft.data.pack`). Plain SDPA isolates
them with a block-diagonal mask but still computes every query x key block of the row and masks most of them. Here
each document attends only within itself:

    row  a0 a1 a2 b0 b1 c0 c1 c2        position_ids 0 1 2 0 1 0 1 2   ->  documents [3, 2, 3]
    CPU   documents of similar length (>= 0.7 x the longest of their bucket) are gathered into one padded batch
          and run through one causal SDPA call per bucket, then scattered back (`plan_buckets`)
    CUDA  flash-attn's varlen kernel over cu_seqlens when flash-attn is installed and the dtype is bf16/fp16,
          else the same buckets

On a CPU the buckets are several times faster than one masked SDPA pass over a row of many documents, and faster
than one call per document, since each call has a fixed cost (the measurement is beside BUCKET_RATIO).

The documents come from position_ids alone (a new document wherever position t is not position t-1 + 1), so the
isolation does not depend on transformers detecting packed rows (which it skips under torch.compile or with a KV
cache). Everything that is not "a full causal pass over the whole row" is handed to transformers' own SDPA path
with the mask transformers builds: KV-cache decoding, left-padded batches with an attention_mask (eval), sliding
windows shorter than the row, attention biases. `tests/data/test_pack.py` and `tests/model/test_attention.py` check
that a packed row's logits equal each example run alone on this path.

Plugged in through transformers' public registries (no patching): `register()` adds the attention function to
`AttentionInterface` and its mask function to `AttentionMaskInterface` under NAME; `model.attn_implementation:
per_document` loads models with it.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shipsft.config import ModelConfig, TrainConfig

NAME = "shipsft_per_document"
# documents at least this share of their bucket's longest share one padded SDPA call: padding costs a document at
# most 1 / 0.7^2 = 2x its own attention, while a row of 16 documents needs 1-3 calls instead of 16. Measured on one
# thread of the project's 2-core AMD EPYC (torch 2.13, SmolLM2-135M's 9 query / 3 KV heads of 64), attention fwd +
# bwd per layer: a 2048-token row of 16 documents of 128 tokens 1,075 ms as one masked SDPA pass, 105 ms in buckets;
# a 512-token row of 4 documents 74 vs 37 ms; one call per document 1.5x slower than one per bucket (16 x 128)
BUCKET_RATIO = 0.7
# bf16 buckets at most this wide run in fp32 on the CPU: torch's CPU flash kernel in bf16 spends 10x its forward on
# the backward at these widths. Forward + backward of one call, fp32 inside with its casts against bf16: 13.1 vs
# 24.5 ms for 32 documents x 64 tokens, 27.3 vs 37.6 ms for 24 x 128; wider, fp32 is slower (16 x 192: 31.5 vs
# 26.7 ms in fp32 vs bf16 flash). bench/attention.py on the project's 2-core Xeon, bench/results/attention.json.
FP32_WIDTH = 128
_plan_cache: dict[str, object] = {}


def document_lengths(position_ids: torch.Tensor) -> list[list[int]]:
    """Per row, the lengths of its documents: a document starts wherever position t != position t-1 + 1.

    [[0, 1, 2, 0, 1, 0, 1, 2]] -> [[3, 2, 3]]; padding after the last document (its own 0, 1, ... run, see
    shipsft.data.pack.collate) is a document of its own, attended by nothing else.
    """
    if position_ids.shape[1] == 0:
        return [[] for _ in range(position_ids.shape[0])]
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    out = []
    for row in starts.cpu():
        idx = row.nonzero().flatten().tolist() + [row.shape[0]]
        out.append([b - a for a, b in zip(idx, idx[1:])])
    return out


@dataclass
class Plan:
    """How one forward's documents are batched: buckets of similar-length documents, each padded to its longest.

    buckets: per bucket, the flat token index (row * T + position) of every slot, [n_docs, length]; slots past a
    document's end repeat its first token (causal attention never lets a real token see them, and their outputs
    are dropped). back: for every flat token, its slot in the concatenated bucket outputs.
    """

    lengths: list[list[int]]
    buckets: list[torch.Tensor]
    back: torch.Tensor


def plan_buckets(lengths: list[list[int]], row_len: int, ratio: float = BUCKET_RATIO) -> Plan:
    """Group documents (longest first) into buckets whose documents are at least `ratio` x the bucket's longest,
    so padding at most doubles a document's attention cost while the number of kernel calls stays small."""
    docs = sorted(((n, r * row_len + sum(lens[:i])) for r, lens in enumerate(lengths) for i, n in enumerate(lens)),
                  key=lambda d: -d[0])
    groups: list[list[tuple[int, int]]] = []
    for n, start in docs:
        if groups and n >= ratio * groups[-1][0][0]:
            groups[-1].append((n, start))
        else:
            groups.append([(n, start)])
    buckets, back = [], torch.empty(len(lengths) * row_len, dtype=torch.long)
    offset = 0
    for g in groups:
        width = g[0][0]
        idx = torch.empty(len(g), width, dtype=torch.long)
        for j, (n, start) in enumerate(g):
            idx[j, :n] = torch.arange(start, start + n)
            idx[j, n:] = start
            back[start:start + n] = torch.arange(offset + j * width, offset + j * width + n)
        buckets.append(idx)
        offset += len(g) * width
    return Plan(lengths, buckets, back)


def _plan(position_ids: torch.Tensor, batch: int, device) -> Plan:
    """The plan of this forward, computed once: every layer gets the same position_ids tensor."""
    if position_ids.shape[0] != batch:
        position_ids = position_ids.expand(batch, -1)
    ref = _plan_cache.get("ref")
    if ref is not None and ref() is position_ids and _plan_cache.get("version") == position_ids._version:
        return _plan_cache["plan"]  # type: ignore[return-value]
    p = plan_buckets(document_lengths(position_ids), position_ids.shape[1])
    p = Plan(p.lengths, [b.to(device) for b in p.buckets], p.back.to(device))
    _plan_cache.update(ref=weakref.ref(position_ids), version=position_ids._version, plan=p)
    return p


def _flash_varlen():
    """flash-attn's varlen kernel (CUDA only), or None where it is not installed."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def causal_attention(q, k, v, **kw) -> torch.Tensor:
    """One causal SDPA call over [n, heads, width, dim] documents of one width. On the CPU under bf16 (autocast or
    bf16 inputs) a bucket at most FP32_WIDTH wide is computed in fp32 and returned in bf16, as the bf16 call would
    return it."""
    cpu_bf16 = q.device.type == "cpu" and (q.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16))
    if not cpu_bf16 or q.shape[2] > FP32_WIDTH:
        return F.scaled_dot_product_attention(q, k, v, **kw)
    with torch.autocast("cpu", enabled=False):
        return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kw).to(torch.bfloat16)


def _sdpa_documents(query, key, value, plan: Plan, scaling, dropout: float) -> torch.Tensor:
    """[B, H, T, D] inputs -> [B, T, H, D] output, causal attention inside each document only: one SDPA call per
    bucket of similar-length documents, gathered from and scattered back to the rows with index_select (whose
    backward is an index_add: no zero-filled row per document)."""
    b, h, t, d = query.shape
    kw = dict(dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=query.shape[1] != key.shape[1])
    if all(lens == [t] for lens in plan.lengths):  # one document per row (unpacked rows): one batched call
        return causal_attention(query, key, value, **kw).transpose(1, 2)
    q, k, v = (x.transpose(1, 2).reshape(b * t, x.shape[1], d) for x in (query, key, value))
    outs = []
    for idx in plan.buckets:
        n, width = idx.shape
        qb, kb, vb = (x.index_select(0, idx.flatten()).view(n, width, x.shape[1], d).transpose(1, 2)
                      for x in (q, k, v))
        outs.append(causal_attention(qb, kb, vb, **kw).transpose(1, 2).reshape(n * width, h, d))
    flat = torch.cat(outs) if len(outs) > 1 else outs[0]
    return flat.index_select(0, plan.back).view(b, t, h, d)


def _flash_documents(fn, query, key, value, plan: Plan, scaling, dropout: float) -> torch.Tensor:
    """flash-attn varlen over every document of every row: [B, H, T, D] -> [B, T, H, D]."""
    b, h, t, d = query.shape
    flat = [n for lens in plan.lengths for n in lens]
    cu = torch.zeros(len(flat) + 1, dtype=torch.int32, device=query.device)
    cu[1:] = torch.tensor(flat, device=query.device).cumsum(0)
    q, k, v = (x.transpose(1, 2).reshape(b * t, x.shape[1], d) for x in (query, key, value))
    out = fn(q, k, v, cu, cu, max(flat), max(flat), dropout_p=dropout, softmax_scale=scaling, causal=True)
    return out.reshape(b, t, h, d)


@torch.compiler.disable  # data-dependent shapes (the documents); under train.compile the rest of the layer compiles
def per_document_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                           scaling: float | None = None, **kwargs):
    """transformers attention function (see AttentionInterface): per-document causal attention for full passes
    over packed rows; transformers' SDPA for everything else (cache, padding masks, windows, biases)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    full_pass = (attention_mask is None and position_ids is not None and query.shape[2] == key.shape[2]
                 and getattr(module, "is_causal", True) and kwargs.get("position_bias") is None
                 and kwargs.get("softcap") is None and not kwargs.get("output_attentions", False))
    window = kwargs.get("sliding_window")
    if not full_pass or (window is not None and window < query.shape[2]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    plan = _plan(position_ids, query.shape[0], query.device)
    fn = _flash_varlen() if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) else None
    if fn is not None:
        return _flash_documents(fn, query, key, value, plan, scaling, dropout), None
    return _sdpa_documents(query, key, value, plan, scaling, dropout), None


def per_document_mask(batch_size: int, q_length: int, kv_length: int, q_offset=0, kv_offset=0,
                      attention_mask: torch.Tensor | None = None, use_vmap: bool = False, config=None, **kwargs):
    """transformers mask function (see AttentionMaskInterface): no mask at all for a full causal pass without
    padding (the attention function finds the documents from position_ids); otherwise SDPA's own mask."""
    from transformers.masking_utils import sdpa_mask

    window = getattr(config, "sliding_window", None) if config is not None else None
    plain = (attention_mask is None and not use_vmap and q_length == kv_length
             and isinstance(q_offset, int) and q_offset == 0 and isinstance(kv_offset, int) and kv_offset == 0
             and (window is None or window >= q_length))
    if plain:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, use_vmap=use_vmap, config=config, **kwargs)


def rows_join(model: ModelConfig, train: TrainConfig, hf_config) -> bool:
    """Whether the training loop may join each micro-batch's packed rows into one row (data/pack.py: `join_rows`),
    so no position is padding. Measured on the recipe bench's tasks, 5-16% of a step's positions were padding at the
    end of a micro-batch's shorter rows. It needs: attention per document (a row then costs its documents'
    attention whatever its length; with masked SDPA a longer row costs its length squared); no sliding window
    shorter than a micro-batch (a window shorter than the row sends the pass to masked SDPA, see
    `per_document_attention`); and no NEFTune (its noise scales with 1 / sqrt(row length), so the row length is part
    of the recipe). `hf_config` None (a tokenizer folder without config.json: the audit alone runs there): no
    sliding window is known."""
    if model.attn_implementation != "per_document" or train.neftune_alpha:
        return False
    if hf_config is None:
        return True
    conf = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    window = getattr(conf, "sliding_window", None)
    layer_types = getattr(conf, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        window = None  # e.g. Qwen2: a sliding_window value that no layer uses
    return window is None or window >= train.micro_batch_tokens


def register() -> str:
    """Register the attention and mask functions with transformers (idempotent); returns the name to load with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, per_document_attention)
    AttentionMaskInterface.register(NAME, per_document_mask)
    return NAME
