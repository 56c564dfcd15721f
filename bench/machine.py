"""What every results file under bench/results/ records about where and when it was measured: the CPU by name and
model number, its cores, whether it runs under a hypervisor, and the instruction sets that change the numbers (bf16
is native with AVX512-BF16 / AMX, emulated with AVX2 only: docs' speed figures are not comparable across them), the
date, and for files written by `write`, the command and the load average at its start and end (a shared machine's
numbers are read with it). docs' numbers test (tests/test_docs.py) reads `machine` and `date`."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

NOTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
START_LOAD = os.getloadavg()[0]  # when the bench script imported this module: its start


def cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    try:
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines()) if k.strip()}


def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it (e.g. 'Intel(R) Xeon(R) Processor')."""
    return cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def machine() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor (CPU model 167, under a hypervisor), 2 cores, avx2 avx512f avx512_bf16
    amx_bf16, Linux 6.1'."""
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    noted = " ".join(f for f in NOTED_FLAGS if f in flags) or "no avx2"
    cpu = info.get("model name") or platform.processor() or platform.machine()  # platform.machine: 'x86_64'
    about = [f"CPU model {info['model']}" if "model" in info else "",
             "under a hypervisor" if "hypervisor" in flags else ""]
    cpu += f" ({', '.join(a for a in about if a)})" if any(about) else ""
    return f"{cpu}, {os.cpu_count()} cores, {noted}, {platform.system()} {platform.release()}"


def stamp() -> dict[str, str]:
    """{"machine": ..., "date": ...} for a results file."""
    return {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def command(argv: list[str] | None = None) -> str:
    """The command line that ran the bench, as typed from the repository root: `python bench/X.py ...`."""
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(argv[0], Path(__file__).resolve().parents[1]) if argv else ""
    return shlex.join(["python", script, *argv[1:]])


def write(path: Path | str, results: dict, argv: list[str] | None = None) -> dict:
    """Write `results` as a results file with the stamp, the command and the load averages; returns the record."""
    record = {**stamp(), "command": command(argv),
              "load_average": {"start": round(START_LOAD, 2), "end": round(os.getloadavg()[0], 2)}, **results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return record


def step_times(records: list[dict]) -> list[float]:
    """Seconds of each optimizer step from a run's step records (metrics.jsonl or fit's history): the loop writes the
    running trained tokens / s, so step k ended at (trained tokens of steps 1..k) / its trained_tok_s."""
    done = [r for r in records if "loss" in r and r.get("trained_tok_s")]
    ends, total = [], 0
    for r in done:
        total += r["trained_tokens"]
        ends.append(total / r["trained_tok_s"])
    return [b - a for a, b in zip([0.0, *ends], ends)]
