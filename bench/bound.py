"""How close shipsft's training step is to this machine's matmul bound: FLOPs counted, not estimated.

    python bench/bound.py              # short set of bench/train_vs_trl.py (about 3 minutes on 2 cores)
    python bench/bound.py --sets short long
    python bench/bound.py --json bench/results/bound.json     # and write the results file (bench/machine.py)
    python bench/bound.py --profile    # ... and one epoch at precision auto under torch.profiler: time by op

1. The machine's fp32 GEMM rate: torch matmuls (the BLAS both shipsft and TRL call) at the shapes of a
   SmolLM2-135M step on 1,024 and 4,096 tokens, and large square ones; best of 5 each. The best of them is the
   bound a training step could reach if it were nothing but its matmuls at their best shape.
2. shipsft's epoch on the set (`shipsft.train.loop.fit`, the same config as bench/train_vs_trl.py's shipsft row)
   once under `torch.utils.flop_counter.FlopCounterMode` (counts every matmul and attention FLOP the step runs:
   forward, backward, LoRA, LM head on trained positions), then timed twice without it.
3. Achieved GFLOP/s = counted FLOPs / the faster timed epoch; its share of the bound; and the ceiling: the
   processed tokens/s shipsft would reach at 100% of the bound with the same FLOPs per token.

The ceiling answers "how much faster can this step get on this machine without doing less arithmetic": a target
above it (e.g. a multiple of another tool's speed) needs fewer FLOPs per trained token, not a faster kernel.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from train_vs_trl import SETS, _rendered, cpu_name, data  # noqa: E402


def gemm_rates() -> dict[str, float]:
    """GFLOP/s of fp32 torch matmuls, best of 5, per shape (tokens x in @ in x out)."""
    import torch

    shapes = {f"{t} tok {k}x{n}": (t, k, n) for t in (1024, 4096)
              for k, n in ((576, 576), (576, 1536), (1536, 576), (576, 49152))}
    shapes.update({"square 2048": (2048, 2048, 2048), "square 4096": (4096, 4096, 4096)})
    out = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * m * k * n / best / 1e9
    return out


def shipsft_epoch(set_name: str, count: bool, precision: str = "fp32", within=None) -> tuple[float, float, int]:
    """(seconds, counted FLOPs or 0, processed tokens) of one epoch of shipsft on the set, run inside `within`
    (a context manager, e.g. a torch.profiler.profile) when given."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from shipsft.config import ModelConfig, RunConfig
    from shipsft.model.load import load_for_training
    from shipsft.model.locate import load_tokenizer
    from shipsft.model.precision import autocast_dtype
    from shipsft.runs.layout import RunFolder
    from shipsft.train.loop import fit
    from shipsft.train.run import assemble

    s = SETS[set_name]
    cfg = RunConfig.model_validate({"data": {"max_length": s["max_length"]},
                                    "method": {"lora": {"r": 16, "alpha": 32}},
                                    "optim": {"lr": 2e-4, "schedule": "constant", "warmup_steps": 0},
                                    "train": {"batch_size": s["batch"], "epochs": 1, "precision": precision}})
    tok = load_tokenizer(ModelConfig(path="smollm2"))
    train, _ = data(set_name)
    examples = _rendered(tok, train)
    amp = autocast_dtype(cfg.train.precision, torch.device("cpu"))
    model, _ = load_for_training(cfg.model, cfg.method, False, torch.device("cpu"), amp)
    with tempfile.TemporaryDirectory() as d:
        setup = assemble(cfg, model, tok, examples, None, RunFolder(Path(d)))
        counter = FlopCounterMode(display=False) if count else None
        t0 = time.perf_counter()
        with counter if counter is not None else contextlib.nullcontext(), \
                within if within is not None else contextlib.nullcontext():
            fit(setup)
        seconds = time.perf_counter() - t0
        setup.run.close()
    flops = counter.get_total_flops() if counter is not None else 0
    return seconds, flops, sum(len(x.ids) for x in examples)


def top_ops(prof, n: int = 15) -> list[dict]:
    """The profile's operators by self CPU time: name, calls, seconds and share of the epoch's self time (every op's
    own time, children excluded, so the shares add up to 1 over all ops)."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6,
             "share": e.self_cpu_time_total / total} for e in events[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=["short"], choices=list(SETS))
    ap.add_argument("--json", type=Path, help="write the results file here (machine, date, command, every row)")
    ap.add_argument("--profile", action="store_true", help=(
        "also profile one epoch at precision auto (bf16 where it is native) and print where its time goes"))
    a = ap.parse_args()
    import torch

    print(f"CPU: {cpu_name()} ({os.cpu_count()} threads, {torch.get_num_threads()} torch threads); torch "
          f"{torch.__version__}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    rates = gemm_rates()
    print("| GEMM (fp32) | GFLOP/s |\n|---|---|")
    for name, r in rates.items():
        print(f"| {name} | {r:.1f} |")
    bound = max(rates.values())
    print(f"bound: {bound:.1f} GFLOP/s (the best shape above)\n", flush=True)
    print("| set | processed tokens | counted GFLOP | FLOP per processed token | seconds (best of 2) | achieved "
          "GFLOP/s | share of bound | processed tok/s | ceiling tok/s at 100% | headroom |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for set_name in a.sets:
        _, flops, tokens = shipsft_epoch(set_name, count=True)
        seconds = min(shipsft_epoch(set_name, count=False)[0] for _ in range(2))
        achieved = flops / seconds / 1e9
        rows.append({"set": set_name, "processed_tokens": tokens, "flops": flops, "flop_per_token_millions":
                     flops / tokens / 1e6, "seconds": seconds, "achieved_gflop_s": achieved, "share_of_bound":
                     achieved / bound, "processed_tok_s": tokens / seconds, "ceiling_tok_s":
                     tokens / (flops / (bound * 1e9)), "headroom": bound / achieved})
        print(f"| {set_name} | {tokens:,} | {flops / 1e9:,.0f} | {flops / tokens / 1e6:,.0f} M | {seconds:.1f} | "
              f"{achieved:.1f} | {achieved / bound:.0%} | {tokens / seconds:.0f} | "
              f"{tokens / (flops / (bound * 1e9)):.0f} | {bound / achieved:.2f}x |", flush=True)
    profiles = {}
    for set_name in a.sets if a.profile else []:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        seconds = shipsft_epoch(set_name, count=False, precision="auto", within=prof)[0]
        ops = top_ops(prof)
        profiles[set_name] = {"precision": "auto", "seconds_profiled": seconds, "top_ops": ops}
        print(f"\n{set_name}, precision auto, one epoch under torch.profiler ({seconds:.1f} s): self CPU time by op\n")
        print("| op | calls | self s | share |\n|---|---|---|---|")
        for o in ops:
            print(f"| {o['op']} | {o['calls']:,} | {o['self_s']:.2f} | {o['share']:.1%} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if a.json:
        import torch

        machine.write(a.json, {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                              "gemm_gflop_s": rates, "bound_gflop_s": bound, "sets": rows, "profiles": profiles})


if __name__ == "__main__":
    main()
