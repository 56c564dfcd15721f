"""Runs that survive: a real `kill -9` of a real `shipsft train` process at a random step, or in the middle of a
checkpoint write, then `--resume`, ends with the weights and the loss sequence of a run never interrupted; SIGTERM
saves and names the resume command; a resume with a different batch continues the data cursor without repeating or
skipping an example; a config that changes the result is refused unless forced; a full disk is one line and the
previous checkpoint stays intact. Tiny random Llamas, fp32, CPU."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import write_tiny_run
from shipsft.config import load_config
from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.jsonio import read_jsonl
from shipsft.runs.layout import RunFolder
from shipsft.train.run import run_train

ENV = {**os.environ, "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "250", "PYTHONUNBUFFERED": "1"}
# LoRA with dropout and NEFTune: every step draws random numbers, so an exact resume must restore the RNG too
LORA = {"method": {"name": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}, "optim": {"lr": 5e-3}}


def config(tmp_path: Path, **train) -> Path:
    return write_tiny_run(tmp_path, **LORA, train={"max_steps": 12, "batch_size": 8, "precision": "fp32",
                                                   "neftune_alpha": 5.0, "save_every": 1, "keep_checkpoints": 3,
                                                   "eval_every": 4, **train})


def shipsft(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shipsft", "train", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]


def wait_for_steps(run: Path, proc: subprocess.Popen, n: int, timeout: float = 300) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if (run / "metrics.jsonl").exists() and len(losses(run)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.communicate()}")
        time.sleep(0.02)
    pytest.fail("training did not reach the step in time")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(next(path.glob("*.safetensors")))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert diff <= 1e-6, diff


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    path = config(tmp)
    assert run_train(load_config(path), config_path=path) == 0
    return tmp / "runs" / "t"


@pytest.mark.slow
def test_kill_9_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    path = config(tmp_path)
    run = tmp_path / "runs" / "t"
    proc = shipsft(path)
    k = random.Random(os.getpid()).randint(3, 9)
    wait_for_steps(run, proc, k)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "adapter").exists()  # it really died mid-run
    done = subprocess.run([sys.executable, "-m", "shipsft", "train", str(path), "--resume"], env=ENV,
                          capture_output=True, text=True, timeout=600)
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


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A bigger tiny model (4M parameters, full fine-tuning: ~50 MB per checkpoint) so a save takes long enough to
    be killed in the middle: the half-written one is skipped and named, the previous one resumes the run."""
    big = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4}
    path = write_tiny_run(tmp_path, model_kw=big, method={"name": "full"}, optim={"lr": 1e-3},
                          train={"max_steps": 10, "batch_size": 8, "precision": "fp32", "save_every": 1,
                                 "keep_checkpoints": 2})
    run = RunFolder(tmp_path / "runs" / "t")
    proc = shipsft(path)
    caught = None
    end = time.time() + 300
    while caught is None and proc.poll() is None and time.time() < end:
        if run.checkpoints.is_dir() and complete_checkpoints(run):  # a save after the first complete one
            for p in run.checkpoints.iterdir():
                if ".tmp" in p.name or (p.name.startswith("step-") and not (p / "COMPLETE").exists()):
                    caught = p
        if caught is None:
            time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if caught is None:
        pytest.skip("every save finished before the test saw it in progress")
    before = [s for s, _ in complete_checkpoints(run)]
    assert before, "a complete earlier checkpoint must exist"
    done = subprocess.run([sys.executable, "-m", "shipsft", "train", str(path), "--resume", str(run.root)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {run.checkpoint(before[-1])}" in done.stdout
    assert not [p for p in run.checkpoints.iterdir() if ".tmp" in p.name]  # leftovers of the killed save removed
    fresh = tmp_path / "fresh"
    write_tiny_run(fresh, model_kw=big, method={"name": "full"}, optim={"lr": 1e-3},
                   train={"max_steps": 10, "batch_size": 8, "precision": "fp32", "save_every": 5})
    assert run_train(load_config(fresh / "config.yaml"), config_path=fresh / "config.yaml") == 0
    assert_same_weights(run.root / "model", fresh / "runs" / "t" / "model")


@pytest.mark.slow
def test_sigterm_saves_and_names_the_resume_command_then_a_bigger_batch_continues_the_cursor(tmp_path):
    """SIGTERM: the step finishes, a checkpoint is saved, exit 143 with the command; resuming with 12 examples per
    step instead of 8 (forced: it changes the schedule) trains every example of each epoch exactly once."""
    path = write_tiny_run(tmp_path, n_train=48, **LORA,
                          train={"epochs": 2, "batch_size": 8, "precision": "fp32", "save_every": 1000})
    run = tmp_path / "runs" / "t"
    proc = shipsft(path)
    wait_for_steps(run, proc, 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    lines = [x for x in err.splitlines() if x.strip()]
    stopped = next(x for x in lines if "stopped by SIGTERM after step" in x)
    step = int(stopped.split("after step ")[1].split(";")[0])
    assert lines[-1] == f"error: resume with: shipsft train {path} --resume {run}"
    assert (run / "checkpoints" / f"step-{step}" / "COMPLETE").exists()

    refused = subprocess.run([sys.executable, "-m", "shipsft", "train", str(path), "--resume",
                              "--set", "train.batch_size=12"], env=ENV, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "train.batch_size: 8 -> 12" in refused.stderr and "--resume-force" in \
        refused.stderr
    done = subprocess.run([sys.executable, "-m", "shipsft", "train", str(path), "--resume", "--resume-force",
                           "--set", "train.batch_size=12"], env=ENV, capture_output=True, text=True, timeout=600)
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


def test_a_second_ctrl_c_stops_at_once():
    from shipsft.train.preempt import StopRequest

    stop = StopRequest()
    stop._handle(signal.SIGINT, None)
    assert stop.signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_an_incomplete_checkpoint_is_skipped_and_named(tmp_path):
    from shipsft.runs.resume import find_checkpoint

    path = write_tiny_run(tmp_path, train={"max_steps": 4, "batch_size": 16, "precision": "fp32", "save_every": 2})
    assert run_train(load_config(path), config_path=path) == 0
    run = RunFolder(tmp_path / "runs" / "t")
    (run.checkpoint(4) / "COMPLETE").unlink()  # as if the process died before the marker
    ckpt, notes = find_checkpoint("latest", load_config(path).output, path)
    assert ckpt == complete_checkpoints(run)[-1][1] and ckpt != run.checkpoint(4)
    assert notes == [f"skipped {run.checkpoint(4)}: incomplete (its save was interrupted)"]


def _mount_tmpfs(where: Path, mb: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(where)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()}): the disk-full test needs root")


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays(tmp_path):
    """A real small disk (tmpfs): the first checkpoint (~50 MB) fits, the second does not (the first is kept until
    the second is complete). One error line naming the checkpoint, the space, the intact previous checkpoint; exit 2."""
    big = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4}
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 80)
    try:
        path = write_tiny_run(tmp_path, model_kw=big, method={"name": "full"}, optim={"lr": 1e-3},
                              train={"max_steps": 6, "batch_size": 8, "precision": "fp32", "save_every": 2,
                                     "keep_checkpoints": 1}, output={"dir": str(disk), "name": "t"})
        done = subprocess.run([sys.executable, "-m", "shipsft", "train", str(path)], env=ENV, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 2, done.stderr[-2000:]
        errors = [x for x in done.stderr.splitlines() if x.startswith("error: ")]
        assert len(errors) == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        run = RunFolder(disk / "t")
        assert errors[0].startswith(f"error: could not write {run.checkpoint(4)}: no space left on the device")
        assert f"the previous checkpoint {run.checkpoint(2)} is intact" in errors[0] and "MB free" in errors[0]
        assert errors[1] == f"error: resume with: shipsft train {path} --resume {run.root}"
        assert [s for s, _ in complete_checkpoints(run)] == [2]
        assert not [p for p in run.checkpoints.iterdir() if p.name != "step-2"]  # nothing half-written left
        # resume on a disk with room: the run ends as one never interrupted would
        subprocess.run(["mount", "-o", "remount,size=400m", str(disk)], check=True)
        resumed = subprocess.run([sys.executable, "-m", "shipsft", "train", str(path), "--resume"], env=ENV,
                                 capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert (run.root / "model" / "model.safetensors").exists()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_disk_too_small_for_one_checkpoint_is_refused_before_training(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 4)
    try:
        path = write_tiny_run(tmp_path, method={"name": "full"}, output={"dir": str(disk), "name": "t"})
        from shipsft.errors import ConfigError

        with pytest.raises(ConfigError, match=r"output.dir: .* MB free, one checkpoint of this run needs about"):
            run_train(load_config(path), config_path=path)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_reproduce_reports_what_matches_and_retrains_the_first_steps(tmp_path):
    from shipsft.train.reproduce import reproduce

    path = write_tiny_run(tmp_path, train={"max_steps": 4, "batch_size": 16, "precision": "fp32"})
    assert run_train(load_config(path), config_path=path, argv=["shipsft", "train", str(path)]) == 0
    run = tmp_path / "runs" / "t"
    report = reproduce(run, check_steps=3)
    assert report.ok, [r for r in report.rows if not r.ok]
    what = {r.what for r in report.rows}
    assert {"config hash", "data fingerprint (train)", "rendered tokens (train)", "tokenizer", "chat template",
            "package torch"} <= what and any(w.startswith("file ") for w in what)
    assert [s for s, _, _ in report.losses] == [1, 2, 3] and report.max_loss_diff <= 1e-6
    readme = (run / "README.md").read_text()
    assert f"shipsft train {run / 'config.yaml'} --resume {run}" in readme and f"shipsft reproduce {run}" in readme
    # an edited data file is caught: its hash, the data fingerprint and the token stream all differ
    (tmp_path / "train.jsonl").write_text((tmp_path / "train.jsonl").read_text().replace("reverse", "invert", 1))
    report = reproduce(run, check_steps=None)
    differs = {r.what for r in report.rows if not r.ok}
    assert not report.ok and {"data fingerprint (train)", "rendered tokens (train)"} <= differs
    assert any(w.startswith("file ") for w in differs)


def test_a_resumed_run_keeps_the_checkpoint_it_resumed_from_for_promotion(tmp_path):
    """The checkpoint a run resumes from is one promotion may choose, as in the run never interrupted: its own
    loop state lists it (it was once saved listing only the ones before it, so a resumed run forgot it)."""
    from helpers import Notes
    from shipsft.train.loop import fit
    from shipsft.train.run import setup

    def train(name: str, resume: Path | None = None, limit: int | None = None):
        path = write_tiny_run(tmp_path, train={"max_steps": 6, "batch_size": 8, "precision": "fp32", "save_every": 2,
                                               "keep_checkpoints": 10}, output={"dir": str(tmp_path / "runs"),
                                                                                 "name": name})
        s = setup(load_config(path), path, False, None, Notes(), resume=resume)
        try:
            return fit(s, limit_steps=limit)
        finally:
            s.run.close()

    whole = train("whole")
    train("killed", limit=3)  # stopped after step 3: step-2 is its last checkpoint
    resumed = train("killed", resume=tmp_path / "runs" / "killed" / "checkpoints" / "step-2")
    assert sorted(whole.checkpoints) == sorted(resumed.checkpoints) == [2, 4, 6]
