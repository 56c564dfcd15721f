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

A tracker that fails in the middle of a run (a tracking server gone) costs a line and never the run: each backend is
called from its own background thread (`outbox.py`), a failed call is retried with backoff, and what the tracker
missed is sent in order once it answers. One still not answering at the end (after `track.flush_timeout_s`) has the
offset in metrics.jsonl of the first record it missed kept in trackers.json (`pending`): a resume sends it first, and
`shipsft sync RUN` sends it to a finished run (`sync`).

May import: `shipsft.config`, `shipsft.errors`, `shipsft.runs` (part of runs/). Packages are imported lazily.
"""
from __future__ import annotations

import importlib
import math
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Protocol

from shipsft.config import TrackConfig
from shipsft.errors import ConfigError
from shipsft.runs.jsonio import clean, jsonl_records, read_json, write_json
from shipsft.runs.layout import RunFolder
from shipsft.runs.trackers.outbox import Call, Outbox

# tracker -> (the modules it imports, the pip extra that installs them)
PACKAGES = {"tensorboard": (("tensorboard", "torch.utils.tensorboard"), "tensorboard"),
            "mlflow": (("mlflow",), "mlflow"), "wandb": (("wandb",), "wandb"), "trackio": (("trackio",), "trackio")}


@dataclass(frozen=True)
class Resume:
    """A resumed run. `first` / `last`: the steps a killed run logged after the checkpoint this run resumes from
    (cut from metrics.jsonl, logged again now); None when it logged nothing after it."""

    first: int | None = None
    last: int | None = None
    offset: int | None = None  # the bytes of metrics.jsonl the checkpoint accounts for (the rest is cut)


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
    return Trackers(backends, folder, resumed, cfg.retry_max_s, cfg.flush_timeout_s)


@dataclass
class Trackers:
    """Every tracker of a run behind one call each: start, log(record, offset), artifacts, close. After start, each
    backend is called from its own Outbox thread (outbox.py): a server that stops answering is retried with backoff
    and never stops training."""

    backends: list
    folder: RunFolder
    resumed: bool
    retry_max_s: float  # track.retry_max_s
    flush_timeout_s: float  # track.flush_timeout_s
    problems: list[str] = field(default_factory=list)  # what trackers did not receive by the end, one line each
    skip_through: dict[str, int | None] = field(default_factory=dict)  # steps <= this a backend already holds
    boxes: list[Outbox] = field(default_factory=list)
    states: dict = field(default_factory=dict)  # trackers.json: each backend's ids, and what it has not received
    lines: list[str] = field(default_factory=list)  # news for the progress display (written from outbox threads)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, resume: Resume | None) -> None:
        """Open every tracker with the run's params and tags (read from config.yaml and manifest.json). A resumed
        run first sends each tracker what it had not received when the run stopped (trackers.json `pending`)."""
        import yaml

        params = config_params(yaml.safe_load(self.folder.config.read_text(encoding="utf-8")))
        manifest = read_json(self.folder.manifest) if self.folder.manifest.exists() else {}
        tags = run_tags(manifest, self.folder)
        recorded = read_json(self.folder.trackers) if self.resumed and self.folder.trackers.exists() else {}
        resume = resume if self.resumed else None
        self.states = dict(recorded)
        replays = {}
        for b in self.backends:
            try:
                state = b.start(params, tags, recorded.get(b.name), resume)
            except ConfigError:
                raise
            except Exception as e:  # a tracker that cannot start is a start-up error: nothing was trained yet
                raise ConfigError([f"track: {b.name} could not start: {type(e).__name__}: {first_line(e)}. Fix: "
                                   f"check the track.{b.name}_* settings (a server reachable, a login done), or "
                                   f"remove {b.name} from track.sinks"]) from None
            pending = (recorded.get(b.name) or {}).get("pending")
            self.states[b.name] = {**state, **({"pending": pending} if pending else {})}
            replays[b.name], self.skip_through[b.name] = catch_up(self.folder, resume, pending)
        write_json(self.folder.trackers, self.states)
        self.boxes = [Outbox(b, self.retry_max_s, self) for b in self.backends]
        for box in self.boxes:
            for offset, record in replays[box.name]:
                box.put("log", record["step"], numbers(record), step=record["step"], offset=offset)
            if (self.states[box.name].get("pending") or {}).get("from") is not None:
                box.put_mark(lambda name=box.name: self.delivered(name))

    def notes(self) -> list[str]:
        return [f"tracking: {b.where()}" for b in self.backends]

    def news(self) -> list[str]:
        with self.lock:
            out, self.lines[:] = list(self.lines), []
        return out

    def log(self, record: dict, offset: int | None = None) -> None:
        """`offset`: where the record starts in metrics.jsonl (what is replayed when a tracker missed it)."""
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return
        metrics = numbers(record)
        if not metrics:
            return
        for box in self.boxes:
            skip = self.skip_through.get(box.name)
            if not box.backend.rewinds and skip is not None and step <= skip:
                continue
            box.put("log", step, metrics, step=step, offset=offset)

    def artifacts(self, paths: list[Path]) -> None:
        paths = [Path(p) for p in paths if Path(p).exists()]
        for box in self.boxes:
            box.put("artifacts", paths)

    def close(self, status: str) -> None:
        """Close every tracker, waiting up to flush_timeout_s in all for what is still queued; a tracker still not
        answering then has what it missed recorded in trackers.json and a line in `problems`."""
        for box in self.boxes:
            box.finish(status)
        deadline = time.monotonic() + self.flush_timeout_s
        for box in self.boxes:
            if box.wait(deadline):
                self.delivered(box.name)
                continue
            call = box.current
            with self.lock:
                state = self.states[box.name]
                pending = dict(state.get("pending") or {})
                if call is not None and call.kind == "log" and pending.get("from") is None:
                    pending["from"] = call.offset
                pending["artifacts"] = not (call is not None and call.kind == "close")  # queued before the close
                pending["status"] = status
                state["pending"] = pending
                write_json(self.folder.trackers, self.states)
            what = f"from step {call.step} on" if call is not None and call.step is not None else "its end of run"
            err = box.last_error
            self.problems.append(f"tracking: {box.name} did not receive {what} ({type(err).__name__}: "
                                 f"{first_line(err)}); metrics.jsonl has every step. Fix: once it answers, send "
                                 f"them with: shipsft sync {self.folder.root}")

    # -- Events (outbox.py), called from the outbox threads ---------------------------------------------------

    def down(self, name: str, call: Call, error: BaseException) -> None:
        with self.lock:
            if call.kind == "log" and call.offset is not None:
                pending = self.states[name].get("pending") or {}
                if pending.get("from") is None:
                    self.states[name]["pending"] = {**pending, "from": call.offset}
                    write_json(self.folder.trackers, self.states)
            what = f"step {call.step}" if call.step is not None else call.kind
            self.lines.append(f"tracking: {name} failed at {what} ({type(error).__name__}: {first_line(error)}); "
                              f"retrying in the background (at most every {self.retry_max_s:g} s), training goes "
                              "on and metrics.jsonl has every step")

    def up(self, name: str, first: Call, last: Call, tries: int) -> None:
        box = next(b for b in self.boxes if b.name == name)
        box.put_mark(lambda: self.delivered(name))  # once what queued up meanwhile went through too
        with self.lock:
            what = f"from step {first.step}" if first.step is not None else f"its {first.kind}"
            self.lines.append(f"tracking: {name} answers again after {tries} failed tries; what it missed {what} "
                              "is being sent")

    def delivered(self, name: str) -> None:
        """Everything queued for `name` so far went through: nothing is pending."""
        with self.lock:
            if self.states[name].pop("pending", None) is not None:
                write_json(self.folder.trackers, self.states)


def catch_up(folder: RunFolder, resume: Resume | None, pending: dict | None) -> tuple[list, int | None]:
    """(the metrics.jsonl records to send a tracker before anything new, the last step it already holds of the ones
    a resumed run logs again). `pending["from"]`: the offset of the first record it did not receive."""
    start = (pending or {}).get("from")
    if resume is None:
        return ([] if start is None else jsonl_records(folder.metrics, start)), None
    if start is None:  # it holds everything the killed run logged, the steps after the checkpoint included
        return [], resume.last
    cut = resume.offset if resume.offset is not None else start
    if start <= cut:  # it missed records before the checkpoint: send them; it holds none of the later ones
        return jsonl_records(folder.metrics, start, cut), None
    held = [r["step"] for _, r in jsonl_records(folder.metrics, cut, start) if isinstance(r.get("step"), int)]
    return [], max(held) if held else None


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
