"""`shipsft sweep`: the SWEEP.yaml schema, the expansion into trials, and a real 3-lever sweep on a tiny random Llama
through the CLI: it prints the table and writes sweep.json/csv/html; after a real `kill -9` of a `shipsft sweep`
process in the middle of a trial, running the sweep again skips the finished trials, resumes the killed one from its
checkpoint, and ends with the table of a sweep never interrupted. The sweeps that are not killed run in this process
(typer's CliRunner: the same command, without paying the imports of a new process)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers import write_tiny_run
from shipsft.cli.main import app
from shipsft.config import load_config
from shipsft.errors import ConfigError
from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.layout import RunFolder
from shipsft.sweep.run import plan_sweep
from shipsft.sweep.spec import load_sweep

# one torch thread: a 0.1M-parameter model gains nothing from two, and on a 2-core machine shared with other jobs two
# spinning OpenMP threads made each 6-step trial 15 s instead of 1 s
ENV = {**os.environ, "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "250", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
LEVERS = {"optim.lr": [1.0e-3, 5.0e-3], "method.lora.r": [2, 4], "train.batch_size": [4, 8]}
# one lever at a time around the base (lr 5e-3, r 4, batch 8): the base + one trial per lever = 4 trials, run in
# this order (the kill test stops the second)
TRIALS = ["base", "lr=0.001", "r=2", "batch_size=4"]
NUMBERS = ("train_loss", "eval_loss")
COUNTS = ("trainable_params", "total_params", "trained_tokens", "steps")


def base_config(tmp: Path) -> Path:
    """A base config whose files exist but are never read (nothing trains)."""
    (tmp / "tiny-model").mkdir()
    (tmp / "train.jsonl").write_text("")
    (tmp / "config.yaml").write_text(yaml.safe_dump({
        "model": {"path": "tiny-model"}, "data": {"train": "train.jsonl"}, "optim": {"lr": 5e-3},
        "method": {"name": "lora", "lora": {"r": 4, "alpha": 8}}, "train": {"batch_size": 8}}))
    return tmp / "config.yaml"


def write_sweep(tmp: Path, **spec) -> Path:
    (tmp / "sweep.yaml").write_text(yaml.safe_dump({"base": "config.yaml", "levers": LEVERS, **spec}, sort_keys=False))
    return tmp / "sweep.yaml"


def tiny_sweep(tmp: Path) -> Path:
    """LoRA with dropout (every step draws random numbers, so a resume must restore the RNG), 6 steps, a checkpoint
    every 2."""
    write_tiny_run(tmp, method={"name": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}, optim={"lr": 5e-3},
                   train={"max_steps": 6, "batch_size": 8, "precision": "fp32", "save_every": 2,
                          "keep_checkpoints": 2})
    return write_sweep(tmp)


def sweep_here(path: Path) -> str:
    """`shipsft sweep PATH` in this process on one torch thread (as ENV gives the subprocesses); its output."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(app, ["sweep", str(path)], env={"SHIPSFT_ALLOCATOR": "system"})
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output[-3000:]
    return res.output


def sweep_process(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shipsft", "sweep", str(path)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def summary(path: Path) -> dict:
    return json.loads((path.parent / "sweeps" / "sweep" / "sweep.json").read_text())


# ------------------------------------------------------------------------------------------------------------------
# the spec and the trials (no training)


def test_spec_errors_name_every_problem_with_the_fix(tmp_path):
    base_config(tmp_path)
    path = write_sweep(tmp_path, mod="grid", set={"optim.lr": 1e-4, "optim.lrr": 2})
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    lines = "\n".join(e.value.lines)
    assert "unknown key 'mod' — did you mean 'mode'?" in lines
    assert "set: 'optim.lrr' is not a config key — did you mean 'optim.lr'?" in lines  # reported together
    path = write_sweep(tmp_path, set={"optim.lr": 1e-4, "optim.lrr": 2})
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    lines = "\n".join(e.value.lines)
    assert "set and levers both give optim.lr; one would be ignored" in lines
    assert "set: 'optim.lrr' is not a config key — did you mean 'optim.lr'?" in lines


def test_trials_of_each_mode_and_their_configs(tmp_path):
    base_config(tmp_path)
    _, _, ex, paths = plan_sweep(write_sweep(tmp_path))
    assert [t.name for t in ex.trials] == TRIALS
    assert ex.base_levels == {"optim.lr": "0.005", "method.lora.r": "4", "train.batch_size": "8"}
    cfg = ex.configs["lr=0.001"]
    assert (cfg.optim.lr, cfg.method.lora.r, cfg.train.batch_size) == (1e-3, 4, 8)
    assert cfg.output.dir == str(paths.runs) and cfg.output.name == "lr=0.001"
    # trial configs are written elsewhere than the base: every file they name is absolute
    assert cfg.data.train == [str(tmp_path / "train.jsonl")] and cfg.model.path == str(tmp_path / "tiny-model")
    _, _, grid, _ = plan_sweep(write_sweep(tmp_path, mode="grid", seeds=[1, 2]))
    assert len(grid.trials) == 2 * 2 * 2 * 2
    assert grid.trials[0].name == "lr=0.001,r=2,batch_size=4.seed=1" and grid.trials[0].cell == \
        "lr=0.001,r=2,batch_size=4"
    assert grid.configs[grid.trials[1].name].train.seed == 2


def test_emit_prints_one_resumable_line_per_trial(tmp_path):
    base_config(tmp_path)
    path = write_sweep(tmp_path)
    res = CliRunner().invoke(app, ["sweep", str(path), "--emit", "--launcher", "torchrun --nproc-per-node 8"],
                             env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("# 4 trials; as a SLURM array: sbatch --array=0-3")
    assert lines[1:] == [f"torchrun --nproc-per-node 8 -m shipsft sweep {path} --trial {t}" for t in TRIALS]
    trial = yaml.safe_load((tmp_path / "sweeps" / "sweep" / "trials" / "r=2.yaml").read_text())
    assert trial["method"]["lora"]["r"] == 2
    assert load_config(tmp_path / "sweeps" / "sweep" / "trials" / "r=2.yaml").method.lora.r == 2


# ------------------------------------------------------------------------------------------------------------------
# real sweeps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, str]:
    path = tiny_sweep(tmp_path_factory.mktemp("uninterrupted"))
    return path, sweep_here(path)


@pytest.mark.slow
def test_a_three_lever_sweep_prints_the_table_and_writes_the_results(uninterrupted):
    path, out = uninterrupted
    assert "sweep sweep (one_at_a_time; outcome eval_loss; * = picked)" in out
    table = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in TRIALS]
    assert [row[0] for row in table] == TRIALS
    levels = [[v for v in row[1:5] if v != "*"][:3] for row in table]  # the picked trial's name ends with " *"
    assert levels == [["0.005", "4", "8"], ["0.001", "4", "8"], ["0.005", "2", "8"], ["0.005", "4", "4"]]
    s = summary(path)
    assert [r["status"] for r in s["trials"]] == ["done"] * 4
    assert all(r["steps"] == 6 for r in s["trials"])
    d = s["decomposition"]
    assert d["outcome"] == "eval_loss" and d["n"] == 4
    assert sum(x["share"] for x in d["levers"]) + d["residual"] == pytest.approx(1.0, abs=1e-9)
    for x in d["levers"]:  # each printed share is the one in sweep.json
        assert f"{x['name']:<28} {100 * x['share']:6.2f}%" in out
    picked = s["pick"]["cell"]
    assert picked in TRIALS and f"{picked} *" in out
    best = min(s["trials"], key=lambda r: r["eval_loss"])
    assert picked == best["name"]  # the rule: the lowest eval loss
    root = path.parent / "sweeps" / "sweep"
    assert (root / "sweep.csv").read_text().splitlines()[0].startswith("trial,cell,seed,optim.lr,method.lora.r,")
    assert len((root / "sweep.csv").read_text().splitlines()) == 5
    assert "Variance decomposition" in (root / "sweep.html").read_text()


@pytest.mark.slow
def test_kill_9_in_a_trial_then_the_sweep_resumes_it_and_matches_the_uninterrupted_sweep(tmp_path, uninterrupted):
    path = tiny_sweep(tmp_path)
    killed = RunFolder(tmp_path / "sweeps" / "sweep" / "runs" / TRIALS[1])
    proc = sweep_process(path)
    end = time.time() + 300
    while not (killed.checkpoints.is_dir() and complete_checkpoints(killed)):
        if proc.poll() is not None or time.time() > end:
            pytest.fail(f"the sweep ended before the kill: {proc.communicate()[0][-3000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads(killed.manifest.read_text())
    assert "wall_s" not in manifest and not (killed.root / "adapter").exists()  # it really died mid-trial
    first = RunFolder(tmp_path / "sweeps" / "sweep" / "runs" / TRIALS[0])
    first_metrics = (first.root / "metrics.jsonl").read_bytes()
    first_mtime = (first.root / "metrics.jsonl").stat().st_mtime_ns

    out = sweep_here(path)
    assert "4 trials (one_at_a_time), 1 finished before, 3 to run" in out
    assert f"trial {TRIALS[0]}" not in out.split("to run", 1)[1].split("sweep sweep")[0]  # never started again
    assert (first.root / "metrics.jsonl").read_bytes() == first_metrics
    assert (first.root / "metrics.jsonl").stat().st_mtime_ns == first_mtime
    resumes = json.loads(killed.manifest.read_text())["resumes"]
    assert len(resumes) == 1 and resumes[0]["from_step"] in (2, 4)
    assert f"trial {TRIALS[1]} done" in out and "(resumed from" in out

    got, want = summary(path), summary(uninterrupted[0])
    assert [r["name"] for r in got["trials"]] == [r["name"] for r in want["trials"]] == TRIALS
    for g, w in zip(got["trials"], want["trials"]):
        assert g["levels"] == w["levels"] and g["status"] == w["status"] == "done"
        assert {k: g[k] for k in COUNTS} == {k: w[k] for k in COUNTS}
        assert [g[k] for k in NUMBERS] == pytest.approx([w[k] for k in NUMBERS], abs=1e-6), g["name"]
    assert [x["share"] for x in got["decomposition"]["levers"]] == \
        pytest.approx([x["share"] for x in want["decomposition"]["levers"]], abs=1e-4)
    assert got["pick"]["cell"] == want["pick"]["cell"]


@pytest.mark.slow
@pytest.mark.browser
def test_sweep_html_renders_in_chromium(uninterrupted):
    from browser import browser_skip_reason, open_html

    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    with open_html(uninterrupted[0].parent / "sweeps" / "sweep" / "sweep.html") as view:
        assert view.errors == [] and view.external_requests == []
        assert view.count("div[data-lever] svg") == 3  # one effect plot per lever
        rows = view.page.locator("table.results tbody tr").all_inner_texts()
        assert [r.split("\t")[0] for r in rows] == TRIALS
        assert view.page.locator("#pick").inner_text().startswith(summary(uninterrupted[0])["pick"]["cell"])
        box = view.page.locator("div[data-lever] svg").first.bounding_box()
        assert box["width"] > 300 and box["height"] > 150  # really laid out, not collapsed
