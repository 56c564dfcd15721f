"""GGUF: written with gguf-py, read back by transformers (`gguf_file=`): the logits match the model within the
quantisation's tolerance (F32 exactly), the tokenizer tokenises alike, the template and end-of-turn id are embedded;
and shipsft's own tensor check (parity.check_gguf) catches a wrong tensor."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CHATML, tiny_llama, tiny_tokenizer
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from shipsft.config import ExportConfig
from shipsft.errors import ConfigError
from shipsft.export.gguf_writer import read_metadata, write_gguf
from shipsft.export.hf import write_hf
from shipsft.export.parity import ParityReport, check_gguf

TEXT = "<|im_start|>user\nreverse: red cat dog<|im_end|>\n<|im_start|>assistant\ndog cat red<|im_end|>\n"
# max |logit diff| allowed against the fp32 model, per written type: F32 holds the same numbers (measured 0.0); the
# others measured on this model (logit std 0.17): f16 0.0002, bf16 0.0020, q8_0 0.0058, q5_1 0.029, q4_0 0.069;
# the bounds leave ~4x headroom
TOL = {"f32": 1e-5, "f16": 1e-3, "bf16": 1e-2, "q8_0": 2.5e-2, "q5_1": 0.12, "q4_0": 0.3}


@pytest.fixture(scope="module")
def model():
    # tied like SmolLM2; 2 kv heads of 4, so the k permutation differs from q's
    return tiny_llama(vocab_size=len(tiny_tokenizer()), seed=3, tie_word_embeddings=True, num_attention_heads=4,
                      num_key_value_heads=2)


def logits(m, tok):
    ids = tok(TEXT, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        return m(input_ids=ids).logits


@pytest.mark.parametrize("qtype", list(TOL))
def test_transformers_reads_the_gguf_back_with_the_same_logits(tmp_path, model, qtype):
    tok = tiny_tokenizer()
    info = write_gguf(model, tok, CHATML, tok.eos_token_id, tmp_path / f"t-{qtype}.gguf", qtype, "tiny")
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=info.path.name, dtype=torch.float32).eval()
    diff = (logits(back, tok) - logits(model, tok)).abs().max().item()
    assert diff <= TOL[qtype], diff
    assert back.config.tie_word_embeddings  # no output.weight written for a tied head
    assert info.pre == "gpt2" and sum(info.tensor_types.values()) == info.n_tensors


def test_the_gguf_tokenizer_template_and_stop_ids_round_trip(tmp_path, model):
    tok = tiny_tokenizer()
    info = write_gguf(model, tok, CHATML, tok.eos_token_id, tmp_path / "t.gguf", "q8_0", "tiny")
    back = AutoTokenizer.from_pretrained(tmp_path, gguf_file=info.path.name)
    for text in (TEXT, "reverse: north south  é中 42", "<|im_start|>system\n<|im_end|>"):
        assert back(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert back.chat_template == CHATML and back.eos_token == "<|im_end|>"
    meta = read_metadata(info.path, ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.add_bos_token",
                                     "general.architecture", "general.file_type"))
    assert meta == {"tokenizer.ggml.eot_token_id": tok.eos_token_id, "tokenizer.ggml.add_bos_token": False,
                    "general.architecture": "llama", "general.file_type": 7}


def test_low_bit_types_keep_the_embedding_at_q8_0(tmp_path, model):
    tok = tiny_tokenizer()
    info = write_gguf(model, tok, CHATML, None, tmp_path / "t.gguf", "q4_0", "tiny")
    assert info.tensor_types == {"Q8_0": 1, "Q4_0": 14, "F32": 5}  # tied: token_embd is also the output head


def test_the_tensor_check_passes_the_right_gguf_and_names_a_wrong_tensor(tmp_path, model):
    tok = tiny_tokenizer()
    hf = write_hf(model, tok, CHATML, [tok.eos_token_id], tmp_path / "hf", "f32", "# card\n")
    good = write_gguf(model, tok, CHATML, tok.eos_token_id, tmp_path / "g" / "good.gguf", "q8_0", "tiny").path
    report = ParityReport()
    check_gguf(report, good, hf, CHATML, tok.eos_token_id)
    assert report.ok, report.lines()
    other = tiny_llama(vocab_size=len(tok), seed=3, tie_word_embeddings=True)
    with torch.no_grad():
        other.model.layers[1].self_attn.k_proj.weight[3, 5] += 0.5  # one weight moved
    bad = write_gguf(other, tok, CHATML + " ", tok.eos_token_id, tmp_path / "b" / "bad.gguf", "q8_0", "tiny").path
    report = ParityReport()
    check_gguf(report, bad, hf, CHATML, tok.eos_token_id)
    failed = [f.detail for f in report.findings if not f.ok]
    assert any("chat template differs" in d for d in failed)
    assert any("1 tensor problem(s); first: blk.1.attn_k.weight" in d for d in failed), failed


def test_what_the_writer_cannot_do_is_refused_with_the_fix(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer()
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(ConfigError, match="llama architecture.*'qwen2'.*convert_hf_to_gguf.py"):
        write_gguf(qwen, tok, CHATML, None, tmp_path / "q.gguf", "f16", "q")
    with pytest.raises(ValidationError, match="llama-quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M"):
        ExportConfig(quant="q4_k_m")
    with pytest.raises(ValidationError, match="not a GGUF type shipsft writes"):
        ExportConfig(quant="q3_0")


@pytest.mark.slow
def test_smollm2_round_trips_exactly_through_shipsfts_gguf(tmp_path):
    """The embedded SmolLM2 came out of a GGUF (Q4_1, converted once to fp32 by model/locate.py); written back as an
    F32 GGUF by shipsft and read by transformers, it gives the same logits bit for bit and tokenises alike."""
    from shipsft.config import MethodConfig, ModelConfig
    from shipsft.export.run import source_gguf_fields
    from shipsft.model.load import load_base
    from shipsft.model.locate import load_tokenizer

    cfg = ModelConfig(path="smollm2")
    model, _ = load_base(cfg, MethodConfig(), torch.device("cpu"))
    model.eval()
    tok = load_tokenizer(cfg)
    pre = source_gguf_fields(cfg).get("tokenizer.ggml.pre")
    info = write_gguf(model, tok, tok.chat_template, tok.eos_token_id, tmp_path / "s.gguf", "f32", "smollm2", pre=pre)
    assert info.pre == "smollm" and info.tensor_types == {"F32": 272}
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="s.gguf", dtype=torch.float32).eval()
    assert torch.equal(logits(back, tok), logits(model, tok))
    back_tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="s.gguf")
    text = "New order from Osaka: Lea Moreau, 77, bought 3 red mugs. {\"qty\": 3} é 中文"
    assert back_tok(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert back_tok.chat_template == tok.chat_template


def test_unpermute_inverts_permute():
    from shipsft.export.gguf_writer import permute, unpermute

    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    for heads, kv in ((8, 8), (8, 2)):
        rows = (kv if kv != heads else heads) * 16
        assert np.array_equal(unpermute(permute(w[:rows], heads, kv), heads, kv), w[:rows])
        assert not np.array_equal(permute(w[:rows], heads, kv), w[:rows])
