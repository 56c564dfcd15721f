"""Device and precision: where the run trains, whether it uses bf16 autocast, and how frozen weights are stored.

Trained weights stay fp32 (AdamW's moments and small LoRA updates keep full precision); speed comes from autocast.
Frozen weights are different: under bf16 autocast a LoRA run's frozen base Linear weights would be re-cast from
fp32 to bf16 on every forward (a quarter of a bf16 step's time in a profiler trace: the measurement is beside
`store_frozen`). `store_frozen` casts them once; the values the matmuls see are the same bf16 values
autocast produced, so training computes the same thing without the copies, and the base weights take half the
memory. There is no fp32 copy left: a pass that runs without autocast (eval loss, KL to the base with the adapter
switched off) computes these layers in bf16 and returns fp32 activations (`FrozenLinear.forward`), i.e. it sees
the same base model training saw.
"""
from __future__ import annotations

import torch

from shipsft.errors import ConfigError


def pick_device() -> torch.device:
    """The current CUDA device (each rank's own: train/dist.py sets it from LOCAL_RANK), else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """bf16 matmuls in hardware: a CUDA GPU that supports them, or a CPU with AVX512-BF16 / AMX (oneDNN says)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# bench/train_vs_trl.py on a 2-core AMD EPYC with AVX512-BF16 (no AMX), SmolLM2-135M LoRA, 6 steps: bf16 1.82x fp32 (63.3
# vs 34.8 trained tok/s); first-step loss 6.151 vs 6.150, held-out loss after the epoch 4.744 vs 4.634
def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast, or None for plain fp32 (`precision` is train.precision: auto | fp32 | bf16).

    auto: bf16 where the hardware has native bf16 (faster there, with slightly noisier gradients: set fp32 to trade
    speed for that; the measurement is in the comment above). Without native bf16 it is emulated and slower than fp32,
    so auto keeps fp32 there.
    """
    if precision == "fp32":
        return None
    ok = native_bf16(device)
    if precision == "bf16" and not ok:
        raise ConfigError([f"train.precision=bf16: this {device.type.upper()} has no native bf16 support. "
                           "Fix: train.precision=auto (uses fp32 here) or fp32."])
    return torch.bfloat16 if ok else None


class FrozenLinear(torch.nn.Linear):
    """A frozen nn.Linear whose weight (and bias) are stored in a low precision such as bf16.

    Under autocast the stored weight is used as is (no per-forward cast). Without autocast, the input is cast to
    the weight's dtype and the output back to the input's dtype, so fp32 callers get fp32 activations.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if x.dtype == w.dtype or torch.is_autocast_enabled(x.device.type):
            return torch.nn.functional.linear(x, w, self.bias)
        return torch.nn.functional.linear(x.to(w.dtype), w, self.bias).to(x.dtype)


# a torch-profiler trace of a bf16 SmolLM2-135M LoRA step on a 2-core AMD EPYC with AVX512-BF16: 25% of the step re-cast
# frozen fp32 weights to bf16 before this existed
def store_frozen(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Replace every plain nn.Linear whose weight is frozen by a FrozenLinear holding its weights in `dtype`, once.

    Left alone: trainable layers (LoRA adapters, modules_to_save, full fine-tuning), quantized layers (QLoRA's
    NF4 Linear4bit is a subclass, not a plain nn.Linear), and the output embedding (tied to the input embedding in
    most small models; the embedding output starts the fp32 residual stream). Returns how many were replaced.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child is head or child.weight.requires_grad:
                continue
            if child.bias is not None and child.bias.requires_grad:
                continue
            new = FrozenLinear(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
            new.weight = torch.nn.Parameter(child.weight.detach().to(dtype), requires_grad=False)
            if child.bias is not None:
                new.bias = torch.nn.Parameter(child.bias.detach().to(dtype), requires_grad=False)
            new.train(child.training)
            setattr(parent, name, new)
            replaced += 1
    return replaced
