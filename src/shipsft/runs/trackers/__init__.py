"""Experiment trackers besides metrics.jsonl: TensorBoard, MLflow, Weights & Biases, trackio (`track.sinks`).

Each tracker receives the same things: the resolved config (config.yaml) flattened to dotted keys as params; the
config hash, data / token / tokenizer / template fingerprints, the shipsft version and the command (manifest.json) as
tags, which no other SFT tool logs to a tracker; every numeric metric of metrics.jsonl at its step; and the run's
reports and records as artifacts at the end.

    trackers = build_trackers(cfg.track, folder, resumed=False)     # a missing package is one ConfigError, here
    sink = MetricsSink(folder, None, trackers)                        # starts them; every sink.write reaches them

A resumed run continues the same tracker run where the backend allows it (the ids are kept in trackers.json): an
MLflow run id, a W&B id with resume="allow", a trackio run name, the same TensorBoard folder. Steps a killed run
logged after its last checkpoint are cut from metrics.jsonl and logged again; TensorBoard hides the old ones
(`purge_step`), the other backends keep what they already hold and receive only later steps, so no step appears
twice (an exact resume recomputes the same numbers). The sink is built once, in `train/run.py: setup`, so only one
process writes when training runs on several.

A tracker that fails in the middle of a run (a tracking server gone) is dropped with a note: metrics.jsonl keeps
every step and training goes on.

May import: `shipsft.config`, `shipsft.errors`, `shipsft.runs` (part of runs/). Packages are imported lazily.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Protocol

from shipsft.config import TrackConfig
from shipsft.errors import ConfigError
from shipsft.runs.jsonio import clean, read_json, write_json
from shipsft.runs.layout import RunFolder

# tracker -> (the modules it imports, the pip extra that installs them)
PACKAGES = {"tensorboard": (("tensorboard", "torch.utils.tensorboard"), "tensorboard"),
            "mlflow": (("mlflow",), "mlflow"), "wandb": (("wandb",), "wandb"), "trackio": (("trackio",), "trackio")}


@dataclass(frozen=True)
class Resume:
    """A resumed run. `first` / `last`: the steps a killed run logged after the checkpoint this run resumes from
    (cut from metrics.jsonl, logged again now); None when it logged nothing after it."""

    first: int | None = None
    last: int | None = None


class Tracker(Protocol):
    name: str
    rewinds: bool  # True: the backend hides what a killed run logged after the checkpoint (TensorBoard)

    def start(self, params: dict[str, str], tags: dict[str, str], state: dict | None, resume: Resume | None) -> dict:
        """Open (or, resuming, continue) the tracker's run. `state`: what start returned last time (trackers.json).
        Returns what a resume needs to continue this run (ids, URIs)."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def artifacts(self, paths: list[Path]) -> None: ...

    def close(self, status: str) -> None:
        """status: FINISHED, FAILED (an error ended training) or KILLED (a signal: the run may be resumed)."""

    def where(self) -> str:
        """One line: where the run is and the command to view it."""


def check_installed(cfg: TrackConfig) -> None:
    """One ConfigError naming every tracker whose package is missing, and the extra that installs it."""
    missing = []
    for name in cfg.sinks:
        modules, extra = PACKAGES[name]
        try:
            for module in modules:
                importlib.import_module(module)
        except ImportError as e:
            missing.append(f"track.sinks has {name}, but {e.name or modules[0]!s} is not installed ({e}). "
                           f"Fix: pip install 'shipsft[{extra}]' (or 'shipsft[track]' for every tracker), or remove "
                           f"{name} from track.sinks")
    if missing:
        raise ConfigError(missing)


def build_trackers(cfg: TrackConfig, folder: RunFolder, resumed: bool) -> Trackers | None:
    """The trackers `track.sinks` names, not yet started (MetricsSink starts them), or None when there are none.
    Raises ConfigError for a missing package before anything is opened."""
    if not cfg.sinks:
        return None
    check_installed(cfg)
    backends: list[Tracker] = []
    for name in cfg.sinks:
        if name == "tensorboard":
            from shipsft.runs.trackers.tensorboard import TensorBoardTracker

            backends.append(TensorBoardTracker(folder))
        elif name == "mlflow":
            from shipsft.runs.trackers.mlflow import MlflowTracker

            backends.append(MlflowTracker(cfg.mlflow_uri, cfg.mlflow_experiment, folder))
        elif name == "wandb":
            from shipsft.runs.trackers.wandb import WandbTracker

            backends.append(WandbTracker(cfg.wandb_project, cfg.wandb_mode, folder))
        elif name == "trackio":
            from shipsft.runs.trackers.trackio import TrackioTracker

            backends.append(TrackioTracker(cfg.trackio_project, folder))
    return Trackers(backends, folder, resumed)


@dataclass
class Trackers:
    """Every tracker of a run behind one call each: start, log(record), artifacts, close."""

    backends: list
    folder: RunFolder
    resumed: bool
    problems: list[str] = field(default_factory=list)  # trackers dropped after a failure, one line each
    skip_through: int | None = None  # steps <= this are already held by the non-rewinding backends

    def start(self, resume: Resume | None) -> None:
        """Open every tracker with the run's params and tags (read from config.yaml and manifest.json)."""
        import yaml

        params = config_params(yaml.safe_load(self.folder.config.read_text(encoding="utf-8")))
        manifest = read_json(self.folder.manifest) if self.folder.manifest.exists() else {}
        tags = run_tags(manifest, self.folder)
        recorded = read_json(self.folder.trackers) if self.resumed and self.folder.trackers.exists() else {}
        resume = resume if self.resumed else None
        self.skip_through = resume.last if resume is not None else None
        states = dict(recorded)
        for b in self.backends:
            try:
                states[b.name] = b.start(params, tags, recorded.get(b.name), resume)
            except ConfigError:
                raise
            except Exception as e:  # a tracker that cannot start is a start-up error: nothing was trained yet
                raise ConfigError([f"track: {b.name} could not start: {type(e).__name__}: {first_line(e)}. Fix: "
                                   f"check the track.{b.name}_* settings (a server reachable, a login done), or "
                                   f"remove {b.name} from track.sinks"]) from None
        write_json(self.folder.trackers, states)

    def notes(self) -> list[str]:
        return [f"tracking: {b.where()}" for b in self.backends]

    def log(self, record: dict) -> None:
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return
        metrics = numbers(record)
        if not metrics:
            return
        for b in list(self.backends):
            if not b.rewinds and self.skip_through is not None and step <= self.skip_through:
                continue
            self._guard(b, f"step {step}", b.log, step, metrics)

    def artifacts(self, paths: list[Path]) -> None:
        paths = [Path(p) for p in paths if Path(p).exists()]
        for b in list(self.backends):
            self._guard(b, "the artifacts", b.artifacts, paths)

    def close(self, status: str) -> None:
        for b in list(self.backends):
            self._guard(b, "close", b.close, status)

    def _guard(self, backend, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # one tracker down must not stop training: metrics.jsonl has every step
            self.backends.remove(backend)
            self.problems.append(f"tracking: {backend.name} failed at {what} ({type(e).__name__}: {first_line(e)}); "
                                 f"it received nothing after that, metrics.jsonl has every step")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics record, nested dicts flattened with '/'; the step, booleans, lists, strings
    and None (a NaN loss is written as null in metrics.jsonl) are left out, never logged as 0."""
    out: dict[str, float] = {}
    for key, value in clean(record).items():
        if not prefix and key == "step":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numbers(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value) if isinstance(value, float) else value
    return out


def flatten(obj, prefix: str = "") -> dict[str, object]:
    """{"optim": {"lr": 2e-4}, "eval": {"suites": [{"name": "toy"}]}} -> {"optim.lr": 2e-4, "eval.suites.0.name":
    "toy"}; a list of plain values stays one value."""
    out: dict[str, object] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = obj
    return out


def config_params(config: dict) -> dict[str, str]:
    """The resolved config as params: dotted keys, values as they read in YAML / JSON (null, true, 0.0002,
    ["a.jsonl"]); strings as they are."""
    import json

    return {k: v if isinstance(v, str) else json.dumps(clean(v)) for k, v in flatten(config).items()}


def run_tags(manifest: dict, folder: RunFolder) -> dict[str, str]:
    """What identifies the run's inputs: config hash, data fingerprints (train / eval), the rendered-token
    fingerprint, tokenizer and template hashes, the shipsft version, the command and the run folder."""
    tags = {"shipsft.config_hash": manifest.get("config_hash"),
            "shipsft.tokenizer_hash": manifest.get("tokenizer_hash"),
            "shipsft.template_hash": manifest.get("template_hash"),
            "shipsft.version": (manifest.get("packages") or {}).get("shipsft") or version(),
            "shipsft.seed": manifest.get("seed"),
            "shipsft.command": " ".join(manifest["command"]) if manifest.get("command") else None,
            "shipsft.run_folder": str(folder.root.resolve())}
    for split, fp in (manifest.get("data_fingerprint") or {}).items():
        tags[f"shipsft.data_fingerprint.{split}"] = fp
    for split, fp in (manifest.get("token_fingerprint") or {}).items():
        tags[f"shipsft.token_fingerprint.{split}"] = fp
    return {k: str(v) for k, v in tags.items() if v is not None}


def version() -> str | None:
    try:
        return metadata.version("shipsft")
    except metadata.PackageNotFoundError:
        return None


def run_files(folder: RunFolder) -> list[Path]:
    """The files every tracker keeps as artifacts, those that exist: the audit, the report, the resolved config,
    the manifest and the promotion decision."""
    paths = [folder.audit_html, folder.audit_json, folder.report, folder.config, folder.manifest, folder.promotion]
    return [p for p in paths if p.exists()]
