"""Crash-safe saves: a folder is written under a temporary name, every file and the folder are fsynced, it is
renamed into place, and for checkpoints a `COMPLETE` marker is written last. A folder without the marker is never
taken for a checkpoint; an older checkpoint is removed only after a newer one is complete.

Why all of it: a rename without fsync can reach the disk before the file contents do (a power cut leaves a
complete-looking folder of empty files), and deleting the old folder before the new one is in place leaves no
checkpoint at all if the process dies in between (HF Trainer's atomic save was reverted for such reasons:
huggingface/transformers#36112).

    save_checkpoint(folder.checkpoint(120), lambda d: save_weights(model, tokenizer, d))
    complete_checkpoints(folder)   # [(step, path)] oldest first, incomplete ones skipped
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shipsft.errors import ShipError
from shipsft.runs.layout import COMPLETE, STATE_DIR, RunFolder


class CheckpointWriteError(ShipError):
    """A save failed (disk full, folder not writable); the run stops and its previous checkpoint is intact."""

    def __init__(self, lines: list[str], run_folder: Path):
        super().__init__(lines)
        self.run_folder = run_folder


def fsync_tree(root: Path) -> None:
    """fsync every file under `root`, then every directory bottom-up (so the names reach the disk too)."""
    dirs = []
    for d, _, files in os.walk(root):
        dirs.append(d)
        for name in files:
            fd = os.open(os.path.join(d, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in reversed(dirs):
        fsync_dir(Path(d))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp{os.getpid()}")


def save_atomic(target: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp_dir)`, fsync, then put tmp_dir in place of `target` (an existing `target` is replaced only once
    the new folder is complete on disk)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(target)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def save_checkpoint(target: Path, write: Callable[[Path], None]) -> Path:
    """A checkpoint folder: saved atomically, then marked COMPLETE (the marker is the last thing written)."""
    save_atomic(target, write)
    marker = target / COMPLETE
    with open(marker, "w") as f:
        f.write("ok\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(target)
    return target


def is_complete(path: Path) -> bool:
    return (Path(path) / COMPLETE).exists()


def checkpoint_step(path: Path) -> int | None:
    name = Path(path).name
    if not name.startswith("step-") or not name[5:].isdigit():
        return None
    return int(name[5:])


def complete_checkpoints(folder: RunFolder) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    if not folder.checkpoints.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in folder.checkpoints.iterdir() if p.is_dir()]
    return sorted((s, p) for s, p in found if s is not None and is_complete(p))


def incomplete_checkpoints(folder: RunFolder) -> list[Path]:
    if not folder.checkpoints.is_dir():
        return []
    return sorted(p for p in folder.checkpoints.iterdir()
                  if p.is_dir() and checkpoint_step(p) is not None and not is_complete(p))


def prune_checkpoints(folder: RunFolder, keep_last: int, keep: set[int] = frozenset()) -> list[int]:
    """Remove complete checkpoints beyond the last `keep_last` except the steps in `keep`; returns removed steps.
    Leftover temporary folders of a killed save are removed too."""
    done = complete_checkpoints(folder)
    protected = {s for s, _ in done[-keep_last:]} | set(keep)
    removed = []
    for step, path in done:
        if step not in protected:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(step)
    if folder.checkpoints.is_dir():
        for p in folder.checkpoints.iterdir():
            if p.name.startswith(".") and ".tmp" in p.name:
                shutil.rmtree(p, ignore_errors=True)
    return removed


def copy_weights(src: Path, dst: Path) -> Path:
    """Copy a checkpoint's loadable weights (not its training state or marker) to `dst`, atomically."""
    ignore = shutil.ignore_patterns(STATE_DIR, COMPLETE)
    return save_atomic(dst, lambda tmp: shutil.copytree(src, tmp, ignore=ignore))
