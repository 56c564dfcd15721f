"""Which checkpoint a resume continues from.

    shipsft train CONFIG --resume                     the latest complete checkpoint of the run CONFIG names
    shipsft train CONFIG --resume runs/x              ... of that run folder
    shipsft train CONFIG --resume runs/x/checkpoints/step-40

Only complete checkpoints count (the COMPLETE marker is the last file a save writes); incomplete ones are skipped
and named, never loaded (Axolotl's auto-resume takes the highest-numbered folder whether or not it is complete).
A complete one whose files differ from what its marker records (a truncated copy, a flipped bit: runs/integrity.py)
is named file by file and the newest intact one before it is used; named by path, it is refused with the command
that resumes from the intact one.
"""
from __future__ import annotations

from pathlib import Path

from shipsft.config import OutputConfig
from shipsft.errors import ConfigError
from shipsft.runs.checkpoint import checkpoint_step, complete_checkpoints, incomplete_checkpoints, is_complete
from shipsft.runs.integrity import check
from shipsft.runs.layout import RunFolder, run_folder_for
from shipsft.runs.state import has_state

LATEST = "latest"


def run_named_by(out: OutputConfig, config_path: str | Path) -> RunFolder:
    """The run folder a config names: output.name, else the newest `<config name>-<timestamp>` folder with a
    checkpoint."""
    if out.name:
        return run_folder_for(out, config_path)
    stem = run_folder_for(out, config_path).root.name.rsplit("-", 2)[0]
    candidates = sorted((p for p in Path(out.dir).glob(f"{stem}-*") if complete_checkpoints(RunFolder(p))),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError([f"--resume: no run of {config_path} with a complete checkpoint in {out.dir} "
                           f"(looked for {stem}-*/checkpoints/step-N/COMPLETE). Fix: start it without --resume, or "
                           "give --resume RUN_FOLDER."])
    return RunFolder(candidates[-1])


def find_checkpoint(spec: str, out: OutputConfig, config_path: str | Path) -> tuple[Path, list[str]]:
    """(the checkpoint folder to resume from, notes naming every incomplete or damaged checkpoint skipped)."""
    path = Path(spec)
    if spec != LATEST and checkpoint_step(path) is not None:
        if not is_complete(path) or not has_state(path):
            raise ConfigError([f"--resume {spec}: not a complete checkpoint (no COMPLETE marker or training state: "
                               "its save did not finish). Fix: resume from its run folder to use the latest complete "
                               "one."])
        damaged = check(path)
        if damaged:
            earlier = [(s, p) for s, p in complete_checkpoints(RunFolder(path.parents[1]))
                       if s < checkpoint_step(path) and has_state(p)]
            intact = next((p for _, p in reversed(earlier) if not check(p)), None)
            fix = (f"Fix: resume from the newest intact checkpoint: shipsft train {config_path} --resume {intact}"
                   if intact else "Fix: no earlier intact checkpoint; start again without --resume")
            raise ConfigError([f"damaged checkpoint: {line}" for line in damaged]
                              + [f"--resume {spec}: its files differ from what its save recorded. {fix}"])
        return path, []
    folder = run_named_by(out, config_path) if spec == LATEST else RunFolder(path)
    if spec != LATEST and not folder.root.is_dir():
        raise ConfigError([f"--resume {spec}: no such run folder"])
    notes = [f"skipped {p}: incomplete (its save was interrupted)" for p in incomplete_checkpoints(folder)]
    usable = [(s, p) for s, p in complete_checkpoints(folder) if has_state(p)]
    if not usable:
        raise ConfigError([f"--resume: {folder.root} has no complete checkpoint to resume from"
                           + (f" ({len(notes)} incomplete)" if notes else "") + ". Fix: start the run again without "
                           "--resume."])
    damaged: list[str] = []
    for _, p in reversed(usable):  # newest first: the first intact one is resumed
        problems = check(p)
        if not problems:
            if damaged:
                notes += damaged + [f"resuming from {p}, the newest intact checkpoint, instead of {usable[-1][1]}"]
            return p, notes
        damaged += [f"damaged checkpoint: {line}" for line in problems]
    raise ConfigError(damaged + [f"--resume: every complete checkpoint of {folder.root} is damaged. Fix: start the "
                                 "run again without --resume."])
