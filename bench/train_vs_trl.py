"""TRL's SFTTrainer vs shipsft, side by side: same model, data, LoRA and trained tokens, one epoch each.

    python bench/train_vs_trl.py                 # ~6-9 minutes on a 2-core CPU; prints the table
    python bench/train_vs_trl.py --examples 32   # quicker, noisier
    python bench/train_vs_trl.py --only shipsft shipsft-fp32   # is bf16 autocast faster here, at equal loss?

Contenders, each in its own subprocess (so peak RSS is that contender's alone, read from getrusage in the child):
  trl-defaults  SFTTrainer as a new user runs it: SFTConfig defaults (batch 8, padded, gradient checkpointing on,
                bf16 autocast on a CPU with bf16, lr 2e-5), the same LoRA config.
  trl-best      its fastest setting on CPU (cpu-facts.md): padding_free, bf16 autocast where native, no gradient
                checkpointing, lr 2e-4 constant like shipsft, and the same allocator as shipsft (tcmalloc via
                LD_PRELOAD when libtcmalloc_minimal is installed; the table says whether it was).
  shipsft       `shipsft.train.loop.fit` with the defaults (packing, logits only at trained positions, chunked CE,
                precision auto), rows of 512 tokens x 2 (about TRL's 8 examples per step: the same 6 optimizer
                steps), lr 2e-4 constant.

Data: deterministic conversations "repeat the last K words in reverse" (as in cpu-facts.md section 4), given to TRL as
conversational prompt/completion (so TRL trains the completion only, its default for that format) and to shipsft
as messages with all_assistant masking: both train the assistant answer and its <|im_end|> (TRL also its trailing
newline, +1 token per example). Trained tokens/s counts the answer tokens shipsft trains, identical for all rows.
"Loss at equal tokens" is the held-out loss per trained token after the epoch, computed for every contender by the
same function (shipsft.train.loop.eval_loss) on the same 16 eval conversations.
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

WORDS = ("apple river stone cloud maple orbit pixel tiger lemon violet cobalt amber falcon harbor meadow nickel "
         "oyster quartz saddle timber walnut zephyr canyon delta ember fjord glacier hollow island jungle").split()
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
TCMALLOC = ["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4"]


def conversations(n: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 60))]
        k = rng.randint(2, min(30, len(words)))
        out.append([{"role": "user", "content": f"Here is a list: {' '.join(words)}. Repeat the last {k} words in "
                     "reverse order."},
                    {"role": "assistant", "content": " ".join(reversed(words[-k:]))}])
    return out


def tcmalloc() -> str | None:
    return next((p for p in TCMALLOC if Path(p).exists()), None)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB on Linux


# ------------------------------------------------------------------------------------------------------------------
# workers (run in a subprocess each)


def _shipsft_rows(tok, convs, max_length: int):
    from shipsft.data.pack import pack_examples
    from shipsft.data.render import render_conversation

    return pack_examples([r for c in convs for r in render_conversation(tok, c)], max_length, True).rows


def worker(name: str, n: int, out: Path) -> None:
    import torch

    from shipsft.config import ModelConfig, RunConfig
    from shipsft.model.locate import load_tokenizer, resolve_model_dir
    from shipsft.model.precision import autocast_dtype
    from shipsft.train.loop import eval_loss

    tok = load_tokenizer(ModelConfig(path="smollm2"))
    train, held_out = conversations(n, 1234), conversations(16, 99)
    eval_rows = _shipsft_rows(tok, held_out, 512)
    trained_tokens = sum(r.n_trained for r in _shipsft_rows(tok, train, 512))
    real_tokens = 0
    if name.startswith("shipsft"):
        from shipsft.model.load import load_for_training
        from shipsft.runs.layout import RunFolder
        from shipsft.train.loop import fit
        from shipsft.train.run import assemble

        cfg = RunConfig.model_validate({"data": {"max_length": 512}, "method": {"lora": {"r": 16, "alpha": 32}},
                                        "optim": {"lr": 2e-4, "schedule": "constant", "warmup_steps": 0},
                                        "train": {"batch_rows": 2, "epochs": 1,
                                                  "precision": "fp32" if name == "shipsft-fp32" else "auto"}})
        model, _ = load_for_training(cfg.model, cfg.method, False, torch.device("cpu"))
        rows = _shipsft_rows(tok, train, 512)
        with tempfile.TemporaryDirectory() as d:
            s = assemble(cfg, model, tok, rows, None, RunFolder(Path(d)))
            t0 = time.perf_counter()
            res = fit(s)
            seconds = time.perf_counter() - t0
            s.sink.close()
        real_tokens = sum(len(r.ids) for r in rows)
        slots = sum(h["tokens"] / (1 - h["padding_share"]) for h in res.history)
        losses = [h["loss"] for h in res.history]
        steps = res.steps
        amp = autocast_dtype(cfg.train.precision, torch.device("cpu"))
    else:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM
        from trl import SFTConfig, SFTTrainer

        best = name == "trl-best"
        amp = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        ds = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in train])
        args = dict(output_dir=tempfile.mkdtemp(), report_to="none", save_strategy="no", num_train_epochs=1,
                    use_cpu=True, logging_steps=1, seed=0)
        if best:
            args.update(padding_free=True, max_length=None, gradient_checkpointing=False, bf16=amp is not None,
                        learning_rate=2e-4, lr_scheduler_type="constant")
        model = AutoModelForCausalLM.from_pretrained(resolve_model_dir("smollm2"), dtype=torch.float32)
        seen = {"real": 0, "slots": 0}

        def count(module, args_, kwargs):  # tokens the model actually processes per forward
            ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
            seen["slots"] += ids.numel()
            seen["real"] += int(mask.sum()) if mask is not None else ids.numel()

        model.register_forward_pre_hook(count, with_kwargs=True)
        trainer = SFTTrainer(model=model, args=SFTConfig(**args), train_dataset=ds, processing_class=tok,
                             peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"))
        if not best:
            amp = amp if trainer.args.bf16 else None
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        real_tokens, slots = seen["real"], seen["slots"]
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        steps = trainer.state.global_step
        model = trainer.model
    result = {"name": name, "seconds": seconds, "steps": steps, "trained_tokens": trained_tokens, "real_tokens": real_tokens,
              "padding_share": 1 - real_tokens / slots, "first_loss": losses[0], "last_loss": losses[-1],
              "eval_loss": eval_loss(model, eval_rows, tok.pad_token_id, 4, amp), "peak_rss_gb": peak_rss_gb(),
              "precision": str(amp or "fp32"), "tcmalloc": "tcmalloc" in os.environ.get("LD_PRELOAD", "")}
    out.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------------------------
# parent


def matmul_bound(dtype_name: str) -> float:
    """Processed tokens/s if only the LoRA-training matmuls ran (4 x 134.5M FLOP per token: forward + activation
    grads), measured here at SmolLM2's shapes on 2048-token blocks."""
    import torch

    dtype = torch.bfloat16 if "bfloat16" in dtype_name else torch.float32
    shapes = {(576, 576): 2, (576, 192): 2, (576, 1536): 2, (1536, 576): 1}  # per layer, x30 layers
    seconds = 0.0
    for (k, n), count in shapes.items():
        a, b = torch.randn(2048, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        t0 = time.perf_counter()
        for _ in range(3):
            a @ b
        seconds += (time.perf_counter() - t0) / 3 * count * 30
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 49152, dtype=dtype)
    t0 = time.perf_counter()
    a @ b
    seconds += time.perf_counter() - t0
    return 2048 / (2 * seconds)  # forward + the same again for activation gradients


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--only", nargs="*", default=["trl-defaults", "trl-best", "shipsft"])
    ap.add_argument("--worker")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.examples, a.out)
        return
    tc = tcmalloc()
    print(f"{a.examples} training conversations, 1 epoch each; tcmalloc: {tc or 'not installed'}; "
          f"CPU threads: {os.cpu_count()}")
    results = []
    for name in a.only:
        env = dict(os.environ)
        if tc and name != "trl-defaults":
            env["LD_PRELOAD"] = tc  # shipsft's default allocator when installed; TRL best gets the same
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--worker", name, "--examples", str(a.examples),
                            "--out", f.name], env=env, check=True, stdout=subprocess.DEVNULL)
            r = json.loads(Path(f.name).read_text())
        r["wall"] = time.perf_counter() - t0
        results.append(r)
        print(f"  {name}: {r['trained_tokens'] / r['seconds']:.1f} trained tok/s ({r['seconds']:.0f} s train, "
              f"{r['wall']:.0f} s wall)", flush=True)
    bound = {p: matmul_bound(p) for p in {r["precision"] for r in results}}
    print()
    print("| contender | precision | tcmalloc | trained tok/s | processed tok/s | % of matmul bound | padding share "
          "| peak RSS | steps | train loss first -> last (own normalisation) | held-out loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        tps, ptps = r["trained_tokens"] / r["seconds"], r["real_tokens"] / r["seconds"]
        print(f"| {r['name']} | {r['precision'].replace('torch.', '')} | {'yes' if r['tcmalloc'] else 'no'} | "
              f"{tps:.1f} | {ptps:.0f} | {ptps / bound[r['precision']]:.0%} of {bound[r['precision']]:.0f} | "
              f"{r['padding_share']:.1%} | {r['peak_rss_gb']:.2f} GB | {r['steps']} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} | "
              f"{r['eval_loss']:.4f} |")
    by = {r["name"]: r["trained_tokens"] / r["seconds"] for r in results}
    if "shipsft" in by:
        for other in ("trl-best", "trl-defaults"):
            if other in by:
                print(f"shipsft / {other}: {by['shipsft'] / by[other]:.2f}x trained tokens/s")


if __name__ == "__main__":
    main()
