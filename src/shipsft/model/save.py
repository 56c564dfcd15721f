"""Save what was trained: the adapter (peft format: adapter_config.json + adapter_model.safetensors) or full
safetensors weights, plus the tokenizer carrying the exact chat template used in training, so the folder loads and
chats as trained (serving the base model's template instead is failure mode 14 in docs/failure-modes.md).
"""
from __future__ import annotations

from pathlib import Path

import torch


def save_weights(model: torch.nn.Module, tokenizer, out_dir: Path) -> None:
    """`tokenizer` carries the template training rendered with (train/run.py sets it before the first step)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
