"""Model loading and methods: safetensors only, QLoRA's CPU error, LoRA targets/layers/DoRA/rsLoRA, full FT."""
from __future__ import annotations

import pytest
import torch

from helpers import tiny_llama
from shipsft.config import ModelConfig, RunConfig
from shipsft.errors import ConfigError
from shipsft.model.load import apply_method, load_base, load_for_training, param_counts
from shipsft.model.precision import autocast_dtype, native_bf16


def cfg(**sections) -> RunConfig:
    return RunConfig.model_validate(sections)


def test_qlora_on_a_machine_without_cuda_is_a_clear_config_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*method.name=lora"):
        c = cfg(method={"name": "qlora"})
        load_base(c.model, c.method, torch.device("cpu"))


def test_lora_defaults_adapt_every_linear_layer_incl_mlp():
    model = apply_method(cfg(method={"lora": {"r": 4, "alpha": 8}}).method, tiny_llama(vocab_size=64), False)
    adapted = {n.split(".")[-2] for n, _ in model.named_modules() if n.endswith("lora_A")}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    trainable, total = param_counts(model)
    # hidden 64, kv 2 heads x 16 = 32, mlp 128; r * (in + out) per module, 2 layers
    per_layer = 4 * (2 * (64 + 64) + 2 * (64 + 32) + 2 * (64 + 128) + (128 + 64))
    assert trainable == 2 * per_layer
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    assert total == trainable + sum(p.numel() for p in tiny_llama(vocab_size=64).parameters())


def test_lora_computes_no_input_gradient_below_the_first_layer():
    """Issue 31's lever "no input-gradient product for the first layer's frozen linears" holds by construction: the
    embeddings are frozen, so the first layer's input needs no gradient and autograd skips the products that would
    make one (q/k/v, gate/up: x^T-side GEMMs); the second layer's input does (LoRA A below it trains). Enabling
    input gradients (as gradient checkpointing's reentrant variant needs) would add them back."""
    model = apply_method(cfg().method, tiny_llama(vocab_size=64), False)
    needs = {}

    def seen(k):
        def hook(module, args, kwargs):
            needs[k] = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).requires_grad
        return hook

    for k, layer in enumerate(model.base_model.model.model.layers):
        layer.register_forward_pre_hook(seen(k), with_kwargs=True)
    model(input_ids=torch.tensor([[1, 2, 3]]))
    assert needs == {0: False, 1: True}


def test_lora_layer_subset_dora_rslora_and_modules_to_save():
    c = cfg(method={"lora": {"r": 4, "layers": [1], "use_dora": True, "use_rslora": True,
                             "target_modules": ["q_proj", "v_proj"], "modules_to_save": ["lm_head"]}})
    model = apply_method(c.method, tiny_llama(vocab_size=64), False)
    adapted = sorted(n for n, _ in model.named_modules() if n.endswith("lora_A"))
    assert adapted == ["base_model.model.model.layers.1.self_attn.q_proj.lora_A",
                       "base_model.model.model.layers.1.self_attn.v_proj.lora_A"]
    pc = model.peft_config["default"]
    assert pc.use_dora and pc.use_rslora and pc.layers_to_transform == [1]
    assert any("lm_head" in n and p.requires_grad for n, p in model.named_parameters())
    assert any("lora_magnitude_vector" in n for n, _ in model.named_parameters())  # DoRA's magnitudes


def test_lora_layer_index_out_of_range_is_named():
    with pytest.raises(ConfigError, match=r"\[5\] out of range; this model has layers 0..1"):
        apply_method(cfg(method={"lora": {"layers": [0, 5]}}).method, tiny_llama(vocab_size=64), False)


def test_full_finetune_trains_everything():
    model = apply_method(cfg(method={"name": "full"}).method, tiny_llama(vocab_size=64).requires_grad_(False), False)
    trainable, total = param_counts(model)
    assert trainable == total


def test_loads_safetensors_folder_fp32_and_refuses_pickles(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    tiny_llama(vocab_size=64).save_pretrained(good, safe_serialization=True)
    c = cfg(model={"path": str(good)}, method={"name": "full"})
    model, info = load_for_training(c.model, c.method, False, torch.device("cpu"), None)
    assert info.model_dir == good and model.training and model.config.use_cache is False
    assert all(p.dtype == torch.float32 for p in model.parameters())
    tiny = tiny_llama(vocab_size=64)
    tiny.config.save_pretrained(bad)
    torch.save(tiny.state_dict(), bad / "pytorch_model.bin")  # a pickle: loading it could run code
    with pytest.raises(ConfigError, match="pickled .bin weights are refused"):
        c = cfg(model={"path": str(bad)})
        load_base(c.model, c.method, torch.device("cpu"))


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if native_bf16(cpu) else None)
    if native_bf16(cpu):
        assert autocast_dtype("bf16", cpu) == torch.bfloat16
    else:
        with pytest.raises(ConfigError, match="no native bf16 support"):
            autocast_dtype("bf16", cpu)


def test_a_tokenizer_without_a_vocabulary_is_refused(tmp_path):
    """A folder holding only tokenizer_config.json loads as a tokenizer of a few special tokens that turns text
    into <unk>: refused, naming the folder and the missing file."""
    import shutil

    from helpers import require_fixture
    from shipsft.model.locate import tokenizer_from

    folder = tmp_path / "gemma-it"
    shutil.copytree(require_fixture("gemma-it"), folder)
    with pytest.raises(ConfigError) as e:
        tokenizer_from(folder)
    line = e.value.lines[0]
    assert str(folder) in line and "no usable vocabulary" in line and "tokenizer.json" in line
    tokenizer_from(require_fixture("qwen2.5-instruct"))  # a real vocabulary passes


def test_a_gguf_path_that_is_not_a_gguf_is_one_clear_error(tmp_path):
    from shipsft.model.locate import resolve_model_dir

    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        resolve_model_dir(ModelConfig(path=str(fake)))
