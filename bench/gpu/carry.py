"""The files a device call carries (`run.py --prepare DIR`, here, where PyPI is reachable) and their install there.

The GPU image has torch, transformers, peft, accelerate and triton but not pydantic (shipsft's config), TRL and its
datasets, liger-kernel or bitsandbytes, and nothing can be downloaded on it; the device tool carries at most 64 MiB
with the working tree. So: pinned wheels for CPython 3.12 on x86-64 Linux (the versions this repository's venv
runs), bitsandbytes unpacked without the native libraries of the CUDA versions the image does not have, and the
Llama-3.2 tokenizer. docs/gpu.md has the sizes.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.machinery import PathFinder
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHEELS = ["trl==1.16.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "pydantic==2.14.4",
          "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5", "typing-extensions==4.16.0",
          "liger-kernel==0.8.5"]
BITSANDBYTES = "bitsandbytes==0.50.2"
BNB_KEEP = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cpu.so")  # the image's torch is 2.11.0+cu130
PIP_PLATFORM = ["--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_24_x86_64",
                "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
TOKENIZER_FIXTURE = REPO.parent / "shared" / "fixtures" / "models" / "llama-3.2-instruct"
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on what travels (working tree + carried paths)


def prepare_commands(dest: Path) -> list[list[str]]:
    """The pip download commands --prepare runs (with this Python's pip)."""
    pip = [sys.executable, "-m", "pip", "download", "-q", *PIP_PLATFORM]
    return [pip + ["-d", str(dest / "whl"), *WHEELS], pip + ["-d", str(dest / "dl"), BITSANDBYTES]]


def trim_bitsandbytes(wheel: Path, dest: Path) -> int:
    """Unpack the bitsandbytes wheel into `dest` without the native libraries the image cannot load; bytes kept."""
    import zipfile

    kept = 0
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = Path(info.filename).name
            if name.startswith("libbitsandbytes_") and name not in BNB_KEEP:
                continue
            z.extract(info, dest)
            kept += info.file_size
    return kept


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prepare_carry(dest: Path, tokenizer: Path) -> int:
    """--prepare: the wheels, the trimmed bitsandbytes and the tokenizer into `dest` (run where PyPI is reachable)."""
    if not (tokenizer / "tokenizer.json").exists():
        print(f"bench/gpu/run.py: {tokenizer}/tokenizer.json not found. Fix: --tokenizer FOLDER (a Llama-3.2 "
              "tokenizer folder, e.g. ../shared/fixtures/models/llama-3.2-instruct)", file=sys.stderr)
        return 2
    shutil.rmtree(dest, ignore_errors=True)
    for cmd in prepare_commands(dest):
        subprocess.run(cmd, check=True)
    wheel = next((dest / "dl").glob("bitsandbytes-*.whl"))
    trim_bitsandbytes(wheel, dest / "bnb")
    shutil.rmtree(dest / "dl")
    shutil.copytree(tokenizer, dest / "tokenizer", ignore=shutil.ignore_patterns("rendered_example*"))
    for sub in ("whl", "bnb", "tokenizer"):
        print(f"{dest / sub}: {tree_bytes(dest / sub) / 2**20:.1f} MiB")
    total = tree_bytes(dest)
    print(f"total {total / 2**20:.1f} MiB of the {CARRY_LIMIT / 2**20:.0f} MiB a device call carries (the working "
          "tree counts too)")
    return 0


def install_carried(carried: Path, work: Path) -> dict[str, list[str]]:
    """pip-install the carried wheels into work/site (liger-kernel into work/liger, so a contender can run without
    it); returns the extra import paths: base (every worker) and liger."""
    wheels = sorted((carried / "whl").glob("*.whl"))
    liger = [w for w in wheels if w.name.startswith("liger_kernel")]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--upgrade", "--target"]
    for target, group in ((work / "site", [w for w in wheels if w not in liger]), (work / "liger", liger)):
        if group:
            subprocess.run(pip + [str(target)] + [str(w) for w in group], check=True, capture_output=True, text=True)
    base = [str(work / "site")] + ([str(carried / "bnb")] if (carried / "bnb").exists() else [])
    return {"base": base, "liger": [str(work / "liger")] if liger else []}


def findable(module: str, paths: list[str]) -> bool:
    """Whether `module` imports with `paths` in front of this process's sys.path (without importing it)."""
    return PathFinder.find_spec(module, paths + sys.path) is not None
