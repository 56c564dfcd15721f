"""Load the model and make it trainable: LoRA (peft), QLoRA (bitsandbytes NF4 + peft) or full fine-tuning.

Weights load from safetensors only (`use_safetensors=True`: a pickle can run code) unless a hub id's config sets
`model.allow_pickle`; a GGUF is converted once into a cached fp32 safetensors folder (`shipsft.model.locate`), a hub
id is resolved to its cached snapshot (`shipsft.model.hub`). `trust_remote_code` is passed on only when the config
says so.

    model, info = load_for_training(cfg.model, cfg.method, cfg.train.gradient_checkpointing, device, amp)
    print(info.summary())  # "lora: 4,884,480 trainable of 139,399,488 parameters (3.50%)"

`model.attn_implementation: per_document` (the default) loads the model with shipsft's per-document attention
(`shipsft.model.attention`), registered with transformers' AttentionInterface. With `amp` = bf16, LoRA's frozen
base Linear weights are stored in bf16 once (`shipsft.model.precision.store_frozen`) instead of being re-cast by
autocast on every forward; adapters and their optimizer state stay fp32, full fine-tuning keeps fp32 masters.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from shipsft.config import MethodConfig, ModelConfig
from shipsft.errors import ConfigError
from shipsft.model.locate import resolve_model_dir
from shipsft.model.precision import store_frozen


@dataclass
class ModelInfo:
    method: str
    model_dir: Path
    trainable: int
    total: int

    def summary(self) -> str:
        share = self.trainable / self.total
        return f"{self.method}: {self.trainable:,} trainable of {self.total:,} parameters ({share:.2%})"


def hf_config(model: ModelConfig):
    """The transformers config of the model (config.json of its folder; a GGUF is converted once first): what the
    batching (model/attention.py: rows_join) and the memory planner read, without loading a weight. None for a
    folder with a tokenizer and no config.json (the audit and `shipsft preview` work on those)."""
    from transformers import AutoConfig

    folder = resolve_model_dir(model, weights=False)
    if not (folder / "config.json").exists():
        return None
    return AutoConfig.from_pretrained(folder, trust_remote_code=model.trust_remote_code)


def quantization_config(method: MethodConfig, device: torch.device):
    """NF4 + double quantization with bf16 compute (the QLoRA recipe, Dettmers et al. 2023). CUDA only."""
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


def load_base(model: ModelConfig, method: MethodConfig, device: torch.device) -> tuple[torch.nn.Module, Path]:
    """The causal LM with fp32 weights (NF4 for qlora) on `device`, in train mode."""
    model_dir = resolve_model_dir(model)
    return load_weights(model_dir, model, method, device), model_dir


def load_weights(model_dir: Path, model: ModelConfig, method: MethodConfig, device: torch.device):
    from transformers import AutoModelForCausalLM

    quant = quantization_config(method, device) if method.name == "qlora" else None
    attn = model.attn_implementation
    if attn == "flash_attention_2" and device.type != "cuda":
        raise ConfigError(["model.attn_implementation=flash_attention_2 needs a CUDA GPU. Fix: sdpa."])
    kwargs = dict(dtype=torch.float32, use_safetensors=None if model.allow_pickle else True,
                  trust_remote_code=model.trust_remote_code)
    if attn == "per_document":
        from shipsft.model.attention import register

        kwargs["attn_implementation"] = register()
    elif attn != "auto":
        kwargs["attn_implementation"] = attn
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": device.index or 0})
    try:
        lm = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError([f"model.path: could not load a model from {model_dir}: {e}. Fix: a folder with "
                           "config.json and *.safetensors weights (pickled .bin weights are refused), or a .gguf."]
                          ) from None
    if quant is None:
        lm.to(device)
    lm.config.use_cache = False  # packed rows only stay isolated without a KV cache (see shipsft.data.pack)
    return lm


def apply_method(method: MethodConfig, model: torch.nn.Module, gradient_checkpointing: bool) -> torch.nn.Module:
    """Freeze/unfreeze for full FT, or wrap with LoRA adapters (peft) for lora/qlora."""
    if method.name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    import peft

    if method.name == "qlora":
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    lc = method.lora
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


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def frozen_dtype(method: str, amp: torch.dtype | None) -> torch.dtype | None:
    """The dtype a run stores its frozen base Linear weights in: LoRA / QLoRA under autocast, the autocast dtype
    (`precision.store_frozen`); None keeps them as loaded (fp32; full fine-tuning keeps fp32 masters)."""
    return amp if method != "full" else None


def load_for_training(model: ModelConfig, method: MethodConfig, gradient_checkpointing: bool,
                      device: torch.device, amp: torch.dtype | None) -> tuple[torch.nn.Module, ModelInfo]:
    """The trainable model. `amp` is the run's autocast dtype (`precision.autocast_dtype`; None = fp32): under
    bf16, LoRA / QLoRA store their frozen base Linear weights in bf16 (full fine-tuning keeps fp32 masters)."""
    lm, model_dir = load_base(model, method, device)
    lm = apply_method(method, lm, gradient_checkpointing)
    if (stored := frozen_dtype(method.name, amp)) is not None:
        store_frozen(lm, stored)
    if gradient_checkpointing and method.name != "qlora":
        # non-reentrant checkpointing needs no input grads, so frozen embeddings under LoRA are fine
        base_model(lm).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.train()
    trainable, total = param_counts(lm)
    return lm, ModelInfo(method.name, model_dir, trainable, total)


def load_trained(model: ModelConfig, method: MethodConfig, weights: Path, device: torch.device):
    """A run's trained weights for eval: an adapter folder on top of the base model (kept unmerged, so the base is
    the same model with the adapter disabled), or a full fine-tuned folder."""
    if (Path(weights) / "adapter_config.json").exists():
        import peft

        lm, _ = load_base(model, method, device)
        return peft.PeftModel.from_pretrained(lm, weights).eval()
    return load_weights(Path(weights), model, method, device).eval()
