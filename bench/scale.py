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
from machine import cpuinfo, stamp  # noqa: E402 - bench/machine.py: what every results file records


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
    """Generate N conversations, then `shipsft train CONFIG` to its first optimizer step, measured (module
    docstring)."""
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
    """The markdown table of a results file's runs (docs/scale.md holds it, with the file named on the next line)."""
    mb = lambda v: f"{v:,}" if isinstance(v, int) else "?"  # noqa: E731
    lines = ["| conversations | JSONL | tokens | prepared | audited | model loaded | step 1 done (wall) | "
             "peak RSS: prepared / audited / model / end | store on disk |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results["runs"], key=lambda r: r["n"]):
        s, h = r["stamps_s"], r["peak_rss_mb_at"]
        lines.append(f"| {r['n']:,} | {r['jsonl_mb']:,} MB | {r['tokens']:,} | {s.get('data:', '?')} s | "
                     f"{s.get('audit:', '?')} s{' (sampled)' if r['sampled'] else ''} | {s.get('model:', '?')} s | "
                     f"{r['wall_s']} s | {mb(h.get('data:'))} / {mb(h.get('audit:'))} / {mb(h.get('model:'))} / "
                     f"{mb(r['peak_rss_mb'])} MB | {r['store_mb']:,} MB |")
    return "\n".join(lines)


def hypervisor() -> str | None:
    """lscpu's hypervisor vendor (KVM, ...), None on bare metal."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return next((x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Hypervisor vendor")), None)


def comparison(runs: list[dict]) -> dict:
    """The largest N against the smallest: how time and peak RSS grew, per conversation (what docs/scale.md quotes)."""
    a, b = (sorted(runs, key=lambda r: r["n"])[k] for k in (0, -1))
    extra = b["n"] - a["n"]
    return {
        "n": [a["n"], b["n"]], "n_ratio": round(b["n"] / a["n"], 2),
        "prepared_ratio": round(b["stamps_s"]["data:"] / a["stamps_s"]["data:"], 2),
        "wall_ratio": round(b["wall_s"] / a["wall_s"], 2),
        "prepared_ms_per_conversation": [round(1000 * r["stamps_s"]["data:"] / r["n"], 2) for r in (a, b)],
        "rss_ratio": {k: round(b["peak_rss_mb_at"][k] / a["peak_rss_mb_at"][k], 2) for k in ("data:", "audit:")}
        | {"end": round(b["peak_rss_mb"] / a["peak_rss_mb"], 2)},
        # what each further conversation added to the peak RSS (the store's per-sequence index and the audit's
        # hashes: data/store.py, audit/full.py), in bytes
        "rss_bytes_per_extra_conversation": {
            k: round((b["peak_rss_mb_at"][k] - a["peak_rss_mb_at"][k]) * 2**20 / extra) for k in ("data:", "audit:")},
    }


def save(out: Path, row: dict, command: str, model: str) -> dict:
    """Merge one N's measurement into the results file (replacing an earlier one of the same N) and write it, with
    the machine (bench/machine.py, the CPU model number and the hypervisor) and the date of the newest run."""
    results = json.loads(out.read_text()) if out.exists() else {"runs": []}
    runs = sorted([r for r in results["runs"] if r["n"] != row["n"]] + [dict(row, command=command)],
                  key=lambda r: r["n"])
    results = {**stamp(), "cpu_model": cpuinfo().get("model"), "hypervisor": hypervisor(), "bench": "bench/scale.py",
               "model": model, "note": "each N in its own process with a fresh render cache; stage times are seconds "
               "from the process's start; the machine is shared, so each run records the load average before and "
               "after it", "runs": runs}
    results["date"] = max(r["date"] for r in runs)
    if len(runs) >= 2:
        results["comparison"] = comparison(runs)
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
        row.update(date=stamp()["date"], load_before=round(load_before, 1),
                   load_after=round(os.getloadavg()[0], 1))
        results = save(out, row, command, args.model)  # written as it goes: a later N that fails keeps this one
        print(json.dumps(row), flush=True)
    print(table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
