"""The manifest: enough to reproduce a run (resolved config hash, data fingerprints, package versions, seed, the
exact command, the platform), written at start and updated at the end.

    write_manifest(folder, cfg, argv=sys.argv, fingerprints={"train": "..."}, extra={...})
    update_manifest(folder, steps=29, wall_s=205.1)
"""
from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata

from shipsft.config import RunConfig
from shipsft.runs.jsonio import read_json, write_json, write_text_atomic
from shipsft.runs.layout import RunFolder

PACKAGES = ("shipsft", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "datasets",
            "bitsandbytes", "liger-kernel")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(folder: RunFolder, cfg: RunConfig, *, argv: list[str] | None, fingerprints: dict[str, str],
                   extra: dict | None = None) -> None:
    """config.yaml (resolved) and manifest.json."""
    folder.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder.config, cfg.to_yaml())
    manifest = {
        "config_hash": cfg.config_hash(),
        "data_fingerprint": fingerprints,
        "seed": cfg.train.seed,
        "command": list(argv) if argv else None,
        "cwd": os.getcwd(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    write_json(folder.manifest, manifest)


def update_manifest(folder: RunFolder, **fields) -> None:
    manifest = read_json(folder.manifest)
    manifest.update(fields)
    write_json(folder.manifest, manifest)


def read_manifest(folder: RunFolder) -> dict:
    return read_json(folder.manifest) if folder.manifest.exists() else {}
