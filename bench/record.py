"""A bench's results file: what it measured, on which machine, when, by which command (bench/results/<name>.json).

Every measured number in README.md and docs/ names the results file it comes from (`<!-- source: ... -->`), and
tests/test_docs.py checks that the file exists, records its machine and date, and holds the number as written. A
bench script calls `write(path, results)` at its end; the file gets:

    machine   the CPU as lscpu names it, its model number, cores, the hypervisor, the flags that change the numbers
              (AVX2 / AVX512 / native bf16 / AMX: bf16 autocast is several times slower where it is emulated)
    date      UTC, to the minute
    command   the command line that wrote it, as typed (`python bench/X.py ...`)
    load_average  1-minute load at the start and at the end: a shared machine's numbers are read with it
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

# the CPU flags that decide which kernels torch runs (fp32 GEMM width, native bf16 autocast)
FLAGS_OF_NOTE = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
START_LOAD = os.getloadavg()[0]


def lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def machine() -> dict:
    """The machine as lscpu describes it, in one line (`machine`) and its parts."""
    info = lscpu()
    flags = set(info.get("Flags", "").split())
    noted = [f for f in FLAGS_OF_NOTE if f in flags]
    cpu = info.get("Model name") or platform.processor() or platform.machine()
    parts = [cpu, f"CPU model {info['Model']}" if "Model" in info else "", f"{os.cpu_count()} cores",
             info.get("Hypervisor vendor", ""), "/".join(noted)]
    return {"machine": ", ".join(p for p in parts if p), "cpu": cpu, "cpu_model": info.get("Model"),
            "cores": os.cpu_count(), "hypervisor": info.get("Hypervisor vendor"), "cpu_flags": noted,
            "native_bf16": "avx512_bf16" in flags or "amx_bf16" in flags}


def command(argv: list[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(argv[0], Path(__file__).resolve().parents[1]) if argv else ""
    return shlex.join(["python", script, *argv[1:]])


def write(path: Path | str, results: dict, argv: list[str] | None = None) -> dict:
    """Write `results` with the machine, date, command and load averages; returns what was written."""
    record = {**machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": command(argv), "load_average": {"start": round(START_LOAD, 2),
                                                         "end": round(os.getloadavg()[0], 2)}, **results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return record
