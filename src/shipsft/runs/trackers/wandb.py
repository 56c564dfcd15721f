"""Weights & Biases: offline by default (`track.wandb_mode`), writing the run under <run>/wandb/ with no network;
`wandb sync <run>/wandb/offline-run-*` uploads it later. Params go to the run config, the shipsft tags both to the
config (full values) and to the run's tags as `name:value` (W&B tags are short labels, at most 64 characters). The
artifacts are one W&B artifact of type `shipsft-run`. A resume continues the W&B id kept in trackers.json
(resume="allow"); W&B itself refuses a step lower than one it holds.
"""
from __future__ import annotations

import re
import secrets
import string
from pathlib import Path

from shipsft.runs.layout import RunFolder

MAX_TAG = 64  # W&B's limit on the length of a run tag


class WandbTracker:
    name = "wandb"
    rewinds = False

    def __init__(self, project: str, mode: str, folder: RunFolder):
        self.project, self.mode, self.folder = project, mode, folder
        self.run = None

    def start(self, params: dict[str, str], tags: dict[str, str], state: dict | None, resume) -> dict:
        import wandb

        run_id = state.get("id") if resume is not None and state else None
        run_id = run_id or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        labels = [f"{k.removeprefix('shipsft.')}:{v}" for k, v in tags.items()
                  if len(k.removeprefix("shipsft.")) + len(v) + 1 <= MAX_TAG]
        self.folder.root.mkdir(parents=True, exist_ok=True)
        # console="off": W&B would otherwise wrap stdout/stderr, which the CLI's progress bar owns
        self.run = wandb.init(project=self.project, name=self.folder.root.name, id=run_id, dir=str(self.folder.root),
                              mode=self.mode, resume="allow", tags=labels,
                              settings=wandb.Settings(console="off", silent=True))
        self.run.config.update({**params, **tags}, allow_val_change=True)
        return {"id": run_id, "project": self.project, "mode": self.mode}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        import wandb

        name = re.sub(r"[^\w.-]", "_", f"{self.folder.root.name}-files")
        artifact = wandb.Artifact(name, type="shipsft-run")
        for path in paths:
            artifact.add_file(str(path), name=path.name)
        self.run.log_artifact(artifact)

    def close(self, status: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "FINISHED" else 1)

    def where(self) -> str:
        if self.mode == "offline":
            return f"wandb offline run {self.run.id} in {self.run.dir}; upload: wandb sync {Path(self.run.dir).parent}"
        return f"wandb run {self.run.url}"
