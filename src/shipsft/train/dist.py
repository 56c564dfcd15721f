"""Ranks: where torchrun / accelerate launches land. One process today (world size 1); the trained-token count
is already summed over ranks, so the loss normalisation holds when data parallelism is switched on.

Why sum over ranks (DESIGN invariant 4 in docs/architecture.md): DDP averages gradients over ranks, so each rank
must scale its loss sum by world_size / (trained tokens of the whole step on every rank), or a rank with few
trained tokens would weigh as much as one with many.
"""
from __future__ import annotations

import torch


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if initialized() else 0


def global_trained_tokens(n_local: int) -> int:
    """Trained tokens of the step summed over all ranks (one rank: n_local)."""
    if initialized():
        t = torch.tensor([n_local], dtype=torch.long)
        torch.distributed.all_reduce(t)
        return int(t.item())
    return n_local


def loss_scale(n_global: int) -> float:
    """Each rank's loss sum times this gives the step's mean CE per trained token after DDP's gradient mean."""
    return world_size() / n_global
