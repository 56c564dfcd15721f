"""`shipsft suite build TRACES... [--out DIR] [--config RUN.yaml | --train FILE ...] [--size N] [--seed S]
[--format F] [--metric M ...]`

Eval suites from logged production conversations (traces/: docs/suites.md). Writes into DIR (default: suites/):

    suite.jsonl                 traces not marked bad: deduplicated, not in training, sampled by pattern and label
    failures.jsonl              traces marked bad with a `correction`: the corrected answer is the reference
    failures_uncorrected.jsonl  traces marked bad without one: the logged answer is kept, scored by win_rate only
    dropped.jsonl               every other trace and why (duplicate of which, leak into training, not sampled)
    suites.yaml                 the eval.suites entries for a run config, metrics chosen by the answers' shape
    manifest.json               inputs (sha256), settings, counts, the answer shape and the pattern clusters

Every suite line keeps its provenance (trace_source file:line, trace_id, feedback, cluster, label).

    shipsft suite build logs/june.jsonl --config run.yaml --size 200 --out suites/june
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml

from shipsft.cli.console import console, fail
from shipsft.errors import ConfigError, ShipError

FILES = {"suite": "suite.jsonl", "failures": "failures.jsonl", "uncorrected": "failures_uncorrected.jsonl"}
SUITE_NAMES = {"suite": "traces", "failures": "failures", "uncorrected": "failures_uncorrected"}

suite_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Eval suites from production traces.")


def training_examples(config: Path | None, train: list[Path] | None):
    """(examples the suites must not leak into, their data.mask): a run config's training data (data.train or its
    mixture's sources), or --train files (format auto); (None, mask) when neither is given."""
    from shipsft.config import check_paths, load_config
    from shipsft.data.formats import load_examples
    from shipsft.data.mixture import is_mixture
    from shipsft.data.pipeline import load_sources, load_split, merge_loaded

    if config is not None and train:
        raise ConfigError(["--config and --train both name training data. Fix: give one of them"])
    if config is not None:
        cfg = load_config(config)
        check_paths(cfg, config)
        loaded = merge_loaded(load_sources(cfg.data, None)) if is_mixture(cfg.data) else \
            load_split(cfg.data, "train", None)
        return loaded.examples, cfg.data.mask
    if train:
        return load_examples([str(p) for p in train], "auto", "error", None, False).examples, "all_assistant"
    return None, "all_assistant"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    from shipsft.runs.jsonio import dumps, write_text_atomic

    return write_text_atomic(path, "".join(dumps(r) + "\n" for r in rows))


def suites_yaml(out: Path, built, metrics: list[str]) -> str:
    """The eval.suites entries for the suites that have examples (absolute paths: the run config may live anywhere)."""
    entries = [{"name": SUITE_NAMES[k], "data": str((out / FILES[k]).resolve()),
                "metrics": ["win_rate"] if k == "uncorrected" else list(metrics)}
               for k in FILES if getattr(built, k)]
    head = ("# eval.suites written by `shipsft suite build` (docs/suites.md): put these under eval: in a run config.\n"
            "# failures_uncorrected holds answers users marked bad: only win_rate scores it (its reference is the bad\n"
            "# answer), and win_rate needs eval.judge_url.\n")
    return head + yaml.safe_dump({"suites": entries}, sort_keys=False, width=120)


@suite_app.command("build")
def build(
    traces: list[Path] = typer.Argument(..., help="Trace files (JSONL/JSON/Parquet/CSV conversations)"),
    out: Path = typer.Option(Path("suites"), "--out", help="Folder the suites are written to"),
    config: Optional[Path] = typer.Option(None, "--config", help="Run config whose training data the suites must "
                                          "not leak into"),
    train: Optional[list[Path]] = typer.Option(None, "--train", help="Training data file instead of --config "
                                               "(repeatable)"),
    size: Optional[int] = typer.Option(None, "--size", min=1, help="Examples in suite.jsonl (default: every trace "
                                       "left); failure suites are kept whole"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling"),
    fmt: str = typer.Option("auto", "--format", help="Trace format: auto, messages, sharegpt, alpaca, "
                            "prompt_completion"),
    metrics: Optional[list[str]] = typer.Option(None, "--metric", help="Metrics of suite and failures in "
                                                "suites.yaml (default: by the answers' shape, as shipsft init)"),
) -> None:
    """Write eval suites from logged conversations: near-duplicates and leaks into training out, sampled by pattern
    and label, failure suites from traces marked bad, provenance on every line."""
    try:
        code = run_build(traces, out, config, train, size, seed, fmt, metrics)
    except ShipError as e:
        fail(e)
    raise typer.Exit(code)


def run_build(traces: list[Path], out: Path, config: Path | None, train: list[Path] | None, size: int | None,
              seed: int, fmt: str, metrics: list[str] | None) -> int:
    from shipsft.eval.metrics import resolve_metrics
    from shipsft.data.inspect import TASK_METRICS
    from shipsft.runs.jsonio import write_json
    from shipsft.traces.build import build_suites
    from shipsft.traces.read import read_traces

    if metrics:
        resolve_metrics([m for m in metrics if m not in ("judge", "win_rate")])  # a typo fails before any work
    found, files, used = read_traces(traces, fmt)
    examples, mask = training_examples(config, train)
    built = build_suites(found, examples, size, seed, mask)
    chosen = list(metrics) if metrics else TASK_METRICS[built.stats["answer_shape"]]
    out.mkdir(parents=True, exist_ok=True)
    written = [_jsonl(out / FILES[k], getattr(built, k)) for k in FILES if getattr(built, k)]
    written.append(_jsonl(out / "dropped.jsonl", built.dropped))
    (out / "suites.yaml").write_text(suites_yaml(out, built, chosen), encoding="utf-8")
    written.append(out / "suites.yaml")
    write_json(out / "manifest.json", {
        "inputs": [{"path": f.path, "sha256": f.sha256, "records": f.n_records} for f in files], "format": used,
        "training": str(config) if config else [str(p) for p in train or []] or None,
        "size": size, "seed": seed, "metrics": chosen, **built.stats})
    written.append(out / "manifest.json")
    show(built, chosen)
    for p in written:
        console.print(f"wrote {p}")
    return 0


def show(built, metrics: list[str]) -> None:
    s = built.stats
    console.print(f"{s['traces']:,} traces: {s['bad']:,} marked bad, {s['good']:,} good, {s['unrated']:,} unrated; "
                  f"{s['clusters']:,} prompt patterns, the largest {s['largest_cluster_share']:.0%} of the traffic")
    if not s["leak_check"]:
        console.print("[yellow]note:[/] no training data given (--config or --train): nothing was checked for leaks")
    for reason, n in s["dropped"].items():
        console.print(f"dropped {n:,}: {reason}")
    labels = f", {len(s['labels'])} labels" if s["labels"] else ""
    console.print(f"suite {s['suite']:,} examples ({s['answer_shape']} answers{labels}; metrics "
                  f"{', '.join(metrics)}), failures {s['failures']:,} corrected + {s['uncorrected']:,} uncorrected "
                  "(win_rate)")
