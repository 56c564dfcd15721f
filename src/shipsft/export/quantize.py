"""llama.cpp's quantizer (`llama_model_quantize`, what `llama-quantize` calls) from node-llama-cpp's prebuilt libllama.

    quantize(Path("m-f32.gguf"), Path("m-q4_k_m.gguf"), "q4_k_m", toolchain())   # a subprocess, its log kept

Every type but F32 is written here, from the converter's F32 file (one conversion, the weights rounded once). The
library call is the whole of llama-quantize without an importance matrix: the per-tensor type mix of each file
type (Q4_K_M keeps attn_v / ffn_down at Q6_K in some layers, the output head at Q6_K, ...) and the fallback for
rows that are not a multiple of the 256-value K-quant block are decided inside libllama (src/llama-quant.cpp), so
the file is what `llama-quantize in.gguf out.gguf Q4_K_M` writes. It runs in a child process (`python -m
shipsft.export.quantize`): a crash inside the C library cannot take the export down, and its log goes to a string.
"""
from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

from shipsft.config import GGUF_QUANTS
from shipsft.errors import ConfigError

QUANTIZE_TYPES = ("f16", "bf16") + GGUF_QUANTS  # from the converter's F32 file


class QuantizeParams(ctypes.Structure):
    """`struct llama_model_quantize_params` of include/llama.h at the pinned llama.cpp (llamacpp.NODE_LLAMA_CPP)."""

    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("output_tensor_type", ctypes.c_int),
                ("token_embedding_type", ctypes.c_int), ("allow_requantize", ctypes.c_bool),
                ("quantize_output_tensor", ctypes.c_bool), ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool),
                ("keep_split", ctypes.c_bool), ("dry_run", ctypes.c_bool), ("imatrix", ctypes.c_void_p),
                ("kv_overrides", ctypes.c_void_p), ("tt_overrides", ctypes.c_void_p),
                ("prune_layers", ctypes.c_void_p), ("max_buf_size", ctypes.c_size_t)]


def file_type(qtype: str) -> int:
    """llama.cpp's `llama_ftype` value for a type name (gguf-py's LlamaFileType mirrors the enum: q4_k_m -> 15,
    f16 -> MOSTLY_F16 = 1)."""
    import gguf

    return int(gguf.LlamaFileType[f"MOSTLY_{qtype.upper()}"])


def quantize_in_process(src: Path, dst: Path, qtype: str, libllama: Path) -> int:
    lib = ctypes.CDLL(str(libllama))  # its RUNPATH ($ORIGIN) finds libggml beside it
    lib.llama_model_quantize_default_params.restype = QuantizeParams
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    lib.llama_backend_init()
    params = lib.llama_model_quantize_default_params()
    params.ftype = file_type(qtype)
    return int(lib.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))


def quantize(src: Path, dst: Path, qtype: str, tc) -> str:
    """Write `dst` as `qtype` from the F32/F16 GGUF `src`; returns llama.cpp's log; a failure is a ConfigError
    quoting it."""
    if qtype not in QUANTIZE_TYPES:
        raise ConfigError([f"GGUF export: llama.cpp quantizes to {', '.join(QUANTIZE_TYPES)} without an importance "
                           f"matrix; {qtype!r} is not one of them"])
    res = subprocess.run([sys.executable, "-m", "shipsft.export.quantize", str(src), str(dst), qtype,
                          str(tc.libllama)], capture_output=True, text=True)
    log = (res.stdout or "") + (res.stderr or "")
    if res.returncode != 0 or not Path(dst).exists():
        tail = " | ".join(log.strip().splitlines()[-3:])
        raise ConfigError([f"GGUF export: llama.cpp's quantizer failed on {src.name} -> {qtype} (exit "
                           f"{res.returncode}): {tail[:500]}"])
    return log


if __name__ == "__main__":
    sys.exit(quantize_in_process(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])))
