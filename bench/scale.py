"""Benchmark: larger than memory. `shipsft train` up to its first optimizer step (read + validate + render the data
into the on-disk store, the pre-flight audit, the model, one step) on N generated conversations, each N in a fresh
process with a fresh rendered-data cache, with the wall time and the peak resident memory of that process.

The cost must grow linearly with N and the peak RSS stay flat: the data streams through rendering into a store on
disk (data/store.py), the loop reads its steps from it, and the audit keeps a seeded sample of 100,000 examples in
memory (it reads every example for exact duplicates and eval contamination).

    python bench/scale.py --n 100000; python bench/scale.py --n 1000000   # each merged into bench/results/scale.json
    python bench/scale.py --n 20000 --keep /tmp/scale --out /tmp/scale.json  # keep the data and the run folders
    python bench/scale.py --table                                           # the markdown table of docs/scale.md

Conversations are bench/audit.py's (1-2 user turns of 15-90 words, answers of 1-5 sentences, a system prompt in
30%), written one at a time, never held in memory. Stage times (seconds from the process's start) come from the run's
own lines: `data:` is printed when the split is prepared, `audit:` when the audit is done, `model:` when the model is
loaded; the wall time ends with the process (step 1 taken and the adapter saved). The peak RSS (VmHWM) is read at each
of those lines and at the end; audit.json holds the audit's own stage timings. The results file records the CPU
(lscpu), the date, the command and the load average around each run (the machine may be shared).
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


MAX_LENGTH = 1024  # tokens: above the longest generated conversation (454 of SmolLM2's tokens in 20,000)
BATCH = 8  # conversations per optimizer step


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
    for key in ("data:", "audit:", "model:"):
        if line.lstrip().startswith(key) and key not in stamps:
            stamps[key] = round(time.perf_counter() - t0, 1)
            status = open(f"/proc/{proc.pid}/status").read()  # the peak RSS so far (VmHWM) at this point of the run
            hwm[key] = round(int(status.split("VmHWM:")[1].split()[0]) / 1024)
code = proc.wait()
print("SCALE", json.dumps({"code": code, "wall_s": round(time.perf_counter() - t0, 1), "stamps_s": stamps,
                          "peak_rss_mb_at": hwm,
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
    # the step is the same work at every N: a fixed batch and max_length (auto would size both from the data)
    config.write_text(f"model:\n  path: {model}\ndata:\n  train: train.jsonl\n  max_length: {MAX_LENGTH}\n"
                      f"train:\n  max_steps: 1\n  batch_size: {BATCH}\noutput:\n  dir: {folder / 'runs'}\n"
                      "  name: scale\n")
    # a fresh render cache per N (everything is read and rendered), sharing the model's converted GGUF folder
    (folder / "cache").mkdir(exist_ok=True)
    if not (folder / "cache" / "gguf").exists():
        (folder / "cache" / "gguf").symlink_to(root / "model-cache" / "gguf", target_is_directory=True)
    env = {**os.environ, "SHIPSFT_CACHE": str(folder / "cache"), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    # one wrapper process per N: its RUSAGE_CHILDREN peak is this run's alone
    out = subprocess.run([sys.executable, "-c", CHILD, sys.executable, "-m", "shipsft", "train", str(config)],
                         env=env, capture_output=True, text=True)
    (folder / "train.log").write_text(out.stdout + out.stderr)
    line = next((x for x in out.stdout.splitlines() if x.startswith("SCALE ")), None)
    if line is None or out.returncode:
        raise SystemExit(f"n={n}: the run failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    got = json.loads(line[len("SCALE "):])
    if got["code"]:
        raise SystemExit(f"n={n}: shipsft train exited {got['code']}:\n{out.stdout[-4000:]}")
    audit = json.loads((folder / "runs" / "scale" / "audit.json").read_text())
    metrics = [json.loads(x) for x in (folder / "runs" / "scale" / "metrics.jsonl").read_text().splitlines()
               if '"loss"' in x]
    store = folder / "cache" / "prepared"
    return {"n": n, "jsonl_mb": round(size / 1e6), "generate_s": round(gen_s, 1), **got,
            "audit_s": audit["stats"]["timings"].get("total"), "audit_timings_s": audit["stats"]["timings"],
            "sampled": any(f["check"] == "audit.sampled" for f in audit["findings"]),
            "tokens": int(audit["stats"]["lengths"]["total"]["sum"]),
            "tokens_step_1": metrics[0]["tokens"] if metrics else None,
            "store_mb": round(sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6)}


STAGES = (("data:", "prepared"), ("audit:", "audited"), ("model:", "model loaded"))


def table(results: dict) -> str:
    """The markdown table of a results file's runs (docs/scale.md holds it, with the file named under it)."""
    rows = sorted(results["runs"], key=lambda r: r["n"])
    head = ("| conversations | JSONL | tokens | prepared | audited | model loaded | step 1 done (wall) | "
            "peak RSS prepared / audited / model / end | store on disk |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        s, h = r["stamps_s"], r["peak_rss_mb_at"]
        lines.append(f"| {r['n']:,} | {r['jsonl_mb']:,} MB | {r['tokens'] / 1e6:,.1f} M | {s.get('data:', '?')} s | "
                     f"{s.get('audit:', '?')} s{' (sampled)' if r['sampled'] else ''} | {s.get('model:', '?')} s | "
                     f"{r['wall_s']} s | {h.get('data:', '?')} / {h.get('audit:', '?')} / {h.get('model:', '?')} / "
                     f"{r['peak_rss_mb']:,} MB | {r['store_mb']:,} MB |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        lines += ["", f"x{b['n'] / a['n']:g} conversations: wall x{b['wall_s'] / a['wall_s']:.2f}, prepared "
                      f"x{b['stamps_s']['data:'] / a['stamps_s']['data:']:.2f}, peak RSS at the end "
                      f"x{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}"]
    return "\n".join(lines)


def machine() -> dict:
    """The CPU as lscpu and /proc/cpuinfo name it: numbers from different CPUs are not comparable."""
    info = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "Model", "Hypervisor vendor", "CPU(s)"):
                info[key.strip()] = value.strip()
        flags = next(x for x in open("/proc/cpuinfo") if x.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    return {"cpu": info.get("Model name", "unknown"), "cpu_model_number": info.get("Model"),
            "hypervisor": info.get("Hypervisor vendor"), "cpus": os.cpu_count(),
            "bf16_amx_flags": [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags],
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def save(out: Path, row: dict, command: str, model: str) -> dict:
    """Merge one N's measurement into the results file (replacing an earlier one of the same N) and write it."""
    results = json.loads(out.read_text()) if out.exists() else {"runs": []}
    results.update({"bench": "bench/scale.py", "model": model, "machine": machine(),
                    "note": "each N in its own process, a fresh render cache; the machine is shared, so the load "
                            "average before and after each run is recorded with it"})
    results["runs"] = [r for r in results["runs"] if r["n"] != row["n"]] + [dict(row, command=command)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="conversations (repeatable; default 100,000 and 1,000,000)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--keep", default=None, help="folder for the data, caches and runs (default: a temp folder)")
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"), help="results file (merged by N)")
    ap.add_argument("--table", action="store_true", help="print the results file's markdown table and stop")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.table:
        print(table(json.loads(out.read_text())))
        return 0
    root = Path(args.keep or tempfile.mkdtemp(prefix="shipsft-scale-"))
    # the embedded model's GGUF is converted once, outside the measured runs (its dequantisation is not data work)
    subprocess.run([sys.executable, "-c", "import sys; from shipsft.config import ModelConfig; from shipsft.model."
                    f"locate import resolve_model_dir; resolve_model_dir(ModelConfig(path=sys.argv[1]))", args.model],
                   env={**os.environ, "SHIPSFT_CACHE": str(root / "model-cache")}, check=True)
    (root / "model-cache" / "gguf").mkdir(parents=True, exist_ok=True)
    command = "python bench/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for n in args.n or [100_000, 1_000_000]:
        load_before = os.getloadavg()[0]
        row = run_one(n, root, args.model)
        row.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_before=round(load_before, 1),
                   load_after=round(os.getloadavg()[0], 1))
        results = save(out, row, command, args.model)  # written as it goes: a later N that fails keeps this one
        print(json.dumps(row), flush=True)
    print(table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
