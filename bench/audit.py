"""Benchmark: audit 100,000 conversations and print the time of every stage and check.

Generates a deterministic data set (seeded; ~20% two-turn conversations, 1% exact duplicates, 1% near-duplicates,
an eval suite of 1,000 with 50 leaked from training), then runs exactly what `shipsft audit CONFIG` runs: load the
tokenizer, read + render the data (`prepare_for_audit`), every check, and write audit.json + audit.html. It audits
twice: cold (a fresh rendered-data cache: everything is tokenised) and warm (the cache the first pass wrote, as
`shipsft train` finds it after `shipsft audit`). Target (issue 4): under 2 minutes on a 2-core machine.

    python bench/audit.py                       # 100k conversations, embedded SmolLM2 tokenizer
    python bench/audit.py --n 20000 --out /tmp/audit-bench
    python bench/audit.py --json bench/results/audit.json      # and write the results file (bench/machine.py)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact be have do say get make go know take see come think look "
         "want give use find tell ask seem feel try leave call good new first last long great little own other old "
         "right big high different small large next early young important few public bad same able model data "
         "train token layer weight loss batch learning rate epoch gradient value function python code error file "
         "system user server query answer result table column row index search cache memory disk network").split()


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def make_conversation(rng: random.Random, i: int) -> dict:
    msgs = []
    if rng.random() < 0.3:
        msgs.append({"role": "system", "content": "You are a concise assistant for team " + str(i % 50) + "."})
    for _ in range(2 if rng.random() < 0.2 else 1):
        msgs.append({"role": "user", "content": f"Request {i}: " + _sentence(rng, 15, 90)})
        msgs.append({"role": "assistant", "content": " ".join(_sentence(rng, 8, 30) for _ in range(rng.randint(1, 5)))})
    return {"messages": msgs, "id": f"ex-{i}"}


def generate(folder: Path, n: int, seed: int = 1234) -> Path:
    rng = random.Random(seed)
    rows = [make_conversation(rng, i) for i in range(n)]
    for k in range(n // 100):  # 1% exact duplicates
        rows[rng.randrange(n)] = dict(rows[k], id=f"dup-{k}")
    for k in range(n // 100):  # 1% near-duplicates: one word of the answer changed
        src = json.loads(json.dumps(rows[n // 2 + k]))
        words = src["messages"][-1]["content"].split()
        words[len(words) // 2] = "changed"
        src["messages"][-1]["content"] = " ".join(words)
        src["id"] = f"near-{k}"
        rows[rng.randrange(n)] = src
    train = folder / "train.jsonl"
    with open(train, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(folder / "suite.jsonl", "w") as f:
        for k in range(1000):
            r = rows[rng.randrange(n)] if k < 50 else make_conversation(rng, n + k)  # 50 leaked
            f.write(json.dumps({"messages": r["messages"][-2:], "id": f"eval-{k}"}) + "\n")
    (folder / "config.yaml").write_text(
        "data:\n  train: train.jsonl\n  max_length: 1024\n"
        "eval:\n  suites:\n    - name: bench\n      data: suite.jsonl\n")
    return folder / "config.yaml"


def audit_once(cfg, tok, out: Path) -> tuple[dict[str, tuple[float, float]], object, object]:
    """One audit as `shipsft audit` runs it: {stage: (wall s, CPU s)}, the result, the prepared split."""
    from shipsft.audit.run import run_audit
    from shipsft.data.pipeline import prepare
    from shipsft.train.run import write_audit

    times: dict[str, tuple[float, float]] = {}

    def timed(name, fn):
        w, c = time.perf_counter(), time.process_time()
        out_ = fn()
        times[name] = (time.perf_counter() - w, time.process_time() - c)
        return out_

    prepared = timed("read + render + pack (prepare, strict=False)",
                     lambda: prepare(cfg.data, tok, "train", strict=False, rejects_path=None))
    result = timed("all checks (run_audit)", lambda: run_audit(cfg, tok, prepared))
    timed("write audit.json + audit.html", lambda: write_audit(result, out))
    return times, result, prepared


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", default=None, help="folder for the data and the audit (default: a temp folder)")
    ap.add_argument("--json", type=Path, help="write the results file here (machine, date, command, every stage)")
    args = ap.parse_args(argv)

    from rich.console import Console

    from shipsft.cli.views import show_audit
    from shipsft.config import load_config
    from shipsft.model.locate import load_tokenizer

    folder = Path(args.out or tempfile.mkdtemp(prefix="shipsft-audit-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    config = generate(folder, args.n)
    t_gen = time.perf_counter() - t0
    cfg = load_config(config, [f"model.path={args.model}"])

    w, c = time.perf_counter(), time.process_time()
    tok = load_tokenizer(cfg.model)
    t_tok = (time.perf_counter() - w, time.process_time() - c)
    # A fresh rendered-data cache: the first audit renders everything (cold, what a new data set costs), the second
    # reads the cache that the first one wrote (warm: what `shipsft train` after `shipsft audit` costs).
    os.environ["SHIPSFT_CACHE"] = tempfile.mkdtemp(prefix="shipsft-audit-bench-cache-")
    cold, result, prepared = audit_once(cfg, tok, folder / "audit")
    warm, _, _ = audit_once(cfg, tok, folder / "audit-warm")

    show_audit(result, Console(width=120))
    print(f"\n{args.n:,} conversations ({sum(len(r.ids) for r in prepared.rendered):,} tokens); data generated in "
          f"{t_gen:.1f} s (not counted); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| stage | cold wall s | cold CPU s | warm wall s |\n|---|---|---|---|")
    print(f"| load tokenizer | {t_tok[0]:.2f} | {t_tok[1]:.2f} | (same) |")
    for name in cold:
        print(f"| {name} | {cold[name][0]:.2f} | {cold[name][1]:.2f} | {warm[name][0]:.2f} |")
    for name, sec in result.stats["timings"].items():
        if name != "total":
            print(f"| &nbsp; check: {name} | {sec:.2f} | | |")
    total_cold = t_tok[0] + sum(v[0] for v in cold.values())
    total_warm = t_tok[0] + sum(v[0] for v in warm.values())
    print(f"| **total** | **{total_cold:.2f}** | | **{total_warm:.2f}** |")
    verdict = "PASS" if total_cold < 120 else "FAIL"
    if args.json:
        machine.write(args.json, {
            "n": args.n, "model": args.model, "tokens": sum(len(r.ids) for r in prepared.rendered),
            "tokenizer_seconds": t_tok[0],
            "stages": [{"stage": k, "cold_wall_s": cold[k][0], "cold_cpu_s": cold[k][1], "warm_wall_s": warm[k][0]}
                       for k in cold],
            "checks_seconds": {k: v for k, v in result.stats["timings"].items() if k != "total"},
            "total_cold_s": total_cold, "total_warm_s": total_warm, "target_s": 120, "verdict": verdict})
    print(f"\ntarget < 120 s (cold): {verdict}; report: {folder / 'audit' / 'audit.html'}")
    return 0 if total_cold < 120 else 1


if __name__ == "__main__":
    sys.exit(main())
