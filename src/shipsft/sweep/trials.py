"""Trials: a sweep spec expanded into run configs, and each trial run (or skipped, or resumed) as a normal run.

    one_at_a_time   the base, then every other value of one lever with all other levers at the base's value
                    (levers [lr: 3 values incl. the base's, r: 2 values] -> base + 2 + 1 = 4 trials)
    grid            every combination of the listed values (3 x 2 = 6 trials)
    seeds           the base only, once per seed
    seeds: [...]    each of the above once per train.seed value; trials that differ only by seed form a cell

Every trial is a run config written to <sweep>/trials/<name>.yaml (paths absolute, output.dir <sweep>/runs,
output.name <name>) and trained into the run folder <sweep>/runs/<name>/ by `shipsft.train.run.run_train`, exactly
as `shipsft train <sweep>/trials/<name>.yaml` would. A trial's name is made of its lever values, never of its
position, so adding a value to a lever later keeps every finished trial.

State of a trial, from its run folder: done (manifest.json records wall_s, written when a run ends), partial (killed:
resumed from its last complete checkpoint, or started again when it had none; a SIGTERM'd trial too), failed (its
loss diverged: recorded beside its config with the error; skipped unless retried), new.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipsft.config import EMBEDDED_MODELS, RunConfig, apply_overrides, load_config
from shipsft.errors import ConfigError, TrainingDiverged
from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.jsonio import read_json, write_json, write_text_atomic
from shipsft.runs.layout import RunFolder
from shipsft.runs.manifest import read_manifest
from shipsft.runs.state import has_state
from shipsft.sweep.spec import SweepSpec
from shipsft.train.loop import Progress, Silent
from shipsft.train.preempt import StopRequest
from shipsft.train.run import run_train

BASE = "base"  # the name of the base trial, and the level of a named lever whose settings none match the base


@dataclass(frozen=True)
class Trial:
    name: str  # folder-safe and unique: the lever values (and seed) that make it differ from the base
    cell: str  # the name without the seed: trials of one cell differ only by seed
    levels: dict[str, str]  # lever -> level label, for every lever (the base's level where it is not varied)
    overrides: dict[str, Any]  # dotted key -> value this trial sets (on top of the spec's `set`)
    seed: int | None = None  # train.seed when the spec repeats seeds


@dataclass
class SweepPaths:
    root: Path

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def config(self, trial: str) -> Path:
        return self.trials / f"{trial}.yaml"

    def failure(self, trial: str) -> Path:
        return self.trials / f"{trial}.failed.json"

    def run(self, trial: str) -> RunFolder:
        return RunFolder(self.runs / trial)

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def json(self) -> Path:
        return self.root / "sweep.json"

    @property
    def csv(self) -> Path:
        return self.root / "sweep.csv"

    @property
    def html(self) -> Path:
        return self.root / "sweep.html"


def sweep_paths(spec: SweepSpec, sweep_file: Path) -> SweepPaths:
    out = Path(spec.output.dir)
    if not out.is_absolute():
        out = Path(sweep_file).resolve().parent / out
    return SweepPaths(out / (spec.output.name or Path(sweep_file).stem))


# ------------------------------------------------------------------------------------------------------------------
# values, labels, names


def get_key(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of a dumped config (a number indexes a list); KeyError when absent."""
    cur = tree
    for part in dotted.split("."):
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(dotted)
    return cur


def as_override(key: str, value: Any) -> str:
    """KEY=VALUE for `load_config(overrides=...)`: the value written as JSON, which YAML reads back unchanged."""
    return f"{key}={json.dumps(value)}"


def label(value: Any) -> str:
    """A short, stable text for a lever value: 0.0002 -> 2e-04 style numbers, lists joined by '+', paths by stem."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return Path(value).stem if "/" in value else value
    if isinstance(value, list):
        return "+".join(label(v) for v in value) or "[]"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def slug(text: str, limit: int = 80) -> str:
    s = re.sub(r"[^A-Za-z0-9._=+,-]", "_", text)
    if len(s) > limit:
        import hashlib

        s = s[: limit - 9] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return s


def short_names(levers: list[str]) -> dict[str, str]:
    """optim.lr -> lr, method.lora.r -> r; the full key where two levers would share a short name."""
    tails = [k.split(".")[-1] for k in levers]
    return {k: (t if tails.count(t) == 1 else k) for k, t in zip(levers, tails)}


# ------------------------------------------------------------------------------------------------------------------
# expansion


@dataclass
class Expanded:
    trials: list[Trial]
    configs: dict[str, RunConfig]  # trial name -> validated config
    base_levels: dict[str, str]
    lever_levels: dict[str, list[str]]  # lever -> its level labels in order
    problems: list[str] = field(default_factory=list)


def lever_levels(spec: SweepSpec, base_path: Path, base_tree: dict) -> tuple[dict, dict, list[str]]:
    """Per lever: {label: overrides} in order, and the base's label. Values are normalised by loading each one into
    the base config, so `1e-4`, `0.0001` and `1.0e-4` are one level."""
    levels: dict[str, dict[str, dict[str, Any]]] = {}
    base_level: dict[str, str] = {}
    problems: list[str] = []
    common = [as_override(k, v) for k, v in spec.set.items()]
    for lever, values in spec.levers.items():
        settings = ([(None, {lever: v}) for v in values] if isinstance(values, list) else
                    [(name, dict(keys)) for name, keys in values.items()])
        levels[lever] = {}
        for name, keys in settings:
            try:
                cfg = load_config(base_path, common + [as_override(k, v) for k, v in keys.items()])
            except ConfigError as e:
                problems += [f"levers.{lever}: {label(keys[lever]) if name is None else name}: {line}"
                             for line in e.lines]
                continue
            tree = cfg.model_dump(mode="json")
            normal = {k: get_key(tree, k) for k in keys}
            text = label(normal[lever]) if name is None else str(name)
            levels[lever][text] = normal
        base_level[lever] = next((text for text, keys in levels[lever].items()
                                  if all(same(get_key(base_tree, k), v) for k, v in keys.items())), BASE)
        if base_level[lever] == BASE and isinstance(values, list):
            base_level[lever] = label(get_key(base_tree, lever))
    return levels, base_level, problems


def expand(spec: SweepSpec, base_path: Path, sweep_file: Path) -> Expanded:
    """Every trial with its validated config; all problems at once (ConfigError) before anything runs."""
    paths = sweep_paths(spec, sweep_file)
    common = [as_override(k, v) for k, v in spec.set.items()]
    try:
        base_cfg = load_config(base_path, common)
    except ConfigError as e:
        raise ConfigError([f"base {base_path}: {line}" for line in e.lines]) from None
    base_tree = base_cfg.model_dump(mode="json")
    levels, base_level, problems = lever_levels(spec, base_path, base_tree)
    if problems:
        raise ConfigError(problems)
    names = short_names(list(spec.levers))
    cells: list[dict[str, str]] = []  # lever -> level, every lever present
    if spec.mode == "seeds":
        cells = [dict(base_level)]
    elif spec.mode == "one_at_a_time":
        cells = [dict(base_level)]
        for lever in spec.levers:
            cells += [{**base_level, lever: text} for text in levels[lever] if text != base_level[lever]]
    else:
        order = list(spec.levers)
        cells = [dict(zip(order, combo)) for combo in itertools.product(*(list(levels[k]) for k in order))]
    for lever in spec.levers:
        if spec.mode == "one_at_a_time" and all(t == base_level[lever] for t in levels[lever]):
            problems.append(f"levers.{lever}: every value equals the base's ({base_level[lever]}), so one at a time "
                            "it never varies. Fix: add another value")
    if problems:
        raise ConfigError(problems)
    trials, configs = [], {}
    for cell in cells:
        varied = [k for k in spec.levers if spec.mode == "grid" or cell[k] != base_level[k]]
        cell_name = slug(",".join(f"{names[k]}={cell[k]}" for k in varied) or BASE)
        overrides: dict[str, Any] = {}
        for k in spec.levers:
            overrides.update(levels[k].get(cell[k], {}))  # the base's own value when the level is the base's
        for seed in spec.seeds or [None]:
            name = cell_name if seed is None else f"{cell_name}.seed={seed}"
            over = {**overrides, **({"train.seed": seed} if seed is not None else {})}
            out = [as_override("output.dir", str(paths.runs)), as_override("output.name", name)]
            try:
                cfg = load_config(base_path, common + [as_override(k, v) for k, v in over.items()] + out)
            except ConfigError as e:
                problems += [f"trial {name}: {line}" for line in e.lines]
                continue
            trials.append(Trial(name, cell_name, dict(cell), over, seed))
            configs[name] = absolute_paths(cfg)
    if problems:
        raise ConfigError(problems)
    return Expanded(trials, configs, base_level, {k: list(v) for k, v in levels.items()})


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """cfg with every file it names made absolute. `load_config` keeps a path that exists relative to the working
    folder as written, and trials/<name>.yaml sits in another folder, so `shipsft train trials/<name>.yaml` (an
    --emit line) run from anywhere would not find it."""
    cfg.data.train = [str(Path(p).resolve()) for p in cfg.data.train]
    cfg.data.eval = [str(Path(p).resolve()) for p in cfg.data.eval]
    for source in cfg.data.sources:  # a mixture's files (data.sources) and its replay set
        source.path = [str(Path(p).resolve()) for p in source.path]
    if cfg.data.replay is not None:
        cfg.data.replay.path = [str(Path(p).resolve()) for p in cfg.data.replay.path]
    for suite in cfg.eval.suites:
        suite.data = str(Path(suite.data).resolve())
    if cfg.data.template and cfg.data.template.endswith(".jinja"):
        cfg.data.template = str(Path(cfg.data.template).resolve())
    if cfg.model.path not in EMBEDDED_MODELS:  # a local folder or .gguf file; an embedded model keeps its name
        cfg.model.path = str(Path(cfg.model.path).resolve())
    return cfg


def base_hash(base_path: Path, common: list[str]) -> str:
    """The base config as written (with the sweep's `set`), output and seed left out: finished trials are only
    comparable under one base. The text the user wrote, not the resolved config, so a shipsft upgrade that adds a
    config key does not orphan a half-finished sweep."""
    import hashlib

    import yaml

    tree = apply_overrides(yaml.safe_load(Path(base_path).read_text(encoding="utf-8")) or {}, common)
    tree.pop("output", None)
    (tree.get("train") or {}).pop("seed", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_plan(paths: SweepPaths, spec: SweepSpec, base_path: Path, ex: Expanded) -> None:
    """trials/<name>.yaml for every trial and plan.json; refuses when finished trials were run on another base."""
    common = [as_override(k, v) for k, v in spec.set.items()]
    now = base_hash(base_path, common)
    if paths.plan.exists():
        was = read_json(paths.plan).get("base_hash")
        started = [t.name for t in ex.trials if paths.run(t.name).root.exists()]
        if was != now and started:
            raise ConfigError([f"{paths.root}: the base config (with `set`) changed since this sweep ran "
                               f"{len(started)} trial(s) (hash {was} -> {now}), so old and new trials would not be "
                               "comparable. Fix: a new output.name for the sweep, or delete the sweep folder"])
    for t in ex.trials:
        write_text_atomic(paths.config(t.name), ex.configs[t.name].to_yaml())
    write_json(paths.plan, {"base": str(base_path), "base_hash": now, "mode": spec.mode,
                            "base_levels": ex.base_levels, "levels": ex.lever_levels,
                            "trials": [{"name": t.name, "cell": t.cell, "levels": t.levels, "seed": t.seed,
                                        "overrides": t.overrides} for t in ex.trials]})


# ------------------------------------------------------------------------------------------------------------------
# running


def trial_state(paths: SweepPaths, name: str) -> str:
    """done | failed | partial | new (see the module docstring)."""
    folder = paths.run(name)
    if folder.manifest.exists() and "wall_s" in read_manifest(folder):
        return "done"
    if paths.failure(name).exists():
        return "failed"
    return "partial" if folder.root.exists() else "new"


@dataclass
class TrialResult:
    name: str
    status: str  # done | skipped (finished before) | failed
    exit_code: int = 0
    resumed_from: str | None = None
    error: list[str] = field(default_factory=list)


def run_trial(paths: SweepPaths, trial: Trial, cfg: RunConfig, progress: Progress | None = None,
              stop: StopRequest | None = None, retry_failed: bool = False) -> TrialResult:
    """Train one trial into <sweep>/runs/<name>: skip it when done, resume it from its last complete checkpoint when
    a previous attempt was killed, start it again when that attempt left no checkpoint. A trial whose loss
    diverged is recorded as failed and the sweep goes on; any other error (bad data, audit errors, a SIGTERM) stops
    the sweep, for it would fail every trial alike, and leaves the trial to be resumed."""
    from shipsft.runs.resume import find_checkpoint

    progress = progress or Silent()
    state = trial_state(paths, trial.name)
    if state == "done" or (state == "failed" and not retry_failed):
        failed = read_json(paths.failure(trial.name)) if state == "failed" else {}
        return TrialResult(trial.name, "skipped" if state == "done" else "failed", failed.get("exit_code", 0),
                           error=failed.get("error", []))
    paths.failure(trial.name).unlink(missing_ok=True)
    folder = paths.run(trial.name)
    config_path = paths.config(trial.name)
    checkpoint = None
    if folder.root.exists():
        if any(has_state(p) for _, p in complete_checkpoints(folder)):
            checkpoint, notes = find_checkpoint(str(folder.root), cfg.output, config_path)
            for note in notes:
                progress.note(note)
        else:  # killed before its first checkpoint: nothing to resume, and a fresh run must not append to it
            shutil.rmtree(folder.root)
    argv = ["shipsft", "train", str(config_path)] + (["--resume", str(folder.root)] if checkpoint else [])
    try:
        code = run_train(cfg, config_path=config_path, argv=argv, progress=progress, resume=checkpoint, stop=stop)
    except TrainingDiverged as e:
        write_json(paths.failure(trial.name), {"exit_code": e.exit_code, "error": e.lines})
        return TrialResult(trial.name, "failed", e.exit_code, error=e.lines)
    # any other error (bad data, a SIGTERM's Preempted) propagates and records nothing: the trial is resumed, not
    # skipped as failed, when the sweep runs again
    return TrialResult(trial.name, "done", code, resumed_from=str(checkpoint) if checkpoint else None)


def emit_lines(sweep_file: Path, trials: list[Trial], launcher: str | None = None) -> list[str]:
    """One launch command per trial for a cluster scheduler. Each line runs (or resumes, or skips) exactly one trial
    of the sweep, so the same line is safe to re-submit after a preemption; a SLURM array runs them with
    --trial $SLURM_ARRAY_TASK_ID. `launcher` (e.g. "torchrun --nproc-per-node 8") prefixes each line."""
    prog = f"{launcher} -m shipsft" if launcher else "shipsft"
    lines = [f"# {len(trials)} trials; as a SLURM array: sbatch --array=0-{len(trials) - 1} --wrap \"{prog} sweep "
             f"{sweep_file} --trial $SLURM_ARRAY_TASK_ID\"; then `shipsft sweep {sweep_file}` writes the table"]
    lines += [f"{prog} sweep {sweep_file} --trial {t.name}" for t in trials]
    return lines


def select(trials: list[Trial], which: str) -> Trial:
    """--trial NAME or --trial INDEX (0-based, the order --emit prints)."""
    if which.isdigit() and int(which) < len(trials):
        return trials[int(which)]
    for t in trials:
        if t.name == which:
            return t
    import difflib

    hint = difflib.get_close_matches(which, [t.name for t in trials], n=1)
    raise ConfigError([f"--trial {which}: no such trial (0..{len(trials) - 1} or a name" +
                       (f"; did you mean {hint[0]!r}?" if hint else "") + "); `--emit` lists them"])
