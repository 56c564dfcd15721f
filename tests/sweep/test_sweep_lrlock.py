"""`shipsft sweep --lr-lock CONFIG`: a short LR x warmup sweep on a subset, then a copy of the config with the chosen
values that `shipsft.config.load_config` reads; the choice rule on its own."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from helpers import write_tiny_run
from shipsft.cli.main import app
from shipsft.config import load_config
from shipsft.sweep.lrlock import choose


def test_choose_prefers_a_smaller_lr_within_half_a_percent_of_the_best():
    rows = [{"lr": 1e-4, "outcome": 1.000}, {"lr": 2e-4, "outcome": 0.996}, {"lr": 5e-4, "outcome": 0.995},
            {"lr": 1e-3, "outcome": None}]
    # best 0.995; within 0.5%: <= 0.995 + 0.004975 = 0.999975, so 2e-4 (0.996) qualifies and 1e-4 (1.000) does not
    assert choose(rows)["lr"] == 2e-4
    assert choose([{"lr": 1e-4, "outcome": 1.2}, {"lr": 2e-4, "outcome": 1.0}])["lr"] == 2e-4
    assert choose([{"lr": 1e-4, "outcome": None}]) is None


@pytest.mark.slow
def test_lr_lock_writes_a_config_that_loads_with_the_chosen_values(tmp_path):
    config = write_tiny_run(tmp_path, method={"name": "lora", "lora": {"r": 4, "alpha": 8}}, optim={"lr": 5e-3},
                            train={"max_steps": 40, "batch_size": 8, "precision": "fp32"})
    # 16 examples of 8 per step: 2-step trials, 2 LRs x 1 warmup
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 0.1M-parameter model: see tests/sweep/test_sweep_run.py
    try:
        res = CliRunner().invoke(app, ["sweep", "--lr-lock", str(config), "--examples", "16", "--lr", "1e-3",
                                       "--lr", "5e-3", "--warmup", "0.0"], env={"SHIPSFT_ALLOCATOR": "system"})
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output[-3000:]
    out = tmp_path / "config.lr-locked.yaml"
    assert f"wrote {out}" in res.output.replace("\n", "")
    locked, original = load_config(out), load_config(config)
    summary = json.loads((tmp_path / "runs" / "lr-lock-config" / "sweep.json").read_text())
    trials = {r["name"]: r for r in summary["trials"]}
    assert set(trials) == {"lr=0.001,warmup_ratio=0", "lr=0.005,warmup_ratio=0"}
    assert all(r["status"] == "done" and r["steps"] == 2 for r in trials.values())
    losses = {lr: trials[f"lr={lr:g},warmup_ratio=0"]["eval_loss"] for lr in (1e-3, 5e-3)}
    best = min(losses.values())
    want = min(lr for lr, loss in losses.items() if loss <= best * 1.005)  # the rule, from the measured losses
    assert (locked.optim.lr, locked.optim.warmup_ratio) == (want, 0.0)
    # everything else is the original config: the full run's recipe (40 steps) is kept
    same = lambda c: {**c.model_dump(), "optim": None}  # noqa: E731
    assert same(locked) == same(original) and locked.train.max_steps == 40
    text = out.read_text()
    assert text.startswith(f"# optim.lr and optim.warmup_ratio chosen by `shipsft sweep --lr-lock {config}`")
    assert "# rule: the lowest eval_loss; a smaller LR within 0.5% of it is preferred" in text
    assert "lr: " in text and "# locked by shipsft sweep --lr-lock" in text
