"""The standard Hugging Face folder: what `AutoModelForCausalLM.from_pretrained`, vLLM and TGI load as it is.

    hf/
      config.json                     tie_word_embeddings as the merge left it, dtype, use_cache on
      model(-0000N-of-0000M).safetensors  sharded at 5 GB (the Hub's usual size), with model.safetensors.index.json
      generation_config.json          eos_token_id: a LIST holding the trained end-of-turn id and the tokenizer's eos
      tokenizer.json, tokenizer_config.json, chat_template.jinja   the training template (template_kwargs baked in);
                                      tokenizer_config.json lists the added tokens (added_tokens_decoder)
      tokenizer.model                 the base's SentencePiece model, where it has one that matches the tokenizer
      README.md                       the model card (card.py)

Why each part is there: serving engines stop at generation_config's eos ids, so a fine-tune whose end-of-turn token is
missing there generates forever (unsloth#5386 reset it in a merge; vllm#45591 dropped it); and a server renders with
the folder's own template, so it must be the one training rendered with, not the base model's (Axolotl's merge copied
the base's). `data.template_kwargs` (e.g. Llama 3.2's date_string) are baked into the saved template with Jinja `set`
statements, because a server passes no kwargs: the served prompt then renders byte-identically to training's.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from shipsft.data.pack import padding_id
from shipsft.errors import ConfigError
from shipsft.runs.checkpoint import save_atomic

SHARD_SIZE = "5GB"
JINJA_RESERVED = {"none", "None", "true", "True", "false", "False", "and", "or", "not", "in", "is", "if", "else"}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def jinja_literal(value) -> str:
    """A Python/JSON value as a Jinja literal (Jinja spells null/true/false as none/true/false)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jinja_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {jinja_literal(v)}" for k, v in value.items()) + "}"
    raise ConfigError([f"data.template_kwargs: {value!r} ({type(value).__name__}) cannot be written into a chat "
                       "template; use strings, numbers, booleans, lists or mappings"])


def baked_template(source: str, kwargs: dict) -> str:
    """The template with `kwargs` set at its top, so it renders as training did when a server passes no kwargs."""
    bad = [k for k in kwargs if not str(k).isidentifier() or str(k) in JINJA_RESERVED]
    if bad:
        raise ConfigError([f"data.template_kwargs: {bad} are not valid template variable names"])
    head = "".join(f"{{%- set {k} = {jinja_literal(v)} %}}" for k, v in kwargs.items())
    return head + source


def generation_config(lm, tokenizer, stop: list[int]):
    """The model's generation config with eos_token_id = every id that ends a turn, and a pad id."""
    gen = lm.generation_config
    gen.eos_token_id = list(dict.fromkeys(stop))
    if tokenizer.pad_token_id is not None or gen.pad_token_id is None:  # else keep the model's own
        gen.pad_token_id = padding_id(tokenizer, stop)
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    return gen


def same_pieces(sp_file: Path, tokenizer) -> bool:
    """Whether a SentencePiece model's pieces are the tokenizer's tokens, id for id (added tokens may follow)."""
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor(model_file=str(sp_file))
    n = sp.get_piece_size()
    return n <= len(tokenizer) and tokenizer.convert_ids_to_tokens(list(range(n))) == \
        [sp.id_to_piece(i) for i in range(n)]


def sentencepiece_model(tokenizer, folders: list[Path]) -> Path | None:
    """The tokenizer.model (SentencePiece) of the first of `folders` that has one matching the tokenizer.
    transformers 5 saves a tokenizer as tokenizer.json alone, but llama.cpp's converter reads Gemma 2, Phi-3 and
    Llama-2-style vocabularies (scores, byte fallback) from tokenizer.model and refuses those folders without it."""
    import importlib.util

    if importlib.util.find_spec("sentencepiece") is None:  # the gguf extra; an HF-only export does without
        return None
    for d in folders:
        f = Path(d) / "tokenizer.model"
        if f.is_file() and same_pieces(f, tokenizer):
            return f
    return None


def record_added_tokens(folder: Path, tokenizer) -> None:
    """Write `added_tokens_decoder` into the folder's tokenizer_config.json, as transformers 4 did. transformers 5
    keeps added tokens in tokenizer.json only, but llama.cpp's converter reads SentencePiece vocabularies' special
    tokens from tokenizer_config.json (conversion/base.py `_create_vocab_sentencepiece`): without the entry,
    Gemma's <start_of_turn> becomes plain text in the GGUF and a llama.cpp prompt tokenises differently."""
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("added_tokens_decoder"):
        return
    config["added_tokens_decoder"] = {
        str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                 "single_word": t.single_word, "special": t.special}
        for i, t in sorted(tokenizer.added_tokens_decoder.items())}
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_hf(lm, tokenizer, template: str, stop: list[int], out_dir: Path, dtype: str, card: str,
             sp_model: Path | None = None) -> Path:
    """Write the folder atomically. Casts `lm` to `dtype` in place (write the GGUF from fp32 first). `sp_model`:
    a tokenizer.model to copy beside tokenizer.json (`sentencepiece_model`)."""
    lm.to(DTYPES[dtype])
    lm.config.use_cache = True
    lm.generation_config = generation_config(lm, tokenizer, stop)

    def write(tmp: Path) -> None:
        lm.save_pretrained(tmp, safe_serialization=True, max_shard_size=SHARD_SIZE)
        before = tokenizer.chat_template
        tokenizer.chat_template = template  # saved as chat_template.jinja; the caller's tokenizer is left as it was
        try:
            tokenizer.save_pretrained(tmp)
        finally:
            tokenizer.chat_template = before
        record_added_tokens(tmp, tokenizer)
        if sp_model is not None and not (tmp / "tokenizer.model").exists():
            shutil.copyfile(sp_model, tmp / "tokenizer.model")
        (tmp / "README.md").write_text(card, encoding="utf-8")

    return save_atomic(Path(out_dir), write)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
