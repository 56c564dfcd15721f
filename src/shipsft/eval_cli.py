"""`shipsft eval MODEL_OR_RUN --suite FILE [--baseline MODEL] [--metric ...] [--limit N] [--out eval.json]`

Scores a model on task suites (conversations whose last assistant turn is the reference) and, with a baseline,
prints a before/after table: metric per suite for base and tuned, the delta and its paired-bootstrap 95% CI.

MODEL_OR_RUN is a model folder, a .gguf, `smollm2`, a peft adapter folder, or a run folder (`shipsft train`
output). A run folder means its promoted `final/` (or, for a run that was not promoted, its last saved `adapter/`
or `model/`, with a note) on top of the base model in its `config.yaml`; the baseline then defaults to that base.
When the tuned model is a LoRA adapter over the baseline, the baseline is scored by switching the adapter off
(`disable_adapter`): no second model is loaded.

    shipsft eval runs/quickstart-20261122 --suite examples/quickstart/eval.jsonl --metric exact_match --out eval.json
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from shipsft.config import ModelConfig, RunConfig, load_config
from shipsft.errors import ConfigError
from shipsft.evaluate import Suite, before_after, load_suite_examples, run_suite, samples
from shipsft.eval_metrics import resolve_metrics
from shipsft.generate import build_items, eot_ids, eval_renderer


@dataclass
class Target:
    """What to load: a base model (RunConfig.model) plus an optional adapter folder on top."""

    cfg: RunConfig  # model + data (template) settings
    adapter: Path | None
    weights: Path | None  # full fine-tuned weights folder (instead of cfg.model.path)
    label: str
    note: str = ""


def _run_weights(run: Path) -> tuple[Path, str]:
    for name, note in (("final", ""), ("adapter", "not promoted: evaluating its last saved adapter/"),
                       ("model", "not promoted: evaluating its last saved model/")):
        if (run / name).is_dir():
            return run / name, note
    raise ConfigError([f"{run}: a run folder without final/, adapter/ or model/ (did training finish?)"])


def resolve_target(spec: str) -> Target:
    p = Path(spec)
    if p.is_dir() and (p / "config.yaml").exists() and (p / "manifest.json").exists():
        cfg = load_config(p / "config.yaml")
        weights, note = _run_weights(p)
        if (weights / "adapter_config.json").exists():
            return Target(cfg, weights, None, f"{p.name}/{weights.name}", note)
        return Target(cfg, None, weights, f"{p.name}/{weights.name}", note)
    if p.is_dir() and (p / "adapter_config.json").exists():
        base = json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ConfigError([f"{p}/adapter_config.json names no base model. Fix: evaluate the run folder."])
        return Target(RunConfig(model=ModelConfig(path=base)), p, None, p.name)
    return Target(RunConfig(model=ModelConfig(path=spec)), None, None, p.name or spec)


def load(target: Target):
    """(model, tokenizer) in eval mode, fp32, sdpa; an adapter stays a peft model (not merged)."""
    import torch

    from shipsft.model import load_base
    from shipsft.source import load_tokenizer

    cfg = target.cfg
    if target.weights is not None:
        cfg = cfg.model_copy(deep=True)
        cfg.model.path, cfg.model.gguf_file = str(target.weights), None
    model, model_dir = load_base(cfg, torch.device("cpu"))
    tok_dir = target.adapter if target.adapter and (target.adapter / "tokenizer_config.json").exists() else None
    tokenizer = load_tokenizer(str(tok_dir or model_dir))
    if target.adapter is not None:
        import peft

        model = peft.PeftModel.from_pretrained(model, target.adapter)
    return model.eval(), tokenizer


def score_model(model, tokenizer, cfg: RunConfig, files: list[Path], metric_specs: list[str], limit: int | None,
                batch_size: int = 8, max_new_tokens: int = 128):
    """{suite name: (per-example scores, samples)} for one model."""
    renderer = eval_renderer(tokenizer, cfg.data)
    stop = eot_ids(tokenizer, model, renderer)
    out = {}
    for f in files:
        items = build_items(renderer, load_suite_examples(f, "auto", limit))
        suite = Suite(Path(f).stem, items, resolve_metrics(metric_specs), max_new_tokens)
        run = run_suite(model, tokenizer, suite, items, stop, batch_size)
        out[suite.name] = (run.scores, samples(items, run.outputs, 3))
    return out


def run_eval_cli(model: str, suites: list[Path], baseline: str | None = None, metrics: list[str] | None = None,
                 limit: int | None = None, out: Path | None = None, console: Console | None = None) -> int:
    console = console or Console()
    metric_specs = list(metrics or ["exact_match"])
    resolve_metrics(metric_specs)  # fail on a bad metric name before loading anything
    missing = [str(s) for s in suites if not Path(s).exists()]
    if missing:
        raise ConfigError([f"--suite {m}: file not found" for m in missing])
    target = resolve_target(model)
    if target.note:
        console.print(f"[yellow]note:[/] {model}: {target.note}")
    is_run = (Path(model) / "manifest.json").exists()
    base_spec = baseline or (target.cfg.model.path if is_run else None)
    tuned_model, tok = load(target)
    console.print(f"tuned: {target.label}" + (f"  baseline: {base_spec}" if base_spec else ""))
    tuned = score_model(tuned_model, tok, target.cfg, suites, metric_specs, limit)
    base = None
    if base_spec is not None:
        same_base = target.adapter is not None and base_spec == target.cfg.model.path
        if same_base:  # the adapter's own base: switch it off instead of loading a second model
            with tuned_model.disable_adapter():
                base = score_model(tuned_model, tok, target.cfg, suites, metric_specs, limit)
        else:
            del tuned_model  # one model in memory at a time
            bcfg = target.cfg.model_copy(deep=True) if base_spec == target.cfg.model.path else \
                RunConfig(model=ModelConfig(path=base_spec))
            base_model, base_tok = load(Target(bcfg, None, None, base_spec))
            base = score_model(base_model, base_tok, bcfg, suites, metric_specs, limit)
    result = _summarise(tuned, base)
    _print_table(console, result, target.label, base_spec)
    if out is not None:
        Path(out).write_text(json.dumps({"model": model, "baseline": base_spec, "metrics": metric_specs,
                                         "limit": limit, "suites": result}, indent=2))
        console.print(f"wrote {out}")
    return 0


def _summarise(tuned: dict, base: dict | None) -> dict:
    result = {}
    for name, (scores, smp) in tuned.items():
        entry: dict = {"n": len(scores), "samples": smp}
        if base is not None:
            entry["rows"] = before_after(name, base[name][0], scores)
            base_out = {s["source"]: s["output"] for s in base[name][1]}
            for s in smp:
                s["base_output"] = base_out.get(s["source"])
        else:
            keys = list(scores[0]) if scores else []
            entry["rows"] = [{"suite": name, "metric": k,
                              "tuned": sum(s[k] for s in scores if k in s) / sum(1 for s in scores if k in s)}
                             for k in keys]
        result[name] = entry
    return result


def _print_table(console: Console, result: dict, label: str, base_spec: str | None) -> None:
    table = Table(title="before / after" if base_spec else "eval", show_lines=False)
    table.add_column("suite")
    table.add_column("metric")
    table.add_column("n", justify="right")
    if base_spec:
        table.add_column(f"base ({base_spec})", justify="right")
    table.add_column(f"tuned ({label})" if base_spec else label, justify="right")
    if base_spec:
        table.add_column("delta", justify="right")
        table.add_column("95% CI", justify="right")
    for name, entry in result.items():
        for r in entry["rows"]:
            cells = [name, r["metric"], str(r.get("n", entry["n"]))]
            if base_spec:
                color = "green" if r["lo"] > 0 else "red" if r["hi"] < 0 else "white"
                cells += [f"{r['base']:.4f}", f"{r['tuned']:.4f}", f"[{color}]{r['delta']:+.4f}[/]",
                          f"[{r['lo']:+.4f}, {r['hi']:+.4f}]"]
            else:
                cells.append(f"{r['tuned']:.4f}")
            table.add_row(*cells)
    console.print(table)

