"""GGUF: written by llama.cpp's own convert_hf_to_gguf.py and quantizer, checked in llama.cpp itself.

Every architecture people fine-tune (tiny random models, tokenizers of their families) is trained one LoRA step,
merged, converted and run through node-llama-cpp's prebuilt engine by `shipsft export`'s parity check: the prompts
must tokenise to the training ids and llama.cpp's greedy answers must be the run's own, token for token (F32)."""
from __future__ import annotations

import json

import gguf
import pytest
from helpers import Notes, fixture_tokenizer
from pydantic import ValidationError
from tiny_archs import ARCHS, FIXTURE_MISTRAL, arch_run, save_chatml_llama, smollm2_run

from shipsft.config import ExportConfig
from shipsft.export.convert import convert
from shipsft.export.hf import record_added_tokens
from shipsft.export.llamacpp import toolchain
from shipsft.export.parity import ParityFailed
from shipsft.export.quantize import quantize
from shipsft.export.run import export_run


@pytest.fixture(scope="module")
def tc():
    return toolchain(Notes())


def test_gguf_types_are_llama_cpps_and_imatrix_types_are_refused_with_the_fix():
    assert ExportConfig(quant="Q4_K_M").quant == "q4_k_m"
    with pytest.raises(ValidationError, match="iq2_xs needs an importance matrix.*llama-quantize --imatrix"):
        ExportConfig(quant="iq2_xs")
    with pytest.raises(ValidationError, match="not a GGUF type shipsft writes"):
        ExportConfig(quant="q3_0")


def test_the_converters_input_gets_llama_cpps_space_rule_without_touching_the_hf_folder(tmp_path):
    """A SentencePiece tokenizer that prepends its space only at the start (Mistral v0.3) gets add_prefix_space
    false in the converter's linked copy of the folder; hf/ keeps its own file; other tokenizers are left alone."""
    from shipsft.export.convert import link_folder, match_space_prefix

    hf = tmp_path / "hf"
    hf.mkdir()
    for scheme, changed in (("first", True), ("always", False)):
        pre = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": False}
        (hf / "tokenizer.json").write_text(json.dumps({"pre_tokenizer": pre}))
        (hf / "tokenizer_config.json").write_text(json.dumps({"add_prefix_space": True, "legacy": False}))
        staging = tmp_path / f"staging-{scheme}"
        link_folder(hf, staging)
        assert match_space_prefix(staging) is changed
        config = json.loads((staging / "tokenizer_config.json").read_text())
        assert config["add_prefix_space"] is (not changed) and config["legacy"] is False
        assert json.loads((hf / "tokenizer_config.json").read_text())["add_prefix_space"] is True


def test_the_hf_folder_keeps_what_llama_cpps_converter_reads(tmp_path):
    """tokenizer_config.json lists the added tokens (transformers 5 leaves them to tokenizer.json), and a base
    tokenizer.model is copied only when its pieces are the tokenizer's."""
    from tiny_archs import sp_gemma

    from shipsft.export.hf import sentencepiece_model

    base = tmp_path / "base"
    tok = sp_gemma(base, "{{ messages[0]['content'] }}")
    tok.save_pretrained(tmp_path / "saved")
    assert "added_tokens_decoder" not in json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    record_added_tokens(tmp_path / "saved", tok)
    added = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert added["4"] == {"content": "<start_of_turn>", "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True}
    assert sentencepiece_model(tok, [tmp_path / "saved", base]) == base / "tokenizer.model"
    assert sentencepiece_model(fixture_tokenizer("qwen2.5-instruct"), [base]) is None  # not its vocabulary


def tensor_types(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


@pytest.mark.slow
def test_k_quants_are_llama_cpps_own_mix(tmp_path, tc):
    """llama_model_quantize picks each tensor's type (src/llama-quant.cpp): Q4_K_M keeps attn_v / ffn_down of the
    layers `use_more_bits` names (i >= 7 * n / 8 in integer arithmetic: layer 1 of 2) and the output head at Q6_K.
    Rows of 256 values, the K-quant block, so no tensor falls back to another type."""
    from helpers import tiny_llama
    from transformers import AutoTokenizer

    folder = save_chatml_llama(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(folder)
    tiny_llama(vocab_size=len(tok), hidden_size=256, intermediate_size=512, tie_word_embeddings=False).save_pretrained(
        folder, safe_serialization=True)
    record_added_tokens(folder, tok)
    info = convert(folder, tmp_path / "m-q4_k_m.gguf", "q4_k_m", tc, "m")  # converter to F32, then the quantizer
    assert info.seconds.keys() == {"convert", "quantize"} and "llama_model_quantize" in info.tool
    f32 = convert(folder, tmp_path / "m-f32.gguf", "f32", tc, "m").path
    for q in ("q5_k_m", "q6_k"):
        quantize(f32, tmp_path / f"m-{q}.gguf", q, tc)
    types = {}
    for q in ("q4_k_m", "q5_k_m", "q6_k"):
        path = tmp_path / f"m-{q}.gguf"
        assert gguf.LlamaFileType(gguf.GGUFReader(path).fields["general.file_type"].contents()).name == \
            f"MOSTLY_{q.upper()}"
        types[q] = tensor_types(path)
    t = types["q4_k_m"]
    assert (t["blk.1.attn_v.weight"], t["blk.1.ffn_down.weight"], t["output.weight"]) == ("Q6_K", "Q6_K", "Q6_K")
    assert (t["blk.0.attn_v.weight"], t["blk.0.ffn_down.weight"], t["blk.1.attn_q.weight"]) == ("Q4_K", "Q4_K", "Q4_K")
    assert t["blk.0.attn_norm.weight"] == "F32"
    assert types["q5_k_m"]["blk.1.attn_q.weight"] == "Q5_K" and types["q5_k_m"]["output.weight"] == "Q6_K"
    assert {v for k, v in types["q6_k"].items() if not k.endswith("norm.weight")} == {"Q6_K"}


def engine_summary(run) -> dict:
    record = json.loads((run / "export" / "export.json").read_text())
    assert record["parity"]["ok"], [f for f in record["parity"]["findings"] if not f["ok"]]
    return record


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHS))
def test_each_architecture_serves_in_llama_cpp_as_trained(tmp_path, name):
    """One LoRA step, merged, converted by llama.cpp, loaded by llama.cpp: its tokenisation of the rendered eval
    prompts is training's and its greedy answers are the run's own, token for token (F32)."""
    run = arch_run(tmp_path, name)
    notes = Notes()
    export_run(run, ExportConfig(to=["hf", "gguf"], check_prompts=2), notes)
    record = engine_summary(run)
    engine = record["parity"]["engine"]
    assert record["gguf"]["architecture"] == ARCHS[name].gguf_arch and engine["file_type"] == "ALL_F32"
    assert engine["prompts"] == engine["prompt_ids_equal"] == engine["answers_equal"] == 2
    assert engine["positions_agree"] == engine["positions"] > 0
    gen = record["parity"]["generations"]
    assert [a["stopped"] for a in engine["answers"]] == [g["stopped"] for g in gen]
    tensors = tensor_types(record["gguf"]["path"])
    if name == "llama3":  # llama3 rope scaling: llama.cpp's per-dimension frequency factors
        assert "rope_freqs.weight" in tensors
    if name.startswith("gemma"):  # tied as released: llama.cpp's Gemma graph reads the embedding as the head
        assert "output.weight" not in tensors
    assert (run / "export" / "gguf" / "Modelfile").exists()


@pytest.mark.slow
def test_a_tokenizer_llama_cpp_reads_differently_fails_the_check(tmp_path):
    """Mistral v0.3 with its tokenizer.json alone (no tokenizer.model): llama.cpp's converter types [INST] as plain
    text, so llama.cpp tokenises the chat differently from training, and the export says so instead of shipping."""
    run = arch_run(tmp_path, FIXTURE_MISTRAL)
    with pytest.raises(ParityFailed) as e:
        export_run(run, ExportConfig(to=["hf", "gguf"], check_prompts=2), Notes())
    text = str(e.value)
    assert "0/2 rendered eval prompts tokenise to the training ids" in text
    assert "llama.cpp ['[', 'INST', ']'] vs training ['[INST]'" in text


@pytest.mark.slow
def test_smollm2_end_to_end(tmp_path):
    """The embedded SmolLM2-135M-Instruct, one LoRA step on the quickstart task, exported: llama.cpp recognises its
    tokenizer ('smollm'), tokenises the eval prompts as training did and answers as the run does."""
    run = smollm2_run(tmp_path, steps=1)
    notes = Notes()
    export_run(run, ExportConfig(to=["hf", "gguf"], check_prompts=2), notes)
    record = engine_summary(run)
    engine = record["parity"]["engine"]
    # the F32 rule: every teacher-forced choice is the run's (a free-running answer may part at a near-tie)
    assert engine["prompts"] == engine["prompt_ids_equal"] == 2
    assert engine["positions_agree"] == engine["positions"] > 0
    meta = gguf.GGUFReader(record["gguf"]["path"]).fields
    assert meta["tokenizer.ggml.pre"].contents() == "smollm" and meta["general.architecture"].contents() == "llama"
