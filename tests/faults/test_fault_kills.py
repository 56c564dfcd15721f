"""Runs that survive being stopped: a real `kill -9` of a real `shipsft train` process at a random step, in the middle
of a checkpoint write or of the final save, then `--resume`, ends with the weights and the loss sequence of a run
never interrupted; SIGTERM saves and names the resume command, and a resume with a different batch continues the data
cursor without repeating or skipping an example; a full disk during a checkpoint or the final save is one line, the
previous checkpoint stays intact, and the resume on a disk with room ends as the run never interrupted. Tiny random
Llamas, fp32, CPU."""
from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest

from faultkit import (BIG, LORA, assert_same_weights, finish, kill_when, losses, lora_run, resize, shipsft, size_of,
                      small_disk, wait_for_steps)
from helpers import write_tiny_run
from shipsft.config import load_config
from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.integrity import check
from shipsft.runs.jsonio import read_jsonl
from shipsft.runs.layout import RunFolder
from shipsft.train.run import run_train

pytestmark = pytest.mark.slow
FULL = {"model_kw": BIG, "method": {"name": "full"}, "optim": {"lr": 1e-3}}
FULL_TRAIN = {"max_steps": 6, "batch_size": 8, "precision": "fp32"}


def full_run(tmp_path: Path, **kw) -> Path:
    """The 4M-parameter full fine-tune (~50 MB per checkpoint): saves slow enough to be killed midway."""
    output = kw.pop("output", None)
    return write_tiny_run(tmp_path, **FULL, train={**FULL_TRAIN, **kw}, **({"output": output} if output else {}))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    path = lora_run(tmp)
    assert run_train(load_config(path), config_path=path) == 0
    return tmp / "runs" / "t"


@pytest.fixture(scope="module")
def full_uninterrupted(tmp_path_factory) -> RunFolder:
    """The full fine-tune never interrupted (checkpoints at steps 3 and 6): the weights every resume must reach, and
    the sizes the small disks are cut to."""
    tmp = tmp_path_factory.mktemp("full")
    path = full_run(tmp, save_every=3)
    assert run_train(load_config(path), config_path=path) == 0
    return RunFolder(tmp / "runs" / "t")


def test_kill_9_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    path = lora_run(tmp_path)
    run = tmp_path / "runs" / "t"
    proc = shipsft("train", path)
    k = random.Random(os.getpid()).randint(3, 9)
    wait_for_steps(run, proc, k)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "adapter").exists()  # it really died mid-run
    done = finish("train", path, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout
    assert_same_weights(run / "adapter", uninterrupted / "adapter")
    got, want = losses(run), losses(uninterrupted)
    assert [s for s, _ in got] == list(range(1, 13))  # every step once: lines after the checkpoint were cut
    assert [s for s, _ in want] == list(range(1, 13))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)
    evals = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "eval_loss" in r]
    assert evals == [0, 4, 8, 12]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumes"][0]["from_step"] >= 1 and manifest["resumes"][0]["forced"] is False


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, full_uninterrupted):
    """The half-written checkpoint is skipped and named, the previous one resumes the run."""
    path = full_run(tmp_path, save_every=1, keep_checkpoints=2)
    run = RunFolder(tmp_path / "runs" / "t")

    def saving():  # a save after the first complete one, caught before its rename
        if run.checkpoints.is_dir() and complete_checkpoints(run):
            return next((p for p in run.checkpoints.iterdir() if ".tmp" in p.name), None)

    caught = kill_when(shipsft("train", path), saving)
    if caught is None:
        pytest.skip("every save finished before the test saw it in progress")
    before = [s for s, _ in complete_checkpoints(run)]
    assert before, "a complete earlier checkpoint must exist"
    done = finish("train", path, "--resume", run.root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {run.checkpoint(before[-1])}" in done.stdout
    assert not [p for p in run.checkpoints.iterdir() if ".tmp" in p.name]  # leftovers of the killed save removed
    assert_same_weights(run.root / "model", full_uninterrupted.root / "model")


def test_kill_9_during_the_final_save_then_resume_saves_it_as_the_uninterrupted_run(tmp_path, full_uninterrupted):
    """Killed while model/ is being written after the last step: no model/ is in place (never a half-written one),
    the last checkpoint is intact, and the resume (nothing left to train) writes model/ as the run never killed."""
    path = full_run(tmp_path, save_every=3)
    run = RunFolder(tmp_path / "runs" / "t")
    caught = kill_when(shipsft("train", path), lambda: next(run.root.glob(".model.tmp*"), None))
    if caught is None:
        pytest.skip("the final save finished before the test saw it in progress")
    assert not (run.root / "model").exists()
    assert [s for s, _ in complete_checkpoints(run)] == [3, 6] and check(run.checkpoint(6)) == []
    done = finish("train", path, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {run.checkpoint(6)} (step 6 of 6)" in done.stdout
    assert not list(run.root.glob(".model.*"))
    assert_same_weights(run.root / "model", full_uninterrupted.root / "model")
    assert check(run.root / "model") == []
    assert [s for s, _ in losses(run.root)] == list(range(1, 7))


def test_sigterm_saves_and_names_the_resume_command_then_a_bigger_batch_continues_the_cursor(tmp_path):
    """SIGTERM: the step finishes, a checkpoint is saved, exit 143 with the command; resuming with 12 examples per
    step instead of 8 (forced: it changes the schedule) trains every example of each epoch exactly once."""
    path = write_tiny_run(tmp_path, n_train=48, **LORA,
                          train={"epochs": 2, "batch_size": 8, "precision": "fp32", "save_every": 1000})
    run = tmp_path / "runs" / "t"
    proc = shipsft("train", path)
    wait_for_steps(run, proc, 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    lines = [x for x in err.splitlines() if x.strip()]
    stopped = next(x for x in lines if "stopped by SIGTERM after step" in x)
    step = int(stopped.split("after step ")[1].split(";")[0])
    assert lines[-1] == f"error: resume with: shipsft train {path} --resume {run}"
    assert (run / "checkpoints" / f"step-{step}" / "COMPLETE").exists()

    refused = finish("train", path, "--resume", "--set", "train.batch_size=12")
    assert refused.returncode == 2 and "train.batch_size: 8 -> 12" in refused.stderr and "--resume-force" in \
        refused.stderr
    done = finish("train", path, "--resume", "--resume-force", "--set", "train.batch_size=12")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    # the cursor moves forward through each epoch's row order and wraps to (next epoch, 0) at its end; the
    # examples trained in each epoch are exactly the 48 of the data: none repeated, none skipped
    cursors = [(0, 0)] + [tuple(r["cursor"]) for r in records]
    assert all(b > a for a, b in zip(cursors, cursors[1:])), cursors
    per_epoch = {0: 0, 1: 0}
    for r in records:
        per_epoch[r["epoch"]] += r["examples"]
    assert per_epoch == {0: 48, 1: 48}, per_epoch
    assert cursors[-1] == (2, 0)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumes"][-1]["forced"] and "train.batch_size: 8 -> 12" in manifest["resumes"][-1]["changes"]


def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_previous_checkpoint_stays(tmp_path, full_uninterrupted):
    """A real small disk (tmpfs) that holds one checkpoint and not two (the first is kept until the second is
    complete). One error line naming the checkpoint, the space, the intact previous checkpoint; exit 2; the resume on
    a disk with room ends as the run never interrupted."""
    one = size_of(full_uninterrupted.checkpoint(3))
    with small_disk(tmp_path / "disk", (one * 3 // 2) // 2**20) as disk:
        path = full_run(tmp_path, save_every=3, keep_checkpoints=1, output={"dir": str(disk), "name": "t"})
        done = finish("train", path)
        assert done.returncode == 2, done.stderr[-2000:]
        errors = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
        assert len(errors) == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        run = RunFolder(disk / "t")
        assert errors[0].startswith(f"error: could not write {run.checkpoint(6)}: no space left on the device")
        assert f"the previous checkpoint {run.checkpoint(3)} is intact" in errors[0] and "MB free" in errors[0]
        assert errors[1] == f"error: resume with: shipsft train {path} --resume {run.root}"
        assert [s for s, _ in complete_checkpoints(run)] == [3] and check(run.checkpoint(3)) == []
        assert not [p for p in run.checkpoints.iterdir() if p.name != "step-3"]  # nothing half-written left
        resize(disk, 400)
        resumed = finish("train", path, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert_same_weights(run.root / "model", full_uninterrupted.root / "model")


def test_a_full_disk_during_the_final_save_keeps_the_last_checkpoint_and_resumes(tmp_path, full_uninterrupted):
    """A disk that holds the last checkpoint but not model/ besides it: one line, exit 2, no model/ half-written, and
    the resume on a disk with room writes model/ as the run never interrupted."""
    room = size_of(full_uninterrupted.checkpoint(6)) + size_of(full_uninterrupted.root / "model") // 2
    with small_disk(tmp_path / "disk", room // 2**20) as disk:
        path = full_run(tmp_path, save_every=1000, output={"dir": str(disk), "name": "t"})
        done = finish("train", path)
        assert done.returncode == 2, done.stderr[-2000:]
        run = RunFolder(disk / "t")
        errors = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
        assert "Traceback" not in done.stderr and len(errors) == 2, done.stderr[-2000:]
        assert errors[0].startswith(f"error: could not write {run.root / 'model'}: no space left on the device")
        assert f"the previous checkpoint {run.checkpoint(6)} is intact" in errors[0]
        assert not (run.root / "model").exists() and not list(run.root.glob(".model*"))
        resize(disk, 400)
        resumed = finish("train", path, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert_same_weights(run.root / "model", full_uninterrupted.root / "model")


def test_a_disk_too_small_for_one_checkpoint_is_refused_before_training(tmp_path):
    with small_disk(tmp_path / "disk", 4) as disk:
        path = write_tiny_run(tmp_path, method={"name": "full"}, output={"dir": str(disk), "name": "t"})
        from shipsft.errors import ConfigError

        with pytest.raises(ConfigError, match=r"output.dir: .* MB free, one checkpoint of this run needs about"):
            run_train(load_config(path), config_path=path)
