"""Teacher-forced scoring of reference answers: loss per token, and KL(tuned || base) per token (drift).

Every eval item is a rendered conversation whose mask marks the reference answer + end-of-turn. We run the model
on it and score only the masked positions:

* **loss**: mean negative log-likelihood of the reference tokens (eval loss on suites; on the forgetting probe its
  rise over the baseline is `general_loss_increase`).
* **KL(tuned || base)** = sum_v p_tuned(v) * (log p_tuned(v) - log p_base(v)) at each reference position, averaged
  over tokens. Two ways to get the base distribution, neither holds a second copy of the model:
  - LoRA / any peft model: the same forward with the adapter switched off (`with model.disable_adapter():`).
    Exact, over the full vocabulary.
  - Full fine-tuning: the base weights are gone after step 1, so at baseline we cache the base model's top-k
    (k=128) log-probs per position plus the log of the remaining mass. KL is then taken over k+1 buckets (the
    base's top-k tokens and "everything else"). By the data-processing inequality this is a LOWER BOUND on the
    exact KL, tight when the tuned model keeps its mass on the base's top-k. Memory: 128 x (4+4) B per position,
    e.g. 64 items x 40 tokens -> 2.6 MB, against 64 x 40 x 49,152 x 4 B = 500 MB for full SmolLM2 log-probs.

Memory stays flat with the number of items (failure mode 16): items are batched so that one batch's kept logits
(batch x answer span x vocab, fp32) stay under `budget` elements (2^25 = 128 MB); `logits_to_keep` makes the model
compute logits for the answer span only (left padding puts every answer at the end of its row).

    stats = teacher_forced(model, items, pad_id=tok.pad_token_id, ref="adapter")
    loss = sum(s.nll for s in stats) / sum(s.n for s in stats)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from shipsft.data.labels import IGNORE_INDEX, labels_from_mask
from shipsft.eval.generate import MAX_ROWS, left_pad
from shipsft.eval.items import EvalItem

TOPK = 128
BUDGET = 2**25


@dataclass
class TopK:
    """The base model's distribution at one item's scored positions: top-k log-probs + log of the rest."""

    idx: torch.Tensor  # [A, k] int32
    logp: torch.Tensor  # [A, k] float32
    rest: torch.Tensor  # [A] float32, log(1 - sum(exp(logp)))

    def to(self, device) -> "TopK":
        return TopK(self.idx.to(device), self.logp.to(device), self.rest.to(device))


@dataclass
class SeqStats:
    nll: float  # summed over the scored tokens
    n: int  # scored tokens
    kl: float | None = None  # summed over the scored tokens
    topk: TopK | None = None


def _targets(item: EvalItem) -> tuple[list[int], list[int]]:
    """Positions t whose logits are scored and their target ids (labels already shifted: logits[t] vs labels[t])."""
    labels = labels_from_mask(item.ids, item.mask)
    pos = [t for t, y in enumerate(labels) if y != IGNORE_INDEX]
    return pos, [labels[t] for t in pos]


def batches_under_budget(spans: list[tuple[int, int]], vocab: int, batch_size: int | str, budget: int
                         ) -> list[list[int]]:
    """Group item indices (sorted by length) so each batch's kept logits stay under `budget` elements, with at most
    `batch_size` rows (auto: generation's MAX_ROWS; the budget is what bounds memory here)."""
    batch_size = MAX_ROWS if batch_size == "auto" else int(batch_size)
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    out, cur, keep = [], [], 0
    for i in order:
        k = max(keep, spans[i][1])
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * k * vocab > budget):
            out.append(cur)
            cur, k = [], spans[i][1]
        cur.append(i)
        keep = k
    if cur:
        out.append(cur)
    return out


def _bucket_kl(logp: torch.Tensor, base: TopK) -> torch.Tensor:
    """Per-position KL over the base's top-k tokens + one bucket for the rest (a lower bound on the exact KL)."""
    lp_top = logp.gather(-1, base.idx.long())
    p_top = lp_top.exp()
    p_rest = (1 - p_top.sum(-1)).clamp_min(1e-12)
    return (p_top * (lp_top - base.logp)).sum(-1) + p_rest * (p_rest.log() - base.rest)


def _topk(logp: torch.Tensor, k: int) -> TopK:
    vals, idx = logp.topk(min(k, logp.shape[-1]), dim=-1)
    rest = torch.log1p(-vals.exp().sum(-1).clamp(max=1 - 1e-7))
    return TopK(idx.to(torch.int32), vals.float(), rest.float())


@torch.no_grad()
def teacher_forced(model, items: Sequence[EvalItem], *, pad_id: int, ref: str | list[TopK] | None = None,
                   cache_topk: int, batch_size: int | str, budget: int = BUDGET) -> list[SeqStats]:
    """Loss (and KL to the base when `ref` is "adapter" or the cached base top-k per item) for each item.

    `cache_topk=k` also returns this model's top-k distribution per item (taken at baseline for full FT).
    """
    if not items:
        return []
    was_training = model.training
    model.eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    device = next(model.parameters()).device
    targets = [_targets(it) for it in items]
    spans = [(len(it.ids), len(it.ids) - pos[0]) for it, (pos, _) in zip(items, targets)]
    out: list[SeqStats | None] = [None] * len(items)
    try:
        for chunk in batches_under_budget(spans, vocab, batch_size, budget):
            keep = max(spans[i][1] for i in chunk)
            ids, mask = left_pad([items[i].ids for i in chunk], pad_id, device)
            # positions count from each row's first real token, as in training (left padding must not shift RoPE)
            position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
            kw = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False,
                      logits_to_keep=keep)
            logits = model(**kw).logits.float()
            base_logits = None
            if ref == "adapter":
                with model.disable_adapter():
                    base_logits = model(**kw).logits.float()
            for row, i in enumerate(chunk):
                pos, ys = targets[i]
                # column of position t of item i inside the kept window: (width - len + t) - (width - keep)
                cols = torch.tensor([keep - len(items[i].ids) + t for t in pos], device=device)
                logp = torch.log_softmax(logits[row, cols], dim=-1)
                nll = -logp.gather(-1, torch.tensor(ys, device=device).unsqueeze(-1)).sum().item()
                stats = SeqStats(nll=nll, n=len(ys))
                if base_logits is not None:
                    base_logp = torch.log_softmax(base_logits[row, cols], dim=-1)
                    stats.kl = (logp.exp() * (logp - base_logp)).sum().item()
                elif isinstance(ref, list):
                    stats.kl = _bucket_kl(logp, ref[i].to(device)).sum().item()
                if cache_topk:
                    stats.topk = _topk(logp, cache_topk).to("cpu")  # the cache lives in host memory
                out[i] = stats
            del logits, base_logits
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def mean_loss(stats: list[SeqStats]) -> float:
    n = sum(s.n for s in stats)
    return sum(s.nll for s in stats) / n if n else float("nan")


def mean_kl(stats: list[SeqStats]) -> float | None:
    """Token-weighted mean KL per scored token, or None when no KL was measured."""
    with_kl = [s for s in stats if s.kl is not None]
    n = sum(s.n for s in with_kl)
    return sum(s.kl for s in with_kl) / n if with_kl and n else None
