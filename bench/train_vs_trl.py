"""TRL's SFTTrainer vs shipsft, side by side: same model, data, LoRA and trained tokens, one epoch each; an ablation
of shipsft's optimisations; two data shapes; the machine's matmul bound and the share of it each contender reaches.

    python bench/train_vs_trl.py                       # the whole table (about 40 minutes on a 2-core CPU)
    python bench/train_vs_trl.py --sets short --only trl-padfree shipsft     # a quick pair
    python bench/train_vs_trl.py --sets short --json bench/results/train_vs_trl.json   # and write the results file

Every contender runs in its own subprocess (peak RSS is that contender's alone, from getrusage in the child),
one after the other. Run it on a quiet machine: it prints the load average before and after.

Data sets (deterministic: "repeat the last K listed words in reverse", as in the quickstart's spirit)
  short  48 conversations of ~60-200 tokens, 16 held out; 6 optimizer steps of ~8 conversations each
  long   8 conversations of 1-1.7k tokens (1,000-1,600 listed words), 4 held out; 4 steps of ~2 conversations

Contenders
  trl-defaults  SFTTrainer as a new user runs it: SFTConfig defaults (batch 8, padded, gradient checkpointing on,
                bf16 "mixed precision", which TRL turns on even where the CPU has no native bf16, lr 2e-5, linear
                decay), the same LoRA; glibc malloc. Short set only, and its first 2 of 6 steps only: with bf16
                emulated it needs about 4 minutes per step here; its throughput is taken over those steps.
  trl-padfree   TRL's fastest setting found on a CPU, candidate 1: padding_free (the batch flattened into one row,
                TRL's recommendation), fp32 where bf16 is emulated (bf16 autocast where it is native), no gradient
                checkpointing, lr 2e-4 constant, tcmalloc (LD_PRELOAD, the allocator shipsft uses).
  trl-grouped   candidate 2: the same, but padded batches grouped by length (train_sampling_strategy=
                group_by_length) instead of padding_free: attention per example instead of over a flattened row.
                "TRL best" in the summary is whichever of the two was faster in this run.
  shipsft       `shipsft.train.loop.fit` with its defaults: packing, per-document attention, logits only at trained
                positions (chunked CE), precision auto, tcmalloc; TRL's examples per step (8 short, 2 long) packed
                into rows of 512 (short) or 4,096 tokens (long), lr 2e-4 constant.
  ablations     shipsft with one optimisation taken away: `-per-doc` (attention: one masked SDPA pass per row, as on
                main), `-tcmalloc` (glibc malloc), `-bf16-frozen` (LoRA's frozen base weights kept fp32 and re-cast
                to bf16 by autocast on every forward, as `shipsft train` did before it stored them in bf16 once; the
                same as shipsft where bf16 is not native), `-fp32-short` (every attention bucket in bf16, also
                those of at most model/attention.py's FP32_WIDTH tokens that shipsft computes in fp32 on the CPU
                under bf16); or one lever added: `+compile` (train.compile: the decoder under torch.compile, the
                per-document attention eager), its warm pace (the second half of its steps) against shipsft's and its
                compile time (the seconds its first half took beyond that pace, less shipsft's own warm-up).

Trained tokens/s counts the answer tokens shipsft trains (identical for every row: it is 1 / wall time of the
epoch). TRL is given conversational prompt/completion data, so it trains the completion only (its default for that
format), like shipsft's all_assistant mask. Held-out loss is the loss per trained token after the epoch, computed
for every contender by the same function (shipsft.train.loop.eval_loss) on the same held-out conversations.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from machine import cpu_name  # noqa: E402,F401  (bound.py and gpu/workers.py take it from here)

WORDS = ("apple river stone cloud maple orbit pixel tiger lemon violet cobalt amber falcon harbor meadow nickel "
         "oyster quartz saddle timber walnut zephyr canyon delta ember fjord glacier hollow island jungle").split()
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
TCMALLOC = ["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4"]
# data set -> train conversations, held-out, list length range, K range, shipsft row length, and the examples per
# optimizer step both tools use (TRL's per-device batch = shipsft's train.batch_size): the same optimizer steps
SETS = {"short": dict(n=48, held=16, words=(8, 60), k=(2, 30), max_length=512, batch=8),
        "long": dict(n=8, held=4, words=(1000, 1600), k=(20, 80), max_length=4096, batch=2)}
CONTENDERS = ["trl-defaults", "trl-padfree", "trl-grouped", "shipsft", "shipsft-per-doc", "shipsft-tcmalloc",
              "shipsft-bf16-frozen", "shipsft-fp32-short", "shipsft+compile"]


def conversations(n: int, seed: int, words=(8, 60), k=(2, 30)) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        listed = [rng.choice(WORDS) for _ in range(rng.randint(*words))]
        kk = rng.randint(k[0], min(k[1], len(listed)))
        out.append([{"role": "user", "content": f"Here is a list: {' '.join(listed)}. Repeat the last {kk} words "
                     "in reverse order."},
                    {"role": "assistant", "content": " ".join(reversed(listed[-kk:]))}])
    return out


def data(set_name: str) -> tuple[list, list]:
    s = SETS[set_name]
    n, held = (4, 2) if os.environ.get("BENCH_SMOKE") else (s["n"], s["held"])  # BENCH_SMOKE=1: does it run?
    return (conversations(n, 1234, s["words"], s["k"]), conversations(held, 99, s["words"], s["k"]))


def tcmalloc() -> str | None:
    return next((p for p in TCMALLOC if Path(p).exists()), None)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB on Linux


def native_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# ------------------------------------------------------------------------------------------------------------------
# workers (run in a subprocess each)


def _rendered(tok, convs):
    from shipsft.data.render import render_conversation

    return [r for c in convs for r in render_conversation(tok, c)]


def _shipsft_rows(tok, convs, max_length: int):
    from shipsft.data.pack import pack_examples

    return pack_examples(_rendered(tok, convs), max_length, True).rows


def run_shipsft(name: str, set_name: str, tok, train, eval_rows):
    import torch

    from shipsft.config import RunConfig
    from shipsft.model.load import load_for_training
    from shipsft.model.precision import autocast_dtype
    from shipsft.runs.layout import RunFolder
    from shipsft.train.loop import fit
    from shipsft.train.run import assemble

    s = SETS[set_name]
    raw = {"data": {"max_length": s["max_length"]}, "method": {"lora": {"r": 16, "alpha": 32}},
           "optim": {"lr": 2e-4, "schedule": "constant", "warmup_steps": 0},
           "train": {"batch_size": s["batch"], "epochs": 1}}
    if name == "shipsft-per-doc":
        raw["model"] = {"attn_implementation": "sdpa"}
    if name == "shipsft+compile":
        raw["train"]["compile"] = True
    cfg = RunConfig.model_validate(raw)
    amp = autocast_dtype(cfg.train.precision, torch.device("cpu"))
    if name == "shipsft-fp32-short":
        from shipsft.model import attention

        attention.FP32_WIDTH = 0  # this worker process only: no bucket is narrow enough
    stored = None if name == "shipsft-bf16-frozen" else amp  # autocast stays on either way
    model, _ = load_for_training(cfg.model, cfg.method, False, torch.device("cpu"), stored)
    examples = _rendered(tok, train)
    with tempfile.TemporaryDirectory() as d:
        setup = assemble(cfg, model, tok, examples, None, RunFolder(Path(d)))
        t0 = time.perf_counter()
        res = fit(setup)
        seconds = time.perf_counter() - t0
        setup.run.close()
    slots = sum(h["tokens"] / (1 - h["padding_share"]) for h in res.history)
    real = sum(len(x.ids) for x in examples)
    return dict(seconds=seconds, steps=res.steps, real_tokens=real, padding_share=1 - real / slots,
                first_loss=res.history[0]["loss"], last_loss=res.history[-1]["loss"], amp=amp, model=model,
                **warm_rate(res.history))


def warm_rate(history: list[dict]) -> dict:
    """Each step's seconds (from the records' running trained_tok_s), the processed tok/s of the second half of the
    steps (warm: compiled graphs built, caches filled), and the seconds the steps took beyond that warm pace: the
    warm-up, torch.compile's compile time for the compiled row."""
    step_s = machine.step_times(history)
    half = len(history) // 2
    warm_s = sum(step_s[half:]) / max(1, len(step_s) - half)
    warm_tok_s = sum(h["tokens"] for h in history[half:]) / sum(step_s[half:])
    return {"step_s": step_s, "warm_step_s": warm_s, "warm_processed_tok_s": warm_tok_s,
            "warmup_s": sum(max(0.0, t - warm_s) for t in step_s[:half])}


def run_trl(name: str, set_name: str, tok, train):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from shipsft.config import ModelConfig
    from shipsft.model.locate import resolve_model_dir

    s = SETS[set_name]
    amp = torch.bfloat16 if native_bf16() else None
    ds = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in train])
    args = dict(output_dir=tempfile.mkdtemp(), report_to="none", save_strategy="no", num_train_epochs=1,
                use_cpu=True, logging_steps=1, seed=0, per_device_train_batch_size=s["batch"])
    if name == "trl-defaults":
        args.update(max_steps=2)
    else:
        args.update(gradient_checkpointing=False, bf16=amp is not None, learning_rate=2e-4,
                    lr_scheduler_type="constant", max_length=None)
        if name == "trl-padfree":
            args.update(padding_free=True)
        else:
            args.update(train_sampling_strategy="group_by_length")
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(ModelConfig(path="smollm2")), dtype=torch.float32,
                                                 attn_implementation="sdpa")
    seen = {"real": 0, "slots": 0}

    def count(module, args_, kwargs):  # tokens the model actually processes per forward
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        seen["slots"] += ids.numel()
        seen["real"] += int(mask.sum()) if mask is not None else ids.numel()

    model.register_forward_pre_hook(count, with_kwargs=True)
    trainer = SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"))
    if name == "trl-defaults":
        amp = torch.bfloat16 if trainer.args.bf16 else None  # what TRL actually runs, native or emulated
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return dict(seconds=seconds, steps=trainer.state.global_step, real_tokens=seen["real"],
                padding_share=1 - seen["real"] / seen["slots"], first_loss=losses[0], last_loss=losses[-1], amp=amp,
                model=trainer.model)


def worker(name: str, set_name: str, out: Path) -> None:
    import torch

    from shipsft.config import ModelConfig
    from shipsft.model.locate import load_tokenizer
    from shipsft.train.loop import eval_loss

    tok = load_tokenizer(ModelConfig(path="smollm2"))
    train, held_out = data(set_name)
    eval_rows = _shipsft_rows(tok, held_out, SETS[set_name]["max_length"])
    trained_tokens = sum(r.n_trained for r in _shipsft_rows(tok, train, SETS[set_name]["max_length"]))
    r = run_shipsft(name, set_name, tok, train, eval_rows) if name.startswith("shipsft") else \
        run_trl(name, set_name, tok, train)
    model, amp = r.pop("model"), r.pop("amp")
    held = eval_loss(model, eval_rows, tok.pad_token_id, SETS[set_name]["max_length"], amp)
    epoch_real = sum(len(r_.ids) for r_ in _shipsft_rows(tok, train, SETS[set_name]["max_length"]))
    # trained tokens this run covered: the whole epoch, or its share when a contender ran fewer steps (defaults)
    trained_tokens = trained_tokens * min(1.0, r["real_tokens"] / epoch_real)
    r.update(name=name, set=set_name, trained_tokens=trained_tokens, eval_loss=held, peak_rss_gb=peak_rss_gb(),
             precision=str(amp or "fp32").replace("torch.", ""),
             tcmalloc="tcmalloc" in os.environ.get("LD_PRELOAD", ""), threads=torch.get_num_threads())
    out.write_text(json.dumps(r))


# ------------------------------------------------------------------------------------------------------------------
# the machine's matmul bound


def matmul_rate(dtype_name: str) -> float:
    """GFLOP/s of torch matmuls at SmolLM2-135M's per-layer training shapes (q/o, k/v, gate/up, down) on
    1024-token blocks, weighted by how often each runs (the LM head's shape is left out: in emulated bf16 it alone
    takes a minute to probe). Best of 3 per shape."""
    import torch

    dtype = getattr(torch, dtype_name)
    shapes = {(576, 576): 2, (576, 192): 2, (576, 1536): 2, (1536, 576): 1}  # per layer
    flops = seconds = 0.0
    for (k, n), count in shapes.items():
        a, b = torch.randn(1024, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(3))
        flops += 2 * 1024 * k * n * count
        seconds += best * count
    return flops / seconds / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def bound_tok_s(gflops: float) -> float:
    """Processed tokens/s if only LoRA training's matmuls ran at `gflops`: forward + activation gradients of the
    frozen linears (2 x 2 x 106.2M FLOP per token) and the LM head on every token (2 x 2 x 28.3M)."""
    return gflops * 1e9 / (4 * (106.2e6 + 28.3e6))


# ------------------------------------------------------------------------------------------------------------------
# parent


def run_one(name: str, set_name: str, tc: str | None) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if tc and name not in ("trl-defaults", "shipsft-tcmalloc"):
        env["LD_PRELOAD"] = tc  # shipsft's default allocator when installed (cli/allocator.py); TRL gets it too
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--worker", name, "--sets", set_name, "--out", f.name], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = json.loads(Path(f.name).read_text())
    r["wall"] = time.perf_counter() - t0
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=["short", "long"], choices=list(SETS))
    ap.add_argument("--only", nargs="*", default=CONTENDERS, choices=CONTENDERS)
    ap.add_argument("--worker")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="write the results file here (machine, date, command, every row)")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.sets[0], a.out)
        return
    import torch

    tc = tcmalloc()
    print(f"CPU: {cpu_name()} ({os.cpu_count()} threads, native bf16: {native_bf16()}); torch {torch.__version__}; "
          f"tcmalloc: {tc or 'not installed'}; load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    rates = {d: matmul_rate(d) for d in ("float32", "bfloat16")}
    best_dtype = max(rates, key=rates.get)
    bound = bound_tok_s(rates[best_dtype])
    print("matmul rate at the model's shapes: " + ", ".join(f"{d} {r:.0f} GFLOP/s" for d, r in rates.items())
          + f" -> bound {bound:.0f} processed tok/s ({best_dtype})", flush=True)
    results = []
    for set_name in a.sets:
        for name in a.only:
            if name == "trl-defaults" and set_name == "long":
                continue
            r = run_one(name, set_name, tc)
            results.append(r)
            print(f"  {set_name} {name}: {r['trained_tokens'] / r['seconds']:.1f} trained tok/s ({r['seconds']:.0f} s "
                  f"train, {r['wall']:.0f} s wall)", flush=True)
    print()
    print(f"| set | contender | precision | tcmalloc | trained tok/s | processed tok/s | % of matmul bound | padding "
          f"| peak RSS | steps | train loss first -> last | held-out loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        tps, ptps = r["trained_tokens"] / r["seconds"], r["real_tokens"] / r["seconds"]
        r.update(trained_tok_s=tps, processed_tok_s=ptps, share_of_bound=ptps / bound)
        print(f"| {r['set']} | {r['name']} | {r['precision']} | {'yes' if r['tcmalloc'] else 'no'} | {tps:.1f} | "
              f"{ptps:.0f} | {ptps / bound:.0%} | {r['padding_share']:.1%} | {r['peak_rss_gb']:.2f} GB | "
              f"{r['steps']} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} | {r['eval_loss']:.4f} |")
    print()
    summary: dict[str, dict] = {}
    for set_name in a.sets:
        by = {r["name"]: r for r in results if r["set"] == set_name}
        if "shipsft" not in by:
            continue
        speed = {n: r["trained_tokens"] / r["seconds"] for n, r in by.items()}
        trl = [n for n in ("trl-padfree", "trl-grouped") if n in speed]
        lines = []
        summary[set_name] = ratios = {}
        if trl:
            best = max(trl, key=speed.get)
            ratios.update(trl_best=best, over_trl_best=speed["shipsft"] / speed[best],
                          rss_share_of_trl_best=by["shipsft"]["peak_rss_gb"] / by[best]["peak_rss_gb"])
            lines.append(f"shipsft / TRL best ({best}) = {ratios['over_trl_best']:.2f}x")
        if "trl-defaults" in speed:
            ratios["over_trl_defaults"] = speed["shipsft"] / speed["trl-defaults"]
            lines.append(f"shipsft / TRL defaults = {ratios['over_trl_defaults']:.2f}x")
        for n in ("shipsft-per-doc", "shipsft-tcmalloc", "shipsft-bf16-frozen", "shipsft-fp32-short"):
            if n in speed:
                ratios[n.replace("shipsft-", "gain_of_")] = speed["shipsft"] / speed[n]
                lines.append(f"{n.replace('shipsft-', '')} gives {speed['shipsft'] / speed[n]:.2f}x")
        if "shipsft+compile" in by:  # a lever added: its gain once warm, and what compiling costs up front
            c, plain = by["shipsft+compile"], by["shipsft"]
            gain = c["warm_processed_tok_s"] / plain["warm_processed_tok_s"]
            saved = plain["warm_step_s"] - c["warm_step_s"]  # seconds a warm step saves
            ratios.update(compile_warm_gain=gain, compile_s=c["warmup_s"] - plain["warmup_s"],
                          compile_pays_after_steps=(c["warmup_s"] - plain["warmup_s"]) / saved if saved > 0 else None)
            lines.append(f"compile gives {gain:.2f}x once warm after {ratios['compile_s']:.0f} s of compiling")
        print(f"{set_name}: " + "; ".join(lines))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if a.json:
        machine.write(a.json, {"torch": torch.__version__, "tcmalloc": tc, "matmul_gflop_s": rates,
                              "bound_processed_tok_s": bound, "bound_dtype": best_dtype, "rows": results,
                              "summary": summary})


if __name__ == "__main__":
    main()
