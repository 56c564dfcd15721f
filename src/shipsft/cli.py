"""`shipsft` command line: a thin typer layer over the library.

    shipsft preview CONFIG [--index N] [--set key=value ...]
    shipsft audit CONFIG
    shipsft train CONFIG [--skip-audit]
    shipsft eval MODEL_OR_RUN --suite FILE [--baseline MODEL]

User mistakes (ShipError) print their lines and exit with the error's code, no traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from shipsft.errors import ShipError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Supervised fine-tuning that ships.")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

SetOpt = typer.Option(None, "--set", help="Dotted override, e.g. --set data.max_length=1024 (repeatable)")


def _fail(e: ShipError) -> None:
    from rich.markup import escape

    for line in e.lines:  # escaped: user text such as "[insert name]" must print as it is, not as markup
        err_console.print(f"[bold red]error:[/] {escape(line)}", markup=True, soft_wrap=True)
    raise typer.Exit(e.exit_code)


@app.command()
def preview(
    config: Path = typer.Argument(..., help="Run config YAML"),
    index: int = typer.Option(0, "--index", "-i", help="Which training example to show"),
    overrides: Optional[list[str]] = SetOpt,
) -> None:
    """Show one example as the model sees it: trained tokens coloured, counts, format, template, packing."""
    from shipsft.config import load_config
    from shipsft.preview import run_preview

    try:
        cfg = load_config(config, overrides or [])
        run_preview(cfg, index=index, console=console)
    except ShipError as e:
        _fail(e)


@app.command()
def audit(
    config: Path = typer.Argument(..., help="Run config YAML"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for audit.json and audit.html"),
    overrides: Optional[list[str]] = SetOpt,
) -> None:
    """Pre-flight audit of data and template. Exit 1 when there are errors."""
    from shipsft.config import load_config
    from shipsft.data.audit import run_audit_cli

    try:
        cfg = load_config(config, overrides or [])
        code = run_audit_cli(cfg, out_dir=out, console=console, config_path=config)
    except ShipError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config YAML"),
    skip_audit: bool = typer.Option(False, "--skip-audit", help="Train despite audit errors (recorded in the run)"),
    overrides: Optional[list[str]] = SetOpt,
) -> None:
    """Audit, then train (LoRA / QLoRA / full), eval-gate and write the run folder."""
    from shipsft.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()  # before torch is imported; SHIPSFT_ALLOCATOR=system opts out
    from shipsft.config import load_config
    from shipsft.train import run_train

    try:
        cfg = load_config(config, overrides or [])
        code = run_train(cfg, config_path=config, skip_audit=skip_audit, argv=sys.argv, console=console)
    except ShipError as e:
        _fail(e)
    raise typer.Exit(code or 0)


@app.command(name="eval")
def eval_cmd(
    model: str = typer.Argument(..., help="Model folder, .gguf, 'smollm2', or a run folder"),
    suite: list[Path] = typer.Option(..., "--suite", help="Eval data file (JSONL conversations); repeatable"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Base model for a before/after table"),
    metrics: Optional[list[str]] = typer.Option(None, "--metric", help="Metric names (default: exact_match)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N examples of each suite"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write eval.json here"),
) -> None:
    """Evaluate a model (or a run's promoted model) on task suites; --baseline adds deltas with 95% CIs."""
    from shipsft.eval_cli import run_eval_cli

    try:
        code = run_eval_cli(model, suites=suite, baseline=baseline, metrics=metrics, limit=limit, out=out,
                            console=console)
    except ShipError as e:
        _fail(e)
    raise typer.Exit(code or 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
