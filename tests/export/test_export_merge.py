"""Merge + HF folder: the merged, saved and reloaded model gives base + adapter's logits (fp32, 1e-4), tied
embeddings included; generation_config and template carried; QLoRA refused without CUDA."""
from __future__ import annotations

import json

import peft
import pytest
import torch
from helpers import save_tiny_model, tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from shipsft.config import MethodConfig, ModelConfig
from shipsft.errors import ConfigError
from shipsft.export.hf import baked_template, write_hf
from shipsft.export.merge import merged_model

X = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 64, 12, 300, 1, 0]])


def trained_adapter(tmp_path, tied: bool, **lora):
    """A saved tiny base and an adapter whose every trainable weight moved (as after training)."""
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    save_tiny_model(base_dir, tie_word_embeddings=tied)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    pm = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", **lora))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in pm.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    pm.save_pretrained(adapter_dir)
    reloaded = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                              adapter_dir).eval()
    with torch.no_grad():
        want = reloaded(input_ids=X).logits
    return base_dir, adapter_dir, want


def export_and_reload(tmp_path, base_dir, adapter_dir, method="lora"):
    lm, info = merged_model(ModelConfig(path=str(base_dir)), MethodConfig(name=method), adapter_dir,
                            torch.device("cpu"))
    tok = tiny_tokenizer()
    out = write_hf(lm, tok, tok.chat_template, [tok.eos_token_id], tmp_path / "hf", "f32", "# card\n")
    return AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval(), info, out


@pytest.mark.parametrize("lora", [dict(target_modules="all-linear"), dict(target_modules="all-linear", use_dora=True),
                                  dict(target_modules=["q_proj", "v_proj"], use_rslora=True)],
                         ids=["lora", "dora", "rslora"])
def test_merged_export_gives_the_adapters_logits(tmp_path, lora):
    base_dir, adapter_dir, want = trained_adapter(tmp_path, tied=False, **lora)
    model, info, _ = export_and_reload(tmp_path, base_dir, adapter_dir)
    with torch.no_grad():
        got = model(input_ids=X).logits
    assert (got - want).abs().max().item() < 1e-4
    assert info.method == "lora" and not info.tied_before


# LoRA on a tied embedding merged naively moves the other (shared) weight too: 22.5 logit units on this model
# (peft#2777, transformers#45127); modules_to_save copies diverge from the tied weight during training
@pytest.mark.parametrize("lora,tied_after", [
    (dict(target_modules="all-linear"), True),
    (dict(target_modules="all-linear", modules_to_save=["lm_head"]), False),
    (dict(target_modules="all-linear", modules_to_save=["embed_tokens"]), False),
    (dict(target_modules=["embed_tokens", "q_proj"]), False),
    (dict(target_modules=["lm_head", "q_proj"]), False),
], ids=["untouched", "save-lm_head", "save-embed", "lora-embed", "lora-lm_head"])
def test_tied_embeddings_survive_the_merge_and_the_reload(tmp_path, lora, tied_after):
    base_dir, adapter_dir, want = trained_adapter(tmp_path, tied=True, **lora)
    model, info, out = export_and_reload(tmp_path, base_dir, adapter_dir)
    with torch.no_grad():
        got = model(input_ids=X).logits
    assert (got - want).abs().max().item() < 1e-4
    assert info.tied_before and info.tied_after == tied_after
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] == tied_after
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied_after


def test_hf_folder_carries_template_kwargs_stop_ids_and_card(tmp_path):
    base_dir, adapter_dir, _ = trained_adapter(tmp_path, tied=False, target_modules="all-linear")
    lm, _ = merged_model(ModelConfig(path=str(base_dir)), MethodConfig(), adapter_dir, torch.device("cpu"))
    tok = tiny_tokenizer()
    source = "{{ greeting }}|" + tok.chat_template
    template = baked_template(source, {"greeting": "hi \"there\"", "n": 2, "flag": True, "nothing": None})
    out = write_hf(lm, tok, template, [tok.eos_token_id, 0], tmp_path / "hf", "bf16", "# card\n")
    assert (out / "README.md").read_text() == "# card\n"
    assert GenerationConfig.from_pretrained(out).eos_token_id == [tok.eos_token_id, 0]
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    back = AutoTokenizer.from_pretrained(out)
    msgs = [{"role": "user", "content": "x"}]
    # served with no kwargs, it renders as training did with them
    assert back.apply_chat_template(msgs, tokenize=False) == \
        'hi "there"|' + tok.apply_chat_template(msgs, tokenize=False)


def test_qlora_export_says_it_needs_cuda(tmp_path):
    base_dir, adapter_dir, _ = trained_adapter(tmp_path, tied=False, target_modules="all-linear")
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the de-quantise-then-merge path")
    with pytest.raises(ConfigError, match="de-quantised NF4 base.*CUDA"):
        merged_model(ModelConfig(path=str(base_dir)), MethodConfig(name="qlora"), adapter_dir, torch.device("cpu"))
