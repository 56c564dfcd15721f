"""TensorBoard: event files in <run>/tensorboard (torch.utils.tensorboard.SummaryWriter; needs the `tensorboard`
package). TensorBoard has no params or tags: the config and the tags are written as text (the TEXT tab).

A resumed run writes into the same folder with `purge_step` set to the first step it logs again, so TensorBoard
hides what the killed run logged after the checkpoint and the curves continue without a duplicated step.
"""
from __future__ import annotations

from pathlib import Path

from shipsft.runs.layout import RunFolder


class TensorBoardTracker:
    name = "tensorboard"
    rewinds = True

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.writer = None

    def start(self, params: dict[str, str], tags: dict[str, str], state: dict | None, resume) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        purge = resume.first if resume is not None else None
        self.writer = SummaryWriter(log_dir=str(self.folder.tensorboard), purge_step=purge)
        if resume is None:
            self.writer.add_text("tags", table(tags), 0)
            self.writer.add_text("config", table(params), 0)
            self.writer.flush()
        return {"log_dir": str(self.folder.tensorboard)}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()  # like metrics.jsonl: a killed run keeps every step it logged

    def artifacts(self, paths: list[Path]) -> None:
        pass  # TensorBoard keeps no files; its folder sits in the run folder beside them

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()

    def where(self) -> str:
        return f"tensorboard --logdir {self.folder.tensorboard}"


def table(values: dict[str, str]) -> str:
    """A Markdown table (TensorBoard's text plugin renders Markdown)."""
    rows = "\n".join(f"| {k} | {str(v).replace('|', '&#124;')} |" for k, v in values.items())
    return f"| key | value |\n|---|---|\n{rows}"
