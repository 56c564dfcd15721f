"""Benchmark: load + validate + render (chat template, masks) + pack N short conversations.

Target (foundation issue): 100,000 short conversations in under 60 s on the 2-core CI machine.

    python bench/prepare.py                 # 100,000 conversations, SmolLM2 tokenizer, max_length 2048
    python bench/prepare.py --n 20000 --max-length 1024
    python bench/prepare.py --json bench/results/prepare.json     # and write the results file (bench/machine.py)

Prints a table: time per stage, examples/s, tokens/s and packing efficiency.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

WORDS = ("alpha beta gamma delta river mountain quick brown fox jumps over lazy dog seven apples orange "
         "compute tensor model train data token value list reverse repeat answer question json field").split()


def make_dataset(path: Path, n: int, seed: int = 1234) -> None:
    """Deterministic short chat data: 1-3 turns, with and without a system message."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            msgs = []
            if rng.random() < 0.3:
                msgs.append({"role": "system", "content": "You are a concise assistant."})
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                q = " ".join(rng.choices(WORDS, k=rng.randint(5, 40)))
                a = " ".join(rng.choices(WORDS, k=rng.randint(3, 30)))
                msgs += [{"role": "user", "content": f"Question {i}: {q}?"}, {"role": "assistant", "content": a}]
            f.write(json.dumps({"messages": msgs}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--json", type=Path, help="write the results file here (machine, date, command, every stage)")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from shipsft.config import ModelConfig, RunConfig
    from shipsft.data.formats import load_examples
    from shipsft.data.pack import pack_examples
    from shipsft.data.render import load_renderer, render_examples
    from shipsft.model.locate import load_tokenizer

    tok = load_tokenizer(ModelConfig(path=args.model))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "train.jsonl"
        make_dataset(path, args.n)
        cfg = RunConfig.model_validate({"data": {"train": [str(path)], "max_length": args.max_length}})
        t0 = time.perf_counter()
        loaded = load_examples(cfg.data.train, cfg.data.format, cfg.data.on_invalid, None,
                               cfg.data.allow_any_role_order)
        t1 = time.perf_counter()
        r = load_renderer(tok, cfg.data)
        rendered = render_examples(r, loaded.examples)
        t2 = time.perf_counter()
        packed = pack_examples(rendered, cfg.data.max_length, cfg.data.packing)
        t3 = time.perf_counter()

    n_tok = sum(len(x.ids) for x in rendered)
    n_trained = sum(x.n_trained for x in rendered)
    total = t3 - t0
    table = Table(title=f"shipsft prepare: {args.n:,} conversations, {args.model} tokenizer, max_length "
                        f"{args.max_length}")
    for col in ("stage", "seconds", "per second"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    stages = {"load + validate (JSONL)": (t1 - t0, args.n, "examples"),
              "render + tokenise + mask": (t2 - t1, args.n, "examples"),
              "pack (best-fit decreasing)": (t3 - t2, len(rendered), "sequences")}
    for stage, (sec, n, what) in stages.items():
        table.add_row(stage, f"{sec:.2f}", f"{n / sec:,.0f} {what}")
    table.add_row("[bold]total", f"[bold]{total:.2f}", f"[bold]{args.n / total:,.0f} examples, "
                                                       f"{n_tok / total:,.0f} tokens")
    console = Console()
    console.print(table)
    console.print(f"{len(rendered):,} sequences, {n_tok:,} tokens ({n_trained:,} trained) -> "
                  f"{len(packed.rows):,} rows; "
                  f"packing efficiency {packed.efficiency:.2%}; target < 60 s: "
                  f"{'PASS' if total < 60 else 'FAIL'} ({total:.1f} s)")
    if args.json:
        machine.write(args.json, {
            "n": args.n, "model": args.model, "max_length": args.max_length,
            "stages": [{"stage": k, "seconds": sec, "per_second": n / sec, "of": what}
                       for k, (sec, n, what) in stages.items()],
            "total_seconds": total, "examples_per_second": args.n / total, "tokens_per_second": n_tok / total,
            "sequences": len(rendered), "tokens": n_tok, "trained_tokens": n_trained, "rows": len(packed.rows),
            "packing_efficiency": packed.efficiency})


if __name__ == "__main__":
    main()
