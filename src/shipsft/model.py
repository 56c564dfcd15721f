"""Load the model and make it trainable: LoRA (peft), QLoRA (bitsandbytes NF4 + peft) or full fine-tuning.

Master weights are fp32; speed comes from autocast (`autocast_dtype`), never from storing bf16 weights, so AdamW's
moments and small LoRA updates keep full precision. Weights load from safetensors only (`use_safetensors=True`: a
pickle can run code); a GGUF is converted once into a cached fp32 safetensors folder by `shipsft.source`.
`trust_remote_code` is passed on only when the config says so.

    model, info = load_for_training(cfg, device)
    print(info.summary())  # "lora: 4,884,480 trainable of 139,399,488 (3.50%)"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from shipsft.config import RunConfig
from shipsft.errors import ConfigError
from shipsft.source import resolve_model_dir


@dataclass
class ModelInfo:
    method: str
    model_dir: Path
    trainable: int
    total: int

    def summary(self) -> str:
        share = self.trainable / self.total
        return f"{self.method}: {self.trainable:,} trainable of {self.total:,} parameters ({share:.2%})"


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast, or None for plain fp32.

    auto: bf16 on a GPU that supports it, and on CPUs with native bf16 matmuls (AVX512-BF16 / AMX, which oneDNN
    reports as mkldnn bf16 support). Measured with bench/train_vs_trl.py on a 2-core AMD EPYC with AVX512-BF16
    (no AMX), SmolLM2-135M LoRA, 6 steps: bf16 1.82x fp32 (63.3 vs 34.8 trained tok/s); first-step loss 6.151 vs
    6.150, held-out loss after the epoch 4.744 vs 4.634 (bf16 gradients are noisier; set fp32 to trade speed for
    that). On CPUs without native bf16 it is emulated and slower than fp32, so auto keeps fp32 there.
    """
    p = cfg.train.precision
    if p == "fp32":
        return None
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    else:
        ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if p == "bf16" and not ok:
        raise ConfigError([f"train.precision=bf16: this {device.type.upper()} has no native bf16 support. "
                           "Fix: train.precision=auto (uses fp32 here) or fp32."])
    return torch.bfloat16 if ok else None


def quantization_config(cfg: RunConfig, device: torch.device):
    """NF4 + double quantization with bf16 compute (the QLoRA recipe). CUDA only."""
    if device.type != "cuda":
        raise ConfigError(["method.name=qlora needs a CUDA GPU: bitsandbytes' 4-bit NF4 kernels do not run on "
                           "this machine, which has none. Fix: method.name=lora (same adapters, fp32 base "
                           "weights; a 135M-1B model fits in CPU memory) or run on a GPU."])
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(["method.name=qlora needs the 'bitsandbytes' package. "
                           "Fix: pip install bitsandbytes (or pip install 'shipsft[gpu]')."]) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_base(cfg: RunConfig, device: torch.device) -> tuple[torch.nn.Module, Path]:
    """The causal LM with fp32 weights (NF4 for qlora) on `device`, in train mode."""
    from transformers import AutoModelForCausalLM

    quant = quantization_config(cfg, device) if cfg.method.name == "qlora" else None
    model_dir = resolve_model_dir(cfg.model.path, cfg.model.gguf_file)
    attn = cfg.model.attn_implementation
    if attn == "flash_attention_2" and device.type != "cuda":
        raise ConfigError(["model.attn_implementation=flash_attention_2 needs a CUDA GPU. Fix: sdpa."])
    kwargs = dict(dtype=torch.float32, use_safetensors=True, trust_remote_code=cfg.model.trust_remote_code)
    if attn != "auto":
        kwargs["attn_implementation"] = attn
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device.index or 0})
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError([f"model.path: could not load a model from {model_dir}: {e}. Fix: a folder with "
                           "config.json and *.safetensors weights (pickled .bin weights are refused), or a .gguf."]
                          ) from None
    if quant is None:
        model.to(device)
    model.config.use_cache = False  # packed rows only stay isolated without a cache (cpu-facts pitfall 9)
    return model, model_dir


def apply_method(cfg: RunConfig, model: torch.nn.Module) -> torch.nn.Module:
    """Freeze/unfreeze for full FT, or wrap with LoRA adapters (peft) for lora/qlora."""
    m = cfg.method
    if m.name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    import peft

    if m.name == "qlora":
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    lc = m.lora
    n_layers = getattr(model.config, "num_hidden_layers", None)
    if lc.layers is not None and n_layers is not None:
        bad = [i for i in lc.layers if not 0 <= i < n_layers]
        if bad:
            raise ConfigError([f"method.lora.layers: {bad} out of range; this model has layers 0..{n_layers - 1}"])
    config = peft.LoraConfig(
        r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
        use_dora=lc.use_dora, use_rslora=lc.use_rslora, layers_to_transform=lc.layers,
        modules_to_save=lc.modules_to_save or None, bias="none", task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, config)
    except ValueError as e:
        raise ConfigError([f"method.lora: {e}. Fix: target_modules names must match the model's module names "
                           "(e.g. q_proj, v_proj) or be 'all-linear'."]) from None


def param_counts(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def load_for_training(cfg: RunConfig, device: torch.device | None = None) -> tuple[torch.nn.Module, ModelInfo]:
    device = device or pick_device()
    model, model_dir = load_base(cfg, device)
    model = apply_method(cfg, model)
    if cfg.train.gradient_checkpointing and cfg.method.name != "qlora":
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        # non-reentrant checkpointing needs no input grads, so frozen embeddings under LoRA are fine
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    trainable, total = param_counts(model)
    return model, ModelInfo(cfg.method.name, model_dir, trainable, total)


def save_trained(model: torch.nn.Module, tokenizer, out_dir: Path) -> None:
    """Adapter (peft format: adapter_config.json + adapter_model.safetensors) or full safetensors weights, plus the
    tokenizer and its chat template, so the folder loads and chats as it is."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
