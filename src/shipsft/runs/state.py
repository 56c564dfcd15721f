"""The training state inside a checkpoint (`checkpoints/step-N/shipsft_state/`): everything a run needs to continue
exactly where it stopped. The loadable weights and the tokenizer sit beside it in the checkpoint folder.

    loop.json       the loop's counters, data cursor, early-stopping state, full-eval history, metrics offsets
    config.yaml     the resolved config the checkpoint was trained with (a resume compares against it)
    optimizer.pt    every optimizer's state_dict (AdamW moments, step counts, schedule-free's z ...)
    optimizer/      instead of optimizer.pt under FSDP2: each rank's shard of it (torch.distributed.checkpoint)
    rng.pt          python, numpy, torch CPU and CUDA random states
    eval_ref.pt     the base model's cached top-k distributions (full fine-tuning's KL reference), when there are any

Tensors are written with torch.save and read back with `weights_only=True`: only tensors and plain Python values,
never arbitrary pickled objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipsft.runs.jsonio import read_json, write_json, write_text_atomic
from shipsft.runs.layout import STATE_DIR

LOOP, CONFIG, OPTIMIZER, RNG, EVAL_REF = "loop.json", "config.yaml", "optimizer.pt", "rng.pt", "eval_ref.pt"
OPTIMIZER_DIR = "optimizer"  # FSDP2's sharded optimizer state (train/parallel.py)


@dataclass
class TrainingState:
    loop: dict[str, Any]
    config_yaml: str
    optimizers: list[dict] | Path | None  # None when writing an FSDP2 checkpoint (its shards are moved in)
    rng: dict[str, Any]
    eval_ref: Any = None


def write_state(checkpoint: Path, state: TrainingState) -> None:
    """Write the state into a checkpoint folder being saved (the caller saves it atomically)."""
    d = Path(checkpoint) / STATE_DIR
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / LOOP, state.loop)
    write_text_atomic(d / CONFIG, state.config_yaml)
    if state.optimizers is not None:
        save_tensors(state.optimizers, d / OPTIMIZER)
    save_tensors(state.rng, d / RNG)
    if state.eval_ref is not None:
        save_tensors(state.eval_ref, d / EVAL_REF)


def save_tensors(obj: Any, path: Path) -> None:
    """torch.save, with its write failures as the OSError they are (torch reports a full disk as a RuntimeError
    from its zip writer: 'unexpected pos ...')."""
    import errno
    import shutil

    import torch

    try:
        torch.save(obj, path)
    except RuntimeError as e:
        full = shutil.disk_usage(path.parent).free < 2**20
        raise OSError(errno.ENOSPC if full else errno.EIO, f"torch.save failed: {e}", str(path)) from None


def has_state(checkpoint: Path) -> bool:
    return (Path(checkpoint) / STATE_DIR / LOOP).exists()


def read_state(checkpoint: Path) -> TrainingState:
    import torch

    d = Path(checkpoint) / STATE_DIR
    eval_ref = torch.load(d / EVAL_REF, weights_only=True) if (d / EVAL_REF).exists() else None
    optimizers = torch.load(d / OPTIMIZER, weights_only=True) if (d / OPTIMIZER).exists() else d / OPTIMIZER_DIR
    return TrainingState(read_json(d / LOOP), (d / CONFIG).read_text(encoding="utf-8"), optimizers,
                         torch.load(d / RNG, weights_only=True), eval_ref)
