"""One GGUF file from the merged model, written with gguf-py's `GGUFWriter` (the package llama.cpp ships).

    info = write_gguf(lm, tokenizer, template, eot_id, out_file, "q8_0", name="quickstart", pre="smollm")

What it writes, as llama.cpp's convert_hf_to_gguf.py does for the llama architecture (and what transformers' GGUF
loader, `modeling_gguf_pytorch_utils.load_gguf_checkpoint`, reads back):
- tensors renamed with `gguf.get_tensor_name_map(MODEL_ARCH.LLAMA, n_layers)` (model.layers.0.self_attn.q_proj ->
  blk.0.attn_q); q_proj/k_proj rows permuted into llama.cpp's rotary layout (`permute` below; transformers'
  `LlamaTensorProcessor._reverse_permute_weights` undoes it), so the round trip is exact up to quantisation. A tied
  lm_head is not written (no `output.weight`: llama.cpp and transformers then tie it again).
- tensor types: 1-D tensors (norms) stay F32, as llama.cpp keeps them; 2-D ones take the requested type. gguf-py
  quantises F32, F16, BF16, Q8_0, Q5_1, Q5_0, Q4_1 and Q4_0 in numpy; K-quants and i-quants need llama.cpp's C++
  quantizer (`llama-quantize model-f16.gguf out.gguf Q4_K_M`). Under Q4/Q5 the embedding and output head are
  written as Q8_0 (llama.cpp's quantizer also keeps the output tensor at higher precision, Q6_K, which gguf-py cannot
  write); a matrix whose rows are not a multiple of the 32-value block falls back to F16 (as convert_hf_to_gguf).
- metadata: llama.* hyper-parameters; tokenizer.ggml.* for a byte-level BPE vocabulary (model "gpt2": tokens in id
  order, token types NORMAL / CONTROL for special added tokens / USER_DEFINED / UNUSED for holes, merges, bos / eos /
  pad / unk ids, add_bos_token as the tokenizer behaves); tokenizer.ggml.eot_token_id = the trained end-of-turn id
  (llama.cpp stops generation at eos and eot); tokenizer.chat_template = the training template (kwargs baked in).
Other architectures, SentencePiece vocabularies and rope scaling are refused with the fix (llama.cpp's converter on
the HF export): a GGUF that loads but generates differently is worse than none.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shipsft.errors import ConfigError

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
LOW_BIT = ("q5_1", "q5_0", "q4_1", "q4_0")  # embedding and output head written as Q8_0 under these


@dataclass
class GGUFInfo:
    path: Path
    qtype: str
    bytes: int
    n_tensors: int
    tensor_types: dict[str, int] = field(default_factory=dict)  # type name -> count
    pre: str = "default"


def ggml_type(name: str):
    import gguf

    return {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
            "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
            "q5_1": gguf.GGMLQuantizationType.Q5_1, "q5_0": gguf.GGMLQuantizationType.Q5_0,
            "q4_1": gguf.GGMLQuantizationType.Q4_1, "q4_0": gguf.GGMLQuantizationType.Q4_0}[name]


def file_type(name: str):
    import gguf

    t = gguf.LlamaFileType
    return {"f32": t.ALL_F32, "f16": t.MOSTLY_F16, "bf16": t.MOSTLY_BF16, "q8_0": t.MOSTLY_Q8_0,
            "q5_1": t.MOSTLY_Q5_1, "q5_0": t.MOSTLY_Q5_0, "q4_1": t.MOSTLY_Q4_1, "q4_0": t.MOSTLY_Q4_0}[name]


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's q/k row order for rotary embeddings (convert_hf_to_gguf.py LlamaModel.permute): within each head,
    the two rotary halves are interleaved instead of stacked."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """The inverse of `permute` (transformers' LlamaTensorProcessor._reverse_permute_weights)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_supported(config) -> None:
    """Refuse what this writer would get wrong, naming the tool that handles it."""
    fix = ("Fix: export with --to hf and convert the HF folder with llama.cpp's convert_hf_to_gguf.py, which knows "
           "every architecture")
    if getattr(config, "model_type", None) != "llama":
        raise ConfigError([f"GGUF export: shipsft writes the llama architecture (Llama, SmolLM2); this model is "
                           f"{getattr(config, 'model_type', '?')!r}. {fix}"])
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in (None, "default"):
        raise ConfigError([f"GGUF export: rope scaling {rope_type!r} (Llama 3.1+) is written by llama.cpp as a "
                           f"rope_freqs tensor that transformers' GGUF loader ignores, so the round trip could not be "
                           f"checked. {fix}"])
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError([f"GGUF export: this Llama has attention/MLP biases, which transformers' GGUF loader drops. "
                           f"{fix}"])


def byte_level_bpe(tokenizer) -> dict:
    """tokenizer.json of a byte-level BPE tokenizer (the only vocabulary kind written here), else a clear error."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model") or {}
    decoders = [spec.get("decoder") or {}]
    decoders += decoders[0].get("decoders", []) if decoders[0].get("type") == "Sequence" else []
    if model.get("type") != "BPE" or model.get("byte_fallback") or not any(d.get("type") == "ByteLevel"
                                                                              for d in decoders):
        raise ConfigError(["GGUF export: shipsft writes byte-level BPE vocabularies (SmolLM2, Llama 3, Qwen, GPT-2 "
                           "style); this tokenizer is a SentencePiece/other kind. Fix: export with --to hf and convert "
                           "with llama.cpp's convert_hf_to_gguf.py"])
    return spec


def pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer split, found by its regex in the table transformers' GGUF
    reader uses (so the file reads back with the same split); 'gpt2' for plain ByteLevel; else 'default'."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for p in parts:
        if p.get("type") == "Split":
            pattern = (p.get("pattern") or {}).get("Regex")
            for name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
                if regex == pattern:
                    return name
    if len(parts) == 1 and parts[0].get("type") == "ByteLevel" and parts[0].get("use_regex", True):
        return "gpt2"
    return "default"


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens in id order with llama.cpp token types (convert_hf_to_gguf.py get_vocab_base)."""
    import gguf

    if len(tokenizer) > vocab_size:
        raise ConfigError([f"GGUF export: the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                           f"{vocab_size} rows. Fix: resize the model's embeddings to the tokenizer before training"])
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
        elif i in added:
            tokens.append(added[i].content)
            types.append(int(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED))
        else:
            tokens.append(reverse[i])
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def merges_of(spec: dict) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]


def adds_special(tokenizer, token_id: int | None, first: bool) -> bool:
    """Whether encoding plain text adds this token at the start (first) or end, as the tokenizer behaves."""
    if token_id is None:
        return False
    with_special = tokenizer("shipsft", add_special_tokens=True)["input_ids"]
    plain = tokenizer("shipsft", add_special_tokens=False)["input_ids"]
    if len(with_special) <= len(plain):
        return False
    return (with_special[0] if first else with_special[-1]) == token_id


def tensor_type(name: str, data: np.ndarray, qtype: str, tied: bool) -> str:
    import gguf

    if data.ndim < 2:
        return "f32"
    if qtype in LOW_BIT and (name == "output.weight" or (tied and name == "token_embd.weight")):
        return "q8_0"
    if qtype not in ("f32", "f16", "bf16"):
        block, _ = gguf.GGML_QUANT_SIZES[ggml_type(qtype)]
        if data.shape[-1] % block:
            return "f16"
    return qtype


def write_gguf(lm, tokenizer, template: str, eot_id: int | None, out_file: Path, qtype: str, name: str,
               pre: str | None = None, description: str = "") -> GGUFInfo:
    """Write `out_file` (atomically: a temporary file renamed into place). `lm` is the merged fp32 model."""
    import gguf

    if qtype not in GGUF_TYPES:
        raise ConfigError([f"GGUF export: type {qtype!r} is not one shipsft writes ({', '.join(GGUF_TYPES)})"])
    cfg = lm.config
    check_supported(cfg)
    spec = byte_level_bpe(tokenizer)
    pre = pre or pre_tokenizer_name(spec)
    n_layers, n_head, n_kv = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    emb = lm.get_input_embeddings().weight
    head = lm.get_output_embeddings()
    tied = head is not None and head.weight is emb

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp{os.getpid()}")
    w = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    if description:
        w.add_description(description)
    w.add_file_type(file_type(qtype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    if head_dim != cfg.hidden_size // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(theta))
    w.add_vocab_size(emb.shape[0])

    tokens, types = vocabulary(tokenizer, emb.shape[0])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges_of(spec))
    for add, tid in ((w.add_bos_token_id, tokenizer.bos_token_id), (w.add_eos_token_id, tokenizer.eos_token_id),
                     (w.add_unk_token_id, tokenizer.unk_token_id), (w.add_pad_token_id, tokenizer.pad_token_id),
                     (w.add_eot_token_id, eot_id)):
        if tid is not None:
            add(int(tid))
    w.add_add_bos_token(adds_special(tokenizer, tokenizer.bos_token_id, first=True))
    w.add_add_eos_token(adds_special(tokenizer, tokenizer.eos_token_id, first=False))
    w.add_chat_template(template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    counts: dict[str, int] = {}
    n = 0
    for hf_name, tensor in lm.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConfigError([f"GGUF export: no GGUF name for tensor {hf_name}. Fix: convert the HF export with "
                               "llama.cpp's convert_hf_to_gguf.py"])
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, n_head, n_head)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, n_head, n_kv)
        t = tensor_type(new, data, qtype, tied)
        gt = ggml_type(t)
        if t == "f32":
            w.add_tensor(new, np.ascontiguousarray(data, dtype=np.float32))
        else:
            w.add_tensor(new, gguf.quants.quantize(np.ascontiguousarray(data), gt), raw_dtype=gt)
        counts[t.upper()] = counts.get(t.upper(), 0) + 1
        n += 1
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return GGUFInfo(out_file, qtype, out_file.stat().st_size, n, counts, pre)


def read_metadata(path: Path, keys: tuple[str, ...]) -> dict:
    """Scalar / string metadata of a GGUF file (for the parity check and for carrying a source GGUF's fields)."""
    import gguf

    reader = gguf.GGUFReader(path)
    out = {}
    for k in keys:
        f = reader.fields.get(k)
        if f is not None:
            out[k] = f.contents()
    return out
