"""One GGUF file from an HF folder, written by llama.cpp's own convert_hf_to_gguf.py (and quantizer).

    info = convert(Path("export/.gguf-source"), Path("export/gguf/run-q4_k_m.gguf"), "q4_k_m", toolchain(), "run")

The converter knows every architecture llama.cpp runs (Llama with its rope scaling, Qwen2/3, Gemma 2/3, Mistral,
Phi-3, ...) and reads the folder as `transformers` saved it: config.json, safetensors, the tokenizer (its
pre-tokenizer is recognised by the hash of its output on a test text; a SentencePiece vocabulary from
tokenizer.model) and the chat template (the training template: hf.py bakes it into the folder). It writes F32; every
other type (F16, BF16, Q8_0, the K-quants, ...) is written from that file by llama.cpp's quantizer (quantize.py),
so the weights are rounded once and one conversion serves every type. Both run as child processes with the toolchain's own gguf-py (the converter puts
it first on sys.path), whatever version of the `gguf` package the environment has.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.errors import ConfigError
from shipsft.export.quantize import QUANTIZE_TYPES, quantize

GGUF_TYPES = ("f32",) + QUANTIZE_TYPES


@dataclass
class GGUFInfo:
    path: Path
    qtype: str
    bytes: int
    n_tensors: int
    arch: str
    tensor_types: dict[str, int] = field(default_factory=dict)  # type name -> count
    tool: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def link_folder(src: Path, dst: Path) -> None:
    """`dst` holding a symbolic link to each file of `src` (a copy where links are refused)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        if f.is_file():
            try:
                os.symlink(f.resolve(), dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def match_space_prefix(folder: Path) -> bool:
    """For a SentencePiece tokenizer whose tokenizer.json prepends its space only at the start of the text
    (Metaspace prepend_scheme "first": Mistral v0.3, legacy=False Llama-2 style), set add_prefix_space false in the
    converter's copy of tokenizer_config.json. llama.cpp's SPM tokenizer prepends the space to every text piece
    after a special token when tokenizer.ggml.add_space_prefix is true (src/llama-vocab.cpp, LLAMA_VOCAB_TYPE_SPM),
    which turns "[INST] hi" into ['[INST]', '▁', '▁hi'] where transformers gives ['[INST]', '▁hi']; without it the
    two agree on every chat prompt that starts with a special token. Returns whether it changed anything."""
    tok_json, config_file = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if not (tok_json.is_file() and config_file.is_file()):
        return False
    pre = json.loads(tok_json.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if not any(p.get("type") == "Metaspace" and p.get("prepend_scheme") == "first" for p in parts):
        return False
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["add_prefix_space"] = False
    config_file.unlink()  # a link to the HF export's own file: replace it, never write through it
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return True


def run_converter(hf_dir: Path, out: Path, outtype: str, tc, name: str) -> None:
    cmd = [sys.executable, str(tc.converter), str(hf_dir), "--outfile", str(out), "--outtype", outtype,
           "--model-name", name]
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # the toolchain's gguf-py, not the venv's
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0 or not out.exists():
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        k = next((i for i in range(len(lines) - 1, -1, -1) if "Error" in lines[i] or "error" in lines[i]), None)
        why = lines[k].strip() if k is not None else (lines[-1] if lines else "?")
        if k and len(why) < 40:  # a bare `AssertionError`: the failed line above it says what
            why = f"{lines[k - 1].strip()} -> {why}"
        if "pre-tokenizer was not recognized" in why:
            raise ConfigError([f"GGUF export: llama.cpp does not know this tokenizer ({hf_dir}): it recognises a BPE "
                               "tokenizer by the ids it gives a test text (convert_hf_to_gguf.py get_vocab_base_pre), "
                               "and without that it could not split text as transformers does. Fix: train with the "
                               "base model's own tokenizer, or export with --to hf"])
        raise ConfigError([f"GGUF export: llama.cpp's convert_hf_to_gguf.py could not convert {hf_dir} "
                           f"(exit {res.returncode}): {why[:500]}. Fix: an architecture or tokenizer "
                           f"llama.cpp {tc.llama_cpp_release()} does not convert cannot be exported as GGUF; export "
                           "with --to hf"])


def summary(path: Path) -> tuple[str, int, dict[str, int]]:
    """(architecture, tensor count, tensor type -> count) of a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    return arch, len(reader.tensors), dict(Counter(t.tensor_type.name for t in reader.tensors))


def convert(hf_dir: Path, out_file: Path, qtype: str, tc, name: str) -> GGUFInfo:
    """Write `out_file` (renamed into place when complete) from the HF folder `hf_dir`."""
    if qtype not in GGUF_TYPES:
        raise ConfigError([f"GGUF export: type {qtype!r} is not one llama.cpp writes here ({', '.join(GGUF_TYPES)})"])
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    staged = out_file.with_name(f".{out_file.stem}.tmp{os.getpid()}.gguf")
    f32 = out_file.with_name(f".{out_file.stem}.f32.tmp{os.getpid()}.gguf")
    seconds = {}
    try:
        t = time.perf_counter()
        direct = qtype == "f32"
        run_converter(Path(hf_dir), staged if direct else f32, "f32", tc, name)
        seconds["convert"] = round(time.perf_counter() - t, 1)
        if not direct:
            t = time.perf_counter()
            quantize(f32, staged, qtype, tc)
            seconds["quantize"] = round(time.perf_counter() - t, 1)
        os.replace(staged, out_file)
    finally:
        staged.unlink(missing_ok=True)
        f32.unlink(missing_ok=True)
    arch, n, types = summary(out_file)
    tool = f"llama.cpp {tc.llama_cpp_release()} convert_hf_to_gguf.py" + ("" if direct else " + llama_model_quantize")
    return GGUFInfo(out_file, qtype, out_file.stat().st_size, n, arch, types, tool, seconds)


def read_metadata(path: Path, keys: tuple[str, ...]) -> dict:
    """Scalar / string metadata of a GGUF file (the parity check's template and ids, a base GGUF's license)."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {k: reader.fields[k].contents() for k in keys if k in reader.fields}
