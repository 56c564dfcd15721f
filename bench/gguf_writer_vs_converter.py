"""shipsft's retired GGUF writer against llama.cpp's convert_hf_to_gguf.py, both run in llama.cpp itself.

    python bench/gguf_writer_vs_converter.py --hf runs/quickstart/export/hf --eval examples/quickstart/eval.jsonl

The writer (src/shipsft/export/gguf_writer.py, llama architecture only) was removed after this comparison; it is read
back from the commit that last had it (WRITER_COMMIT), so the numbers can be reproduced. For each type both paths
write a GGUF of the same fp32 HF folder, and llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU engine) generates
greedily on the eval prompts; the reference is transformers' greedy answer from the HF folder itself. Prints a table
and writes bench/results/gguf_writer_vs_converter.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
WRITER_COMMIT = "8b7fc5a"  # a main commit with src/shipsft/export/gguf_writer.py (removed after it)


def old_writer(tmp: Path):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{WRITER_COMMIT}:src/shipsft/export/gguf_writer.py"],
                         capture_output=True, text=True, check=True).stdout
    path = tmp / "gguf_writer_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("gguf_writer_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def reference(hf: Path, eval_file: Path, n: int, max_new: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    stop = GenerationConfig.from_pretrained(hf).eos_token_id
    stop = stop if isinstance(stop, list) else [stop]
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()[:n]]
    out = []
    for row in rows:
        msgs = [m for m in row["messages"] if m["role"] != "assistant"]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = tok(text, add_special_tokens=False).input_ids
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False, eos_token_id=stop,
                                 pad_token_id=stop[0])[0, len(ids):].tolist()
        stopped = bool(gen) and gen[-1] in stop
        out.append((text, ids, gen[:-1] if stopped else gen, stopped))
    return tok, model, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", type=Path, required=True, help="an fp32 HF export folder (shipsft export --to hf)")
    ap.add_argument("--eval", type=Path, required=True)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--types", default="f32,q8_0,q4_0")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gguf_writer_vs_converter.json")
    args = ap.parse_args()

    from shipsft.export.convert import convert
    from shipsft.export.engine import EnginePrompt, run_engine
    from shipsft.export.llamacpp import toolchain

    tc = toolchain()
    tok, model, ref = reference(args.hf, args.eval, args.prompts, args.max_new)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    prompts = [EnginePrompt(text, ids, gen, args.max_new) for text, ids, gen, _ in ref]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        writer = old_writer(tmp)
        for qtype in args.types.split(","):
            for tool in ("shipsft writer", "llama.cpp converter"):
                t = time.perf_counter()
                path = tmp / f"{tool.split()[0]}-{qtype}.gguf"
                if tool == "shipsft writer":
                    writer.write_gguf(model, tok, tok.chat_template, eot, path, qtype, "bench", pre="smollm")
                else:
                    convert(args.hf, path, qtype, tc, "bench")
                seconds = time.perf_counter() - t
                runs = run_engine(tc, path, prompts, [eot])
                same = sum(r.generated == g and r.stopped == s for r, (_, _, g, s) in zip(runs.results, ref))
                pos = sum(len(g) + s for _, _, g, s in ref)
                agree = sum(sum(a == b for a, b in zip(r.forced, g)) + bool(s and r.forced_eog[len(g)])
                            for r, (_, _, g, s) in zip(runs.results, ref))
                tokens_ok = sum(r.ids == ids for r, (_, ids, _, _) in zip(runs.results, ref))
                rows.append({"type": qtype, "tool": tool, "bytes": path.stat().st_size, "seconds": round(seconds, 1),
                             "prompt_ids_equal": tokens_ok, "answers_equal": same, "prompts": len(ref),
                             "positions_agree": agree, "positions": pos, "eot_is_eog": runs.eog.get(eot)})
    print(f"{'type':<6} {'tool':<20} {'MB':>6} {'s':>5} {'prompt ids':>10} {'answers':>8} {'tokens':>14}")
    for r in rows:
        print(f"{r['type']:<6} {r['tool']:<20} {r['bytes'] / 1e6:>6.0f} {r['seconds']:>5.1f} "
              f"{r['prompt_ids_equal']:>4}/{r['prompts']:<5} {r['answers_equal']:>3}/{r['prompts']:<4} "
              f"{r['positions_agree']:>5}/{r['positions']} ({r['positions_agree'] / r['positions']:.1%})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, 2 cores (shared)",
        "engine": tc.describe(), "hf": str(args.hf), "writer_commit": WRITER_COMMIT, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
