"""Saved weights that prove their bytes, through the real commands on the tiny LoRA run (4 steps, a checkpoint per
step): a truncated or bit-flipped file in the newest checkpoint is named file by file and the resume continues from
the newest intact one, ending with the weights and losses of the run never damaged; `--resume` naming the damaged
checkpoint is refused with the command that resumes from the intact one; `eval RUN`, `chat RUN` and `export RUN`
refuse damaged weights before loading anything; `shipsft verify` names every damaged folder and exits 1."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faultkit import assert_same_weights, cli, losses, lora_run
from shipsft.runs.jsonio import read_json
from shipsft.runs.layout import RunFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, RunFolder, Path]:
    """(config, run folder, an untouched copy of it): trained once; each test damages a fresh copy."""
    tmp = tmp_path_factory.mktemp("checkpoints")
    path = lora_run(tmp, max_steps=4, keep_checkpoints=4, eval_every=2)
    code, out = cli("train", path)
    assert code == 0, out
    run = RunFolder(tmp / "runs" / "t")
    shutil.copytree(run.root, tmp / "pristine")
    return path, run, tmp / "pristine"


@pytest.fixture
def run(pristine) -> tuple[Path, RunFolder, Path]:
    path, run, copy = pristine
    shutil.rmtree(run.root)
    shutil.copytree(copy, run.root)
    return pristine


def flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def truncate(path: Path) -> tuple[int, int]:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    return size // 2, size


def assert_resumed_as_never_damaged(run: RunFolder, copy: Path) -> None:
    assert_same_weights(run.root / "adapter", copy / "adapter")
    got, want = losses(run.root), losses(copy)
    assert [s for s, _ in got] == [1, 2, 3, 4]  # every step once: the lines after step 3 were cut and written again
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in want], abs=1e-6)
    assert read_json(run.manifest)["resumes"][0]["from_step"] == 3


@pytest.mark.parametrize("damage", ["truncated weights", "bit-flipped optimizer state"])
def test_a_damaged_newest_checkpoint_is_named_and_the_resume_continues_from_the_intact_one(run, damage):
    path, folder, copy = run
    newest, intact = folder.checkpoint(4), folder.checkpoint(3)
    if damage == "truncated weights":
        now, was = truncate(newest / "adapter_model.safetensors")
        line = f"damaged checkpoint: {newest / 'adapter_model.safetensors'}: {now} bytes, {was} when it was saved " \
               "(truncated)"
    else:
        flip_bit(newest / "shipsft_state" / "optimizer.pt", 4000)
        line = f"damaged checkpoint: {newest / 'shipsft_state' / 'optimizer.pt'}: sha256 "
    code, out = cli("train", path, "--resume")
    assert code == 0, out
    lines = out.splitlines()
    assert any(x.startswith(line) for x in lines), out
    assert f"resuming from {intact}, the newest intact checkpoint, instead of {newest}" in lines
    assert f"resumed from {intact} (step 3 of 4)" in lines
    assert_resumed_as_never_damaged(folder, copy)
    assert cli("verify", folder.root)[0] == 0  # the resumed run saved step 4 again, intact


def test_resume_naming_the_damaged_checkpoint_is_refused_with_the_command_for_the_intact_one(run):
    path, folder, _ = run
    newest = folder.checkpoint(4)
    now, was = truncate(newest / "adapter_model.safetensors")
    code, out = cli("train", path, "--resume", newest)
    assert code == 2
    assert out.splitlines() == [
        f"error: damaged checkpoint: {newest / 'adapter_model.safetensors'}: {now} bytes, {was} when it was saved "
        "(truncated)",
        f"error: --resume {newest}: its files differ from what its save recorded. Fix: resume from the newest intact "
        f"checkpoint: shipsft train {path} --resume {folder.checkpoint(3)}"]


def test_eval_chat_and_export_refuse_damaged_weights_and_verify_names_them(run):
    path, folder, _ = run
    weights = folder.root / "adapter" / "adapter_model.safetensors"
    flip_bit(weights, 2000)
    for args in (("eval", folder.root, "--suite", path.parent / "eval.jsonl", "--limit", 2), ("chat", folder.root, "--prompt", "reverse: red cat"),
                 ("export", folder.root, "--to", "hf")):
        code, out = cli(*args)
        lines = out.splitlines()
        assert code == 2, (args, out)
        assert lines[0].startswith(f"error: {weights}: sha256 ") and "when it was saved (same size, other bytes" in \
            lines[0], (args, out)
        assert lines[1].startswith(f"error: {folder.root / 'adapter'}: its files differ from what its save recorded, "
                                   "so nothing was loaded"), (args, out)
    assert not (folder.root / "export").exists()  # nothing was written either
    code, out = cli("verify", folder.root)
    assert code == 1
    lines = out.splitlines()
    assert f"DAMAGED  {folder.root / 'adapter'}: {weights}: sha256 " in "\n".join(lines)
    assert [x.split()[0] for x in lines[:-1]] == ["DAMAGED"] + ["ok"] * 4  # the adapter; step-1..4 intact
    assert lines[-1] == f"verify {folder.root}: 5 saved folders, 1 damaged"
