"""What the fault-injection tests share: the tiny LoRA run they train, the real `shipsft` commands (a subprocess where
a test kills it, typer's in-process runner where nothing is killed), waiting for a step, comparing weights, and a
real small disk (tmpfs) to fill."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import write_tiny_run
from shipsft.cli.main import app, bare_resume
from shipsft.runs.jsonio import read_jsonl

ENV = {**os.environ, "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "250", "PYTHONUNBUFFERED": "1"}
# LoRA with dropout and NEFTune: every step draws random numbers, so an exact resume must restore the RNG too
LORA = {"method": {"name": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}, "optim": {"lr": 5e-3}}
# a bigger tiny model (4M parameters; full fine-tuning: ~50 MB per checkpoint) for saves slow enough to be killed
BIG = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4}


def lora_run(tmp_path: Path, track: dict | None = None, **train) -> Path:
    return write_tiny_run(tmp_path, **LORA, train={"max_steps": 12, "batch_size": 8, "precision": "fp32",
                                                   "neftune_alpha": 5.0, "save_every": 1, "keep_checkpoints": 3,
                                                   "eval_every": 4, **train}, **({"track": track} if track else {}))


def cli(*args) -> tuple[int, str]:
    """`shipsft ARGS` in this process, as `main` reads them (a bare --resume): (exit code, stdout and stderr)."""
    res = CliRunner().invoke(app, bare_resume([str(a) for a in args]), env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "400"})
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def shipsft(*args, env: dict | None = None) -> subprocess.Popen:
    """`shipsft ARGS` as its own process (one a test can kill)."""
    return subprocess.Popen([sys.executable, "-m", "shipsft", *map(str, args)], env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shipsft", *map(str, args)], env=env or ENV, capture_output=True,
                          text=True, timeout=timeout)


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


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def kill_when(proc, seen, timeout: float = 300):
    """SIGKILL `proc` as soon as `seen()` returns a path (polled every 0.5 ms); that path, or None if the process
    ended first."""
    caught = None
    end = time.time() + timeout
    while caught is None and proc.poll() is None and time.time() < end:
        caught = seen()
        if caught is None:
            time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return caught


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(next(Path(path).glob("*.safetensors")))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert diff <= 1e-6, diff


@contextlib.contextmanager
def small_disk(where: Path, mb: int):
    """A real disk of `mb` MB (a tmpfs mounted at `where`), unmounted afterwards; skips without root."""
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(where)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode().strip()}): the disk-full test needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def resize(disk: Path, mb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={mb}m", str(disk)], check=True)
