"""The SWEEP.yaml schema: a base run config plus the levers to vary, validated strictly (unknown keys are errors with
a close-match hint, every problem reported at once, as `shipsft.config` does for run configs).

    base: config.yaml                 # a run config (relative paths are read from this file's folder)
    set: {train.max_steps: 40}        # applied to every trial (optional)
    mode: one_at_a_time               # one_at_a_time (default) | grid | seeds
    levers:
      optim.lr: [1.0e-4, 2.0e-4, 5.0e-4]          # any config key: a list of values
      method.lora.r: [8, 16, 64]
      targets:                                    # a named lever setting several keys at once
        attention: {method.lora.target_modules: [q_proj, k_proj, v_proj, o_proj]}
        all: {method.lora.target_modules: all-linear}
    seeds: [1, 2, 3]                  # repeat every trial with these train.seed values (the noise floor)
    outcome: eval_loss                # what the variance decomposition explains (auto: eval_loss, else train_loss)
    pick: {metric: eval_loss, constraints: [{metric: kl_to_base, op: "<=", value: 0.5}]}
    pareto: {metric: orders/exact_match, kl: kl_to_base}
    output: {dir: sweeps, name: lr-rank}

    spec, path = load_sweep("sweep.yaml")
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from shipsft.config import GateConfig, Section, all_keys
from shipsft.errors import ConfigError

MODES = ("one_at_a_time", "grid", "seeds")
# every subset of levers is fitted once for the decomposition (anova.py): 2^12 = 4,096 small least-squares fits
MAX_LEVERS = 12


class PickConfig(Section):
    metric: str | None = Field(None, description="The metric the best trial is picked by; null = the outcome.")
    mode: Literal["auto", "min", "max"] = Field("auto", description=(
        "min or max; auto = min for losses, KL and the forgetting probe, max for task metrics."))
    constraints: list[GateConfig] = Field(default_factory=list, description=(
        "Conditions a trial must meet to be picked (mean over its seeds), e.g. {metric: kl_to_base, op: '<=', "
        "value: 0.5}."))


class ParetoConfig(Section):
    metric: str | None = Field(None, description=(
        "Task metric (higher is better) for the Pareto front against KL; null = the first task metric measured."))
    kl: str = Field("kl_to_base", description="The drift metric (lower is better): kl_to_base or probe_kl.")


class SweepOutput(Section):
    dir: str = Field("sweeps", description="Folder that holds sweep folders.")
    name: str | None = Field(None, description="Sweep folder name; null = the sweep file's name.")


class SweepSpec(Section):
    base: str = Field(description="The base run config (YAML), relative to the sweep file.")
    set: dict[str, Any] = Field(default_factory=dict, description=(
        "Dotted config keys set on every trial (e.g. train.max_steps: 40 for a short sweep)."))
    mode: Literal["one_at_a_time", "grid", "seeds"] = Field("one_at_a_time", description=(
        "one_at_a_time: the base, then each lever's other values with every other lever at the base's value; "
        "grid: every combination; seeds: the base only, once per seed (the noise floor)."))
    levers: dict[str, list[Any] | dict[str, dict[str, Any]]] = Field(default_factory=dict, description=(
        "A config key with a list of values, or a lever name with labelled groups of keys to set together."))
    seeds: list[int] = Field(default_factory=list, description=(
        "train.seed values: every trial runs once per seed; the spread between seeds is the noise floor."))
    outcome: str = Field("auto", description=(
        "What the variance decomposition explains: train_loss, eval_loss, kl_to_base, a task metric "
        "(<suite>/<metric>) ...; auto = eval_loss when the base has data.eval, else train_loss."))
    pick: PickConfig = Field(default_factory=PickConfig, description="How the best trial is picked.")
    pareto: ParetoConfig = Field(default_factory=ParetoConfig, description="Task metric vs KL front.")
    output: SweepOutput = Field(default_factory=SweepOutput, description="Where the sweep folder goes.")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat a value: {v}")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> "SweepSpec":
        problems = []
        if self.mode == "seeds":
            if self.levers:
                problems.append("levers are set but mode is seeds, which runs the base only, so they would be "
                                "ignored. Fix: mode: one_at_a_time (with seeds: for a noise floor), or remove levers")
            if len(self.seeds) < 2:
                problems.append("mode: seeds needs at least 2 seeds (seeds: [1, 2, 3])")
        elif not self.levers:
            problems.append(f"mode: {self.mode} needs at least one lever (levers: {{optim.lr: [1.0e-4, 2.0e-4]}})")
        if len(self.levers) > MAX_LEVERS:
            problems.append(f"{len(self.levers)} levers; at most {MAX_LEVERS} (split the sweep)")
        for name, values in self.levers.items():
            if name == "train.seed":
                problems.append("levers: train.seed is not a lever. Fix: seeds: [...] (the noise floor)")
            elif isinstance(values, list):
                if not values:
                    problems.append(f"levers.{name}: no values")
                elif len({repr(v) for v in values}) != len(values):
                    problems.append(f"levers.{name}: a value is repeated: {values}")
            else:
                if len(values) < 2:
                    problems.append(f"levers.{name}: a named lever needs at least 2 labelled settings")
                for label, keys in values.items():
                    if not keys:
                        problems.append(f"levers.{name}.{label}: sets no key")
        lever_keys = {k for name, v in self.levers.items() for k in ([name] if isinstance(v, list) else
                                                                      [k for keys in v.values() for k in keys])}
        both = sorted(lever_keys & set(self.set))
        if both:
            problems.append(f"set and levers both give {', '.join(both)}; one would be ignored. Fix: remove it "
                            "from set")
        if "train.seed" in self.set and self.seeds:
            problems.append("set.train.seed and seeds are both given. Fix: keep seeds")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def lever_keys(self, lever: str) -> list[str]:
        """The config keys a lever sets."""
        values = self.levers[lever]
        return [lever] if isinstance(values, list) else sorted({k for keys in values.values() for k in keys})


def _format(err: ValidationError, source: str) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            owner: type[BaseModel] = SweepSpec
            for part in loc[:-1]:
                field = owner.model_fields.get(str(part))
                sub = getattr(field, "annotation", None) if field else None
                owner = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else owner
            known = list(owner.model_fields)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
            lines.append(f"{source}: unknown key '{dotted}'" + (f" — did you mean '{hint[0]}'?" if hint else "")
                         + f" (valid keys here: {', '.join(known)})")
        elif e["type"] == "value_error":
            lines += [f"{source}: {m}" for m in str(e["msg"]).removeprefix("Value error, ").split("\n")]
        else:
            lines.append(f"{source}: {dotted or '<root>'}: {e['msg']}")
    return lines


def named_keys(raw: dict) -> list[tuple[str, str]]:
    """(where, dotted key) for every config key a sweep file sets, read from the raw YAML so they are checked even
    when the rest of the file is invalid."""
    named = [("set", str(k)) for k in (raw.get("set") if isinstance(raw.get("set"), dict) else {})]
    for lever, values in (raw.get("levers") if isinstance(raw.get("levers"), dict) else {}).items():
        if isinstance(values, dict):
            named += [("levers", str(k)) for keys in values.values() if isinstance(keys, dict) for k in keys]
        else:
            named.append(("levers", str(lever)))
    return named


def unknown_config_keys(raw: dict, source: str) -> list[str]:
    """Lever and `set` keys that are not run-config keys, with the closest key as the fix."""
    keys = all_keys()
    problems = []
    for where, key in named_keys(raw):
        generic = ".".join("N" if p.isdigit() else p for p in key.split("."))
        if generic not in keys:
            hint = difflib.get_close_matches(generic, keys, n=1, cutoff=0.6)
            problems.append(f"{source}: {where}: {key!r} is not a config key" +
                            (f" — did you mean '{hint[0]}'?" if hint else "") +
                            " (`shipsft config explain` lists every key)")
    return problems


def load_sweep(path: str | Path) -> tuple[SweepSpec, Path]:
    """(the validated spec, the base config's path). Raises ConfigError naming every problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: sweep file not found"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: invalid YAML: {e}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping (base, levers, ...)"])
    problems = unknown_config_keys(raw, str(path))
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e, str(path)) + problems) from None
    base = Path(spec.base) if Path(spec.base).is_absolute() else path.resolve().parent / spec.base
    if not base.is_file():
        problems.append(f"{path}: base: {spec.base}: config file not found (read from {path.resolve().parent})")
    if problems:
        raise ConfigError(problems)
    return spec, base
