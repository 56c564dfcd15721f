"""Eval generation speed: shipsft's generation before and after issue 13, same model, same suites, one run.

    python bench/eval_speed.py                          # quickstart suite (60) + a 200-example suite, tuned + base
    python bench/eval_speed.py --adapter runs/quickstart/final --n 200

Model: SmolLM2-135M-Instruct with the quickstart's LoRA adapter (train it first: `shipsft train
examples/quickstart/config.yaml`), scored as `shipsft eval RUN` scores a run with its baseline: the tuned model,
then the base model with the adapter switched off (no second model loaded).

  before  main's eval generation: transformers' `generate` per batch of `eval.batch_size` prompts sorted by
          length, every batch decoding until its slowest row ends, `max_new_tokens` as configured (the quickstart
          config says 40; the 200-example suite uses the old default of 128).
  after   `shipsft.eval.generate.generate`: sorted batches sized to memory (`eval.batch_size: auto`, at most 64
          rows), rows leave at their stop token, LM head on the last position only, the budget from the suite's
          longest reference (+ a quarter, >= 16) where the config leaves it null.

Suites: examples/quickstart/eval.jsonl (60 orders, the quickstart config's budget of 40; before: its batch of 30),
and 200 new orders made with examples/quickstart/make_data.py's generator (seed 7, default budget; before: the old
eval.batch_size default of 8).
Exact match is printed for both, so a speedup that changed an answer shows.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def suite_200(path: Path, n: int) -> Path:
    spec = importlib.util.spec_from_file_location("make_data", REPO / "examples/quickstart/make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = random.Random(7)
    path.write_text("".join(json.dumps(mod.example(rng)) + "\n" for _ in range(n)))
    return path


@torch.no_grad()
def before_generate(model, tokenizer, prompts, *, stop_ids, max_new_tokens, batch_size):
    """main's eval/generate.py before issue 13 (transformers' generate per sorted, left-padded batch)."""
    from shipsft.eval.generate import left_pad

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = left_pad([prompts[i] for i in chunk], pad_id)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_ids, pad_token_id=pad_id, use_cache=True, temperature=None,
                             top_p=None, top_k=None)
        for row, i in enumerate(chunk):
            new = out[row, ids.shape[1]:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stop_ids), len(new))
            outputs[i] = tokenizer.decode(new[:cut], skip_special_tokens=True)
    return outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", type=Path, default=REPO / "runs/quickstart/final")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--only", nargs="*", default=["quickstart", "orders200"])
    a = ap.parse_args()
    if not (a.adapter / "adapter_config.json").exists():
        sys.exit(f"{a.adapter}: no adapter. Train the quickstart first: shipsft train examples/quickstart/config.yaml")
    import peft

    from shipsft.config import DataConfig, EvalConfig, MethodConfig, ModelConfig, SuiteConfig
    from shipsft.eval.generate import generate
    from shipsft.eval.items import eval_renderer, stop_ids
    from shipsft.eval.suites import build_suite
    from shipsft.model.load import load_base
    from shipsft.model.locate import load_tokenizer

    tok = load_tokenizer(ModelConfig())
    base, _ = load_base(ModelConfig(), MethodConfig(), torch.device("cpu"))
    model = peft.PeftModel.from_pretrained(base, a.adapter).eval()
    renderer = eval_renderer(tok, DataConfig())
    stop = stop_ids(tok, model, renderer)
    tmp = Path(tempfile.mkdtemp())
    suites = {"quickstart": (SuiteConfig(name="quickstart", data=str(REPO / "examples/quickstart/eval.jsonl"),
                                         max_new_tokens=40), 40, 30),
              "orders200": (SuiteConfig(name="orders200", data=str(suite_200(tmp / "orders200.jsonl", a.n))),
                            128, 8)}  # before: the quickstart config's 30 rows; the old eval.batch_size default 8
    after_batch = EvalConfig().batch_size  # auto: rows sized to memory (eval/generate.py `batches`)
    load = os.getloadavg()[0]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} threads; torch {torch.__version__}; load average {load:.2f}")
    rows = []
    for name in a.only:
        sc, old_budget, batch = suites[name]
        suite = build_suite(sc, renderer, EvalConfig(), False)
        prompts = [it.prompt_ids for it in suite.items]
        refs = [it.reference for it in suite.items]
        for who in ("tuned", "base"):
            ctx = model.disable_adapter() if who == "base" else contextlib.nullcontext()
            with ctx:
                generate(model, tok, prompts[:2], stop_ids=stop, max_new_tokens=4, batch_size=2, amp=None)  # warm
                t0 = time.perf_counter()
                old = before_generate(model, tok, prompts, stop_ids=stop, max_new_tokens=old_budget,
                                      batch_size=batch)
                t1 = time.perf_counter()
                new = generate(model, tok, prompts, stop_ids=stop, max_new_tokens=suite.max_new_tokens,
                               batch_size=after_batch, amp=None)
                t2 = time.perf_counter()
            em_old = sum(o.strip() == r.strip() for o, r in zip(old, refs))
            em_new = sum(o.strip() == r.strip() for o, r in zip(new, refs))
            rows.append((name, len(prompts), who, old_budget, suite.max_new_tokens, f"{batch} -> {after_batch}",
                         len(prompts) / (t1 - t0),
                         len(prompts) / (t2 - t1), t1 - t0, t2 - t1, em_old, em_new))
            print(f"  {name} {who}: before {t1 - t0:.0f} s, after {t2 - t1:.0f} s", flush=True)
    print()
    print("| suite | examples | model | budget before -> after | rows per batch | before ex/s | after ex/s | speedup | "
          "exact match before / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n, who, ob, nb, batch, eb, ea, sb, sa, emo, emn in rows:
        print(f"| {name} | {n} | {who} | {ob} -> {nb} | {batch} | {eb:.2f} | {ea:.2f} | {sb / sa:.2f}x | "
              f"{emo}/{n} / {emn}/{n} |")
    for name in a.only:
        sel = [r for r in rows if r[0] == name]
        before, after = sum(r[8] for r in sel), sum(r[9] for r in sel)
        print(f"{name}, tuned + baseline: {before:.0f} s -> {after:.0f} s = {before / after:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
