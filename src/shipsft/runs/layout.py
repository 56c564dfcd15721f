"""Every file name of a run folder, spelled once.

    runs/<name>/
      config.yaml          the resolved config (every default and automatic choice filled in)
      manifest.json        config hash, data fingerprints, package versions, seed, the exact command, audit skip
      audit.json/.html     the pre-flight audit
      metrics.jsonl        one line per logged optimizer step / eval-loss measurement
      eval.jsonl           baseline / smoke / full task evals
      predictions.jsonl    every eval example of every full eval: prompt, reference, output, scores (base too)
      promotion.json       the gate decision and the before/after table
      report.html          curves, before/after, samples, gate decision
      README.md            the runbook: what was trained, and the commands to re-run, resume and evaluate it
      split/               train.jsonl + eval.jsonl: data.train's parts when data.eval_split held one out
      train.log            what the console showed, and the libraries' warnings and log lines it kept off the screen
      checkpoints/step-N/  loadable weights (adapter or model + tokenizer) and a COMPLETE marker written last
      adapter/ or model/   the weights at the end of training
      final/               the promoted checkpoint (weights only)
      trackers.json        the tracker runs this run logs to (MLflow run id, W&B id, ...): a resume continues them
      tensorboard/         TensorBoard event files (track: [tensorboard])
      mlflow.db            the MLflow store when track.mlflow_uri is null, with its artifacts in mlartifacts/
      wandb/               W&B run files (track: [wandb])
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from shipsft.config import OutputConfig

COMPLETE = "COMPLETE"  # written last into a checkpoint folder: without it the folder is not a checkpoint
PREDICTIONS = "predictions.jsonl"  # also the name `shipsft eval` writes next to its --out file
STATE_DIR = "shipsft_state"  # training state inside a checkpoint (not part of the loadable weights)


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def audit_json(self) -> Path:
        return self.root / "audit.json"

    @property
    def audit_html(self) -> Path:
        return self.root / "audit.html"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def evals(self) -> Path:
        return self.root / "eval.jsonl"

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS

    @property
    def promotion(self) -> Path:
        return self.root / "promotion.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def trackers(self) -> Path:
        return self.root / "trackers.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step}"

    def trained(self, method: str) -> Path:
        """Where the weights at the end of training go: `adapter/` for LoRA/QLoRA, `model/` for full fine-tuning."""
        return self.root / ("model" if method == "full" else "adapter")

    def rejects(self, tag: str) -> Path:
        return self.root / f"rejects-{tag}.jsonl"

    def split(self, part: str) -> Path:
        """split/train.jsonl, split/eval.jsonl: the parts of data.train that data.eval_split held out."""
        return self.root / "split" / f"{part}.jsonl"

    def shipped_weights(self) -> tuple[Path, str] | None:
        """The weights this run hands off: final/ (promoted), else its last adapter/ or model/ with a note."""
        for path, note in ((self.final, ""), (self.root / "adapter", "not promoted: its last saved adapter/"),
                           (self.root / "model", "not promoted: its last saved model/")):
            if path.is_dir():
                return path, note
        return None


def audit_paths(folder: Path) -> tuple[Path, Path]:
    """audit.json and audit.html inside `folder` (a run folder, or the folder given to `shipsft audit --out`)."""
    f = RunFolder(Path(folder))
    return f.audit_json, f.audit_html


def is_run_folder(path: Path) -> bool:
    f = RunFolder(Path(path))
    return f.config.exists() and f.manifest.exists()


def run_folder_for(out: OutputConfig, config_path: str | Path | None) -> RunFolder:
    """runs/<output.name>, or runs/<config name>-<timestamp> (examples/quickstart/config.yaml -> quickstart-...)."""
    stem = Path(config_path).stem if config_path else "run"
    if stem == "config" and config_path:
        stem = Path(config_path).resolve().parent.name
    name = out.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return RunFolder(Path(out.dir) / name)
