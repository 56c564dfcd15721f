"""What every results file under bench/results/ records about where and when it was measured: the CPU by name,
its cores and the instruction sets that change the numbers (bf16 is native with AVX512-BF16 / AMX, emulated with
AVX2 only: docs' speed figures are not comparable across them), and the date. docs' numbers test
(tests/test_docs.py) reads `machine` and `date`."""
from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

NOTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    try:
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines()) if k.strip()}


def machine() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512f avx512_bf16 amx_bf16, Linux 6.1'."""
    info = cpuinfo()
    flags = set(info.get("flags", "").split())
    noted = " ".join(f for f in NOTED_FLAGS if f in flags) or "no avx2"
    cpu = info.get("model name") or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, {noted}, {platform.system()} {platform.release()}"


def stamp() -> dict[str, str]:
    """{"machine": ..., "date": ...} for a results file."""
    return {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
