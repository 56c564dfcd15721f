"""The run folder: enough to reproduce a run (DESIGN invariant 6), and atomic saves of what it trained.

    runs/<name>/
      config.yaml          the resolved config (every default filled in)
      manifest.json        config hash, data fingerprints, package versions, seed, the exact command, audit skip
      audit.json           the pre-flight audit (written by shipsft.data.audit)
      metrics.jsonl        one line per logged step / eval
      adapter/ or model/   the trained adapter (peft format) or full weights (safetensors) + tokenizer + template
      checkpoints/step-N/  saved before each full eval, when eval suites are configured

A save goes to `<dir>.tmp` first and is renamed into place, so a crash mid-save never leaves a half-written folder
that looks complete.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

from shipsft.config import RunConfig

PACKAGES = ("shipsft", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "datasets",
            "bitsandbytes", "liger-kernel")


def run_dir_for(cfg: RunConfig, config_path: str | Path | None) -> Path:
    stem = Path(config_path).stem if config_path else "run"
    if stem == "config" and config_path:  # examples/quickstart/config.yaml -> "quickstart"
        stem = Path(config_path).resolve().parent.name
    name = cfg.output.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.output.dir) / name


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_files(run_dir: Path, cfg: RunConfig, *, argv: list[str] | None, fingerprints: dict[str, str],
                    skip_audit: bool, model_dir: Path, extra: dict | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    manifest = {
        "config_hash": cfg.config_hash(),
        "data_fingerprint": fingerprints,
        "seed": cfg.train.seed,
        "command": list(argv) if argv else None,
        "cwd": os.getcwd(),
        "skip_audit": skip_audit,
        "model_dir": str(model_dir),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def update_manifest(run_dir: Path, **fields) -> None:
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    path.write_text(json.dumps(manifest, indent=2))


def save_atomic(save_fn, out_dir: Path) -> Path:
    """Call `save_fn(tmp_dir)`, then move tmp_dir to out_dir (replacing an older save)."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_fn(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
