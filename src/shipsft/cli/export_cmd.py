"""`shipsft export RUN [--to hf|gguf ...] [--dtype f32|f16|bf16] [--quant q8_0|...] [--out DIR] [--check]
[--skip-check] [--prompts N] [--serve-check]`

Merges the run's promoted adapter into its base and writes <run>/export: hf/ (safetensors + tokenizer with the
training template + generation_config whose eos ids hold the end-of-turn token), gguf/<run>-<type>.gguf (+ Modelfile;
written by llama.cpp's own converter and quantizer), a model card in each, export.json; then runs the train/serve
parity check, in llama.cpp itself for the GGUF (exit 1 on a mismatch, naming it).
Settings default to the run's own `output.export` (or ExportConfig's defaults); flags override them.

    shipsft export runs/quickstart --to hf --to gguf --quant q4_k_m
    shipsft export runs/quickstart --check            # check an existing export again, write nothing else
    shipsft export runs/quickstart --serve-check      # + serve it through vLLM and compare replies (slow)
    shipsft export runs/quickstart --push-to-hub me/orders-json [--private] [--adapter-only]   # export/hub.py
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from shipsft.cli.console import VerboseOpt
from shipsft.config import ExportConfig, load_config
from shipsft.errors import ConfigError, ShipError
from shipsft.runs.layout import RunFolder, is_run_folder


class Notes:
    """A Progress-like sink that prints notes on the console (export.run takes anything with .note)."""

    def __init__(self, console: Console):
        self.console = console

    def note(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(escape(text), soft_wrap=True)


def export_settings(run: Path, to: list[str] | None, dtype: str | None, quant: str | None, out: Path | None,
                    check: bool | None, prompts: int | None) -> ExportConfig:
    """The run's output.export (or the defaults) with the command-line flags applied, validated as config is."""
    if not is_run_folder(run):
        raise ConfigError([f"{run}: not a run folder (no config.yaml + manifest.json). Fix: give the folder "
                           "`shipsft train` wrote, e.g. runs/quickstart"])
    base = load_config(RunFolder(run).config).output.export
    raw = base.model_dump(mode="json") if base is not None else {}
    for key, value in (("to", to), ("dtype", dtype), ("quant", quant), ("dir", str(out) if out else None),
                       ("check", check), ("check_prompts", prompts)):
        if value is not None and value != []:
            raw[key] = value
    if raw.get("check") is False and prompts is None:  # resolved from `check`, not a choice of the user's
        raw.pop("check_prompts", None)
    if to and "gguf" not in to and quant is None:  # the run's GGUF type does not apply to --to hf
        raw.pop("quant", None)
    try:
        return ExportConfig.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            loc = ".".join(str(x) for x in err["loc"])
            lines += [m.replace("output.export.", "--") for m in msg.split("\n")] if not loc else \
                [f"--{loc}: {msg}"]
        raise ConfigError(lines) from None


def run_export(run: Path, settings: ExportConfig, check_only: bool, serve_check: bool, console: Console,
               push_to: str | None = None, private: bool = False, adapter_only: bool = False) -> int:
    from shipsft.export.run import check_run, export_run

    notes = Notes(console)
    if push_to is not None or adapter_only or private:
        if check_only:
            raise ConfigError(["--check only checks an existing export; --push-to-hub exports and uploads. Fix: "
                               "drop one of them"])
        return run_push(run, settings, push_to, private, adapter_only, notes)
    if check_only:
        check_run(run, settings, notes)
        console.print("parity check passed")
    else:
        export_run(run, settings, notes)
    if serve_check:
        from shipsft.export.serve import serve_check

        return serve_check(run, settings, notes)
    return 0


def run_push(run: Path, settings: ExportConfig, repo_id: str | None, private: bool, adapter_only: bool,
             notes: Notes) -> int:
    """--push-to-hub: the export (unless --adapter-only), then the upload (export/hub.py); refuses what cannot
    succeed before the export starts."""
    from shipsft.export.hub import check_can_push, push_run
    from shipsft.export.run import export_folder, export_run
    from shipsft.export.source import open_run

    if repo_id is None:
        raise ConfigError(["--private and --adapter-only apply to --push-to-hub. Fix: add --push-to-hub org/name"])
    if not adapter_only and "hf" not in settings.to:
        raise ConfigError(["--push-to-hub uploads the HF export, and this export writes none. Fix: add --to hf"])
    token = check_can_push(repo_id)
    hf = None
    if not adapter_only:
        export_run(run, settings, notes)
        hf = export_folder(open_run(run), settings).hf
    push_run(run, repo_id, token, private, hf, notes)
    return 0


def export(
    run: Path = typer.Argument(..., help="A run folder (shipsft train output)"),
    to: Optional[list[str]] = typer.Option(None, "--to", help="hf and/or gguf (repeatable; default: the run's "
                                                               "output.export, else both)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="f32 | f16 | bf16 (HF weights; GGUF unless --quant)"),
    quant: Optional[str] = typer.Option(None, "--quant", help="GGUF type, written by llama.cpp: q8_0, q6_k, "
                                                               "q5_k_m, q4_k_m, ... (config: output.export.quant)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Export folder (default: RUN/export)"),
    check: bool = typer.Option(False, "--check", help="Only run the parity check on an existing export"),
    skip_check: bool = typer.Option(False, "--skip-check", help="Write the export without the parity check"),
    prompts: Optional[int] = typer.Option(None, "--prompts", help="Eval prompts the parity check generates on"),
    serve_check: bool = typer.Option(False, "--serve-check", help="Then serve the HF export with vLLM and compare "
                                                                  "its replies (bench/serve_check.py; slow)"),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Then upload the HF export to this hub "
                                                                          "repository (org/name)"),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repository private"),
    adapter_only: bool = typer.Option(False, "--adapter-only", help="With --push-to-hub: upload the run's adapter "
                                                                    "alone (nothing merged or exported)"),
    verbose: bool = VerboseOpt,
) -> None:
    """Merge the run's adapter and write an HF folder and/or a GGUF, with a model card; check train/serve parity."""
    from shipsft.cli.console import console, fail, quiet

    with quiet(verbose):
        try:
            settings = export_settings(run, to, dtype, quant, out, False if skip_check else None, prompts)
            code = run_export(run, settings, check, serve_check, console, push_to_hub, private,
                              adapter_only)
        except ShipError as e:
            fail(e)
    raise typer.Exit(code or 0)


def setup(tool: str = typer.Argument(..., help="gguf: llama.cpp's converter, quantizer and engine (node-llama-cpp "
                                               "from npm, pinned), into shipsft's cache")) -> None:
    """Install a pinned tool shipsft runs, now rather than on first use (an offline machine, CI, a container)."""
    from shipsft.cli.console import console, fail
    from shipsft.export.llamacpp import toolchain

    try:
        if tool != "gguf":
            raise ConfigError([f"shipsft setup {tool}: unknown tool. Fix: shipsft setup gguf"])
        tc = toolchain(Notes(console))
        console.print(f"ready: {tc.describe()} in {tc.root}")
    except ShipError as e:
        fail(e)
