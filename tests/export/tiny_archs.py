"""Tiny random models of the architectures people fine-tune, each with a tokenizer of its family, saved as the HF
folders a user brings (no download: real tokenizers from ../shared/fixtures/models, SentencePiece ones trained here).

    folder = save_arch("gemma2", tmp_path / "tiny-model")      # config.json + safetensors + tokenizer + template
    ARCHS["llama3"].template_kwargs                             # what data.template_kwargs the run needs

Gemma's and Phi-3's real tokenizers are SentencePiece models that the fixtures do not carry, so a small SentencePiece
BPE (byte fallback, as theirs) is trained on the toy task with their special-token layout, and their real chat
templates are used: Gemma's from the fixtures, Phi-3.5-mini's from llama.cpp's copy of it
(ggml-org/llama.cpp@80fb11ac73e66d89eae2c6a91d8a77428fa733ed:models/templates/microsoft-Phi-3.5-mini-instruct.jinja).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from helpers import conversations, fixture_tokenizer, require_fixture

PHI35_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
                  "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
                  "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
                  "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
                  "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")
# untied embeddings where the family allows: a random model whose head is its embedding mostly echoes its last input
# token (its residual stream is nearly that token's embedding), which makes greedy comparisons trivially equal; Gemma
# is tied as released (llama.cpp's Gemma graphs have no output matrix: convert_hf_to_gguf skips lm_head.weight)
SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16, max_position_embeddings=4096)


@dataclass(frozen=True)
class Arch:
    name: str
    gguf_arch: str  # general.architecture llama.cpp's converter writes
    tokenizer: str  # a fixture folder name, or sp-gemma / sp-phi3 (trained here)
    template_kwargs: dict = field(default_factory=dict)
    template_fixture: str | None = None  # take the chat template from this fixture's tokenizer_config.json
    model: dict = field(default_factory=dict)  # model config section settings the family needs


ARCHS = {a.name: a for a in (
    Arch("llama3", "llama", "llama-3.2-instruct", {"date_string": "26 Jul 2024"}),
    Arch("qwen2", "qwen2", "qwen2.5-instruct"),
    Arch("qwen3", "qwen3", "qwen3"),
    # Gemma 2 soft-caps attention logits, which only transformers' eager attention computes
    Arch("gemma2", "gemma2", "sp-gemma", template_fixture="gemma-it", model={"attn_implementation": "eager"}),
    Arch("gemma3", "gemma3", "sp-gemma", template_fixture="gemma-3-it"),
    Arch("mistral", "llama", "sp-mistral", template_fixture="mistral-7b-instruct-v0.3"),
    Arch("phi3", "phi3", "sp-phi3"),
)}
# Mistral v0.3's real tokenizer.json without its tokenizer.model: what llama.cpp's converter cannot read right
FIXTURE_MISTRAL = Arch("mistral-json", "llama", "mistral-7b-instruct-v0.3")


def train_sentencepiece(folder: Path, specials: dict[str, tuple[int, str]], user_defined: list[str],
                        dummy_prefix: bool) -> Path:
    """A SentencePiece BPE with byte fallback on the toy task's text; `specials` places pad/eos/bos/unk (id, piece)
    as the family does (Gemma: <pad> 0, <eos> 1, <bos> 2, <unk> 3; Llama 2 / Phi-3: <unk> 0, <s> 1, </s> 2); Llama 2's
    adds a dummy-prefix space to the text, Gemma's does not."""
    import sentencepiece as spm

    corpus = [m["content"] for c in conversations(400, 99) for m in c] + ["Hello world! 42 é 中文", "You are terse."]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf, model_type="bpe", vocab_size=400, byte_fallback=True,
        user_defined_symbols=user_defined, add_dummy_prefix=dummy_prefix, split_digits=True, character_coverage=1.0,
        remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2,
        **{f"{k}_id": i for k, (i, _) in specials.items()}, **{f"{k}_piece": p for k, (_, p) in specials.items()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    return folder / "tokenizer.model"


def sp_gemma(folder: Path, template: str):
    from transformers import GemmaTokenizer

    from transformers import AddedToken

    turns = ["<start_of_turn>", "<end_of_turn>"]
    train_sentencepiece(folder, {"pad": (0, "<pad>"), "eos": (1, "<eos>"), "bos": (2, "<bos>"), "unk": (3, "<unk>")},
                        turns, dummy_prefix=False)
    tok = GemmaTokenizer.from_pretrained(folder)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in turns], special_tokens=True)  # as Gemma's
    tok.chat_template = template
    return tok


def sp_mistral(folder: Path, template: str):
    """Mistral v0.3's layout (<unk> 0, <s> 1, </s> 2, [INST] 3, [/INST] 4, as its tokenizer.model); the fixture has
    only its tokenizer.json, with which llama.cpp's converter types [INST] as text (test_mistral_without_...)."""
    from transformers import AddedToken, LlamaTokenizer

    inst = ["[INST]", "[/INST]"]
    train_sentencepiece(folder, {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>")}, inst, dummy_prefix=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                              "unk_token": "<unk>", "legacy": False}))
    tok = LlamaTokenizer.from_pretrained(folder)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in inst], special_tokens=True)
    tok.chat_template = template
    return tok


def sp_phi3(folder: Path):
    """Phi-3's layout (microsoft/Phi-3-mini-4k-instruct tokenizer.json): a Llama-2 SentencePiece (<unk> 0, <s> 1,
    </s> 2) plus added chat tokens; eos <|endoftext|>; legacy: every text piece between special tokens gets the
    dummy-prefix space, as its tokenizer.json's Prepend normalizer does."""
    from transformers import AddedToken, LlamaTokenizer

    train_sentencepiece(folder, {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>")}, [], dummy_prefix=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                              "unk_token": "<unk>", "add_bos_token": False,
                                                              "legacy": True}))
    tok = LlamaTokenizer.from_pretrained(folder)
    # Phi-3's added chat tokens strip the whitespace after them (rstrip; llama.cpp hard-codes the same for phi3)
    tok.add_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)]
                   + [AddedToken(t, special=True, normalized=False, rstrip=True)
                      for t in ("<|assistant|>", "<|system|>", "<|end|>", "<|user|>")])
    tok.eos_token = "<|endoftext|>"
    tok.pad_token = "<unk>"  # not eos: the audit refuses pad == eos when eos is never trained (<|end|> ends turns)
    tok.chat_template = PHI35_TEMPLATE
    return tok


def arch_tokenizer(arch: Arch, folder: Path):
    if arch.tokenizer == "sp-gemma":
        meta = json.loads((require_fixture(arch.template_fixture) / "tokenizer_config.json").read_text())
        return sp_gemma(folder, meta["chat_template"])
    if arch.tokenizer == "sp-phi3":
        return sp_phi3(folder)
    if arch.tokenizer == "sp-mistral":
        meta = json.loads((require_fixture(arch.template_fixture) / "tokenizer_config.json").read_text())
        return sp_mistral(folder, meta["chat_template"])
    return fixture_tokenizer(arch.tokenizer)


def arch_model(arch: Arch, vocab: int, tok, seed: int = 0, size: dict | None = None):
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    shape = dict(SHAPE, **(size or {}), vocab_size=vocab, **ids)
    if arch.name == "llama3":  # Llama 3.2's rope: llama3 scaling of a 500k base (its config.json's rope_scaling)
        cfg = tf.LlamaConfig(**dict(shape, max_position_embeddings=131072), tie_word_embeddings=False, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
        return tf.LlamaForCausalLM(cfg)
    if arch.name == "qwen2":
        return tf.Qwen2ForCausalLM(tf.Qwen2Config(**shape, tie_word_embeddings=False))
    if arch.name == "qwen3":
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(**shape, tie_word_embeddings=False))
    gemma = dict(query_pre_attn_scalar=shape["head_dim"], sliding_window=32, tie_word_embeddings=True)
    if arch.name == "gemma2":  # softcapped logits and attention, sliding/global layers
        return tf.Gemma2ForCausalLM(tf.Gemma2Config(**shape, **gemma))
    if arch.name == "gemma3":
        # 6 layers: Gemma 3's 5 sliding + 1 global pattern, which llama.cpp assumes (the converter writes no
        # layer_types); a 2-layer [sliding, full] model would be read as 2 sliding layers
        return tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(**dict(shape, num_hidden_layers=6), **gemma))
    if arch.name.startswith("mistral"):
        return tf.MistralForCausalLM(tf.MistralConfig(**shape, tie_word_embeddings=False, sliding_window=None))
    if arch.name == "phi3":  # fused qkv_proj and gate_up_proj
        return tf.Phi3ForCausalLM(tf.Phi3Config(**{k: v for k, v in shape.items() if k != "head_dim"},
                                                tie_word_embeddings=False))
    raise ValueError(arch.name)


def save_arch(arch: str | Arch, folder: Path, seed: int = 0, size: dict | None = None) -> Path:
    """The model folder a user brings: random weights of the architecture, its tokenizer and template. `size`
    overrides SHAPE (bench/gguf_agreement.py uses rows of 256, the K-quant block)."""
    arch = ARCHS[arch] if isinstance(arch, str) else arch
    tok = arch_tokenizer(arch, folder)
    model = arch_model(arch, len(tok), tok, seed, size).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def save_chatml_llama(folder: Path, seed: int = 3) -> Path:
    """The toy run's model folder with a tokenizer llama.cpp knows: a tiny tied Llama (like SmolLM2) with
    SmolLM2-135M's own tokenizer (the embedded model's, pre-tokenizer 'smollm') and the toy ChatML template."""
    from helpers import CHATML, tiny_llama

    from shipsft.config import ModelConfig
    from shipsft.model.locate import load_tokenizer

    tok = load_tokenizer(ModelConfig(path="smollm2"))
    tok.chat_template = CHATML
    model = tiny_llama(vocab_size=len(tok), seed=seed, tie_word_embeddings=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def arch_run(root: Path, arch: str | Arch, steps: int = 1, size: dict | None = None) -> Path:
    """A run folder of the toy task on `name`'s tiny model, trained `steps` LoRA steps (no eval suite: the adapter of
    the last step ships). Returns the run folder."""
    from helpers import Notes, write_tiny_run

    from shipsft.config import load_config
    from shipsft.train.run import run_train

    arch = ARCHS[arch] if isinstance(arch, str) else arch
    # the folder is named after the family: llama.cpp keys Phi-3's tokenizer quirks on the GGUF's name
    folder = save_arch(arch, root / f"tiny-{arch.name}", size=size)
    data = {"train": "train.jsonl", "eval": "eval.jsonl", "max_length": 128, "template_kwargs": arch.template_kwargs}
    model = {"path": str(folder), **arch.model}
    path = write_tiny_run(root, n_train=16, model=model, data=data, train={"max_steps": steps, "batch_size": 16,
                                                             "precision": "fp32"},
                          eval={"kl_to_base": False, "forgetting_probe": False})
    notes = Notes()
    code = run_train(load_config(path), config_path=path, progress=notes)
    assert code == 0, notes.lines
    return root / "runs" / "t"


def smollm2_run(root: Path, steps: int = 1, n_train: int = 16, n_eval: int = 4) -> Path:
    """The embedded SmolLM2-135M-Instruct trained `steps` LoRA steps (r 16) on the first examples of the quickstart
    task, fp32 (no eval suite: the last adapter ships). Returns the run folder."""
    import yaml
    from helpers import REPO, Notes

    from shipsft.config import load_config
    from shipsft.train.run import run_train

    quickstart = REPO / "examples" / "quickstart"
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("eval", n_eval)):
        lines = (quickstart / f"{split}.jsonl").read_text().splitlines()[:n]
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    cfg = {"model": {"path": "smollm2"}, "data": {"train": "train.jsonl", "eval": "eval.jsonl", "max_length": 256},
           "method": {"name": "lora", "lora": {"r": 16, "alpha": 32}},
           "train": {"max_steps": steps, "batch_size": 16, "precision": "fp32"},
           "eval": {"kl_to_base": False, "forgetting_probe": False},
           "output": {"dir": str(root / "runs"), "name": "t"}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    notes = Notes()
    assert run_train(load_config(root / "config.yaml"), config_path=root / "config.yaml", progress=notes) == 0, \
        notes.lines
    return root / "runs" / "t"
