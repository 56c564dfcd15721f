"""Per-document causal attention on the CPU: which SDPA kernel is fastest for a bucket of documents of one width.

    python bench/attention.py                                        # the table
    python bench/attention.py --json bench/results/attention.json    # and the results file

model/attention.py runs one SDPA call per bucket of similar-length documents. On the CPU torch picks its flash
kernel for these calls; a torch-profiler trace of a bf16 LoRA step (bench/bound.py --profile) spent 24% of the step
in that kernel's backward, eleven times its forward. This times, per bucket shape (documents x width, as the
short and long sets of bench/train_vs_trl.py make them, SmolLM2-135M's 9 query / 3 KV heads of 64), the forward and
backward of one call on each kernel SDPA offers on the CPU (flash, math) in bf16 and fp32, median of repeats, the
bytes each keeps for the backward, and shipsft's own call (model/attention.py: causal_attention, which runs buckets up
to FP32_WIDTH in fp32) as training makes it under bf16 autocast. Run it on a quiet machine: it prints the load
average before and after.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64  # SmolLM2-135M
# (documents in the bucket, width): the buckets a 4,096-token micro-batch of 64-512-token documents makes, and a
# 4,096-token row holding two long documents
SHAPES = [(32, 64), (24, 128), (16, 192), (12, 256), (8, 384), (8, 512), (2, 1024), (2, 2048)]
KERNELS = {"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}


def shipsft_call(q, k, v):
    """What training runs per bucket (model/attention.py: causal_attention) under bf16 autocast, with q and k in
    fp32 and v in bf16 as a Llama layer hands them over (rotary embeddings promote q and k to the fp32 residual's
    dtype): bf16 flash, or fp32 up to FP32_WIDTH."""
    from shipsft.model.attention import causal_attention

    with torch.autocast("cpu", dtype=torch.bfloat16):
        return causal_attention(q.float(), k.float(), v, is_causal=True, enable_gqa=True)


def saved_mib(kernel: str, q, k, v) -> float:
    """MiB the forward keeps for the backward (each storage counted once), through autograd's saved-tensor hooks."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), sdpa_kernel(KERNELS[kernel]):
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return sum(seen.values()) / 2**20


def one_call(kernel: str, docs: int, width: int, dtype: torch.dtype, repeats: int) -> dict:
    """Median ms of one forward and one backward of causal GQA attention over `docs` documents of `width`, and the
    MiB kept for the backward."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(docs, HEADS, width, HEAD_DIM, generator=g).to(dtype).requires_grad_()
    k, v = (torch.randn(docs, KV_HEADS, width, HEAD_DIM, generator=g).to(dtype).requires_grad_() for _ in range(2))
    grad = torch.randn(docs, HEADS, width, HEAD_DIM, generator=g).to(dtype)
    fwd, bwd = [], []
    for _ in range(repeats + 1):  # the first call warms up
        with sdpa_kernel(KERNELS[kernel]) if kernel in KERNELS else contextlib.nullcontext():  # shipsft: torch picks
            t0 = time.perf_counter()
            out = shipsft_call(q, k, v) if kernel == "shipsft" else F.scaled_dot_product_attention(
                q, k, v, is_causal=True, enable_gqa=True)
            t1 = time.perf_counter()
            out.backward(grad.to(out.dtype))
            t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        q.grad = k.grad = v.grad = None
    return {"forward_ms": 1e3 * statistics.median(fwd[1:]), "backward_ms": 1e3 * statistics.median(bwd[1:]),
            "saved_mib": saved_mib(kernel, q, k, v) if kernel in KERNELS else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    print(f"CPU: {machine.cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
          f"at start: {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    print("| dtype | documents x width | flash fwd + bwd ms | math fwd + bwd ms | math / flash | saved MiB flash / "
          "math | shipsft's call (bf16 autocast) ms | shipsft / bf16 flash |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        for docs, width in SHAPES:
            r = {"dtype": str(dtype).replace("torch.", ""), "documents": docs, "width": width}
            for kernel in [*KERNELS, *(["shipsft"] if dtype == torch.bfloat16 else [])]:
                r[kernel] = one_call(kernel, docs, width, dtype, a.repeats)
            total = {k: r[k]["forward_ms"] + r[k]["backward_ms"] for k in r if isinstance(r[k], dict)}
            r["math_over_flash"] = total["math"] / total["flash"]
            ours = ""
            if "shipsft" in r:
                r["shipsft_over_flash"] = total["shipsft"] / total["flash"]
                ours = f"{r['shipsft']['forward_ms']:.1f} + {r['shipsft']['backward_ms']:.1f} | " \
                       f"{r['shipsft_over_flash']:.2f}"
            rows.append(r)
            flash = f"{r['flash']['forward_ms']:.1f} + {r['flash']['backward_ms']:.1f}"
            math = f"{r['math']['forward_ms']:.1f} + {r['math']['backward_ms']:.1f}"
            print(f"| {r['dtype']} | {docs} x {width} | {flash} | {math} | {r['math_over_flash']:.2f} | "
                  f"{r['flash']['saved_mib']:.1f} / {r['math']['saved_mib']:.1f} | {ours or '- | -'} |", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if a.json:
        machine.write(a.json, {"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "heads": [HEADS, KV_HEADS, HEAD_DIM], "rows": rows})


if __name__ == "__main__":
    main()
