"""Optimizers and parameter groups.

Weight decay goes on weight matrices only (parameters with 2+ dimensions: linear weights, embeddings), never on
biases or norm gains: shrinking a norm gain toward zero is a quick way to break a model. The LR of every step comes
from `steps/schedule.py: lr_at` and is applied by `set_lr` once per optimizer step.

Optional optimizers come from the libraries that provide them and fail with the package to install:
Lion (`lion-pytorch`), schedule-free AdamW (`schedulefree`), 8-bit AdamW (`bitsandbytes`, CUDA only).
Muon is `torch.optim.Muon` (torch >= 2.9): it only handles 2-D hidden matrices, so embeddings, the LM head, norms
and biases go to an AdamW beside it.

    opts = build_optimizers(cfg.optim, model)
    for step in range(total):
        set_lr(opts, lr_at(step, total, warmup, cfg.optim))

Schedule-free AdamW keeps two points (the one it evaluates at and the one it steps); `train_mode` / `eval_mode`
switch between them and the loop calls them around every eval and save (the evaluated weights are the averaged
ones, as the schedule-free paper prescribes: Defazio et al. 2024).
"""
from __future__ import annotations

import torch

from shipsft.config import OptimConfig
from shipsft.errors import ConfigError
from shipsft.model.load import base_model


def decay_groups(named_params, weight_decay: float) -> list[dict]:
    """Two groups of the trainable parameters: weight matrices (decayed) and everything 1-D (not decayed)."""
    decay, no_decay = [], []
    for _, p in named_params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _missing(name: str, package: str, extra: str = "") -> ConfigError:
    return ConfigError([f"optim.name={name} needs the '{package}' package, which is not installed. "
                        f"Fix: pip install {package}{extra}, or use optim.name=adamw."])


def build_optimizers(o: OptimConfig, model: torch.nn.Module) -> list[torch.optim.Optimizer]:
    """The optimizer(s) for the trainable parameters (a list: Muon needs an AdamW beside it)."""
    lr = o.lr
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError(["no trainable parameters: check method.name and method.lora.target_modules / layers"])
    groups = decay_groups(named, o.weight_decay)
    on_gpu = any(p.is_cuda for _, p in named)
    if o.name == "adamw":
        # fused/foreach kernels: foreach is the default on CPU; fused is faster on CUDA
        return [torch.optim.AdamW(groups, lr=lr, betas=o.betas, eps=o.eps, fused=on_gpu or None)]
    if o.name == "adafactor":
        from transformers.optimization import Adafactor

        # fixed LR from our schedule (no relative step / parameter scaling, which would fight lr_at)
        return [Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)]
    if o.name == "adamw_8bit":
        if not on_gpu:
            raise ConfigError(["optim.name=adamw_8bit runs only on a CUDA GPU (bitsandbytes 8-bit kernels); this "
                               "run is on the CPU. Fix: optim.name=adamw."])
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise _missing("adamw_8bit", "bitsandbytes", " (or pip install 'shipsft[gpu]')") from None
        return [bnb.optim.AdamW8bit(groups, lr=lr, betas=o.betas, eps=o.eps)]
    if o.name == "lion":
        try:
            from lion_pytorch import Lion
        except ImportError:
            raise _missing("lion", "lion-pytorch") from None
        return [Lion(groups, lr=lr, betas=o.betas)]
    if o.name == "schedule_free_adamw":
        try:
            import schedulefree
        except ImportError:
            raise _missing("schedule_free_adamw", "schedulefree") from None
        return [schedulefree.AdamWScheduleFree(groups, lr=lr, betas=o.betas, eps=o.eps)]
    if o.name == "muon":
        if not hasattr(torch.optim, "Muon"):
            raise ConfigError([f"optim.name=muon needs torch.optim.Muon (torch >= 2.9); this torch is "
                               f"{torch.__version__}. Fix: upgrade torch or use optim.name=adamw."])
        base = base_model(model)
        skip = {id(m.weight) for m in (base.get_input_embeddings(), base.get_output_embeddings()) if m is not None}
        hidden = [p for _, p in named if p.ndim == 2 and id(p) not in skip]
        rest = [(n, p) for n, p in named if not (p.ndim == 2 and id(p) not in skip)]
        opts = [torch.optim.Muon(hidden, lr=lr, weight_decay=o.weight_decay, adjust_lr_fn="match_rms_adamw")]
        if rest:
            opts.append(torch.optim.AdamW(decay_groups(rest, o.weight_decay), lr=lr, betas=o.betas, eps=o.eps))
        return opts
    raise ConfigError([f"optim.name={o.name!r} is not supported"])


def set_lr(optimizers: list[torch.optim.Optimizer], lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def train_mode(optimizers: list[torch.optim.Optimizer]) -> None:
    """Before training steps: schedule-free optimizers move the weights to the point they step from."""
    for opt in optimizers:
        if hasattr(opt, "train") and callable(opt.train):
            opt.train()


def eval_mode(optimizers: list[torch.optim.Optimizer]) -> None:
    """Before an eval or a save: schedule-free optimizers move the weights to their averaged point."""
    for opt in optimizers:
        if hasattr(opt, "eval") and callable(opt.eval):
            opt.eval()

