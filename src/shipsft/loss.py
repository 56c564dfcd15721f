"""The SFT loss: cross-entropy summed over trained tokens, divided once by the trained tokens of the whole step.

Why this shape (DESIGN invariant 4, failure modes 1-3): if each micro-batch were averaged on its own, a micro-batch
with 40 trained tokens would weigh as much as one with 400, and gradient accumulation would change the update.
So `step_loss` returns the SUM of per-token cross-entropies of one micro-batch divided by `n_step`, the trained
tokens of every micro-batch of the optimizer step (and of every rank, via `global_trained_tokens`).

Why never `model(...).logits`: the LM head of SmolLM2 is 49,152 x 576, so full fp32 logits for a 4 x 512 batch are
403 MB (plus as much again for their gradient), and in an SFT batch most positions are prompt tokens whose logits
are thrown away. We run the decoder, keep the hidden states of the trained positions only, and push them through
the LM head in chunks of `chunk_rows` with a fused forward+backward (`_ChunkedLinearCE`): each chunk's softmax
gradient is folded into dL/dh (and dL/dW when the head is trained) right away, so peak memory is one
[chunk_rows, vocab] fp32 block (1024 x 49,152 x 4 B = 201 MB) however long the batch. On a GPU with liger-kernel
installed, its fused linear+CE kernel does the same job.

Labels follow `shipsft.data.labels`: logits at position t are scored against labels[t] (already shifted there).

    from shipsft.loss import step_loss
    loss = step_loss(model, batch, n_step=n_trained_in_step)   # then loss.backward()
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shipsft.data.labels import IGNORE_INDEX

CHUNK_ROWS = 1024


def masked_mean(token_losses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the per-token losses where mask is set (seed 004: divide by the kept positions, not by all)."""
    mask = mask.to(token_losses.dtype)
    return (token_losses * mask).sum() / mask.sum()


def trained_token_count(labels: torch.Tensor) -> int:
    """Tokens that carry loss: exactly the labels that are not IGNORE_INDEX (failure mode 2: no '+1 per row')."""
    return int((labels != IGNORE_INDEX).sum())


def global_trained_tokens(n_local: int) -> int:
    """Trained tokens of the step summed over all ranks (one rank: n_local). DDP then averages gradients over
    ranks, so each rank scales its loss by world_size / n_global (see `loss_scale`)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = torch.tensor([n_local], dtype=torch.long)
        torch.distributed.all_reduce(t)
        return int(t.item())
    return n_local


def loss_scale(n_global: int) -> float:
    dist = torch.distributed
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return world / n_global


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder stack (hidden states out) and the LM head of a causal LM, peft-wrapped or not.

    peft injects its LoRA layers into the modules themselves, so calling the base decoder runs the adapters.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def hidden_states(model: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Last hidden states [B, T, d]. Packed rows: position_ids restart per example and there is no attention_mask,
    so transformers builds a per-document causal mask; use_cache=False is what keeps that detection on (cpu-facts
    pitfall 9: with a cache the documents silently attend to each other)."""
    decoder, _ = decoder_and_head(model)
    out = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


class _ChunkedLinearCE(torch.autograd.Function):
    """sum_i CE(h_i @ W.T + b, y_i), computing gradients chunk by chunk in the forward pass.

    Saves dL/dh [N, d] (and dL/dW when W is trained) instead of [N, vocab] logits. Matmuls run in `compute_dtype`
    (bf16 under autocast); log-softmax always in fp32.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_rows, compute_dtype):  # noqa: D401
        w = weight.to(compute_dtype)
        need_w = weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        grad_h = torch.empty_like(h, dtype=h.dtype) if h.requires_grad else None
        acc = torch.promote_types(h.dtype, torch.float32)  # fp32, or fp64 when the inputs are fp64 (tests)
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if need_b else None
        total = torch.zeros((), dtype=acc, device=h.device)
        for start in range(0, h.shape[0], chunk_rows):
            hc = h[start:start + chunk_rows].to(compute_dtype)
            yc = targets[start:start + chunk_rows]
            logits = (hc @ w.t()).to(acc)
            if bias is not None:
                logits += bias.to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            # d(sum CE)/d logits = softmax - onehot, computed in place over the logits block
            probs = logits.sub_(lse[:, None]).exp_()
            probs[torch.arange(len(yc), device=h.device), yc] -= 1.0
            g = probs.to(compute_dtype)
            if grad_h is not None:
                grad_h[start:start + chunk_rows] = (g @ w).to(h.dtype)
            if grad_w is not None:
                grad_w += (g.t() @ hc).to(acc)
            if grad_b is not None:
                grad_b += probs.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_out.to(g.dtype)  # noqa: E731
        return scale(grad_h), scale(grad_w), scale(grad_b), None, None, None


def linear_ce_sum(h: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                  chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Summed cross-entropy of `head(h)` against `targets` ([N, d] hidden states of trained positions only)."""
    if h.is_cuda:
        fused = _liger_fused()
        if fused is not None:
            return fused(h, head.weight, targets, bias=head.bias, reduction="sum")
    compute_dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
    with torch.autocast(h.device.type, enabled=False):
        return _ChunkedLinearCE.apply(h, head.weight, head.bias, targets, chunk_rows, compute_dtype)


def _liger_fused():
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except ImportError:
        return None
    return liger_fused_linear_cross_entropy


def batch_ce_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor], chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Summed CE over the trained tokens of one micro-batch (input_ids, labels, position_ids: [B, T])."""
    h = hidden_states(model, batch["input_ids"], batch["position_ids"])
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    _, head = decoder_and_head(model)
    return linear_ce_sum(h[keep], head, labels[keep], chunk_rows)


def step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], n_step: int,
              chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """This micro-batch's share of the step loss: its CE sum / trained tokens of the whole step (all ranks)."""
    return batch_ce_sum(model, batch, chunk_rows) * loss_scale(n_step)


def reference_ce_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The textbook computation (full logits, F.cross_entropy with ignore_index): used by tests as the oracle."""
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def neftune_hook(alpha: float):
    """Forward hook for the input embedding: uniform noise in [-1, 1] * alpha / sqrt(L * d) at train time only
    (NEFTune, Jain et al. 2023, eq. 1; L = row length, d = hidden size). Register it, and remove the handle after
    training: the saved model never carries it."""

    def hook(module, args, output):
        if not module.training:
            return output
        scale = alpha / math.sqrt(output.shape[-2] * output.shape[-1])
        return output + torch.empty_like(output).uniform_(-scale, scale)

    return hook
