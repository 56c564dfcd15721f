"""FLOPs of one training step of a Llama-shaped decoder, and model FLOPs utilisation (MFU).

Convention (PaLM, Chowdhery et al. 2022, appendix B, https://arxiv.org/abs/2204.02311): matrix products only, 2 FLOPs
per multiply-add; attention counted over each document's full n x n score matrix (no causal halving, which is also
what torch.utils.flop_counter counts for eager attention); elementwise work (norms, RoPE, SiLU, softmax) not counted.

"Model FLOPs" are the FLOPs the step needs, whichever tool runs it:
  - the LM head on trained positions only (SFT scores nothing else);
  - no weight gradient for a frozen weight (LoRA, QLoRA);
  - no input gradient where nothing below trains: under LoRA the first layer's q/k/v read the frozen embedding
    (through a frozen norm), so autograd computes no input gradient there;
  - attention within each packed document (sum of n^2 over documents), not over a whole packed row.
A tool that computes more (logits at every position, one masked pass over a packed row) gets no credit for it, so MFU
compares useful work per second. tests/bench/test_gpu_script.py checks these counts against torch's FlopCounterMode
on a tiny Llama trained through shipsft's own loss, LoRA and full, to the FLOP.

    shape = Shape.of(model.config)
    flops = step_flops(shape, Work(tokens=8192, trained=1200, attn_sq=6_000_000), "lora", lora_rank=16)
    mfu(flops, seconds, peak_bf16("NVIDIA H100 80GB HBM3"))
"""
from __future__ import annotations

from dataclasses import dataclass

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's datasheets (the sparse figure halved):
#   H100 SXM5 1,979 / PCIe 1,513 / NVL 1,671 TFLOP/s sparse  https://www.nvidia.com/en-us/data-center/h100/
#   H200 SXM 1,979 / NVL 1,671                                https://www.nvidia.com/en-us/data-center/h200/
#   A100 312 dense                                            https://www.nvidia.com/en-us/data-center/a100/
# torch.cuda.get_device_name names the SXM5 card "NVIDIA H100 80GB HBM3" and the others "... PCIe" / "... NVL", so the
# more specific names are matched first.
PEAK_BF16 = [("H200 NVL", 835.5e12), ("H200", 989.5e12), ("H100 PCIe", 756.5e12), ("H100 NVL", 835.5e12),
             ("H100", 989.5e12), ("A100", 312e12)]


def peak_bf16(device_name: str) -> float | None:
    """The datasheet's dense bf16 peak of a GPU by the name torch reports, or None for one not in PEAK_BF16."""
    for key, flops in PEAK_BF16:
        if key.lower() in device_name.lower():
            return flops
    return None


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, conf) -> "Shape":
        """From a transformers Llama-style config."""
        head_dim = getattr(conf, "head_dim", None) or conf.hidden_size // conf.num_attention_heads
        return cls(conf.hidden_size, conf.intermediate_size, conf.num_hidden_layers, conf.num_attention_heads,
                   getattr(conf, "num_key_value_heads", None) or conf.num_attention_heads, head_dim, conf.vocab_size)

    def linears(self) -> list[tuple[str, int, int]]:
        """Each decoder layer's projections as (name, in, out)."""
        d, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return [("q", d, q), ("k", d, kv), ("v", d, kv), ("o", q, d), ("gate", d, i), ("up", d, i), ("down", i, d)]

    def params(self) -> int:
        """Parameters of the decoder's projections and one vocab x hidden matrix (norms left out)."""
        return self.layers * sum(a * b for _, a, b in self.linears()) + self.vocab * self.hidden


@dataclass(frozen=True)
class Work:
    """What one step (or several, summed) processed: real tokens, trained tokens, and the sum over documents of
    their length squared (attention's cost)."""

    tokens: int
    trained: int
    attn_sq: int

    def __add__(self, other: "Work") -> "Work":
        return Work(self.tokens + other.tokens, self.trained + other.trained, self.attn_sq + other.attn_sq)


FIRST_LAYER_NO_INPUT_GRAD = ("q", "k", "v")  # under LoRA: their input is the frozen, normed embedding


def step_flops(shape: Shape, work: Work, method: str, lora_rank: int = 16) -> int:
    """Model FLOPs of forward + backward for `work` (see the module docstring). method: full | lora | qlora (LoRA on
    every projection of every layer, rank `lora_rank`, the LM head and embeddings frozen)."""
    attn_fwd = 4 * shape.layers * shape.heads * shape.head_dim * work.attn_sq  # QK^T and AV
    head_fwd = 2 * shape.hidden * shape.vocab * work.trained
    linear_fwd = 2 * shape.layers * sum(a * b for _, a, b in shape.linears()) * work.tokens
    if method == "full":  # backward = input gradients + weight gradients, each as much as the forward
        return 3 * (linear_fwd + attn_fwd + head_fwd)
    if method not in ("lora", "qlora"):
        raise ValueError(f"method {method!r}: expected full, lora or qlora")
    r = lora_rank
    total = 3 * attn_fwd + 2 * head_fwd + linear_fwd  # attention: q, k, v all depend on adapters; head: dL/dh only
    for layer in range(shape.layers):
        for name, a, b in shape.linears():
            input_grad = not (layer == 0 and name in FIRST_LAYER_NO_INPUT_GRAD)
            frozen_bwd = 2 * a * b if input_grad else 0  # the frozen weight: input gradient only
            # adapter x A B: forward 2r(a+b); backward dB 2rb, d(xA) 2rb, dA 2ra, dx 2ra (when the input needs it)
            adapter = 2 * r * (a + b) + 2 * r * b + 2 * r * b + 2 * r * a + (2 * r * a if input_grad else 0)
            total += (frozen_bwd + adapter) * work.tokens
    return total


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """FLOPs per second over the peak (None without a peak or a time)."""
    if not peak or not seconds:
        return None
    return flops / seconds / peak
