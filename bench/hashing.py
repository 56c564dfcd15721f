"""Benchmark: what sealing and checking a saved folder costs (runs/integrity.py: every file's size and sha256).

Writes a folder shaped like a checkpoint (four 256 MB "weight shards" of random bytes and a 512 MB "optimizer state",
1.5 GB in all), then times `digest` (what a save's seal and a check both do: read and sha256 every file, several
files at a time) right after the write, as a save meets it (the files still in the page cache), and sha256 of one
file on one thread for comparison. Prints MB/s and writes bench/results/hashing.json.

    python bench/hashing.py                  # 1.5 GB in a temporary folder
    python bench/hashing.py --mb 256 --dir /mnt/nvme/tmp
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from machine import stamp  # bench/machine.py
from shipsft.runs.integrity import digest, file_sha256


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=256, help="size of each weight shard (the optimizer file is twice it)")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "hashing.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "step-1"
        root.mkdir()
        sizes = {f"model-0000{i}-of-00004.safetensors": args.mb for i in range(1, 5)}
        sizes["shipsft_state/optimizer.pt"] = 2 * args.mb
        (root / "shipsft_state").mkdir()
        block = os.urandom(2**20)
        for name, mb in sizes.items():
            with open(root / name, "wb") as f:
                for _ in range(mb):
                    f.write(block)
        total = sum(sizes.values())
        t = time.perf_counter()
        digest(root)
        folder_s = time.perf_counter() - t
        t = time.perf_counter()
        file_sha256(root / "shipsft_state" / "optimizer.pt")
        one_s = time.perf_counter() - t
    result = {**stamp(), "folder_mb": total, "shard_mb": args.mb, "optimizer_mb": 2 * args.mb,
              "digest_s": round(folder_s, 2), "digest_mb_per_s": round(total / folder_s),
              "one_file_one_thread_mb_per_s": round(2 * args.mb / one_s),
              "load_average": os.getloadavg()[0]}
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
