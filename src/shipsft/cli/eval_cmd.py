"""`shipsft eval MODEL_OR_RUN [--suite FILE ...] [--baseline MODEL] [--metric ...] [--limit N] [--out eval.json]
[--failures N] [--judge-url URL] [--judge-model NAME]`

Scores a model on task suites (conversations whose last assistant turn is the reference) and, with a baseline,
prints a before/after table: metric per suite for base and tuned, the delta and its paired-bootstrap 95% CI.
When MODEL is a run, each suite's examples are compared with the run's training data: a suite that holds examples
of sentence patterns seen in training and of unseen ones (data/skeleton.py) is also scored on each slice, printed
with bootstrap 95% CIs (the unseen slice is what users phrasing requests their own way will see).
Every prediction is kept in predictions.jsonl (source file:line, prompt, reference, output, each metric's score,
its pattern slice, and the base model's output and scores when a baseline ran): next to --out, else in the run
folder when MODEL is a run, else in the current folder. `--failures N` prints the N worst side by side with their
reference. A suite scored by win_rate needs the baseline and a judge (eval/judge.py): each prediction then carries the
judge's verdicts.

MODEL_OR_RUN is a model folder, a .gguf, `smollm2`, a peft adapter folder, or a run folder (`shipsft train`
output). A run folder means its promoted `final/` (or, for a run that was not promoted, its last saved `adapter/`
or `model/`, with a note) on top of the base model in its `config.yaml`, evaluated with the run's own eval settings
(its suites, metrics, generation budget, batch size, template and precision) unless --suite / --metric / --limit
say otherwise; the baseline then defaults to that base. When the tuned model is a LoRA adapter over the baseline,
the baseline is scored by switching the adapter off (`disable_adapter`): no second model is loaded.

    shipsft eval runs/quickstart --out eval.json
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.text import Text

from shipsft.config import JUDGED_METRICS, EvalConfig, ModelConfig, RunConfig, SuiteConfig, load_config
from shipsft.errors import ConfigError
from shipsft.eval.judge import Judge, with_pairwise
from shipsft.eval.metrics import resolve_metrics
from shipsft.eval.suites import before_after, pattern_rows, predictions, samples, score_suites
from shipsft.model.load import load_base, load_trained
from shipsft.model.locate import tokenizer_from
from shipsft.model.precision import autocast_dtype, pick_device
from shipsft.runs.jsonio import write_json
from shipsft.runs.layout import PREDICTIONS, RunFolder, is_run_folder
from shipsft.runs.predictions import worst, write_predictions
from shipsft.runs.verify import verified, verified_weights
from shipsft.cli.views import show_eval, show_failures, show_patterns


@dataclass
class Target:
    """What to evaluate: a base model (cfg.model) plus optional trained weights (an adapter or a full model)."""

    cfg: RunConfig  # model + data (template) + eval + precision settings
    weights: Path | None
    label: str
    is_run: bool = False
    note: str = ""


def resolve_target(spec: str) -> Target:
    p = Path(spec)
    if p.is_dir() and is_run_folder(p):
        folder = RunFolder(p)
        cfg = load_config(folder.config)
        found = verified_weights(folder)  # a damaged file is named here, before anything is loaded
        if found is None:
            raise ConfigError([f"{p}: a run folder without final/, adapter/ or model/ (did training finish?)"])
        weights, note = found
        return Target(cfg, weights, f"{p.name}/{weights.name}", True, note)
    if p.is_dir() and (p / "adapter_config.json").exists():
        verified(p)  # a sealed adapter folder (a run's adapter/ or final/) is checked before loading
        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ConfigError([f"{p}/adapter_config.json names no base model. Fix: evaluate the run folder."])
        return Target(RunConfig(model=ModelConfig(path=base)), p, p.name)
    return Target(RunConfig(model=ModelConfig(path=spec)), None, p.name or spec)


def eval_settings(target: Target, suites: list[Path] | None, metrics: list[str] | None,
                  limit: int | None, judge_url: str | None = None, judge_model: str | None = None) -> EvalConfig:
    """The suites to score: the run's own (with --metric / --limit applied), or the --suite files; the judge: the
    run's eval.judge_* settings, --judge-url / --judge-model over them."""
    run_eval = target.cfg.eval
    if suites:
        template = run_eval.suites[0] if run_eval.suites else None
        specs = [SuiteConfig(name=Path(f).stem, data=str(f),
                             metrics=metrics or (template.metrics if template else SuiteConfig.model_fields[
                                 "metrics"].default_factory()),
                             limit=limit,
                             **({"max_new_tokens": template.max_new_tokens} if template else {}))
                 for f in suites]
    elif run_eval.suites:
        specs = [s.model_copy(update={k: v for k, v in (("metrics", metrics), ("limit", limit)) if v})
                 for s in run_eval.suites]
    else:
        raise ConfigError([f"{target.label}: no eval suites to score. Fix: give --suite FILE (conversations whose "
                           "last assistant turn is the reference)."])
    if not any(m in JUDGED_METRICS for s in specs for m in s.metrics):
        if judge_url or judge_model:
            raise ConfigError(["--judge-url / --judge-model are given but no suite is scored by judge or win_rate. "
                               "Fix: add --metric win_rate (or judge), or drop them"])
        return EvalConfig(suites=specs, batch_size=run_eval.batch_size)
    judge = {k: getattr(run_eval, k) for k in ("judge_max_tokens", "judge_concurrency", "win_rate_prompt")}
    return EvalConfig(suites=specs, batch_size=run_eval.batch_size, judge_url=judge_url or run_eval.judge_url,
                      judge_model=judge_model or run_eval.judge_model, **judge)


def load_target(target: Target, device: torch.device):
    """(model, tokenizer) in eval mode; an adapter stays a peft model (not merged)."""
    cfg = target.cfg
    if target.weights is not None:
        model = load_trained(cfg.model, cfg.method, target.weights, device)
        tok_dir = target.weights if (target.weights / "tokenizer_config.json").exists() else None
    else:
        model, model_dir = load_base(cfg.model, cfg.method, device)
        model.eval()
        tok_dir = model_dir
    if tok_dir is None:
        from shipsft.model.locate import resolve_model_dir

        tok_dir = resolve_model_dir(cfg.model, weights=False)
    return model, tokenizer_from(tok_dir, cfg.model.trust_remote_code)


def _scores(model, tok, cfg: RunConfig, ecfg: EvalConfig, amp, train_examples: list | None = None) -> dict:
    """{suite name: (Suite, SuiteRun)}: outputs and per-example scores of every suite (marked seen / unseen against
    `train_examples`)."""
    return score_suites(model, tok, cfg.data, ecfg, amp, train_examples)


def training_examples(cfg: RunConfig) -> tuple[list, str]:
    """(the examples a run trained on: data.train, or every data.sources file; a note when they cannot be read):
    each suite's examples are compared with them for the seen / unseen pattern slices."""
    from shipsft.data.formats import load_examples
    from shipsft.errors import ShipError

    parts = ([(list(cfg.data.train), cfg.data.format)] if cfg.data.train else
             [(list(src.path), src.format or cfg.data.format) for src in cfg.data.sources])
    examples: list = []
    try:
        for paths, fmt in parts:
            examples += load_examples(paths, fmt, "error", None, cfg.data.allow_any_role_order).examples
    except ShipError as e:
        return [], f"the training data could not be read ({e.lines[0]}), so no seen / unseen pattern slices"
    return examples, ""


def predictions_path(spec: str, target: Target, out: Path | None) -> Path:
    """Next to --out; else in the run folder when MODEL is a run; else in the current folder."""
    if out is not None:
        return Path(out).parent / PREDICTIONS
    return RunFolder(Path(spec)).predictions if target.is_run else Path(PREDICTIONS)


def run_eval(model: str, suites: list[Path] | None, baseline: str | None = None, metrics: list[str] | None = None,
             limit: int | None = None, out: Path | None = None, console: Console | None = None,
             failures: int = 0, judge_url: str | None = None, judge_model: str | None = None) -> int:
    console = console or Console()
    missing = [str(s) for s in suites or [] if not Path(s).exists()]
    if missing:
        raise ConfigError([f"--suite {m}: file not found" for m in missing])
    target = resolve_target(model)
    ecfg = eval_settings(target, suites, metrics, limit, judge_url, judge_model)
    judge = Judge.of(ecfg)
    for sc in ecfg.suites:  # a bad metric name, or a judged metric with no endpoint, fails before loading anything
        resolve_metrics(sc.metrics, judge)
    if target.note:
        console.print(f"[yellow]note:[/] {model}: {target.note}")
    base_spec = baseline or (target.cfg.model.path if target.is_run else None)
    if base_spec is None and any("win_rate" in sc.metrics for sc in ecfg.suites):
        raise ConfigError([f"{model}: win_rate compares the model's answers with a baseline's, and none is given. "
                           "Fix: --baseline MODEL (a run folder's baseline is its base model)"])
    device = pick_device()
    amp = autocast_dtype(target.cfg.train.precision, device)
    tuned_model, tok = load_target(target, device)
    console.print(f"tuned: {target.label}" + (f"  baseline: {base_spec}" if base_spec else ""))
    train_examples, why_not = training_examples(target.cfg) if target.is_run else ([], "")
    if why_not:
        console.print(Text(f"note: {why_not}", style="yellow"))
    tuned = _scores(tuned_model, tok, target.cfg, ecfg, amp, train_examples)
    base = None
    if base_spec is not None:
        if target.weights is not None and hasattr(tuned_model, "disable_adapter") and \
                base_spec == target.cfg.model.path:  # the adapter's own base: switch it off, no second model
            with tuned_model.disable_adapter():
                base = _scores(tuned_model, tok, target.cfg, ecfg, amp, train_examples)
        else:
            del tuned_model  # one model in memory at a time
            same = base_spec == target.cfg.model.path
            bcfg = target.cfg if same else RunConfig(model=ModelConfig(path=base_spec))
            base_model, base_tok = load_target(Target(bcfg, None, base_spec), device)
            base = _scores(base_model, base_tok, bcfg, ecfg, amp, train_examples)
    if base is not None:  # win_rate: the tuned answers judged against the baseline's; the baseline ties itself
        for name, (suite, run) in tuned.items():
            b = base[name][1]
            tuned[name] = (suite, with_pairwise(suite.metrics, suite.items, run, b.outputs))
            base[name] = (base[name][0], with_pairwise(suite.metrics, suite.items, b, b.outputs))
    result = _summarise(tuned, base)
    show_eval(console, result, base_spec)
    patterns = [row for name, (suite, run) in tuned.items()
                for row in pattern_rows(suite, run.scores, base[name][1].scores if base is not None else None)]
    show_patterns(console, patterns)
    rows = [p for name, (suite, run) in tuned.items()
            for p in predictions(name, suite.items, run, base[name][1] if base is not None else None,
                                 suite.patterns, suite.clusters)]
    written = write_predictions(predictions_path(model, target, out), rows, kind="eval")
    console.print(Text(f"wrote {written} ({len(rows)} predictions)"))
    if failures:
        show_failures(console, worst(rows, failures), len(rows))
    if out is not None:
        write_json(Path(out), {"model": model, "baseline": base_spec, "suites_config": ecfg.model_dump(mode="json"),
                               "suites": result, "patterns": patterns})
        console.print(f"wrote {out}")
    return 0


def _summarise(tuned: dict, base: dict | None) -> dict:
    result = {}
    for name, (suite, run) in tuned.items():
        scores = run.scores
        smp = samples(suite.items, run.outputs, 3)
        entry: dict = {"n": len(scores), "samples": smp}
        if base is not None:
            entry["rows"] = before_after(name, base[name][1].scores, scores, suite.clusters)
            for s, b in zip(smp, base[name][1].outputs):
                s["base_output"] = b
        else:
            keys = list(scores[0]) if scores else []
            entry["rows"] = [{"suite": name, "metric": k,
                              "tuned": sum(s[k] for s in scores if k in s) / sum(1 for s in scores if k in s)}
                             for k in keys]
        result[name] = entry
    return result
