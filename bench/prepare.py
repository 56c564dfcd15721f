"""Benchmark: load + validate + render (chat template, masks) + pack N short conversations.

Target (foundation issue): 100,000 short conversations in under 60 s on the 2-core CI machine.

    python bench/prepare.py                 # 100,000 conversations, SmolLM2 tokenizer, max_length 2048
    python bench/prepare.py --n 20000 --max-length 1024

Prints a table: time per stage, examples/s, tokens/s and packing efficiency.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

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
        loaded = load_examples(cfg.data.train, fmt=cfg.data.format)
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
    table.add_row("load + validate (JSONL)", f"{t1 - t0:.2f}", f"{args.n / (t1 - t0):,.0f} examples")
    table.add_row("render + tokenise + mask", f"{t2 - t1:.2f}", f"{args.n / (t2 - t1):,.0f} examples")
    table.add_row("pack (best-fit decreasing)", f"{t3 - t2:.2f}", f"{len(rendered) / (t3 - t2):,.0f} sequences")
    table.add_row("[bold]total", f"[bold]{total:.2f}", f"[bold]{args.n / total:,.0f} examples, "
                                                       f"{n_tok / total:,.0f} tokens")
    console = Console()
    console.print(table)
    console.print(f"{len(rendered):,} sequences, {n_tok:,} tokens ({n_trained:,} trained) -> {len(packed.rows):,} rows; "
                  f"packing efficiency {packed.efficiency:.2%}; target < 60 s: "
                  f"{'PASS' if total < 60 else 'FAIL'} ({total:.1f} s)")


if __name__ == "__main__":
    main()
