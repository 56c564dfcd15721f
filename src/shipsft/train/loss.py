"""The SFT loss: cross-entropy summed over trained tokens, divided once by the trained tokens of the whole step.

Why this shape (DESIGN invariant 4 in docs/architecture.md; failure modes 1-3 in docs/failure-modes.md): if each
micro-batch were averaged on its own, a micro-batch with 40 trained tokens would weigh as much as one with 400, and
gradient accumulation would change the update. So the loop multiplies the SUM of per-token cross-entropies of one
micro-batch (`batch_ce_sum`) by `dist.loss_scale(n_step)`, where n_step is the trained tokens of every micro-batch
of the optimizer step, on every rank.

Why never `model(...).logits`: the LM head of SmolLM2 is 49,152 x 576, so full fp32 logits for a 4 x 512 batch are
403 MB (plus as much again for their gradient), and in an SFT batch most positions are prompt tokens whose logits
are thrown away. We run the decoder, keep the hidden states of the trained positions only, and push them through
the LM head in chunks of `chunk_rows` with a fused forward+backward (`_ChunkedLinearCE`): each chunk's softmax
gradient is folded into dL/dh (and dL/dW when the head is trained) right away, so peak memory is one
[chunk_rows, vocab] fp32 block (1024 x 49,152 x 4 B = 201 MB) however long the batch. On a GPU with liger-kernel
installed, its fused linear+CE kernel does the same job.

Labels follow `shipsft.data.labels`: logits at position t are scored against labels[t] (already shifted there).

    loss = batch_ce_sum(model, batch) * loss_scale(n_step)   # then loss.backward()
"""
from __future__ import annotations

import math

import torch


from shipsft.data.labels import IGNORE_INDEX
from shipsft.model.load import base_model

CHUNK_ROWS = 1024


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder stack (hidden states out) and the LM head of a causal LM, peft-wrapped or DDP-wrapped or not.

    peft injects its LoRA layers into the modules themselves, so calling the base decoder runs the adapters.
    """
    base = base_model(_unwrap(model))
    return base.get_decoder(), base.get_output_embeddings()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _distributed(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, (DistributedDataParallel, FSDPModule))


def hidden_states(model: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """Last hidden states [B, T, d]. Packed rows: position_ids restart per example and there is no attention_mask,
    so transformers builds a per-document causal mask; use_cache=False is what keeps that detection on (with a
    KV cache, transformers skips it and the documents silently attend to each other: a logit difference of 17.3
    measured on SmolLM2; tests/train/test_loss.py checks packed == unpacked).

    A DDP- or FSDP2-wrapped model runs its own forward (its gradient sync and parameter gathering hang on it,
    `train/parallel.py`) asking for no logits at all (`logits_to_keep` = no positions) and the hidden states,
    whose last entry is the final-norm output the decoder returns (tests/train/test_parallel.py checks they are
    equal)."""
    if _distributed(model):
        out = model(input_ids=input_ids, position_ids=position_ids, use_cache=False, output_hidden_states=True,
                    logits_to_keep=torch.zeros(0, dtype=torch.long, device=input_ids.device))
        return out.hidden_states[-1]
    decoder, _ = decoder_and_head(model)
    out = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


class _ChunkedLinearCE(torch.autograd.Function):
    """sum_i CE(h_i @ W.T + b, y_i), computing gradients chunk by chunk in the forward pass.

    Saves dL/dh [N, d] (and dL/dW when W is trained) instead of [N, vocab] logits. Matmuls run in `compute_dtype`
    (bf16 under autocast); log-softmax always in fp32.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_rows, compute_dtype, per_token):  # noqa: D401
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
            ce = lse - logits.gather(1, yc[:, None]).squeeze(1)
            total += ce.sum()
            if per_token is not None:  # a copy for logging (the loss per source), outside the graph
                per_token[start:start + len(yc)] = ce.detach()
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            # d(sum CE)/d logits = softmax - onehot, computed in place over the logits block
            probs = logits.sub_(lse[:, None]).exp_()
            probs[torch.arange(len(yc), device=h.device), yc] -= 1.0
            fold_chunk(probs, w, hc, start, grad_h, grad_w, grad_b)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        return scaled_grads(ctx, grad_out, 7)


def fold_chunk(g: torch.Tensor, w: torch.Tensor, hc: torch.Tensor, start: int, grad_h, grad_w, grad_b) -> None:
    """Fold one chunk's d(loss)/d(logits) `g` ([rows, vocab], fp32) into dL/dh (rows start.., in place), dL/dW and
    dL/db (each None when not needed); the matmuls run in w's dtype (the compute dtype). Shared by the chunked CE
    and the chunked KL (train/kl.py)."""
    gc = g.to(w.dtype)
    if grad_h is not None:
        grad_h[start:start + len(g)] = (gc @ w).to(grad_h.dtype)
    if grad_w is not None:
        grad_w += (gc.t() @ hc).to(grad_w.dtype)
    if grad_b is not None:
        grad_b += g.sum(0)


def scaled_grads(ctx, grad_out: torch.Tensor, n_inputs: int) -> tuple:
    """The backward of a chunked loss: the (dL/dh, dL/dW, dL/db) saved in its forward times the incoming gradient,
    then None for its other `n_inputs - 3` inputs."""
    scaled = [None if g is None else g * grad_out.to(g.dtype) for g in ctx.saved_tensors]
    return (*scaled, *[None] * (n_inputs - 3))


def linear_ce_sum(h: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor,
                  chunk_rows: int = CHUNK_ROWS, per_token: torch.Tensor | None = None) -> torch.Tensor:
    """Summed cross-entropy of `head(h)` against `targets` ([N, d] hidden states of trained positions only).
    `per_token` (an fp32 tensor [N], or None): filled with each position's CE, detached (the loop's loss per
    mixture source); the chunked path fills it, so liger's fused kernel (which returns only the sum) is skipped then."""
    if h.is_cuda and per_token is None:
        fused = _liger_fused()
        if fused is not None:
            return fused(h, head.weight, targets, bias=head.bias, reduction="sum")
    compute_dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
    with torch.autocast(h.device.type, enabled=False):
        return _ChunkedLinearCE.apply(h, head.weight, head.bias, targets, chunk_rows, compute_dtype, per_token)


def _liger_fused():
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except ImportError:
        return None
    return liger_fused_linear_cross_entropy


def batch_ce_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor], chunk_rows: int = CHUNK_ROWS,
                 per_token: torch.Tensor | None = None) -> torch.Tensor:
    """Summed CE over the trained tokens of one micro-batch (input_ids, labels, position_ids: [B, T]); `per_token`
    as in `linear_ce_sum`, one entry per trained token in row-major order (labels[labels != -100])."""
    h = hidden_states(model, batch["input_ids"], batch["position_ids"])
    labels = batch["labels"]
    keep = labels != IGNORE_INDEX
    _, head = decoder_and_head(model)
    return linear_ce_sum(h[keep], head, labels[keep], chunk_rows, per_token)


def add_neftune(model: torch.nn.Module, alpha: float | None):
    """NEFTune's noise on the input embedding for training (`neftune_hook`), or None when train.neftune_alpha is
    unset; the caller removes the returned handle when training ends."""
    if not alpha:
        return None
    return base_model(model).get_input_embeddings().register_forward_hook(neftune_hook(alpha))


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
