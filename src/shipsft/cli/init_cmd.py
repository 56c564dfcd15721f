"""`shipsft init DATA [--eval FILE] [--model M] [--out CONFIG] [--task-metric M ...] [--seed N] [--force]`

Reads the data, says what it found (format, a rendered example with its trained tokens, lengths, the shape of the
answers), holds out an eval split when no --eval is given, and writes a config whose every value was chosen from
the data, with the reason beside it (recipe/starter.py). The config trains as it is: `shipsft train CONFIG`.

    shipsft init data/tickets.jsonl                  # -> data/tickets.yaml, data/tickets.train.jsonl, .eval.jsonl
    shipsft init train.jsonl --eval eval.jsonl --out run.yaml --task-metric exact_match
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from shipsft.config import ModelConfig
from shipsft.errors import ConfigError, ShipError


def init(
    data: Path = typer.Argument(..., help="Training data (JSONL / JSON / Parquet / CSV, any supported format)"),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Eval data; default: hold out a split of DATA"),
    model: str = typer.Option(ModelConfig.model_fields["path"].default, "--model",
                              help="Model: smollm2 (embedded), a local HF folder, a .gguf or a hub id "
                                   "(org/name)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Config to write (default: DATA's folder/<stem>.yaml)"),
    task_metrics: Optional[list[str]] = typer.Option(None, "--task-metric", help="Eval metric instead of the one "
                                                     "chosen from the answers (repeatable)"),
    seed: int = typer.Option(0, "--seed", help="Seed of the eval split"),
    force: bool = typer.Option(False, "--force", help="Replace an existing config and split files"),
) -> None:
    """Write a config chosen by the data: format, split, max_length, batch, epochs, LR, metrics and gates."""
    from shipsft.cli.console import console, fail

    try:
        run_init(data, eval_data, model, out, task_metrics, seed, force, console)
    except ShipError as e:
        fail(e)


def run_init(data: Path, eval_data: Path | None, model: str, out: Path | None, task_metrics: list[str] | None,
             seed: int, force: bool, console) -> Path:
    from shipsft.config import load_config
    from shipsft.eval.metrics import resolve_metrics
    from shipsft.recipe.starter import make_starter

    problems = [f"{flag} {p}: file not found" for flag, p in (("DATA", data), ("--eval", eval_data))
                if p is not None and not Path(p).exists()]
    if problems:
        raise ConfigError(problems)
    if task_metrics:
        resolve_metrics(list(task_metrics))  # a typo fails now, not after reading the data
    out = Path(out) if out is not None else Path(data).with_suffix(".yaml")
    if out.exists() and not force:
        raise ConfigError([f"{out}: already exists. Fix: --out OTHER.yaml, or --force to replace it"])
    st = make_starter(Path(data), out, model, eval_data, list(task_metrics) if task_metrics else None, seed, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(st.text, encoding="utf-8")
    load_config(out)  # the written file loads as it is (a failure here is a bug in init, not the user's)
    show_starter(console, st, out)
    return out


def show_starter(console, st, out: Path) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from shipsft.cli.views import colour_tokens

    def line(label: str, text: str) -> None:
        console.print(Text.assemble((f"{label}: ", "bold"), text), overflow="fold")

    line("data", f"{st.source}: {st.n_examples:,} examples; {'; '.join(st.notes)}")
    if st.sample is not None:
        console.rule(f"example 1 as the model sees it ({st.sample.source})")
        console.print(colour_tokens(st.tokenizer, st.sample.ids, st.sample.mask), soft_wrap=True)
        console.print(Text.assemble(("trained", "bold green on grey15"), "  ", ("ignored", "grey50")))
        console.rule()
    s, t = sorted(st.lengths), sorted(st.trained)
    if s:
        line("lengths", f"{len(s):,} sequences of {s[len(s) // 2]} tokens at the median (p90 {s[int(len(s) * .9)]}, "
                        f"max {s[-1]}), {t[len(t) // 2]} of them trained (the answer + end of turn); "
                        f"{sum(s):,} tokens in all")
    line("answers", st.shape.why)
    if st.split is not None:
        line("patterns", st.split.why + (f"; the largest: {st.split.largest!r}" if st.split.largest else ""))
    if st.eval_path is not None:
        field = repr(st.split_by) if st.shape.kind == "json" else st.split_by  # a JSON field, or "the answer" ...
        how = f", stratified by {field}" if st.split_by else ""
        kind = {"patterns": "whole sentence patterns", "random": "at random"}.get(getattr(st.split, "by", ""))
        held = f", held out {kind}" if kind else ""
        line("split", f"train {st.n_train:,} -> {st.train_path}; eval {st.n_eval:,}{held}{how} -> {st.eval_path}")
    else:
        line("split", f"no eval split ({st.n_train:,} examples are too few): no task metrics or gates")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left",
                  title=f"chosen (the reason for each is the comment above it in {out})")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    for c in st.choices:
        values = c.value if isinstance(c.value, list) else [c.value]
        table.add_row(f"{c.section}.{c.key}", Text("\n".join(
            " ".join(", ".join(map(str, v)) if isinstance(v, list) else str(v) for v in item.values())
            if isinstance(item, dict) else str(item) for item in values)))
    console.print(table)
    for w in st.warnings:
        console.print(Text.assemble(("warning: ", "bold yellow"), w), overflow="fold")
    console.print(Text.assemble(("wrote ", "bold green"), str(out), " — next: ",
                                (f"shipsft train {out}", "bold")), overflow="fold")
