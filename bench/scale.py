"""Benchmark: larger than memory. `shipsft train` up to its first optimizer step (read + validate + render the data
into the on-disk store, the pre-flight audit, the model, one step) on N generated conversations, each N in a fresh
process with a fresh rendered-data cache, with the wall time and the peak resident memory of that process.

The cost must grow linearly with N and the peak RSS stay flat: the data streams through rendering into a store on
disk (data/store.py), the loop reads its steps from it, and the audit keeps a seeded sample of 100,000 examples in
memory (it reads every example for exact duplicates and eval contamination).

    python bench/scale.py --n 100000 --n 1000000          # writes bench/results/scale-<date>.txt
    python bench/scale.py --n 20000 --keep /tmp/scale      # keep the data and the run folders

Conversations are bench/audit.py's (1-2 user turns of 15-90 words, answers of 1-5 sentences, a system prompt in
30%), written one at a time, never held in memory. Stage times come from the run itself: `data:` is printed when
the split is prepared, `model:` after the audit and the model load; audit.json holds the audit's own time.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from audit import make_conversation  # noqa: E402 - bench/audit.py's generator, from this folder


def write_conversations(path: Path, n: int, seed: int = 1234) -> int:
    """N conversations as JSONL, generated and written one at a time; returns the file size in bytes."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps(make_conversation(rng, i)) + "\n")
    return path.stat().st_size


CHILD = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
stamps, hwm = {}, {}
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
for line in proc.stdout:
    sys.stdout.write(line)
    for key in ("data:", "model:"):
        if line.lstrip().startswith(key) and key not in stamps:
            stamps[key] = round(time.perf_counter() - t0, 1)
            status = open(f"/proc/{proc.pid}/status").read()  # the peak RSS so far (VmHWM) at this point of the run
            hwm[key] = round(int(status.split("VmHWM:")[1].split()[0]) / 1024)
code = proc.wait()
print("SCALE", json.dumps({"code": code, "wall_s": round(time.perf_counter() - t0, 1), "stamps": stamps,
                          "peak_rss_at_mb": hwm,
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))
"""


def run_one(n: int, root: Path, model: str) -> dict:
    """Generate N conversations, then `shipsft train CONFIG` to its first optimizer step, measured (module docstring)."""
    folder = root / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    size = write_conversations(folder / "train.jsonl", n)
    gen_s = time.perf_counter() - t
    config = folder / "config.yaml"
    config.write_text(f"model:\n  path: {model}\ndata:\n  train: train.jsonl\ntrain:\n  max_steps: 1\n"
                      f"output:\n  dir: {folder / 'runs'}\n  name: scale\n")
    # a fresh render cache per N (everything is read and rendered), sharing the model's converted GGUF folder
    (folder / "cache").mkdir(exist_ok=True)
    if not (folder / "cache" / "gguf").exists():
        (folder / "cache" / "gguf").symlink_to(root / "model-cache" / "gguf", target_is_directory=True)
    env = {**os.environ, "SHIPSFT_CACHE": str(folder / "cache"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    # one wrapper process per N: its RUSAGE_CHILDREN peak is this run's alone
    out = subprocess.run([sys.executable, "-c", CHILD, sys.executable, "-m", "shipsft", "train", str(config)],
                         env=env, capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("SCALE ")), None)
    if line is None or out.returncode:
        raise SystemExit(f"n={n}: the run failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    got = json.loads(line[len("SCALE "):])
    if got["code"]:
        raise SystemExit(f"n={n}: shipsft train exited {got['code']}:\n{out.stdout[-4000:]}")
    audit = json.loads((folder / "runs" / "scale" / "audit.json").read_text())
    metrics = [json.loads(x) for x in (folder / "runs" / "scale" / "metrics.jsonl").read_text().splitlines()
               if '"loss"' in x]
    return {"n": n, "jsonl_mb": round(size / 1e6), "generate_s": round(gen_s, 1), **got,
            "audit_s": audit["stats"]["timings"].get("total"), "sampled": any(
                f["check"] == "audit.sampled" for f in audit["findings"]),
            "tokens_step_1": metrics[0]["tokens"] if metrics else None, "cache_mb": round(sum(
                p.stat().st_size for p in (folder / "cache" / "prepared").rglob("*") if p.is_file()) / 1e6)}


def table(rows: list[dict]) -> str:
    head = ("| conversations | JSONL | prepared (`data:` printed) | audit | model loaded (`model:`) | step 1 done | "
            "peak RSS: prepared / audited + model / step 1 | store on disk |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        s, h = r["stamps"], r["peak_rss_at_mb"]
        lines.append(f"| {r['n']:,} | {r['jsonl_mb']} MB | {s.get('data:', '?')} s | {r['audit_s']} s"
                     f"{' (sampled)' if r['sampled'] else ''} | {s.get('model:', '?')} s | {r['wall_s']} s | "
                     f"{h.get('data:', '?')} / {h.get('model:', '?')} / {r['peak_rss_mb']:,} MB | {r['cache_mb']:,} MB |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        lines.append("")
        lines.append(f"x{b['n'] / a['n']:g} conversations: wall x{b['wall_s'] / a['wall_s']:.2f}, prepare "
                     f"x{b['stamps']['data:'] / a['stamps']['data:']:.2f}, peak RSS after the audit "
                     f"x{b['peak_rss_at_mb']['model:'] / a['peak_rss_at_mb']['model:']:.2f}, at the end "
                     f"x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="conversations (repeatable; default 100,000 and 1,000,000)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--keep", default=None, help="folder for the data, caches and runs (default: a temp folder)")
    ap.add_argument("--out", default=None, help="results file (default: bench/results/scale-<date>.txt)")
    args = ap.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="shipsft-scale-"))
    # the embedded model's GGUF is converted once, outside the measured runs (its dequantisation is not data work)
    subprocess.run([sys.executable, "-c", "import sys; from shipsft.config import ModelConfig; from shipsft.model."
                    f"locate import resolve_model_dir; resolve_model_dir(ModelConfig(path=sys.argv[1]))", args.model],
                   env={**os.environ, "SHIPSFT_CACHE": str(root / "model-cache")}, check=True)
    (root / "model-cache" / "gguf").mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.n or [100_000, 1_000_000]:
        rows.append(run_one(n, root, args.model))
        print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()
    text = (f"shipsft bench/scale.py, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs "
            f"({platform_cpu()}), load average at the end {load[0]:.1f}; model {args.model}\n\n{table(rows)}\n\n"
            + "\n".join(json.dumps(r) for r in rows) + "\n")
    out = Path(args.out or HERE / "results" / f"scale-{time.strftime('%Y-%m-%d')}.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")
    return 0


def platform_cpu() -> str:
    try:
        return next(x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
