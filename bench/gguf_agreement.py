"""How much of each architecture's greedy output survives each GGUF type, measured in llama.cpp itself.

    python bench/gguf_agreement.py                                   # every tiny architecture of tests/export
    python bench/gguf_agreement.py --smollm2 1 --prompts 20 --archs none   # the real SmolLM2-135M, one LoRA step
    python bench/gguf_agreement.py --run runs/quickstart --prompts 20 --archs none   # any trained run

For each architecture: the toy task's tiny random model (tests/export/tiny_archs.py: Llama 3 with llama3 rope
scaling, Qwen2, Qwen3, Gemma 2, Gemma 3, Mistral, Phi-3; hidden size 256 here, the K-quant block, so no matrix
falls back to another type) trained one LoRA step, then `shipsft export --to hf --to
gguf` (F32 GGUF, its parity check: the reference greedy answers). Then every type in --types is written as the export
writes it (llama_model_quantize from the export's F32 file) and run by node-llama-cpp's prebuilt engine
on the same prompts: answers equal to the reference (token for token, stop included) and the teacher-forced share of
answer positions where llama.cpp's greedy choice is the reference's. Writes bench/results/gguf_agreement.json.

A random model's next-token distribution is nearly flat (top-2 logit gaps of ~0.01), so its quantised agreement
says how much rounding a flat distribution takes, not how a trained model fares: --run measures a trained one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "export")]
TYPES = "f32,f16,q8_0,q6_k,q5_k_m,q4_k_m,q4_0"
# rows of 256 values (the K-quant block), so K-quant types are what they say on every matrix, not a fallback
SIZE = {"hidden_size": 256, "intermediate_size": 512, "head_dim": 64}


class Notes:
    def note(self, text: str) -> None:
        print(text, flush=True)


def measure(run: Path, label: str, types: list[str], prompts: int, tc, work: Path) -> list[dict]:
    from shipsft.config import ExportConfig
    from shipsft.export.convert import summary
    from shipsft.export.engine import EnginePrompt, run_engine
    from shipsft.export.parity import Generation, engine_summary
    from shipsft.export.quantize import quantize
    from shipsft.export.run import export_run
    from transformers import AutoTokenizer

    t = time.perf_counter()
    result = export_run(run, ExportConfig(to=["hf", "gguf"], check_prompts=prompts, dir=str(work / "export")),
                        Notes())
    export_s = time.perf_counter() - t
    gens: list[Generation] = result.report.generations
    hf = result.hf
    tok = AutoTokenizer.from_pretrained(hf)
    rows = []
    f32 = result.gguf.path  # the export's own F32 file, checked exactly by its parity check
    for qtype in types:
        t = time.perf_counter()
        path = work / f"{label}-{qtype}.gguf"
        if qtype == "f32":
            path = f32
        else:  # what convert() does: the quantizer on the converter's F32 file
            quantize(f32, path, qtype, tc)
        convert_s = time.perf_counter() - t
        arch, _, tensor_types = summary(path)
        engine = run_engine(tc, path, [EnginePrompt(g.prompt_text, g.trained_prompt_ids, g.exported_ids,
                                                         g.max_new_tokens) for g in gens], [])
        s = engine_summary(engine, gens, path.name, qtype, tc.describe(), tok)
        size = path.stat().st_size
        rows.append({"arch": label, "gguf_arch": arch, "type": qtype, "bytes": size, "tensor_types": tensor_types, "convert_s": round(convert_s, 1), "prompts": s.prompts,
                     "prompt_ids_equal": s.prompt_ids_equal, "answers_equal": s.answers_equal,
                     "positions": s.positions, "positions_agree": s.positions_agree,
                     "token_agreement": round(s.token_agreement, 4), "export_s": round(export_s, 1)})
        print(f"{label:<10} {qtype:<7} {size / 1e6:>7.1f} MB  prompt ids {s.prompt_ids_equal}/{s.prompts}  "
              f"answers {s.answers_equal}/{s.prompts}  tokens {s.positions_agree}/{s.positions} "
              f"({s.token_agreement:.1%})", flush=True)
        if path != f32:
            path.unlink()
    return rows


def table(path: Path) -> str:
    """The docs table (docs/gguf.md) from a results file: answers equal and token agreement per architecture and type."""
    rows = json.loads(path.read_text())["rows"]
    types = list(dict.fromkeys(r["type"] for r in rows))
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    cell = {(r["arch"], r["type"]): r for r in rows}
    out = ["| model (GGUF arch) | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for a in archs:
        first = next(r for r in rows if r["arch"] == a)
        cells = []
        for t in types:
            r = cell.get((a, t))
            cells.append("not measured" if r is None else
                         f"{r['answers_equal']}/{r['prompts']}, {r['token_agreement']:.1%}")
        out.append(f"| {a} ({first['gguf_arch']}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="all", help="comma-separated names from tests/export/tiny_archs.py, all, none")
    ap.add_argument("--run", type=Path, action="append", default=[], help="a trained run folder to measure too")
    ap.add_argument("--smollm2", type=int, default=0, metavar="STEPS",
                    help="also the embedded SmolLM2-135M-Instruct after STEPS LoRA steps on the quickstart task")
    ap.add_argument("--types", default=TYPES)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gguf_agreement.json")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    args = ap.parse_args()
    if args.table:
        print(table(args.out))
        return

    from machine import stamp
    from tiny_archs import ARCHS, arch_run, smollm2_run

    from shipsft.export.llamacpp import toolchain

    tc = toolchain(Notes())
    names = list(ARCHS) if args.archs == "all" else [] if args.archs == "none" else args.archs.split(",")
    types = args.types.split(",")
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows, commands = saved.get("rows", []), saved.get("commands", [])
    commands.append("python bench/gguf_agreement.py " + " ".join(sys.argv[1:]))

    def save(label: str, new: list[dict]) -> None:  # after each model: a long run that stops keeps what it measured
        nonlocal rows
        rows = [r for r in rows if r["arch"] != label] + new
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "commands": commands, **stamp(), "load_average": os.getloadavg()[0],
            "engine": tc.describe(), "size": SIZE, "rows": rows}, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as d:
        for name in names:
            work = Path(d) / name
            save(name, measure(arch_run(work, name, size=SIZE), name, types, args.prompts, tc, work))
        if args.smollm2:
            label = f"smollm2-135m ({args.smollm2} LoRA step{'s' if args.smollm2 > 1 else ''})"
            work = Path(d) / "smollm2"
            run = smollm2_run(work, steps=args.smollm2, n_eval=args.prompts)
            save(label, measure(run, label, types, args.prompts, tc, work))
        for run in args.run:
            label = f"{run.resolve().name} (trained)"
            save(label, measure(run, label, types, args.prompts, tc, Path(d) / "run"))


if __name__ == "__main__":
    main()
