"""Ranks: where `torchrun` / `accelerate launch` land, and the few collectives the loop needs.

One process (not launched, or launched with one rank) is world size 1 and every function here is the identity:
the single-process run takes exactly the code path it always took.

Why the trained-token count is summed over ranks (DESIGN invariant 4 in docs/architecture.md): DDP and FSDP2 average
gradients over ranks, so each rank scales its loss SUM by world_size / (trained tokens of the whole step on every
rank). A rank with 40 trained tokens then weighs 40/440 of the step, not 1/2.

How a step's examples are split (`shard`): every rank computes the same step from the same example cursor
(`steps/batches.py`), then takes a disjoint share of its examples, balanced by tokens with a greedy
longest-first assignment. The loss is exact however the examples are split (the one global denominator above), so
the split only decides speed, and a rank's time follows the tokens it runs, prompt tokens included (a 900-token
prompt with a 10-token answer costs a forward/backward of 910 tokens). Ties go by trained tokens, then by rank.
"""
from __future__ import annotations

import gc
import os
from datetime import timedelta

import torch


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if initialized() else 1


def rank() -> int:
    return torch.distributed.get_rank() if initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files (run folder, checkpoints, metrics, reports) and prints."""
    return rank() == 0


def launched_world_size() -> int:
    """WORLD_SIZE as set by torchrun / accelerate launch / srun wrappers (1 when started as a plain process)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def start(timeout_minutes: int) -> None:
    """Join the process group when launched by torchrun / accelerate launch (RANK, WORLD_SIZE, MASTER_ADDR set).
    Backend nccl on CUDA, gloo on CPU. `timeout_minutes` bounds how long a rank waits for the others, e.g. while
    rank 0 alone runs a task eval under DDP (torch's default is 10 minutes for nccl, too short for a long eval)."""
    if initialized() or "RANK" not in os.environ:
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_minutes))


def stop() -> None:
    """Leave the process group. Drop every DDP wrapper first: a DistributedDataParallel's reducer holds the group,
    and when the reducer is freed last (Python's exit, or the run's objects going out of scope) the gloo group's
    destructor joins its worker threads while holding the GIL, and a worker that is freeing a finished broadcast's
    tensor waits for the GIL: a deadlock (rank 1 of tests/train/test_parallel.py's DDP runs hung after the run was
    complete: both DDP tests in the CI run of 2026-12-06 on 2 cores, and here; pytorch/pytorch#56297). destroy_process_group releases the GIL."""
    if initialized():
        gc.collect()  # a wrapper in a reference cycle is freed now, while the group is still registered
        torch.distributed.destroy_process_group()


def global_trained_tokens(n_local: int) -> int:
    """Trained tokens of the step summed over all ranks (one rank: n_local)."""
    return int(sum_over_ranks(n_local))


def loss_scale(n_global: int) -> float:
    """Each rank's loss sum times this gives the step's mean CE per trained token after DDP's gradient mean."""
    return world_size() / n_global


def sum_over_ranks(x: float) -> float:
    if not initialized():
        return x
    t = torch.tensor([x], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t.item())


def max_over_ranks(n: int) -> int:
    if not initialized():
        return n
    t = torch.tensor([n], dtype=torch.long)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on one (a signal that reached one rank stops all of them at the same
    step; otherwise the others would wait forever in the next step's collectives)."""
    return max_over_ranks(int(flag)) > 0


def broadcast(obj):
    """Rank 0's `obj` on every rank (eval records, early-stopping decisions, a failed write's message)."""
    if not initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if initialized():
        torch.distributed.barrier()


def shard(idx: list[int], lengths: list[int], trained: list[int], ranks: int, me: int) -> list[int]:
    """This rank's share of one step's examples `idx` (indices into `lengths` / `trained`): longest first, each to
    the rank with the fewest tokens so far (then the fewest trained tokens, then the lowest rank); returned in
    the step's own order. Disjoint over ranks and together exactly `idx`; one rank gets all of `idx`."""
    if ranks == 1:
        return list(idx)
    load = [(0, 0)] * ranks
    owner = {}
    for pos in sorted(range(len(idx)), key=lambda p: (-lengths[idx[p]], -trained[idx[p]], p)):
        r = min(range(ranks), key=lambda k: (load[k], k))
        owner[pos] = r
        load[r] = (load[r][0] + lengths[idx[pos]], load[r][1] + trained[idx[pos]])
    return [i for p, i in enumerate(idx) if owner[p] == me]
