"""KL-regularised SFT: loss = CE + kl_coef x KL(tuned || base), both summed over the trained tokens of a micro-batch and
divided once by the trained tokens of the whole optimizer step (the same denominator as the CE, train/loss.py).

Why: a narrow fine-tune pulls the model away from what it could do (forgetting); a KL penalty against the base
model's next-token distribution at the trained positions keeps the tuned model close where the task does not need it
to move (the same term RLHF uses; LLaMA-Factory's ASFT adds it to SFT). `train.kl_coef` sets its weight; 0 = off,
and then nothing of this module runs.

Per trained position i with tuned log-probs log p and base log-probs log q over the vocabulary:

    KL_i = sum_v p_v (log p_v - log q_v)        dKL_i / dz_v = p_v (log p_v - log q_v - KL_i)

where z are the tuned logits (the base side carries no gradient). Like the CE, it never builds the [N, vocab] logits
of a micro-batch: `_ChunkedLinearKL` runs the LM head over `chunk_rows` trained positions at a time for both models
and folds each chunk's gradient into dL/dh (and dL/dW when the head is trained) at once, so the peak is a few
[chunk_rows, vocab] fp32 blocks (each 1024 x 49,152 x 4 B = 201 MB for SmolLM2), however long the batch.

The base distribution (`reference`):
* "adapter" (LoRA / QLoRA): the same model with its adapter switched off (`disable_adapter()`): exact, and no second
  copy of the weights. At step 0 the LoRA B matrices are zero, so the tuned model IS the base and KL = 0 exactly.
* a frozen copy of the starting weights (full fine-tuning; `reference_for` loads the base again): twice the weights'
  memory.
The base pass runs in eval mode under no_grad: no dropout and no NEFTune noise, the base model as it would serve.

    ce, kl = batch_ce_kl_sums(model, batch, reference)
    loss = (ce + kl_coef * kl) * loss_scale(n_step)
"""
from __future__ import annotations

import contextlib

import torch

from shipsft.data.labels import IGNORE_INDEX
from shipsft.train.loss import CHUNK_ROWS, decoder_and_head, fold_chunk, hidden_states, linear_ce_sum, scaled_grads

ADAPTER = "adapter"


class _ChunkedLinearKL(torch.autograd.Function):
    """sum_i KL(softmax(h_i W^T + b) || softmax(r_i R^T + c)) with the gradient taken chunk by chunk in the forward
    pass (only towards h, W, b: the reference side r, R, c is constant)."""

    @staticmethod
    def forward(ctx, h, weight, bias, h_ref, ref_weight, ref_bias, chunk_rows, compute_dtype):  # noqa: D401
        w, w_ref = weight.to(compute_dtype), ref_weight.to(compute_dtype)
        need_w = weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        acc = torch.promote_types(h.dtype, torch.float32)
        grad_h = torch.empty_like(h) if h.requires_grad else None
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if need_b else None
        total = torch.zeros((), dtype=acc, device=h.device)
        for start in range(0, h.shape[0], chunk_rows):
            hc = h[start:start + chunk_rows].to(compute_dtype)
            logits = (hc @ w.t()).to(acc)
            ref = (h_ref[start:start + chunk_rows].to(compute_dtype) @ w_ref.t()).to(acc)
            if bias is not None:
                logits += bias.to(acc)
            if ref_bias is not None:
                ref += ref_bias.to(acc)
            logp = torch.log_softmax(logits, dim=-1)
            diff = logp - torch.log_softmax(ref, dim=-1)
            del logits, ref
            p = logp.exp_()
            kl = (p * diff).sum(-1)
            total += kl.sum()
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            # dKL/dz = p (log p - log q - KL), in place over the two blocks
            fold_chunk(p.mul_(diff.sub_(kl[:, None])), w, hc, start, grad_h, grad_w, grad_b)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        return scaled_grads(ctx, grad_out, 8)


def linear_kl_sum(h: torch.Tensor, head: torch.nn.Module, h_ref: torch.Tensor, ref_weight: torch.Tensor,
                  ref_bias: torch.Tensor | None, chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Summed KL(head(h) || ref head(h_ref)) over N trained positions ([N, d] each)."""
    compute_dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
    with torch.autocast(h.device.type, enabled=False):
        return _ChunkedLinearKL.apply(h, head.weight, head.bias, h_ref.detach(), ref_weight.detach(),
                                      None if ref_bias is None else ref_bias.detach(), chunk_rows, compute_dtype)


def _peft_model(model: torch.nn.Module) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def _serving(model: torch.nn.Module):
    """Eval mode (no dropout, no NEFTune noise) for the base pass, then back to what it was."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def reference_states(model: torch.nn.Module, reference, batch: dict[str, torch.Tensor], keep: torch.Tensor):
    """The base model's last hidden states at the trained positions and its LM head's (weight, bias)."""
    ids, pos = batch["input_ids"], batch["position_ids"]
    if reference == ADAPTER:
        peft = _peft_model(model)
        with _serving(peft), peft.disable_adapter():
            h = hidden_states(peft, ids, pos)[keep]
            head = decoder_and_head(peft)[1]
            return h, head.weight, head.bias  # read inside the context: a trained lm_head reads as the original
    with _serving(reference):
        h = hidden_states(reference, ids, pos)[keep]
    head = reference.get_output_embeddings()
    return h, head.weight, head.bias


def batch_ce_kl_sums(model: torch.nn.Module, batch: dict[str, torch.Tensor], reference,
                     chunk_rows: int = CHUNK_ROWS, per_token: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed CE, summed KL to the base) over the trained tokens of one micro-batch, from one decoder pass of the
    tuned model and one (no_grad) of the base; `per_token` receives each position's CE (`train/loss.py`)."""
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    h = hidden_states(model, batch["input_ids"], batch["position_ids"])[keep]
    _, head = decoder_and_head(model)
    ce = linear_ce_sum(h, head, labels[keep], chunk_rows, per_token)
    h_ref, w_ref, b_ref = reference_states(model, reference, batch, keep)
    return ce, linear_kl_sum(h, head, h_ref, w_ref, b_ref, chunk_rows)


def reference_for(method: str, model: torch.nn.Module, load_base=None):
    """What the KL compares against: "adapter" for LoRA / QLoRA (the model itself with the adapter off), or for full
    fine-tuning a frozen model of the base weights (`load_base()`: loaded again, so a resumed run compares against
    the base too, not against the weights it resumed from)."""
    if method != "full":
        if not hasattr(_peft_model(model), "disable_adapter"):
            raise TypeError("train.kl_coef with LoRA needs a peft model (disable_adapter)")
        return ADAPTER
    ref = load_base()
    ref.requires_grad_(False)
    return ref.eval()
