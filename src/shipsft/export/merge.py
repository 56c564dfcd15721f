"""Merge what was trained into one plain fp32 model, equal to base + adapter as training and eval ran it.

    lm, info = merged_model(cfg.model, cfg.method, run.weights, device)

- LoRA / DoRA / rsLoRA: peft's `merge_and_unload` on the fp32 base (W + scale * B @ A, DoRA's magnitude included),
  so the merged logits equal the unmerged adapter's to float rounding (tests/export/test_export_merge.py: 1e-4).
- Tied embeddings (SmolLM2 ties lm_head to embed_tokens): peft merges a LoRA on either module into the shared
  tensor in place, which changes the other one too; measured on a tied tiny Llama with LoRA on embed_tokens the
  merged logits moved by 22.5 from the adapter's (peft#2777, transformers#45127). So a tied model is untied before
  the adapter goes on (lm_head gets its own copy), merged, and re-tied only when both weights are still equal; a
  model whose head and embeddings now differ is saved with tie_word_embeddings false.
- QLoRA: training saw the NF4-quantised base, de-quantised on the fly. Merging into the original fp32 weights would
  ship a model training never saw; merging into NF4 and re-quantising would lose the update in rounding. So each
  4-bit layer is de-quantised once (bitsandbytes, CUDA) into a plain fp32 Linear, and the adapter is merged into that.
- Full fine-tuning: the saved model is loaded as it is (nothing to merge).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from shipsft.config import MethodConfig, ModelConfig
from shipsft.errors import ConfigError
from shipsft.model.load import load_base, load_weights


@dataclass
class MergeInfo:
    method: str
    tied_before: bool  # the base ties lm_head to embed_tokens
    tied_after: bool  # the merged model still does (False: training changed one of them)
    dequantized: int = 0  # QLoRA: 4-bit layers de-quantised before the merge

    def summary(self) -> str:
        text = f"{self.method}: merged into the fp32 base" if self.method != "full" else "full: no adapter to merge"
        if self.dequantized:
            text += f" (de-quantised {self.dequantized} NF4 layers first, as training saw them)"
        if self.tied_before and not self.tied_after:
            text += "; embeddings untied (training changed lm_head or embed_tokens)"
        return text


def is_tied(lm) -> bool:
    head, emb = lm.get_output_embeddings(), lm.get_input_embeddings()
    return head is not None and emb is not None and head.weight is emb.weight


def untie(lm) -> None:
    """Give lm_head its own copy of the shared weight and tell the config, so nothing re-ties them."""
    head = lm.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    set_tied(lm, False)


def set_tied(lm, tied: bool) -> None:
    lm.config.tie_word_embeddings = tied
    text = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    if text is not lm.config and hasattr(text, "tie_word_embeddings"):
        text.tie_word_embeddings = tied


def retie_if_equal(lm) -> bool:
    """Tie lm_head back to embed_tokens when the merge left them equal (a smaller, standard checkpoint)."""
    head, emb = lm.get_output_embeddings(), lm.get_input_embeddings()
    if head is None or emb is None or head.weight.shape != emb.weight.shape:
        return False
    if not torch.equal(head.weight, emb.weight):
        return False
    head.weight = emb.weight
    set_tied(lm, True)
    return True


def dequantize_4bit(lm) -> int:
    """Replace every bitsandbytes 4-bit Linear by an fp32 nn.Linear holding its de-quantised weight (CUDA)."""
    import bitsandbytes as bnb
    from peft.utils.integrations import dequantize_bnb_weight

    n = 0
    for name, module in list(lm.named_modules()):
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        dense = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                                device=module.weight.device, dtype=torch.float32)
        with torch.no_grad():
            dense.weight.copy_(dequantize_bnb_weight(module.weight, state=module.weight.quant_state).float())
            if module.bias is not None:
                dense.bias.copy_(module.bias.float())
        parent_name, _, child = name.rpartition(".")
        setattr(lm.get_submodule(parent_name) if parent_name else lm, child, dense)
        n += 1
    # the weights are dense fp32 now: drop the quantizer marker, or save_pretrained refuses / re-quantises
    lm.hf_quantizer = None
    lm.is_quantized = False
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    return n


def qlora_device() -> torch.device:
    if not torch.cuda.is_available():
        raise ConfigError(["this run trained QLoRA: its adapter is merged into the de-quantised NF4 base, the weights "
                           "training saw, and bitsandbytes' NF4 kernels need a CUDA GPU, which this machine lacks. "
                           "Fix: run `shipsft export` on a GPU machine (the adapter in final/ also loads unmerged "
                           "with peft on top of the 4-bit base)."])
    return torch.device("cuda", torch.cuda.current_device())


def merged_model(model: ModelConfig, method: MethodConfig, weights: Path, device: torch.device):
    """(fp32 transformers model in eval mode, MergeInfo) for a run's shipped weights (an adapter or a full model)."""
    import peft

    weights = Path(weights)
    if not (weights / "adapter_config.json").exists():  # full fine-tuning: the saved model is the model
        lm = load_weights(weights, model, MethodConfig(name="full"), device).eval()
        tied = is_tied(lm)
        return lm, MergeInfo("full", tied, tied)
    n_dequant = 0
    if method.name == "qlora":
        device = qlora_device()
        lm, _ = load_base(model, method, device)
        n_dequant = dequantize_4bit(lm)
    else:
        lm, _ = load_base(model, method, device)
    tied = is_tied(lm)
    if tied:
        untie(lm)
    lm = peft.PeftModel.from_pretrained(lm, weights).merge_and_unload()
    lm.eval()
    tied_after = retie_if_equal(lm) if tied else False
    if not tied_after and tied:
        set_tied(lm, False)
    lm.config.use_cache = True  # training switched the KV cache off for packed rows; a served model wants it
    return lm.to(torch.float32), MergeInfo(method.name, tied, tied_after, n_dequant)
