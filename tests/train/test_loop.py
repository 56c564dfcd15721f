"""The training loop on a tiny random Llama and a 512-token BPE trained in-process: it learns, logs what it
promises, accumulates gradients like one big batch, skips non-finite steps, saves crash-safe checkpoints on its
own cadence, and writes a loadable run folder. One slow test runs a few LoRA steps on the real SmolLM2-135M."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from helpers import (Notes, cfg_for, conversations, examples_for, fit_run, rows_for, tiny_model, tiny_tokenizer,
                     write_tiny_run)
from shipsft.config import OptimConfig, load_config
from shipsft.data.pack import pack_examples
from shipsft.data.render import render_conversation
from shipsft.errors import TrainingDiverged
from shipsft.model.load import apply_method
from shipsft.runs.jsonio import read_jsonl
from shipsft.train.run import run_train
from shipsft.steps.schedule import lr_at


def test_full_finetune_learns_logs_schedule_and_saves(tmp_path):
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"batch_size": 16, "max_steps": 30, "eval_every": 10,
                  "precision": "fp32", "seed": 0}, optim={"lr": 3e-3, "warmup_steps": 3},
                  data={"max_length": 128, "eval": ["(rows passed in memory)"]})
    res = fit_run(cfg, tiny_model(), tiny_tokenizer(), examples_for(conversations(120)),
                  rows_for(conversations(20, 7)), tmp_path)
    assert res.steps == 30 and res.n_skipped == 0
    assert res.eval_loss_after < res.eval_loss_before - 1.0  # the toy task is learnable in 30 steps
    recs = read_jsonl(tmp_path / "metrics.jsonl")
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 31))
    # the schedule advances once per optimizer step, exactly as lr_at says
    optim = OptimConfig(lr=3e-3, warmup_steps=3)
    assert [r["lr"] for r in steps] == [lr_at(s, 30, 3, optim) for s in range(30)]
    assert all(r["trained_tokens"] > 0 and 0 <= r["padding_share"] < 1 and r["grad_norm"] > 0 for r in steps)
    assert [r["step"] for r in recs if "eval_loss" in r] == [0, 10, 20, 30]
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert (tmp_path / "model" / "tokenizer.json").exists()
    assert "im_start" in (tmp_path / "model" / "tokenizer_config.json").read_text() + \
        ((tmp_path / "model" / "chat_template.jinja").read_text() if (tmp_path / "model" / "chat_template.jinja").exists() else "")


def test_grad_accumulation_in_the_loop_equals_one_big_batch(tmp_path):
    """16 examples per step in one forward pass, or split into micro-batches of one or two rows (micro_batch_tokens):
    the loss is normalised over the whole step, so the update is the same (failure modes 1 and 3)."""
    examples = examples_for(conversations(32))
    base = tiny_model()
    weights, micro = [], []
    for micro_tokens in (4096, 64, 128):
        model = copy.deepcopy(base).double()
        run = tmp_path / f"micro{micro_tokens}"
        cfg = cfg_for(run, method={"name": "full"}, data={"max_length": 64},
                      train={"batch_size": 16, "micro_batch_tokens": micro_tokens, "max_steps": 2,
                             "precision": "fp32"},
                      optim={"lr": 1e-3, "schedule": "constant", "warmup_steps": 0})
        res = fit_run(cfg, model, tiny_tokenizer(), examples, None, run)
        weights.append([p.detach() for p in model.parameters()])
        micro.append(res.history[0]["micro_batches"])
    assert micro[0] == 1 and micro[1] > micro[2] > 1  # really split: 1 row per pass, then 2
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
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"batch_size": 8, "max_steps": 4, "precision": "fp32"},
                  optim={"lr": 1e-3})
    _poison_steps(model, {2})  # the second optimizer step (one micro-batch per step, no eval set)
    res = fit_run(cfg, model, tiny_tokenizer(), examples_for(conversations(20)), None, tmp_path)
    assert res.n_skipped == 1 and res.steps == 4
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text  # strict JSON: a non-finite loss is written as null
    steps = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl"))
             for line in text.splitlines()]
    steps = [r for r in steps if "loss" in r]
    assert [r["skipped"] for r in steps] == [False, True, False, False]
    assert steps[1]["loss"] is None
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_repeated_nonfinite_steps_stop_with_a_clear_error(tmp_path):
    model = tiny_model()
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"max_steps": 10, "max_nonfinite_steps": 3,
                                                              "precision": "fp32"})
    _poison_steps(model, {2, 3, 4})
    with pytest.raises(TrainingDiverged, match="non-finite for 3 optimizer steps in a row"):
        fit_run(cfg, model, tiny_tokenizer(), examples_for(conversations(40)), None, tmp_path)


def test_lora_adapter_saved_loads_with_same_logits_and_neftune_hook_removed(tmp_path):
    from peft import PeftModel

    cfg = cfg_for(tmp_path, train={"max_steps": 3, "neftune_alpha": 5.0, "precision": "fp32"},
                  method={"name": "lora", "lora": {"r": 4, "alpha": 8}}, optim={"lr": 1e-2})
    model = apply_method(cfg.method, tiny_model(), False)
    fit_run(cfg, model, tiny_tokenizer(), examples_for(conversations(20)), None, tmp_path)
    out_dir = tmp_path / "adapter"
    assert (out_dir / "adapter_model.safetensors").exists() and (out_dir / "adapter_config.json").exists()
    emb = model.get_base_model().get_input_embeddings()
    assert not emb._forward_hooks  # NEFTune noise never leaks into the saved / evaluated model
    reloaded = PeftModel.from_pretrained(tiny_model(), out_dir).eval()
    model.eval()
    x = torch.randint(0, len(tiny_tokenizer()), (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x).logits, reloaded(input_ids=x).logits)


_write_tiny_run = write_tiny_run


def test_run_train_writes_a_reproducible_run_folder(tmp_path):
    from shipsft.config import load_config

    path = _write_tiny_run(tmp_path)
    notes = Notes()
    code = run_train(load_config(path), config_path=path, argv=["shipsft", "train", str(path)], progress=notes)
    run = tmp_path / "runs" / "t"
    text = "\n".join(notes.lines)
    assert code == 0, text
    assert "eval loss: base" in text and "trainable of" in text
    manifest = json.loads((run / "manifest.json").read_text())
    cfg = load_config(run / "config.yaml")
    assert manifest["config_hash"] == cfg.config_hash()
    assert manifest["command"] == ["shipsft", "train", str(path)] and manifest["seed"] == 42
    assert manifest["skip_audit"] is False and manifest["steps"] == 4
    assert len(manifest["data_fingerprint"]["train"]) == 16 and manifest["packages"]["torch"] == torch.__version__
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    assert len([r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]) == 4
    report = (run / "report.html").read_text()  # written without eval suites too: the training curves
    assert "<svg" in report and "loss" in report
    # a checkpoint at the end of training, loadable and marked complete, though no eval suite exists
    assert (run / "checkpoints" / "step-4" / "COMPLETE").exists()
    assert (run / "checkpoints" / "step-4" / "adapter_model.safetensors").exists()
    for name in ("manifest.json", "audit.json"):
        json.loads((run / name).read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in {name}"))


@pytest.mark.slow
def test_smollm2_lora_steps_write_a_loadable_adapter(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from shipsft.model.load import load_for_training
    from shipsft.model.locate import load_tokenizer, resolve_model_dir

    cfg = cfg_for(tmp_path, train={"max_steps": 2, "batch_size": 8}, method={"lora": {"r": 8, "alpha": 16}},
                  data={"max_length": 256, "eval": ["(rows passed in memory)"]})
    tok = load_tokenizer(cfg.model)
    rendered = [r for c in conversations(16) for r in render_conversation(tok, c)]
    rows = pack_examples(rendered[:4], 256, True).rows
    model, info = load_for_training(cfg.model, cfg.method, False, torch.device("cpu"), None)
    # q,o 576->576; k,v 576->192; gate,up 576->1536; down 1536->576: r * (in + out) each, 30 layers
    assert info.trainable == 8 * 30 * (2 * (576 + 576) + 2 * (576 + 192) + 2 * (576 + 1536) + (1536 + 576))
    res = fit_run(cfg, model, tok, rendered, rows, tmp_path)
    assert res.eval_loss_after < res.eval_loss_before
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir(cfg.model), use_safetensors=True)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert sum(p.numel() for n, p in reloaded.named_parameters() if "lora_" in n) == info.trainable


def test_quickstart_data_is_reproducible_and_config_parses(tmp_path):
    import runpy

    here = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
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
    from shipsft.errors import AuditFailed

    path = _write_tiny_run(tmp_path)
    (tmp_path / "eval.jsonl").write_text((tmp_path / "train.jsonl").read_text())  # eval == train: contamination
    with pytest.raises(AuditFailed, match="contamination"):
        run_train(load_config(path), config_path=path)
    run = tmp_path / "runs" / "t"
    assert (run / "audit.json").exists() and not (run / "adapter").exists()
    assert run_train(load_config(path), config_path=path, skip_audit=True) == 0
    assert json.loads((run / "manifest.json").read_text())["skip_audit"] is True



def test_checkpoints_on_their_own_cadence_and_the_last_k_kept(tmp_path):
    """Without eval suites: a checkpoint every train.save_every steps and at the end, each complete, the oldest
    pruned down to train.keep_checkpoints."""
    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"batch_size": 8, "max_steps": 7, "save_every": 2,
                                                              "keep_checkpoints": 2, "precision": "fp32"})
    res = fit_run(cfg, tiny_model(), tiny_tokenizer(), examples_for(conversations(40)), None, tmp_path)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-6", "step-7"] and sorted(res.checkpoints) == [6, 7]
    assert all((tmp_path / "checkpoints" / k / "COMPLETE").exists() for k in kept)
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temporary folders left behind


def test_schedule_free_optimizer_is_switched_around_evals_and_saves(tmp_path):
    """The loop calls train() before stepping (schedulefree refuses to step otherwise) and eval() before
    evaluating/saving: the saved weights are the averaged point schedule-free evaluates at, not the one it steps."""
    pytest.importorskip("schedulefree")
    from safetensors.torch import load_file

    from shipsft.runs.layout import RunFolder
    from shipsft.train.loop import fit
    from shipsft.train.run import assemble

    cfg = cfg_for(tmp_path, method={"name": "full"}, train={"batch_size": 8, "max_steps": 4, "precision": "fp32"},
                  optim={"name": "schedule_free_adamw", "lr": 1e-2})
    s = assemble(cfg, tiny_model(), tiny_tokenizer(), examples_for(conversations(20)), None, RunFolder(tmp_path))
    assert fit(s).steps == 4
    s.run.close()
    [opt] = s.optimizers
    assert opt.param_groups[0]["train_mode"] is False  # left in eval mode: the weights are the averaged point
    saved = load_file(tmp_path / "model" / "model.safetensors")
    for k, v in saved.items():
        torch.testing.assert_close(v, s.model.state_dict()[k])
    opt.train()  # the stepping point differs: had the loop saved in train mode, the files would hold these
    assert any(not torch.equal(v, s.model.state_dict()[k]) for k, v in saved.items())


def test_compile_with_packing_is_refused(tmp_path):
    from shipsft.errors import ConfigError

    path = _write_tiny_run(tmp_path)
    with pytest.raises(ConfigError, match="examples would attend to each other"):
        run_train(load_config(path, ["train.compile=true", "model.attn_implementation=sdpa"]), config_path=path)
