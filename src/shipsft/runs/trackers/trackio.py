"""trackio (Hugging Face's local-first tracker): a run named after the run folder in `track.trackio_project`,
stored in trackio's own local database (TRACKIO_DIR, default ~/.cache/huggingface/trackio); `trackio show` opens its
dashboard. Params and tags go to the run config; the artifacts are one trackio artifact. A resume continues the run
of the same name (resume="allow").
"""
from __future__ import annotations

import contextlib
import contextvars
import io
import re
from pathlib import Path

from shipsft.runs.layout import RunFolder


class TrackioTracker:
    name = "trackio"
    rewinds = False

    def __init__(self, project: str, folder: RunFolder):
        self.project, self.folder = project, folder
        self.run = None

    def start(self, params: dict[str, str], tags: dict[str, str], state: dict | None, resume) -> dict:
        import trackio

        # trackio prints a banner to stdout, which the CLI's progress bar owns; where() says the same in one line.
        # No automatic CPU/GPU sampling: shipsft logs its own throughput.
        # init in a copy of this thread's context: trackio keeps "the current run" in a context variable, and an
        # atexit hook finishes whatever it holds, which would finish this run a second time after close (and print
        # its upload banner under the run's last line). This tracker holds its run itself.
        with contextlib.redirect_stdout(io.StringIO()):
            self.run = contextvars.copy_context().run(
                trackio.init, project=self.project, name=self.folder.root.name, config={**params, **tags},
                resume="allow" if resume is not None else "never", embed=False, auto_log_cpu=False,
                auto_log_gpu=False)
        return {"project": self.project, "name": self.folder.root.name}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        import trackio

        artifact = trackio.Artifact(re.sub(r"[^\w.-]", "_", f"{self.folder.root.name}-files"), type="shipsft-run")
        for path in paths:
            artifact.add_file(str(path), name=path.name)
        with contextlib.redirect_stdout(io.StringIO()):
            self.run.log_artifact(artifact)

    def close(self, status: str) -> None:
        if self.run is not None:
            # the run's own finish: trackio.finish() looks for "the current run" in the context variable, which is
            # not set here (see start), and raised, so every close was retried until the flush deadline
            with contextlib.redirect_stdout(io.StringIO()):
                self.run.finish()
            self.run = None

    def where(self) -> str:
        return f"trackio run {self.folder.root.name}; view: trackio show --project {self.project}"
