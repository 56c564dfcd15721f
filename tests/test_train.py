"""The training loop on a tiny random Llama and a 512-token BPE trained in-process: it learns, logs what it
promises, accumulates gradients like one big batch, skips non-finite steps, and writes a loadable run folder.
One slow test runs a few LoRA steps on the real SmolLM2-135M."""
from __future__ import annotations

import copy
import io
import json
import random
from pathlib import Path

import pytest
import torch
from rich.console import Console

from conftest import tiny_llama
from shipsft.config import RunConfig
from shipsft.data.pack import pack_examples
from shipsft.data.render import render_conversation
from shipsft.errors import TrainingDiverged
from shipsft.model import apply_method
from shipsft.optim import lr_at
from shipsft.track import read_metrics
from shipsft.train import fit, run_train

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WORDS = "red green blue cat dog bird one two three alpha beta gamma north south east west".split()


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """A learnable toy task: repeat the listed words in reverse order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(2, 5))
        out.append([{"role": "user", "content": "reverse: " + " ".join(words)},
                    {"role": "assistant", "content": " ".join(reversed(words))}])
    return out


_TOK = {}


def tiny_tokenizer():
    """A 512-token byte-level BPE trained on the toy task in ~0.2 s, with a ChatML template."""
    if "tok" not in _TOK:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|im_start|>", "<|im_end|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        corpus = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for c in conversations(300, 99) for m in c]
        tok.train_from_iterator(corpus, trainer)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
        fast.chat_template = CHATML
        _TOK["tok"] = fast
    return _TOK["tok"]


def rows_for(convs, max_length=128):
    tok = tiny_tokenizer()
    rendered = [r for c in convs for r in render_conversation(tok, c)]
    return pack_examples(rendered, max_length=max_length).rows


def tiny_model(seed=0):
    return tiny_llama(vocab_size=len(tiny_tokenizer()), seed=seed).train()


def cfg_for(tmp_path, **sections) -> RunConfig:
    raw = {"output": {"dir": str(tmp_path)}, "data": {"max_length": 128},
           "train": {"batch_rows": 2, "log_every": 1, "seed": 0}, **sections}
    return RunConfig.model_validate(raw)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def test_full_finetune_learns_logs_schedule_and_saves(tmp_path):
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"batch_rows": 4, "max_steps": 30, "eval_every": 10,
                  "precision": "fp32", "seed": 0}, optim={"lr": 3e-3, "warmup_steps": 3})
    res = fit(cfg, tiny_model(), tiny_tokenizer(), rows_for(conversations(120)), rows_for(conversations(20, 7)),
              tmp_path, quiet())
    assert res.steps == 30 and res.n_skipped == 0
    assert res.eval_loss_after < res.eval_loss_before - 1.0  # the toy task is learnable in 30 steps
    recs = read_metrics(tmp_path / "metrics.jsonl")
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    # the schedule advances once per optimizer step, exactly as lr_at says
    assert [r["lr"] for r in steps] == [lr_at(s, 30, 3, 3e-3, "cosine", 0.1) for s in range(30)]
    assert all(r["trained_tokens"] > 0 and 0 <= r["padding_share"] < 1 and r["grad_norm"] > 0 for r in steps)
    assert [r["step"] for r in recs if "eval_loss" in r] == [0, 10, 20, 30]
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert (tmp_path / "model" / "tokenizer.json").exists()
    assert "im_start" in (tmp_path / "model" / "tokenizer_config.json").read_text() + \
        ((tmp_path / "model" / "chat_template.jinja").read_text() if (tmp_path / "model" / "chat_template.jinja").exists() else "")


def test_grad_accumulation_in_the_loop_equals_one_big_batch(tmp_path):
    rows = rows_for(conversations(16), max_length=64)
    base = tiny_model()
    weights = []
    for batch_rows, accum in [(4, 1), (1, 4), (2, 2)]:
        model = copy.deepcopy(base).double()
        cfg = cfg_for(tmp_path / f"{batch_rows}x{accum}", method={"name": "full"}, data={"max_length": 64},
                      train={"batch_rows": batch_rows, "grad_accum": accum, "max_steps": 2, "precision": "fp32"},
                      optim={"lr": 1e-3, "schedule": "constant", "warmup_steps": 0})
        fit(cfg, model, tiny_tokenizer(), rows, None, tmp_path / f"{batch_rows}x{accum}", quiet())
        weights.append([p.detach() for p in model.parameters()])
    for other in weights[1:]:
        for a, b in zip(weights[0], other):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _poison_steps(model, bad_calls: set[int]):
    """Make the embedding output NaN on the given forward calls (a hook on our own test module)."""
    calls = {"n": 0}

    def hook(module, args, out):
        calls["n"] += 1
        return out * float("nan") if calls["n"] in bad_calls else out

    return model.get_input_embeddings().register_forward_hook(hook)


def test_nonfinite_step_is_skipped_and_counted(tmp_path):
    model = tiny_model()
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"batch_rows": 2, "max_steps": 4, "precision": "fp32"},
                  optim={"lr": 1e-3})
    _poison_steps(model, {2})  # the second optimizer step (one micro-batch per step, no eval set)
    res = fit(cfg, model, tiny_tokenizer(), rows_for(conversations(20)), None, tmp_path, quiet())
    assert res.n_skipped == 1 and res.steps == 4
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert [r["skipped"] for r in steps] == [False, True, False, False]
    assert steps[1]["loss"] == "nan"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_repeated_nonfinite_steps_stop_with_a_clear_error(tmp_path):
    model = tiny_model()
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"max_steps": 10, "max_nonfinite_steps": 3,
                                                              "precision": "fp32"})
    _poison_steps(model, {2, 3, 4})
    with pytest.raises(TrainingDiverged, match="non-finite for 3 optimizer steps in a row"):
        fit(cfg, model, tiny_tokenizer(), rows_for(conversations(40)), None, tmp_path, quiet())


def test_lora_adapter_saved_loads_with_same_logits_and_neftune_hook_removed(tmp_path):
    from peft import PeftModel

    cfg = cfg_for(tmp_path, train={"max_steps": 3, "neftune_alpha": 5.0, "precision": "fp32"},
                  method={"name": "lora", "lora": {"r": 4, "alpha": 8}}, optim={"lr": 1e-2})
    model = apply_method(cfg, tiny_model())
    res = fit(cfg, model, tiny_tokenizer(), rows_for(conversations(20)), None, tmp_path, quiet())
    assert (res.out_dir / "adapter_model.safetensors").exists() and (res.out_dir / "adapter_config.json").exists()
    emb = model.get_base_model().get_input_embeddings()
    assert not emb._forward_hooks  # NEFTune noise never leaks into the saved / evaluated model
    reloaded = PeftModel.from_pretrained(tiny_model(), res.out_dir).eval()
    model.eval()
    x = torch.randint(0, len(tiny_tokenizer()), (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, reloaded(input_ids=x).logits)


def _write_tiny_run(tmp_path: Path, **overrides) -> Path:
    model_dir = tmp_path / "tiny-model"
    tiny_model().save_pretrained(model_dir, safe_serialization=True)
    tiny_tokenizer().save_pretrained(model_dir)
    for split, (n, seed) in {"train": (64, 0), "eval": (16, 5)}.items():
        (tmp_path / f"{split}.jsonl").write_text(
            "".join(json.dumps({"messages": c}) + "\n" for c in conversations(n, seed)))
    cfg = {"model": {"path": str(model_dir)}, "data": {"train": "train.jsonl", "eval": "eval.jsonl", "max_length": 128},
           "train": {"max_steps": 4, "batch_rows": 4, "precision": "fp32"}, "output": {"dir": str(tmp_path / "runs"),
           "name": "t"}, **overrides}
    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "config.yaml"


def test_run_train_writes_a_reproducible_run_folder(tmp_path):
    from shipsft.config import load_config

    path = _write_tiny_run(tmp_path)
    out = io.StringIO()
    code = run_train(load_config(path), config_path=path, argv=["shipsft", "train", str(path)],
                     console=Console(file=out, width=150))
    run = tmp_path / "runs" / "t"
    assert code == 0, out.getvalue()
    text = out.getvalue()
    assert "eval loss: base" in text and "trainable of" in text
    manifest = json.loads((run / "manifest.json").read_text())
    cfg = load_config(run / "config.yaml")
    assert manifest["config_hash"] == cfg.config_hash()
    assert manifest["command"] == ["shipsft", "train", str(path)] and manifest["seed"] == 42
    assert manifest["skip_audit"] is False and manifest["steps"] == 4
    assert len(manifest["data_fingerprint"]["train"]) == 16 and manifest["packages"]["torch"] == torch.__version__
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert len([r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]) == 4
    report = (run / "report.html").read_text()  # written without eval suites too: the training curves
    assert "<svg" in report and "loss" in report


@pytest.mark.slow
def test_smollm2_lora_steps_write_a_loadable_adapter(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from shipsft.source import load_tokenizer, resolve_model_dir

    tok = load_tokenizer("smollm2")
    rendered = [r for c in conversations(16) for r in render_conversation(tok, c)]
    rows = pack_examples(rendered, max_length=256).rows
    cfg = cfg_for(tmp_path, train={"max_steps": 2, "batch_rows": 2}, method={"lora": {"r": 8, "alpha": 16}})
    from shipsft.model import load_for_training

    model, info = load_for_training(cfg)
    # q,o 576->576; k,v 576->192; gate,up 576->1536; down 1536->576: r * (in + out) each, 30 layers
    assert info.trainable == 8 * 30 * (2 * (576 + 576) + 2 * (576 + 192) + 2 * (576 + 1536) + (1536 + 576))
    res = fit(cfg, model, tok, rows, rows[:2], tmp_path, quiet())
    assert res.eval_loss_after < res.eval_loss_before
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("smollm2"), use_safetensors=True)
    reloaded = PeftModel.from_pretrained(base, res.out_dir)
    assert sum(p.numel() for n, p in reloaded.named_parameters() if "lora_" in n) == info.trainable


def test_quickstart_data_is_reproducible_and_config_parses(tmp_path):
    import runpy

    from shipsft.config import load_config

    here = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
    runpy.run_path(str(here / "make_data.py"))["main"](tmp_path)
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (here / name).read_bytes()
    train = {json.loads(x)["messages"][1]["content"] for x in (here / "train.jsonl").read_text().splitlines()}
    held_out = [json.loads(x)["messages"] for x in (here / "eval.jsonl").read_text().splitlines()]
    assert len(train) == 300 and len(held_out) == 60 and not train & {m[1]["content"] for m in held_out}
    answer = json.loads(held_out[0][2]["content"])
    assert list(answer) == ["name", "age", "city", "item", "color", "qty"]
    cfg = load_config(here / "config.yaml")
    assert cfg.method.name == "lora" and Path(cfg.data.train[0]).is_file() and Path(cfg.data.eval[0]).is_file()


def test_audit_errors_refuse_training_unless_skipped_and_recorded(tmp_path):
    from shipsft.config import load_config
    from shipsft.errors import AuditFailed

    path = _write_tiny_run(tmp_path)
    (tmp_path / "eval.jsonl").write_text((tmp_path / "train.jsonl").read_text())  # eval == train: contamination
    with pytest.raises(AuditFailed, match="contamination"):
        run_train(load_config(path), config_path=path, console=quiet())
    run = tmp_path / "runs" / "t"
    assert (run / "audit.json").exists() and not (run / "adapter").exists()
    assert run_train(load_config(path), config_path=path, skip_audit=True, console=quiet()) == 0
    assert json.loads((run / "manifest.json").read_text())["skip_audit"] is True


def test_compile_with_packing_is_refused(tmp_path):
    from shipsft.config import load_config
    from shipsft.errors import ConfigError

    path = _write_tiny_run(tmp_path)
    with pytest.raises(ConfigError, match="examples would attend to each other"):
        run_train(load_config(path, ["train.compile=true"]), config_path=path, console=quiet())
