"""A run folder as a training run writes it: one `Run` for the folder, its metric sink (and trackers), the manifest,
checkpoints, the end weights, promotion and predictions, so train/ talks to runs/ through one object.

Launched on several processes, every rank holds a `Run` and calls the same methods; rank 0 alone writes (the other
ranks' sink is silent), except that under FSDP2 each rank writes its own shard of the optimizer state, which rank 0
moves into the checkpoint before marking it COMPLETE. The collectives come from the caller (`ranks`: train/dist.py
passes itself), so runs/ holds no process-group code.

    run = Run.open(cfg.output, config_path, resume=None, track=cfg.track, ranks=dist)
    run.start(cfg, argv, fingerprints, extra, readme)         # manifest.json, config.yaml, README.md
    run.sink.write({"step": 1, "loss": 2.3})
    run.save_step(40, state_of, write_weights, write_shard=None, keep={20}, keep_last=2)
    run.save_final("lora", write_weights)
    run.close("FINISHED")
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shipsft.config import OutputConfig, RunConfig, TrackConfig
from shipsft.runs.checkpoint import (CheckpointWriteError, complete_checkpoints, copy_weights, is_complete,
                                     prune_checkpoints, save_atomic, save_checkpoint)
from shipsft.runs.jsonio import read_json, write_json, write_text_atomic
from shipsft.runs.layout import STATE_DIR, RunFolder, run_folder_for
from shipsft.runs.manifest import read_manifest, update_manifest, write_manifest
from shipsft.runs.predictions import failure_summary, write_predictions
from shipsft.runs.sinks import MetricsSink, SilentSink, read_evals, read_metrics
from shipsft.runs.state import OPTIMIZER_DIR, TrainingState, read_state, write_state
from shipsft.runs.trackers import Trackers, build_trackers


class Ranks(Protocol):
    """The collectives a Run needs (train/dist.py provides them; `OneProcess` is the single-process answer)."""

    def is_main(self) -> bool: ...

    def barrier(self) -> None: ...

    def broadcast(self, obj: Any) -> Any: ...


class OneProcess:
    @staticmethod
    def is_main() -> bool:
        return True

    @staticmethod
    def barrier() -> None:
        pass

    @staticmethod
    def broadcast(obj: Any) -> Any:
        return obj


@dataclass
class Run:
    folder: RunFolder
    ranks: Ranks = OneProcess
    trackers: Trackers | None = None
    sink: MetricsSink | SilentSink = field(default_factory=SilentSink)

    @classmethod
    def open(cls, out: OutputConfig, config_path: str | Path | None, resume: Path | None, track: TrackConfig,
             ranks: Ranks = OneProcess) -> tuple["Run", TrainingState | None]:
        """The run folder a config names (or the one a resumed checkpoint sits in), the checkpoint's training state,
        and rank 0's trackers (a missing tracker package is an error here, before any data work; they start once the
        manifest is written)."""
        folder = RunFolder(Path(resume).parents[1]) if resume else run_folder_for(out, config_path)
        state = read_state(resume) if resume else None
        trackers = build_trackers(track, folder, resumed=state is not None) if ranks.is_main() else None
        return cls(folder, ranks, trackers), state

    @property
    def main(self) -> bool:
        return self.ranks.is_main()

    # -- start ------------------------------------------------------------------------------------------------------

    def start(self, cfg: RunConfig, argv: list[str] | None, fingerprints: dict, extra: dict, readme: str) -> None:
        """A fresh run: config.yaml, manifest.json and the folder's README.md (rank 0), then the metric sink."""
        if self.main:
            write_manifest(self.folder, cfg, argv=argv, fingerprints=fingerprints, extra=extra)
            write_text_atomic(self.folder.readme, readme)
        self.open_sink(None)

    def resumed(self, entry: dict, config_yaml: str, offsets: tuple[int, int]) -> None:
        """A resumed run: the resume recorded in the manifest, the config it continues with, and the sink reopened at
        the checkpoint's offsets (lines a killed run wrote after its checkpoint are cut)."""
        if self.main:
            update_manifest(self.folder, resumes=self.manifest().get("resumes", []) + [entry])
            write_text_atomic(self.folder.config, config_yaml)
        self.open_sink(offsets)

    def open_sink(self, offsets: tuple[int, int] | None) -> None:
        self.sink = MetricsSink(self.folder, offsets, self.trackers) if self.main else SilentSink()

    def manifest(self) -> dict:
        return read_manifest(self.folder)

    def write_audit(self, result: dict, html: str) -> None:
        if self.main:
            write_json(self.folder.audit_json, result, indent=1)
            write_text_atomic(self.folder.audit_html, html)

    # -- during training --------------------------------------------------------------------------------------------

    def keep_predictions(self, rows: list[dict], kind: str, step: int | None) -> None:
        """Every prediction of a baseline or full eval into predictions.jsonl (a resumed run replaces the lines of the
        steps it evaluates again)."""
        if self.main and rows:
            write_predictions(self.folder.predictions, rows, kind=kind, step=step)

    def save_step(self, step: int, state_of: Callable[[], TrainingState], write_weights: Callable[[Path], None],
                  write_shard: Callable[[Path], None] | None, keep: set[int], keep_last: int) -> list[int]:
        """The checkpoint of `step`: loadable weights + tokenizer (`write_weights`) and the training state, COMPLETE
        written last; then keep the last `keep_last` and the steps in `keep`. Returns the steps pruned (the same on
        every rank). `state_of` is called on rank 0 only. `write_shard` (FSDP2): every rank writes its shard of the
        optimizer state into one folder, which rank 0 moves into the checkpoint. A failed write (disk full, not
        writable) raises CheckpointWriteError on every rank; the previous checkpoint stays intact."""
        target = self.folder.checkpoint(step)
        shards = target.with_name(f".{target.name}.optimizer.tmp") if write_shard is not None else None
        if shards is not None:
            if self.main:  # rank 0 makes the folder, so the others only write their own shard file into it
                shutil.rmtree(shards, ignore_errors=True)
                shards.mkdir(parents=True)
            self.ranks.barrier()
            write_shard(shards)
            self.ranks.barrier()
        outcome: tuple[list[str] | None, list[int]] = (None, [])
        if self.main:
            state = state_of()

            def write(d: Path) -> None:
                write_weights(d)
                write_state(d, state)
                if shards is not None:
                    os.replace(shards, d / STATE_DIR / OPTIMIZER_DIR)

            try:
                save_checkpoint(target, write)
                outcome = (None, prune_checkpoints(self.folder, keep_last, keep | {step}))
            except OSError as e:
                outcome = (write_failure(self.folder, target, e), [])
        failed, removed = self.ranks.broadcast(outcome)  # every rank stops on a failed write, not only rank 0
        if failed is not None:
            raise CheckpointWriteError(failed, self.folder.root)
        return removed

    def save_final(self, method: str, write_weights: Callable[[Path], None]) -> Path:
        """The weights at the end of training: adapter/ (LoRA, QLoRA) or model/ (full), written atomically."""
        target = self.folder.trained(method)
        failed = None
        if self.main:
            try:
                save_atomic(target, write_weights)
            except OSError as e:
                failed = write_failure(self.folder, target, e)
        failed = self.ranks.broadcast(failed)
        if failed is not None:
            raise CheckpointWriteError(failed, self.folder.root)
        return target

    def checkpoint(self, step: int) -> Path:
        return self.folder.checkpoint(step)

    def has_checkpoint(self, step: int) -> bool:
        return is_complete(self.folder.checkpoint(step))

    # -- the end ----------------------------------------------------------------------------------------------------

    def promote(self, promotion: dict, checkpoint: Path | None) -> None:
        """promotion.json, and the chosen checkpoint's weights copied to final/ when it passed the gates."""
        try:
            if checkpoint is not None:
                copy_weights(checkpoint, self.folder.final)  # checked against the checkpoint's record as it copies
            write_json(self.folder.promotion, promotion)
        except OSError as e:
            raise CheckpointWriteError(write_failure(self.folder, self.folder.final, e), self.folder.root) from None

    def finished(self, **fields: Any) -> None:
        """The run's totals into the manifest, then the run's files to the trackers (after the manifest's last
        update, so the artifact holds the steps and the time)."""
        if self.main:
            update_manifest(self.folder, **fields)
            self.sink.log_run_files()

    def close(self, status: str = "FINISHED") -> list[str]:
        """Close the sink and its trackers (status: FINISHED, FAILED, or KILLED: resumable); returns the lines about
        trackers not yet shown (one answering again) and what a tracker did not receive."""
        self.sink.close(status)
        return self.sink.news() + list(self.sink.problems)

    def records(self) -> dict:
        """What the run's report is drawn from: metrics, evals, the promotion decision, the manifest and the promoted
        step's failures."""
        promotion = read_json(self.folder.promotion) if self.folder.promotion.exists() else None
        return {"metrics": read_metrics(self.folder), "evals": read_evals(self.folder), "promotion": promotion,
                "manifest": self.manifest(),
                "failures": failure_summary(self.folder.predictions, (promotion or {}).get("step"))}


def write_failure(folder: RunFolder, target: Path, e: OSError) -> list[str]:
    """One line for a save that failed: what, why, the space it needs, and that the previous checkpoint is intact."""
    free = shutil.disk_usage(folder.root).free if folder.root.exists() else 0
    previous = complete_checkpoints(folder)
    kept = f"the previous checkpoint {previous[-1][1]} is intact" if previous else "no earlier checkpoint exists"
    need = sum(p.stat().st_size for p in previous[-1][1].rglob("*") if p.is_file()) if previous else 0
    why = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    size = f" (about {need / 2**20:.0f} MB needed, {free / 2**20:.0f} MB free)" if need else ""
    return [f"could not write {target}: {why}{size}; {kept}. Fix: free space in {folder.root.parent} or set "
            "output.dir to a disk with room, then resume."]


def resume_entry(step: int, checkpoint: Path, argv: list[str] | None, forced: bool, changes: list[str]) -> dict:
    """What the manifest records of one resume."""
    return {"from_step": step, "checkpoint": str(checkpoint), "command": list(argv) if argv else None,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "forced": forced, "changes": changes}
