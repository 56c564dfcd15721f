"""Check a run folder's saved weights against what their saves recorded (runs/integrity.py), before anything loads
them and in `shipsft verify RUN`.

    path, note = verified_weights(RunFolder(Path("runs/quickstart")))   # final/ (or adapter/, model/), checked
    for f in verify_run(Path("runs/quickstart")): print(f.status, f.path, f.lines)

Every sealed folder of the run is checked wherever it sits (checkpoints, adapter/ or model/, final/, an export's hf/
and gguf/): a folder is sealed when it holds a COMPLETE marker. A checkpoint folder without one is an interrupted
save (a resume skips it); adapter/, model/ or final/ without one was written by an older shipsft and is unchecked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shipsft.runs.checkpoint import DamagedFolder, checkpoint_step
from shipsft.runs.integrity import check, files_of, recorded
from shipsft.runs.layout import COMPLETE, RunFolder

OK, DAMAGED, NOTE = "ok", "DAMAGED", "note"


@dataclass
class Finding:
    path: Path
    status: str  # OK, DAMAGED or NOTE
    lines: list[str] = field(default_factory=list)  # what is wrong (DAMAGED) or what the folder is (NOTE)
    size: int = 0  # bytes checked (OK)


def verified(path: Path) -> None:
    """Raise DamagedFolder (one line per damaged file, then the fix) when the sealed folder `path` differs from its
    record; an unsealed folder is left to its loader."""
    path = Path(path)
    if not (path / COMPLETE).exists():
        return
    problems = check(path)
    if problems:
        raise DamagedFolder(problems + [f"{path}: its files differ from what its save recorded, so nothing was "
                                        "loaded. Fix: copy the folder again from where it was made (or train again); "
                                        f"`shipsft verify {path.parent}` checks every saved folder of the run"])


def verified_weights(folder: RunFolder) -> tuple[Path, str] | None:
    """The weights a run ships (final/, else its last adapter/ or model/, with a note), checked: DamagedFolder when
    their files differ from what the save recorded."""
    found = folder.shipped_weights()
    if found is not None:
        verified(found[0])
    return found


def sealed_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob(COMPLETE) if p.is_file())


def verify_run(root: Path) -> list[Finding]:
    """One Finding per saved folder of a run: every sealed folder checked, interrupted checkpoints and unsealed
    weight folders noted."""
    folder = RunFolder(Path(root))
    findings = []
    for path in sealed_folders(folder.root):
        problems = check(path)
        if problems:
            findings.append(Finding(path, DAMAGED, problems))
        elif recorded(path) is None:
            findings.append(Finding(path, NOTE, ["sealed by an older shipsft (no file record): not checked"]))
        else:
            findings.append(Finding(path, OK, size=sum((path / n).stat().st_size for n in files_of(path))))
    sealed = {f.path for f in findings}
    if folder.checkpoints.is_dir():
        for p in sorted(folder.checkpoints.iterdir()):
            if p.is_dir() and p not in sealed and checkpoint_step(p) is not None:
                findings.append(Finding(p, NOTE, ["incomplete: its save was interrupted (a resume skips it)"]))
    for p in (folder.root / "adapter", folder.root / "model", folder.final):
        if p.is_dir() and p not in sealed:
            findings.append(Finding(p, NOTE, ["no COMPLETE marker (written by an older shipsft): not checked"]))
    return findings
