"""Save what was trained: the adapter (peft format: adapter_config.json + adapter_model.safetensors) or full
safetensors weights, plus the tokenizer carrying the exact chat template used in training, so the folder loads and
chats as trained (serving the base model's template instead is failure mode 14 in docs/failure-modes.md).
"""
from __future__ import annotations

from pathlib import Path

import torch


def save_weights(model: torch.nn.Module, tokenizer, out_dir: Path, state_dict: dict | None = None) -> None:
    """`tokenizer` carries the template training rendered with (train/run.py sets it before the first step).
    `state_dict`: the weights to write instead of the model's own (FSDP2's, consolidated on rank 0)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(out_dir)


def load_checkpoint_weights(model: torch.nn.Module, folder: Path) -> None:
    """Put the weights a checkpoint saved back into the same model (a resume): the adapter into a peft model, every
    weight into a full fine-tune (tied weights are saved once and come back through their tie)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "adapter_model.safetensors").exists():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise ValueError(f"{folder}: adapter weights that this model has no place for: {unexpected[:5]}")
        return
    state = {}
    for f in sorted(folder.glob("model*.safetensors")):
        state.update(load_file(f))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight") and getattr(model.config, "tie_word_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{folder}: the checkpoint does not match this model (missing {sorted(set(missing) - tied)[:5]}, "
                         f"unexpected {unexpected[:5]})")
