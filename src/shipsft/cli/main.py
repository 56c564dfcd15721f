"""`shipsft` command line: a thin typer layer over the library.

    shipsft init DATA [--eval FILE] [--model M] [--out CONFIG] [--task-metric M]
    shipsft preview CONFIG [--index N] [--set key=value ...]
    shipsft audit CONFIG [--out DIR]
    shipsft train CONFIG [--skip-audit] [--resume [RUN]] [-v]
    shipsft eval MODEL_OR_RUN [--suite FILE] [--baseline MODEL] [--failures N] [--judge-url URL]
    shipsft suite build TRACES [--out DIR] [--config RUN.yaml | --train FILE] [--size N]
    shipsft reproduce RUN_DIR [--check-steps N]
    shipsft export RUN [--to hf|gguf] [--dtype f32|f16|bf16] [--quant q8_0] [--check] [--serve-check]
    shipsft chat RUN_OR_MODEL [--prompt TEXT]
    shipsft verify RUN
    shipsft sync RUN
    shipsft runs [DIR] [--html]
    shipsft compare RUN RUN... [--out FILE]
    shipsft config explain [KEY]
    shipsft --version

User mistakes (ShipError) print one line each and exit with the error's code, never a traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from shipsft import __version__
from shipsft.cli.console import RichProgress, VerboseOpt, console, fail, quiet
from shipsft.errors import ShipError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Supervised fine-tuning that ships.")
config_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect the configuration schema.")
app.add_typer(config_app, name="config")

SetOpt = typer.Option(None, "--set", help="Dotted override, e.g. --set data.max_length=1024 (repeatable)")


def _version(value: bool) -> None:
    if value:
        console.print(f"shipsft {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def _prepare_for_inspection(config: Path, overrides: list[str] | None, tag: str):
    """(cfg, tokenizer, prepared training split) as training would prepare it, problems recorded, not raised."""
    from shipsft.config import check_paths, load_config
    from shipsft.data.pipeline import prepare
    from shipsft.model.locate import load_tokenizer

    cfg = load_config(config, overrides or [])
    check_paths(cfg, config)
    tok = load_tokenizer(cfg.model)
    prep = prepare(cfg.data, tok, "train", strict=False, rejects_path=Path(cfg.output.dir) / f"rejects-{tag}.jsonl")
    return cfg, tok, prep


@app.command()
def preview(
    config: Path = typer.Argument(..., help="Run config YAML"),
    index: int = typer.Option(0, "--index", "-i", help="Which training example to show"),
    overrides: Optional[list[str]] = SetOpt,
) -> None:
    """Show one example as the model sees it: trained tokens coloured, counts, format, template, packing."""
    from shipsft.cli.views import show_preview
    from shipsft.errors import ConfigError

    try:
        cfg, tok, prep = _prepare_for_inspection(config, overrides, "preview")
        if prep.render_failed:
            raise prep.problems[0]
        n = len(prep.rendered)
        if not 0 <= index < n:
            raise ConfigError([f"--index {index}: the training set has {n} sequences (0..{n - 1})"])
        show_preview(console, tok, prep, cfg.data, index)
    except ShipError as e:
        fail(e)


@app.command()
def audit(
    config: Path = typer.Argument(..., help="Run config YAML"),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for audit.json and audit.html"),
    overrides: Optional[list[str]] = SetOpt,
) -> None:
    """Pre-flight audit of data and template. Exit 1 when there are errors."""
    from shipsft.audit.run import run_audit
    from shipsft.cli.views import show_audit
    from shipsft.model.attention import rows_join
    from shipsft.model.load import hf_config
    from shipsft.train.run import write_audit

    try:
        cfg, tok, prep = _prepare_for_inspection(config, overrides, "audit")
        result = run_audit(cfg, tok, prep, joined=rows_join(cfg.model, cfg.train, hf_config(cfg.model)))
        folder = out or Path(cfg.output.dir) / f"audit-{Path(config).stem}"
        show_audit(result, console, write_audit(result, folder))
    except ShipError as e:
        fail(e)
    raise typer.Exit(1 if result.errors else 0)


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config YAML"),
    skip_audit: bool = typer.Option(False, "--skip-audit", help="Train despite audit errors (recorded in the run)"),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue from the latest complete checkpoint of "
                                         "the run this config names (bare --resume), of a run folder, or from one "
                                         "checkpoints/step-N folder"),
    resume_force: bool = typer.Option(False, "--resume-force", help="Resume even though the config differs from "
                                      "the checkpoint's in what changes the result (recorded in the manifest)"),
    overrides: Optional[list[str]] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Audit, then train (LoRA / QLoRA / full), eval-gate and write the run folder. SIGTERM / Ctrl-C finish the
    current step, save a checkpoint and print the command that resumes it (a second Ctrl-C stops at once)."""
    from shipsft.cli.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc()  # before torch is imported; SHIPSFT_ALLOCATOR=system opts out
    with quiet(verbose):  # the libraries' bars and warnings into <run>/train.log unless -v
        train_run(config, skip_audit, resume, resume_force, overrides, verbose)


def train_run(config: Path, skip_audit: bool, resume: str | None, resume_force: bool, overrides: list[str] | None,
              verbose: bool) -> None:
    from shipsft.config import check_paths, load_config
    from shipsft.runs.checkpoint import CheckpointWriteError
    from shipsft.runs.resume import find_checkpoint
    from shipsft.train.preempt import Preempted, StopRequest
    from shipsft.train.loop import Silent
    from shipsft.train.run import run_train

    # launched on several processes (torchrun sets RANK), rank 0 alone prints
    progress = RichProgress(details=verbose, closing=True) if os.environ.get("RANK", "0") == "0" else Silent()
    stop = StopRequest()
    try:
        cfg = load_config(config, overrides or [])
        check_paths(cfg, config)
        checkpoint = None
        if resume is not None:
            checkpoint, notes = find_checkpoint(resume, cfg.output, config)
            for note in notes:
                progress.note(note)
        with stop.installed():
            code = run_train(cfg, config_path=config, skip_audit=skip_audit, argv=sys.argv, progress=progress,
                             resume=checkpoint, force=resume_force, stop=stop)
    except (Preempted, CheckpointWriteError) as e:
        progress.stop()
        e.lines.append(f"resume with: shipsft train {config} --resume {e.run_folder}"
                       + "".join(f" --set {o}" for o in overrides or []))
        fail_on_rank_0(e)
    except ShipError as e:
        progress.stop()
        fail_on_rank_0(e)
    except KeyboardInterrupt:  # a second Ctrl-C while the step or the save was running
        progress.stop()
        console.print("interrupted at once (second Ctrl-C): the last complete checkpoint is the one to resume from")
        raise typer.Exit(130)
    raise typer.Exit(code or 0)


def fail_on_rank_0(e: ShipError) -> None:
    """Launched on several processes, every rank meets the same error: rank 0 prints it, all exit with its code."""
    from shipsft.train import dist

    if dist.is_main():
        fail(e)
    raise typer.Exit(e.exit_code)


@app.command(name="eval")
def eval_cmd(
    model: str = typer.Argument(..., help="A run folder, a model folder, an adapter folder, a .gguf, "
                                                "a hub id (org/name), or 'smollm2'"),
    suite: Optional[list[Path]] = typer.Option(None, "--suite", help="Eval data file (default for a run folder: "
                                                                     "the run's own suites); repeatable"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Base model for a before/after table"),
    metrics: Optional[list[str]] = typer.Option(None, "--metric", help="Metric names (default: the run's, or "
                                                                       "exact_match)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N examples of each suite"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write eval.json here (predictions.jsonl beside it)"),
    failures: int = typer.Option(0, "--failures", min=0, help="Print the N worst predictions side by side"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint (.../v1) for the "
                                            "judge and win_rate metrics (default: the run's eval.judge_url)"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="The model name sent to the judge"),
    verbose: bool = VerboseOpt,
) -> None:
    """Evaluate a model (or a run's promoted model) on task suites; --baseline adds deltas with 95% CIs. Every
    prediction goes to predictions.jsonl."""
    from shipsft.cli.eval_cmd import run_eval

    with quiet(verbose):
        try:
            code = run_eval(model, suites=suite, baseline=baseline, metrics=metrics, limit=limit, out=out,
                            console=console, failures=failures, judge_url=judge_url, judge_model=judge_model)
        except ShipError as e:
            fail(e)
    raise typer.Exit(code or 0)


@app.command()
def reproduce(
    run: Path = typer.Argument(..., help="A run folder (shipsft train output)"),
    check_steps: Optional[int] = typer.Option(None, "--check-steps", min=1, help="Also train the first N steps "
                                              "again and compare each step's loss with the recorded one"),
) -> None:
    """Can this run be re-run as it was? Config, data, tokens, tokenizer, template and packages: recorded vs now."""
    from rich.table import Table

    from shipsft.train.reproduce import LOSS_TOLERANCE
    from shipsft.train.reproduce import reproduce as check

    try:
        report = check(run, check_steps, RichProgress())
    except ShipError as e:
        fail(e)
    table = Table(title=f"reproduce {run}")
    for col in ("what", "recorded", "now", ""):
        table.add_column(col)
    for r in report.rows:
        table.add_row(r.what, r.recorded, r.now, "[green]same[/]" if r.ok else "[bold red]differs[/]")
    console.print(table)
    if report.losses:
        console.print(f"first {len(report.losses)} steps retrained: max |loss difference| {report.max_loss_diff:.2e} "
                      f"(tolerance {LOSS_TOLERANCE:g}); losses "
                      + ", ".join(f"{s}: {a:.5f}/{b:.5f}" for s, a, b in report.losses))
    console.print("[bold green]reproducible as recorded[/]" if report.ok else
                  "[bold red]differs from the record[/] (see the rows marked differs)")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def verify(run: Path = typer.Argument(..., help="A run folder (shipsft train output)")) -> None:
    """Check every saved folder of a run (checkpoints, adapter/ or model/, final/, exports) against the sizes and
    sha256 its save recorded. Exit 1 when a file is missing, truncated or changed."""
    from shipsft.cli.console import say
    from shipsft.errors import ConfigError
    from shipsft.runs.layout import is_run_folder
    from shipsft.runs.verify import DAMAGED, OK, verify_run

    if not is_run_folder(run):
        fail(ConfigError([f"{run}: not a run folder (no config.yaml + manifest.json)"]))
    findings = verify_run(run)
    for f in findings:
        what = f"{f.size / 2**20:.1f} MB intact" if f.status == OK else "; ".join(f.lines)
        say(f"{f.status:8} {f.path}: {what}")
    damaged = sum(f.status == DAMAGED for f in findings)
    say(f"verify {run}: {len(findings)} saved folders, {damaged} damaged")
    raise typer.Exit(1 if damaged else 0)


@app.command()
def sync(run: Path = typer.Argument(..., help="A run folder (shipsft train output)")) -> None:
    """Send a run's trackers what they did not receive (a tracking server that was down when the run ended), into
    the same tracker runs. Exit 1 when one still does not answer."""
    from shipsft.cli.console import say
    from shipsft.config import load_config
    from shipsft.errors import ConfigError
    from shipsft.runs.layout import RunFolder, is_run_folder
    from shipsft.runs.trackers.sync import sync as send

    try:
        if not is_run_folder(run):
            raise ConfigError([f"{run}: not a run folder (no config.yaml + manifest.json)"])
        folder = RunFolder(run)
        lines, ok = send(folder, load_config(folder.config).track)
    except ShipError as e:
        fail(e)
    for line in lines:
        say(line)
    raise typer.Exit(0 if ok else 1)


@config_app.command("explain")
def config_explain(key: Optional[str] = typer.Argument(None, help="A dotted key (optim.lr) or a section (optim); "
                                                                  "none = every key")) -> None:
    """Print each config key with its type, default and what it does."""
    from rich.markup import escape

    from shipsft.config import explain

    try:
        for line in explain(key):
            console.print(escape(line), soft_wrap=True)
    except ShipError as e:
        fail(e)


from shipsft.cli import chat_cmd, export_cmd  # noqa: E402 - each module holds its command's options

app.command(name="export")(export_cmd.export)
app.command(name="setup")(export_cmd.setup)
app.command(name="chat")(chat_cmd.chat)
from shipsft.cli import init_cmd  # noqa: E402
app.command(name="init")(init_cmd.init)
from shipsft.cli import plan_cmd, sweep_cmd  # noqa: E402
app.command(name="sweep")(sweep_cmd.sweep)
app.command(name="plan")(plan_cmd.plan)
from shipsft.cli import runs_cmd  # noqa: E402
app.command(name="runs")(runs_cmd.runs)
app.command(name="compare")(runs_cmd.compare)
from shipsft.cli.suite_cmd import suite_app  # noqa: E402
app.add_typer(suite_app, name="suite")


def main() -> None:
    app(args=bare_resume(sys.argv[1:]))


def bare_resume(args: list[str]) -> list[str]:
    """`--resume` with no value means the latest checkpoint of the run the config names (typer options take a
    value, so the bare flag is given the value `latest` here)."""
    out = list(args)
    for i, a in enumerate(out):
        if a == "--resume" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "latest")
            break
    return out
