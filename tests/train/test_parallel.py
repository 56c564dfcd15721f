"""Scale-out on 2 CPU processes (gloo), launched as a user launches it (`torchrun --standalone --nproc-per-node 2
-m shipsft train CONFIG`), against the one-process run of the same config: DDP (LoRA and full fine-tuning) and
FSDP2 (full) give the same loss at every step and the same end weights within 1e-5; a checkpoint written by 2
processes resumes on 1 and the reverse, continuing at the same example; only rank 0 writes into the run folder.

Every launch goes through a small wrapper that records, per rank, every file the process opens for writing and every
folder it creates, renames or removes (`sys.addaudithook`), so (d) is observed, not inferred from the code.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import write_tiny_run
from shipsft.errors import ConfigError
from shipsft.runs.jsonio import read_jsonl
from shipsft.train import dist, parallel

TOL = 1e-5
TRAIN = {"max_steps": 5, "batch_size": 8, "precision": "fp32", "save_every": 2, "keep_checkpoints": 10}
LORA = {"method": {"name": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}, "optim": {"lr": 5e-3}}
FULL = {"method": {"name": "full"}, "optim": {"lr": 1e-3}}
ENV = {**os.environ, "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}

# Runs shipsft's CLI in this process after installing an audit hook that appends one line per write-like event to
# $WRITES_LOG.<rank>: an open for writing, a mkdir, a rename/replace, a remove. The log's own descriptor is opened
# before the hook, and written with os.write, which raises no audit event.
RECORDER = r'''
import os, sys
fd = os.open(os.environ["WRITES_LOG"] + "." + os.environ.get("RANK", "0"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if not isinstance(path, (str, bytes, os.PathLike)):
            return
        if (mode and any(c in mode for c in "wax+")) or (not mode and isinstance(flags, int) and flags & WRITE):
            os.write(fd, (f"open {os.fsdecode(path)}\n").encode())
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree"):
        os.write(fd, (f"{event} {os.fsdecode(args[0])}\n").encode())
sys.addaudithook(hook)
from shipsft.cli.main import main
sys.argv = ["shipsft", *sys.argv[1:]]
main()
'''


# -- fast: the split of a step over ranks, and the strategy a launch resolves to ---------------------------------

def test_shard_splits_a_step_disjointly_balancing_tokens():
    lengths = [100, 90, 50, 40, 30, 10]  # tokens of examples 0..5
    trained = [10, 80, 20, 5, 30, 10]
    idx = [5, 0, 3, 1, 4, 2]  # the step's examples in the order the cursor drew them
    r0 = dist.shard(idx, lengths, trained, 2, 0)
    r1 = dist.shard(idx, lengths, trained, 2, 1)
    # by hand, longest first, each to the rank with the fewest (tokens, trained tokens), ties to the lower rank:
    # ex0 100 -> r0 (100, 10); ex1 90 -> r1 (90, 80); ex2 50 -> r1 (140, 100); ex3 40 -> r0 (140, 15);
    # ex4 30 -> r0, equal tokens but fewer trained (170, 45); ex5 10 -> r1 (150, 110)
    assert r0 == [0, 3, 4] and r1 == [5, 1, 2]  # in the step's own order
    assert sorted(r0 + r1) == sorted(idx)
    assert sum(lengths[i] for i in r0) == 170 and sum(lengths[i] for i in r1) == 150


def test_shard_on_one_rank_is_the_step_itself_and_more_ranks_than_examples_leaves_some_idle():
    assert dist.shard([3, 1, 2], [5, 6, 7, 8], [1, 1, 1, 1], 1, 0) == [3, 1, 2]
    shares = [dist.shard([0, 1], [5, 6], [1, 1], 3, r) for r in range(3)]
    assert shares == [[1], [0], []]  # the idle rank runs an idle micro-batch in lock-step (train/loop.py)


def test_one_plain_process_is_single_and_a_named_strategy_without_a_launcher_is_an_error():
    assert not dist.initialized()
    assert parallel.resolve("auto", "lora") == "single"
    for strategy in ("ddp", "fsdp2"):
        with pytest.raises(ConfigError, match="torchrun --nproc-per-node N -m shipsft train"):
            parallel.resolve(strategy, "lora")


def test_loss_scale_and_token_count_are_the_identity_alone():
    assert dist.global_trained_tokens(37) == 37 and dist.loss_scale(37) == 1 / 37


# -- slow: real launches on 2 gloo processes ---------------------------------------------------------------------

def launch(config: Path, name: str, nproc: int, *sets: str, resume: Path | None = None) -> Path:
    """`shipsft train` on `nproc` processes (torchrun for 2) through the write recorder; returns the run folder."""
    work = config.parent
    recorder = work / "record_writes.py"
    recorder.write_text(RECORDER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(recorder)] if nproc > 1 else [sys.executable, str(recorder)]
    args = ["train", str(config), "--set", f"output.name={name}", *[a for s in sets for a in ("--set", s)]]
    if resume is not None:
        args += ["--resume", str(resume)]
    env = {**ENV, "WRITES_LOG": str(work / f"writes-{name}")}
    done = subprocess.run(cmd + args, env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work / "runs" / name


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


def cursors(run: Path) -> list[tuple[int, list[int], int]]:
    return [(r["step"], r["cursor"], r["examples"]) for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


def end_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "adapter" if (run / "adapter").exists() else run / "model"
    return load_file(next(folder.glob("*.safetensors")))


def assert_same_run(run: Path, ref: Path) -> None:
    got, want = losses(run), losses(ref)
    assert [s for s, _ in got] == [s for s, _ in want] == [1, 2, 3, 4, 5]
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, want)) < TOL, (got, want)
    assert cursors(run) == cursors(ref)  # the same examples at every step: none repeated, none skipped
    w, w_ref = end_weights(run), end_weights(ref)
    assert sorted(w) == sorted(w_ref)
    assert max(float((w[k] - w_ref[k]).abs().max()) for k in w) < TOL
    # and training moved them: equal weights are not equal because nothing happened
    assert losses(ref)[-1][1] < losses(ref)[0][1]


def writes(work: Path, name: str, rank: int) -> list[str]:
    log = work / f"writes-{name}.{rank}"
    return log.read_text().splitlines() if log.exists() else []


def run_folder_writes(work: Path, name: str, rank: int, run: Path) -> list[str]:
    return [w for w in writes(work, name, rank) if str(run) in w.split(" ", 1)[1]]


@pytest.fixture(scope="module")
def lora_cfg(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("lora"), **LORA, train=TRAIN)


@pytest.fixture(scope="module")
def full_cfg(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("full"), **FULL, train=TRAIN)


@pytest.fixture(scope="module")
def lora_single(lora_cfg) -> Path:
    return launch(lora_cfg, "single", 1)


@pytest.fixture(scope="module")
def full_single(full_cfg) -> Path:
    return launch(full_cfg, "single", 1)


@pytest.fixture(scope="module")
def full_fsdp2(full_cfg) -> Path:
    return launch(full_cfg, "fsdp2", 2, "train.distributed=fsdp2")


@pytest.mark.slow
def test_ddp_lora_equals_one_process_and_only_rank_0_writes(lora_cfg, lora_single):
    run = launch(lora_cfg, "ddp", 2, "train.distributed=ddp")
    assert_same_run(run, lora_single)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["distributed"] == "ddp"
    work = lora_cfg.parent
    mine = run_folder_writes(work, "ddp", 0, run)
    assert any("metrics.jsonl" in w for w in mine) and any("adapter" in w for w in mine)  # the recorder sees writes
    assert run_folder_writes(work, "ddp", 1, run) == []


@pytest.mark.slow
def test_ddp_full_fine_tuning_equals_one_process(full_cfg, full_single):
    assert_same_run(launch(full_cfg, "ddp", 2, "train.distributed=ddp"), full_single)


@pytest.mark.slow
def test_fsdp2_full_fine_tuning_equals_one_process_and_rank_1_writes_only_its_optimizer_shard(full_cfg, full_single,
                                                                                             full_fsdp2):
    run = full_fsdp2
    assert_same_run(run, full_single)
    # checkpoints hold consolidated weights (a loadable model) and the optimizer state as one shard per rank
    state = run / "checkpoints" / "step-4" / "shipsft_state"
    assert sorted(p.name for p in (state / "optimizer").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (state / "optimizer.pt").exists()
    work = full_cfg.parent
    other = run_folder_writes(work, "fsdp2", 1, run)
    assert other, "rank 1 writes its optimizer shard: the recorder must see it"
    shard_dirs = {f".step-{k}.optimizer.tmp" for k in (2, 4, 5)}
    assert all(any(d in w for d in shard_dirs) for w in other), other


@pytest.mark.slow
def test_two_process_checkpoint_resumes_on_one_process_and_one_process_checkpoint_on_two(full_cfg, full_single,
                                                                                            full_fsdp2):
    import shutil

    work = full_cfg.parent
    # FSDP2 (2 ranks, sharded optimizer state) -> one plain process, from step 2
    shutil.copytree(full_fsdp2, work / "runs" / "to-one")
    resumed = launch(full_cfg, "to-one", 1, resume=work / "runs" / "to-one" / "checkpoints" / "step-2")
    assert_same_run(resumed, full_single)
    # one plain process (optimizer state by parameter position) -> FSDP2 on 2 ranks (sharded by name), from step 2
    shutil.copytree(full_single, work / "runs" / "to-two")
    resumed = launch(full_cfg, "to-two", 2, "train.distributed=fsdp2",
                     resume=work / "runs" / "to-two" / "checkpoints" / "step-2")
    assert_same_run(resumed, full_single)
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert [r["from_step"] for r in manifest["resumes"]] == [2]


def test_the_launch_examples_are_valid_configs():
    from shipsft.config import load_config

    root = Path(__file__).resolve().parents[2] / "examples" / "launch"
    assert load_config(root / "fsdp2-full-8b.yaml").train.distributed == "fsdp2"
    assert load_config(root / "ddp-lora-8b.yaml").train.distributed == "ddp"
