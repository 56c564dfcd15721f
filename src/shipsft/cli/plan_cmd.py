"""`shipsft plan CONFIG [--device cpu|cuda] [--memory 80GB] [--gpus N] [--throughput TOK_S] [--measure-steps N]`:
memory per component, the planned peak, a time estimate and a LoRA / QLoRA / full recommendation with its reasons.

    shipsft plan examples/quickstart/config.yaml
    shipsft plan config.yaml --device cuda --memory 80GB --gpus 8 --throughput 12000
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from shipsft.cli.console import console, fail
from shipsft.errors import ConfigError, ShipError


def allocator_of_train() -> str:
    """The allocator `shipsft train` runs under on this machine: tcmalloc when installed and not opted out."""
    from shipsft.cli.allocator import find_tcmalloc

    if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return "tcmalloc"
    return "tcmalloc" if find_tcmalloc() and os.environ.get("SHIPSFT_ALLOCATOR") != "system" else "system"


def gb(b: int) -> str:
    return f"{b / 1e9:.2f} GB"


def show_plan(p) -> None:
    table = Table(title=f"memory plan: {p.chosen.method} on {p.device}" + (f" x {p.gpus}" if p.gpus > 1 else ""))
    for col, just in (("component", "left"), ("MB", "right"), ("how", "left")):
        table.add_column(col, justify=just)
    for c in p.chosen.components:
        style = "dim" if "not in the peak" in c.note else None
        table.add_row(escape(c.name), f"{c.bytes / 1e6:,.0f}", escape(c.note), style=style)
    console.print(table)
    per = "per GPU" if p.device == "cuda" else "resident (RSS)"
    verdict = "" if p.fits is None else (" — fits" if p.fits else " — does NOT fit")
    console.print(escape(f"planned peak {per}: {gb(p.chosen.peak)} (set by the {p.chosen.moment})"
                         + (f" of {gb(p.memory)}" if p.memory else "") + verdict), soft_wrap=True)
    if p.alternatives:
        console.print(escape("other methods, same config: " + ", ".join(f"{m} {gb(v)}"
                                                                        for m, v in p.alternatives.items())))
    if p.time_s is not None:
        console.print(escape(f"time: {p.time_s / 60:.1f} min ({p.time_note})"), soft_wrap=True)
    else:
        console.print(escape(f"time: {p.time_note}"), soft_wrap=True)
    console.print(escape(f"recommendation: {p.recommendation}"), soft_wrap=True)
    for r in p.reasons:
        console.print(escape(f"  - {r}"), soft_wrap=True)
    for n in p.notes:
        console.print(escape(f"note: {n}"), soft_wrap=True)


def plan(
    config: Path = typer.Argument(..., help="Run config YAML"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: this machine's)"),
    memory: Optional[str] = typer.Option(None, "--memory", help="Memory per device, e.g. 80GB (default: this "
                                         "machine's)"),
    gpus: int = typer.Option(1, "--gpus", min=1, help="Devices (data parallel)"),
    throughput: Optional[float] = typer.Option(None, "--throughput", help="Processed tokens/s per device, for the "
                                               "time estimate"),
    measure_steps: int = typer.Option(0, "--measure-steps", min=0, help="Measure the throughput with N real "
                                      "optimizer steps here (0 = no)"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="Dotted override, e.g. --set "
                                                  "train.gradient_checkpointing=true"),
) -> None:
    """Plan a run's memory (per component, peak vs the device), its time, and LoRA / QLoRA / full."""
    from shipsft.config import check_paths, load_config
    from shipsft.sweep.plan import parse_memory
    from shipsft.sweep.plan import plan as make_plan

    try:
        if device not in (None, "cpu", "cuda"):
            raise ConfigError([f"--device {device!r}: cpu or cuda"])
        if throughput is not None and measure_steps:
            raise ConfigError(["--throughput and --measure-steps both give the throughput; one would be ignored. "
                               "Fix: keep one"])
        cfg = load_config(config, overrides or [])
        check_paths(cfg, config)
        p = make_plan(cfg, config, device=device, memory=parse_memory(memory) if memory else None, gpus=gpus,
                      allocator=allocator_of_train(), throughput=throughput, measure_steps=measure_steps)
    except ShipError as e:
        fail(e)
    show_plan(p)
