"""Crash-safe saves: a folder is written under a temporary name, sealed (its `COMPLETE` marker, the last file
written, records every file's size and sha256: runs/integrity.py), every file and the folder are fsynced, and it is
renamed into place. A folder without the marker is never taken for a checkpoint, one whose files differ from the
marker is never loaded, and an older checkpoint is removed only after a newer one is complete.

Why all of it: a rename without fsync can reach the disk before the file contents do (a power cut leaves a
complete-looking folder of empty files), and deleting the old folder before the new one is in place leaves no
checkpoint at all if the process dies in between (HF Trainer's atomic save was reverted for such reasons:
huggingface/transformers#36112).

    save_checkpoint(folder.checkpoint(120), lambda d: save_weights(model, tokenizer, d))
    complete_checkpoints(folder)   # [(step, path)] oldest first, incomplete ones skipped
"""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from shipsft.errors import ShipError
from shipsft.runs.integrity import mismatches, recorded, seal
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


class DamagedFolder(ShipError):
    """A saved folder whose files differ from what its marker records (truncated, bit-flipped, missing)."""


def _tmp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp{os.getpid()}")


def save_atomic(target: Path, write: Callable[[Path], None], copied_from: dict[str, dict] | None = None) -> Path:
    """`write(tmp_dir)`, seal, fsync, then put tmp_dir in place of `target` (an existing `target` is replaced only
    once the new folder is complete on disk). `copied_from`: the record of the folder `write` copies, which the new
    files must match. What a killed earlier save of `target` left is put right first (`recover`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = _tmp_name(target)
    try:
        write(tmp)
        files = seal(tmp)
        if copied_from is not None and (bad := mismatches(files, copied_from, target)):
            raise DamagedFolder(bad)
        fsync_tree(tmp)
    except OSError as e:  # named by the folder being saved, not the temporary file that failed
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(e.errno, e.strerror or str(e), str(target)) from e
    except (ShipError, KeyboardInterrupt, SystemExit):
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:
        full = disk_full(e, tmp.parent)  # before the half-written folder is removed and frees its space
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise OSError(errno.ENOSPC, f"{type(e).__name__}: {e}", str(target)) from e
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


def disk_full(e: Exception, where: Path) -> bool:
    """Whether a writer's own error means a full disk: safetensors reports it as a SafetensorError ('I/O error: No
    space left on device (os error 28)'), torch.save as a RuntimeError from its zip writer ('unexpected pos ...')."""
    return "os error 28" in str(e) or "No space left" in str(e) or shutil.disk_usage(where).free < 2**20


def recover(target: Path) -> None:
    """Undo what a save of `target` killed midway left: its temporary folder is removed, and a previous `target`
    moved aside (`.NAME.oldPID`) for a replacement that never arrived is put back."""
    for stale in target.parent.glob(f".{target.name}.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)
    for old in sorted(target.parent.glob(f".{target.name}.old*")):
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)


def save_checkpoint(target: Path, write: Callable[[Path], None]) -> Path:
    """A checkpoint folder: saved atomically, sealed with its COMPLETE marker (the last file written)."""
    return save_atomic(target, write)


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
    """Copy a checkpoint's loadable weights (not its training state or marker) to `dst`, atomically; the copy's
    files must match what the checkpoint's marker records (a damaged checkpoint is never promoted)."""
    ignore = shutil.ignore_patterns(STATE_DIR, COMPLETE)
    source = recorded(src) if is_complete(src) else None
    return save_atomic(dst, lambda tmp: shutil.copytree(src, tmp, ignore=ignore), copied_from=source)
