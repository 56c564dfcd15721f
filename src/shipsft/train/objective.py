"""What one micro-batch adds to the step's loss: the cross-entropy over its trained tokens (train/loss.py), plus
`train.kl_coef` x the KL to the base model (train/kl.py) when it is set, both divided by the trained tokens of the
whole optimizer step (all micro-batches, all ranks: docs/architecture.md, invariant 4). For a mixture, each trained
token's CE also goes into the step's per-source tally (train/sources.py), from the same forward.

    loss, kl = micro_loss(model, batch, n_step, amp=None, kl_coef=0.0, kl_ref=None, sources=None, tally=None)
    loss.backward()
"""
from __future__ import annotations

import torch

from shipsft.data.labels import IGNORE_INDEX
from shipsft.train import dist
from shipsft.train.kl import batch_ce_kl_sums
from shipsft.train.loss import batch_ce_sum
from shipsft.train.sources import Tally


def micro_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], n_step: int, amp: torch.dtype | None,
               kl_coef: float, kl_ref, sources: torch.Tensor | None, tally: Tally | None) -> tuple[torch.Tensor, float]:
    """(the loss to backpropagate, its KL part as a number: 0.0 without the KL term). `sources`: the source of every
    position of the batch ([B, T], train/sources.py: token_sources), given with the `tally` for a mixture."""
    scale = dist.loss_scale(n_step)
    keep = per_token = None
    if tally is not None and sources is not None:  # the CE of each trained token, for the loss per source
        keep = batch["labels"] != IGNORE_INDEX
        per_token = torch.empty(int(keep.sum()), device=batch["labels"].device)
    device = batch["input_ids"].device
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        if kl_coef:  # KL-regularised SFT: CE and KL share the step's denominator
            ce, kl = batch_ce_kl_sums(model, batch, kl_ref, per_token=per_token)
            loss, kl_part = (ce + kl_coef * kl) * scale, float(kl.detach()) * scale
        else:
            loss, kl_part = batch_ce_sum(model, batch, per_token=per_token) * scale, 0.0
    if per_token is not None:
        tally.add(sources[keep.cpu()], per_token)
    return loss, kl_part
