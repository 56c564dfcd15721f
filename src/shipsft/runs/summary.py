"""What a run folder says about its run, read back (nothing re-measured): the numbers a sweep compares
(`outcomes`), and the one-row summary `shipsft runs` lists, `shipsft compare` sets side by side and `shipsft train`
closes with (`summarize`).

    outcomes(folder)     train_loss (mean of the last 10 finite step losses: the loop's FitResult.train_loss rule),
                         eval_loss (the last measurement on data.eval, else the last full eval's), task metrics and
                         drift (kl_to_base, probe_kl, probe_loss, general_loss_increase) of the last full eval,
                         trainable_params, total_params, steps, wall_s, resumed, trained_tokens, train_s
    summarize(folder)    RunSummary: status, steps done / planned, promoted or not, the selection metric and KL at
                         the step that ships, the gates, the before/after rows, the time, the files

    runs = [summarize(f) for f in find_runs(Path("runs"))]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.jsonio import read_json
from shipsft.runs.layout import STATE_DIR, RunFolder, is_run_folder
from shipsft.runs.manifest import read_manifest
from shipsft.runs.sinks import read_evals, read_metrics

LAST_STEPS = 10  # as train/loop.py's FitResult.train_loss
DRIFT = ("kl_to_base", "probe_kl", "probe_loss", "general_loss_increase")
MAX_DEPTH = 4  # runs/<name>, sweeps/<sweep>/runs/<trial>: how deep `find_runs` looks below the folder it is given


def finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def step_records(metrics: list[dict]) -> list[dict]:
    """The metrics.jsonl lines of optimizer steps (the others are eval-loss and eval lines)."""
    return [m for m in metrics if "loss" in m and "step" in m]


def outcomes(folder: RunFolder) -> dict:
    """Outcome columns of one run folder (None where the run did not measure it)."""
    metrics = read_metrics(folder)
    steps = step_records(metrics)
    losses = [v for v in (finite(m.get("loss")) for m in steps if not m.get("skipped")) if v is not None]
    row: dict = {"train_loss": sum(losses[-LAST_STEPS:]) / len(losses[-LAST_STEPS:]) if losses else None}
    evl = [m for m in metrics if "eval_loss" in m and "loss" not in m]
    full = [e for e in read_evals(folder) if e.get("kind") == "full"]
    last = full[-1]["metrics"] if full else {}
    row["eval_loss"] = finite(evl[-1]["eval_loss"]) if evl else finite(last.get("eval_loss"))
    for k in DRIFT:
        row[k] = finite(last.get(k))
    row["task"] = {k: finite(v) for k, v in sorted(last.items()) if "/" in k and not k.endswith("/eval_loss")}
    manifest = read_manifest(folder)
    row["trainable_params"] = manifest.get("trainable_params")
    row["total_params"] = manifest.get("total_params")
    row["steps"] = manifest.get("steps", steps[-1]["step"] if steps else 0)
    row["wall_s"] = manifest.get("wall_s")
    row["resumed"] = len(manifest.get("resumes", []))
    row["trained_tokens"] = sum(int(m.get("trained_tokens") or 0) for m in steps)
    tps = finite(steps[-1].get("trained_tok_s")) if steps else None  # cumulative: trained tokens / training time
    row["train_s"] = round(row["trained_tokens"] / tps, 1) if tps else None
    return row


@dataclass
class RunSummary:
    name: str
    path: Path
    status: str  # finished | resumable (stopped, a complete checkpoint to resume from) | incomplete
    steps: int  # optimizer steps done
    total_steps: int | None  # planned (None when nothing recorded it yet)
    started: str | None
    model: str | None
    method: str | None
    promoted: bool | None  # None: no gate decision (no eval suites, or the run did not finish)
    step: int | None  # the step whose numbers are shown: the promoted / chosen one, else the last full eval's
    metric: str | None  # the selection metric (eval.select_metric, as the gates name it)
    value: float | None
    base_value: float | None
    kl: float | None  # KL(tuned || base) per token on the eval prompts at `step`
    probe_kl: float | None
    train_loss: float | None
    eval_loss: float | None  # on data.eval after training
    base_eval_loss: float | None  # on data.eval before training
    trained_tok_s: float | None
    seconds: float | None  # wall time of a finished run, else the training time the step records account for
    gates: list[dict] = field(default_factory=list)
    before_after: list[dict] = field(default_factory=list)
    message: str = ""  # the gate decision's first line
    files: dict[str, Path] = field(default_factory=dict)  # what the folder holds: report, final, adapter, log ...


def summarize(path: Path) -> RunSummary:
    folder = RunFolder(Path(path))
    out = outcomes(folder)
    manifest = read_manifest(folder)
    promo = read_json(folder.promotion) if folder.promotion.exists() else None
    full = [e for e in read_evals(folder) if e.get("kind") in ("baseline", "full")]
    base = next((e["metrics"] for e in full if e.get("kind") == "baseline"), {})
    evals = [e for e in full if e.get("kind") == "full"]
    step = promo.get("step") if promo else (evals[-1]["step"] if evals else None)
    at = next((e["metrics"] for e in evals if e["step"] == step), {})
    metric = promo.get("select_metric") if promo else next(iter(out["task"]), None)
    metrics = read_metrics(folder)
    steps = step_records(metrics)
    done = manifest.get("steps", steps[-1]["step"] if steps else 0)
    base_loss = next((m["eval_loss"] for m in metrics if m.get("step") == 0 and "eval_loss" in m), None)
    checkpoints = complete_checkpoints(folder)
    finished = "wall_s" in manifest
    return RunSummary(
        name=folder.root.name, path=folder.root,
        status="finished" if finished else "resumable" if checkpoints else "incomplete",
        steps=done, total_steps=done if finished else planned_steps(checkpoints),
        started=manifest.get("started"), model=manifest.get("model_dir"), method=method_of(folder),
        promoted=promo.get("promoted") if promo else None, step=step, metric=metric,
        value=finite(at.get(metric)) if metric else None, base_value=finite(base.get(metric)) if metric else None,
        kl=finite(at.get("kl_to_base")), probe_kl=finite(at.get("probe_kl")), train_loss=out["train_loss"],
        eval_loss=out["eval_loss"], base_eval_loss=finite(base_loss),
        trained_tok_s=finite(manifest.get("trained_tok_s", steps[-1].get("trained_tok_s") if steps else None)),
        seconds=out["wall_s"] if finished else out["train_s"],
        gates=(promo or {}).get("gates") or [], before_after=(promo or {}).get("before_after") or [],
        message=(promo or {}).get("message", "").split("\n")[0], files=files_of(folder))


def planned_steps(checkpoints: list[tuple[int, Path]]) -> int | None:
    """The total steps the latest complete checkpoint's loop state planned."""
    if not checkpoints:
        return None
    loop = checkpoints[-1][1] / STATE_DIR / "loop.json"
    return read_json(loop).get("total_steps") if loop.exists() else None


def method_of(folder: RunFolder) -> str | None:
    import yaml

    if not folder.config.exists():
        return None
    return ((yaml.safe_load(folder.config.read_text(encoding="utf-8")) or {}).get("method") or {}).get("name")


def files_of(folder: RunFolder) -> dict[str, Path]:
    named = {"report": folder.report, "audit": folder.audit_html, "final": folder.final,
             "adapter": folder.root / "adapter", "model": folder.root / "model", "log": folder.log,
             "predictions": folder.predictions, "config": folder.config}
    return {k: p for k, p in named.items() if p.exists()}


def find_runs(root: Path) -> list[Path]:
    """Run folders at or below `root` (a run folder itself, a folder of runs, a sweep folder), oldest first by the
    time each started (its manifest's `started`, then its name)."""
    root = Path(root)
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        if is_run_folder(d):
            found.append(d)
            return
        if depth >= MAX_DEPTH:
            return
        for child in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(child, depth + 1)

    if root.is_dir():
        walk(root, 0)
    return sorted(found, key=lambda p: (read_manifest(RunFolder(p)).get("started") or "", str(p)))


# what the manifest records beside the config that makes two runs differ: the data as read, the tokenizer and
# template, the packages, the hardware's precision
MANIFEST_FACTS = ("model_dir", "precision", "allocator", "world_size", "data_fingerprint", "token_fingerprint",
                  "tokenizer_hash", "template_hash", "packages")
NOT_SETTINGS = ("output.dir", "output.name")  # where the run went, not what it trained


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists of dicts) as dotted keys: {"optim": {"lr": 2e-4}} -> {"optim.lr": 2e-4}."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list) and all(isinstance(v, dict) for v in obj):  # an empty list: no key (nothing set)
        return {k: v for i, item in enumerate(obj) for k, v in flatten(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: obj}


def settings(path: Path) -> dict[str, Any]:
    """What a run was trained with, as dotted keys: its resolved config.yaml (but NOT_SETTINGS) and the manifest's
    facts (`manifest.data_fingerprint.train`, `manifest.packages.torch`, ...)."""
    import yaml

    folder = RunFolder(Path(path))
    config = yaml.safe_load(folder.config.read_text(encoding="utf-8")) if folder.config.exists() else {}
    manifest = read_manifest(folder)
    out = {k: v for k, v in flatten(config or {}).items() if k not in NOT_SETTINGS}
    out.update(flatten({k: manifest[k] for k in MANIFEST_FACTS if k in manifest}, "manifest."))
    return out


def curves(path: Path) -> dict:
    """A run's curves: `step_records` (step, loss, lr), `eval_loss_points`, and the baseline and full `evals`."""
    folder = RunFolder(Path(path))
    metrics = read_metrics(folder)
    return {"step_records": [{k: m.get(k) for k in ("step", "loss", "lr")} for m in step_records(metrics)],
            "eval_loss_points": [[m["step"], m["eval_loss"]] for m in metrics if "eval_loss" in m and "loss" not in m],
            "evals": [{"kind": e["kind"], "step": e["step"], "metrics": e.get("metrics", {})}
                      for e in read_evals(folder) if e.get("kind") in ("baseline", "full")]}


def differing(all_settings: list[dict[str, Any]]) -> list[str]:
    """The keys whose value is not the same in every one of `all_settings` (absent counts as a value)."""
    keys = sorted({k for s in all_settings for k in s})
    absent = object()
    return [k for k in keys if len({repr(s.get(k, absent)) for s in all_settings}) > 1]
