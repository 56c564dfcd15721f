"""Run training under tcmalloc when it is installed: the CLI re-executes itself once with LD_PRELOAD set.

Why: with glibc malloc, a CPU training step frees and re-allocates hundreds of MB of activations, and the page-fault
churn costs system CPU time that tcmalloc does not (the measurement is beside CANDIDATES). An allocator must be loaded
before the process starts, hence the re-exec. Install it with `apt-get install libtcmalloc-minimal4`; opt out with
SHIPSFT_ALLOCATOR=system.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# paired SmolLM2-135M LoRA runs on a 2-core Xeon (bench/train_vs_trl.py runs both allocators): glibc malloc spent
# 13-31% of the step in system CPU time, tcmalloc cut it from 54 s to 9 s and raised throughput 1.20-1.55x
CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
              "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
              "/usr/lib64/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4")


def find_tcmalloc() -> str | None:
    return next((p for p in CANDIDATES if Path(p).exists()), None)


def reexec_with_tcmalloc() -> None:
    """Replace this process with the same command under tcmalloc (no-op when absent, opted out, or already on)."""
    lib = find_tcmalloc()
    preload = os.environ.get("LD_PRELOAD", "")
    if lib is None or os.environ.get("SHIPSFT_ALLOCATOR") == "system" or "tcmalloc" in preload:
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {preload}".strip(), SHIPSFT_ALLOCATOR="tcmalloc",
               SHIPSFT_ARGV0=sys.argv[0])  # so the manifest records the command the user typed
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "shipsft", *sys.argv[1:]], env)
