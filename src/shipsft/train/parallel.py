"""Data parallelism on the engines users already run: DistributedDataParallel, or FSDP2 (`fully_shard`), in a
process group that `torchrun` or `accelerate launch` started (`train/dist.py: start`).

    strategy = resolve(cfg.train.distributed)         # single | ddp | fsdp2
    model = shard_model(model, strategy, amp)         # FSDP2 shards in place, before the optimizer is built
    train_model = wrap(model, strategy)               # DDP wraps; the loss forward goes through it
    with grad_sync(train_model, strategy, last_micro_batch): loss.backward()

Why the loss forward goes through the wrapped module's own forward (`train/loss.py: hidden_states`): DDP starts its
gradient all-reduce from hooks set up in `DistributedDataParallel.forward`, and FSDP2 all-gathers the root's
parameters (embeddings, final norm, LM head) in the root module's forward. Calling the decoder directly, as the
single-process path does to skip the full-vocabulary logits, would bypass both.

Why FSDP2 shards each decoder layer and then the whole model (not one flat unit): a layer's weights are gathered
just before it runs and freed after, so peak memory holds one layer unsharded, not the model (the layout of
torchtitan and of accelerate's FSDP2 auto-wrap). Tied embeddings stay in the root unit together.

Checkpoints: under DDP every rank holds the same weights and optimizer state, and rank 0 writes them in the
single-process format, so a DDP checkpoint resumes on any number of processes. Under FSDP2 the weights in a
checkpoint are consolidated on rank 0 (every checkpoint stays a loadable model, which promotion and eval need), and
the optimizer state, 2-3x the size of the weights, is written sharded by every rank with torch.distributed.checkpoint
(`shipsft_state/optimizer/`), which re-shards on load: to another number of ranks, or to one plain process.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from shipsft.errors import ConfigError
from shipsft.model.load import base_model
from shipsft.train import dist

STRATEGIES = ("single", "ddp", "fsdp2")


def resolve(distributed: str, method: str) -> str:
    """train.distributed (auto | ddp | fsdp2) for this launch. auto: ddp when launched on several processes."""
    world = dist.world_size()
    if distributed == "auto":
        return "ddp" if world > 1 else "single"
    if not dist.initialized():
        raise ConfigError([f"train.distributed={distributed} needs a launcher: this process was started alone "
                           "(no RANK / WORLD_SIZE in its environment). Fix: torchrun --nproc-per-node N -m shipsft "
                           "train CONFIG (or accelerate launch -m shipsft train CONFIG), or train.distributed=auto."])
    if distributed == "fsdp2" and method == "qlora":
        raise ConfigError(["train.distributed=fsdp2 with method.name=qlora: FSDP2 cannot shard bitsandbytes' packed "
                           "4-bit weights. Fix: train.distributed=ddp (each GPU holds the 4-bit base model), or "
                           "method.name=lora with fsdp2."])
    return distributed


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated decoder blocks of a causal LM (peft-wrapped or not): FSDP2's sharding units."""
    decoder = base_model(model).get_decoder()
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    if layers is None:
        raise ConfigError([f"train.distributed=fsdp2: cannot find the decoder layers of {type(decoder).__name__} "
                           "(no .layers or .h). Fix: train.distributed=ddp."])
    return list(layers)


def shard_model(model: torch.nn.Module, strategy: str, amp: torch.dtype | None) -> torch.nn.Module:
    """FSDP2: shard every decoder layer, then the root, in place (parameters become DTensors, so the optimizer is
    built after this). bf16 runs gather parameters in bf16 and reduce gradients in fp32 (MixedPrecisionPolicy)."""
    if strategy != "fsdp2":
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=amp, reduce_dtype=torch.float32) if amp else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def wrap(model: torch.nn.Module, strategy: str) -> torch.nn.Module:
    """The module the training forward goes through: DDP around the model, or the (sharded) model itself."""
    if strategy != "ddp":
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def grad_sync(train_model: torch.nn.Module, strategy: str, sync: bool):
    """Accumulate micro-batch gradients locally; communicate them once, on the step's last micro-batch."""
    if strategy == "ddp" and not sync:
        with train_model.no_sync():
            yield
        return
    if strategy == "fsdp2":
        train_model.set_requires_gradient_sync(sync)
    yield


def total_norm(norm) -> float:
    """clip_grad_norm_'s result as a float (under FSDP2 it is a DTensor: the norm over every rank's shard)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def full_state_dict(model: torch.nn.Module, strategy: str) -> dict | None:
    """FSDP2: the consolidated weights on rank 0 (every rank must call this; the others get None). Otherwise None:
    the model saves its own weights."""
    if strategy != "fsdp2":
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return full if dist.is_main() else None


def save_sharded_optimizer(model: torch.nn.Module, optimizers: list, out: Path) -> None:
    """FSDP2: every rank writes its shard of the optimizer state into `out` (torch.distributed.checkpoint)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    dcp.save(get_optimizer_state_dict(model, optimizers), checkpoint_id=str(out))


def load_optimizer(model: torch.nn.Module, optimizers: list, saved: list[dict] | Path) -> None:
    """Restore optimizer state from a checkpoint, whatever wrote it: `saved` is the single-process / DDP format
    (one state_dict per optimizer, parameters by position) or the folder an FSDP2 run wrote its shards into.
    torch.distributed.checkpoint re-shards on load, so any number of ranks, FSDP2 or not, can continue."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, \
        set_optimizer_state_dict

    sharded = any(hasattr(p, "full_tensor") for p in model.parameters())
    if isinstance(saved, Path):
        import torch.distributed.checkpoint as dcp

        template = get_optimizer_state_dict(model, optimizers)
        dcp.load(template, checkpoint_id=str(saved))
        set_optimizer_state_dict(model, optimizers, template)
        return
    if not sharded:
        for opt, sd in zip(optimizers, saved):
            opt.load_state_dict(sd)
        return
    # positional state dicts into sharded parameters: name each position (same build order, train/optim.py)
    names = {id(p): n for n, p in model.named_parameters()}
    merged: dict = {"state": {}, "param_groups": []}
    for opt, sd in zip(optimizers, saved):
        live = [p for g in opt.param_groups for p in g["params"]]
        fqn = {k: names[id(p)] for k, p in enumerate(live)}
        merged["state"].update({fqn[k]: v for k, v in sd["state"].items()})
        merged["param_groups"] += [{**g, "params": [fqn[k] for k in g["params"]]} for g in sd["param_groups"]]
    set_optimizer_state_dict(model, optimizers, merged, options=StateDictOptions(full_state_dict=True))
