"""The run's setup (train/run.py: setup) loads the model as the benches measure it: under bf16 autocast a LoRA run's
frozen base Linear weights are stored in bf16 once (model/precision.py: store_frozen) instead of being re-cast on
every forward. `shipsft train` once skipped this while bench/train_vs_trl.py did it, so the bench timed a faster
path than the product ran."""
from __future__ import annotations

import torch

from helpers import Notes, write_tiny_run
from shipsft.config import load_config
from shipsft.model.precision import FrozenLinear, autocast_dtype
from shipsft.train.run import setup


def frozen_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    head = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head
            and not m.weight.requires_grad]


def test_a_lora_run_stores_its_frozen_base_weights_in_the_autocast_dtype(tmp_path):
    """precision auto: bf16 on a CPU with native bf16 (frozen weights bf16 FrozenLinears), fp32 elsewhere."""
    path = write_tiny_run(tmp_path, train={"max_steps": 1, "batch_size": 8, "precision": "auto"})
    s = setup(load_config(path), path, False, None, Notes())
    try:
        amp = autocast_dtype("auto", torch.device("cpu"))
        frozen = frozen_linears(s.model)
        assert len(frozen) == 2 * 7  # the tiny Llama's 2 layers x 7 adapted projections, under their LoRA layers
        assert {m.weight.dtype for m in frozen} == {amp or torch.float32}
        assert all(isinstance(m, FrozenLinear) for m in frozen) == (amp is not None)
        assert all(p.dtype == torch.float32 for p in s.model.parameters() if p.requires_grad)
    finally:
        s.run.close()


def test_an_fp32_run_keeps_fp32_frozen_weights(tmp_path):
    path = write_tiny_run(tmp_path, train={"max_steps": 1, "batch_size": 8, "precision": "fp32"})
    s = setup(load_config(path), path, False, None, Notes())
    try:
        assert {m.weight.dtype for m in frozen_linears(s.model)} == {torch.float32}
        assert not any(isinstance(m, FrozenLinear) for m in s.model.modules())
    finally:
        s.run.close()
