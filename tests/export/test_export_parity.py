"""The whole hand-off on a tiny trained run: `output.export` exports at the end of `shipsft train`, the HF folder
gives base + adapter's logits, the parity check passes, and planted mismatches (a template edited after training, an
eos list without the end-of-turn token, changed weights) fail `shipsft export RUN --check` with a line naming them."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import Notes, fixture_tokenizer, write_tiny_run
from safetensors.torch import load_file, save_file
from tiny_archs import save_chatml_llama
from typer.testing import CliRunner

from shipsft.cli.main import app
from shipsft.config import RunConfig, load_config


def toy_eval(root):
    """One eval suite (so the run promotes to final/), no drift measures (speed)."""
    return {"suites": [{"name": "toy", "data": str(root / "eval.jsonl"), "max_new_tokens": 8}],
            "kl_to_base": False, "forgetting_probe": False}


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "300"})
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained with output.export set: the export is written at the end of training. Its model has
    SmolLM2's tokenizer (one llama.cpp's converter knows) and the toy ChatML template."""
    from shipsft.train.run import run_train

    root = tmp_path_factory.mktemp("run")
    save_chatml_llama(root / "tiny-model")
    path = write_tiny_run(root, eval=toy_eval(root), output={"dir": str(root / "runs"), "name": "t",
                                                             "export": {"to": ["hf", "gguf"]}})
    notes = Notes()
    assert run_train(load_config(path), config_path=path, progress=notes) == 0, notes.lines
    return root / "runs" / "t", notes.lines


@pytest.fixture
def run_copy(trained, tmp_path):
    dst = tmp_path / "t"
    shutil.copytree(trained[0], dst)
    return dst


def test_training_with_output_export_writes_a_checked_export(trained):
    run_dir, notes = trained
    export = run_dir / "export"
    record = json.loads((export / "export.json").read_text())
    assert record["parity"]["ok"] is True and record["gguf"]["type"] == "f32"
    checks = {f["check"] for f in record["parity"]["findings"] if f["ok"]}
    assert {"template", "rendering", "stop ids", "generation", "gguf"} <= checks
    assert any(n.startswith("parity ok   rendering: 64/64 training sequences render byte-identically") for n in notes)
    assert sorted(p.name for p in export.iterdir()) == ["export.json", "gguf", "hf"]  # no staging folder left
    assert sorted(p.name for p in (export / "gguf").iterdir()) == ["COMPLETE", "Modelfile", "README.md", "t-f32.gguf"]
    gen = json.loads((export / "hf" / "generation_config.json").read_text())
    assert 2 in gen["eos_token_id"]  # <|im_end|>, the trained end-of-turn token of the ChatML template
    engine = record["parity"]["engine"]
    assert engine["prompts"] == engine["prompt_ids_equal"] == engine["answers_equal"] == 8
    assert engine["positions_agree"] == engine["positions"] and engine["file_type"] == "ALL_F32"
    assert any(n.startswith("parity ok   gguf: t-f32.gguf in llama.cpp v0.4.0 (node-llama-cpp 3.21.1") and
               "8/8 greedy answers equal the run's own greedy answers" in n for n in notes)


def test_the_hf_export_gives_base_plus_adapter_logits(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, _ = trained
    cfg = load_config(run_dir / "config.yaml")
    base = AutoModelForCausalLM.from_pretrained(cfg.model.path, dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, run_dir / "final").eval()
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "export" / "hf", dtype=torch.float32).eval()
    x = torch.tensor([[1, 5, 17, 42, 99, 3, 250, 7, 64, 12, 300, 2]])
    with torch.no_grad():
        assert (exported(input_ids=x).logits - adapter(input_ids=x).logits).abs().max().item() < 1e-4


def test_a_template_edited_after_training_is_caught(run_copy):
    jinja = run_copy / "export" / "hf" / "chat_template.jinja"
    edited = jinja.read_text().replace("<|im_start|>assistant\n", "<|im_start|>assistant \n")
    assert edited != jinja.read_text()
    jinja.write_text(edited)
    code, out = run("export", run_copy, "--check")
    assert code == 1, out
    assert "error: parity template: the exported chat template differs from the one training rendered with " \
           "(at character" in out
    assert "error: parity generation: 8/8 eval prompts tokenise differently" in out


def test_an_eos_list_without_the_end_of_turn_token_is_caught(run_copy):
    path = run_copy / "export" / "hf" / "generation_config.json"
    gen = json.loads(path.read_text())
    gen["eos_token_id"] = [0]
    path.write_text(json.dumps(gen))
    code, out = run("export", run_copy, "--check", "--prompts", "2")
    assert code == 1
    assert "error: parity stop ids: generation_config.json: eos ids [0] lack the trained end-of-turn '<|im_end|>' " \
           "(id 2)" in out


def test_weights_that_differ_from_the_adapter_are_caught(run_copy):
    """Changed HF weights fail the generation check; llama.cpp, running the (right) GGUF, then answers unlike the
    export's generations, and for an F32 file that fails too."""
    path = run_copy / "export" / "hf" / "model.safetensors"
    sd = load_file(path)
    sd["model.layers.1.self_attn.o_proj.weight"] *= -3  # what a merge into the wrong base would look like
    save_file(sd, path, metadata={"format": "pt"})
    code, out = run("export", run_copy, "--check")
    assert code == 1
    assert "error: parity generation: " in out and "first difference" in out
    assert "greedy answers equal the run's own greedy answers" in out.split("error: parity gguf: t-f32.gguf in "
                                                                            "llama.cpp")[1]


def test_a_k_quant_export_reports_its_agreement_in_llama_cpp(run_copy, tmp_path):
    code, out = run("export", run_copy, "--to", "gguf", "--quant", "q4_k_m", "--prompts", "2", "--out", tmp_path / "q")
    assert code == 0, out
    record = json.loads((tmp_path / "q" / "export.json").read_text())
    assert record["gguf"]["type"] == "q4_k_m" and "llama_model_quantize" in record["gguf"]["tool"]
    engine = record["parity"]["engine"]
    assert engine["file_type"] == "MOSTLY_Q4_K_M" and engine["prompts"] == engine["prompt_ids_equal"] == 2
    assert "(MOSTLY_Q4_K_M: reported, not required)" in out
    # no HF folder: the reference answers are the run's adapter's own greedy generations
    assert all(g["agrees"] for g in record["parity"]["generations"]) and not (tmp_path / "q" / "hf").exists()


def test_export_flags_override_and_mistakes_exit_2(run_copy, tmp_path):
    code, out = run("export", run_copy, "--to", "hf", "--quant", "q8_0")
    assert code == 2 and "error: --quant applies to the GGUF file only, and --to has no gguf" in out
    code, out = run("export", tmp_path, "--to", "hf")
    assert code == 2 and "not a run folder" in out
    code, out = run("export", run_copy, "--to", "hf", "--dtype", "bf16", "--skip-check", "--out", tmp_path / "x")
    assert code == 0, out
    record = json.loads((tmp_path / "x" / "export.json").read_text())
    assert record["parity"] is None and record["settings"]["dtype"] == "bf16" and record["gguf"] is None
    assert json.loads((tmp_path / "x" / "hf" / "config.json").read_text())["dtype"] == "bfloat16"


def test_the_model_card_says_what_it_is_and_how_to_serve_it(trained):
    card = (trained[0] / "export" / "hf" / "README.md").read_text()
    manifest = json.loads((trained[0] / "manifest.json").read_text())
    for part in ("base_model:", "| method | lora |", "| LoRA r / alpha / dropout | 16 / 32 / 0.0 |",
                 f"Config hash `{manifest['config_hash']}`", f"train `{manifest['data_fingerprint']['train']}`",
                 "| train | `", "| suite | metric | n | base | tuned | delta | 95% CI |", "Gate decision: **promoted**",
                 "## Train/serve parity check", "- ok   rendering:", "vllm serve ./hf --generation-config ./hf",
                 "llama-server -m gguf/t-f32.gguf --jinja", "ollama create t -f Modelfile", "```jinja"):
        assert part in card, part
    modelfile = (trained[0] / "export" / "gguf" / "Modelfile").read_text()
    assert "FROM ./t-f32.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ else }}{{ end }}' in modelfile


@pytest.mark.parametrize("name,expressible", [("llama-3.2-instruct", True), ("qwen2.5-instruct", True),
                                              ("qwen3", False), ("mistral-7b-instruct-v0.3", False)])
def test_modelfile_templates_are_derived_only_where_they_reproduce_the_jinja(name, expressible):
    from shipsft.data.template import resolve_template
    from shipsft.export.modelfile import modelfile, render_pieces, turn_pieces

    tok = fixture_tokenizer(name)
    kwargs = {"date_string": "26 Jul 2024"} if name.startswith("llama") else {}
    t = resolve_template(tok, None, kwargs)
    pieces = turn_pieces(t)
    assert (pieces is not None) == expressible
    text, note = modelfile("m.gguf", t, ["<stop>"])
    assert ("TEMPLATE" in text) == expressible and ("--jinja" in note) != expressible
    if pieces is not None:
        chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                {"role": "user", "content": "r"}]
        assert render_pieces(pieces, chat, True) == t.render(chat, add_generation_prompt=True)


def test_old_run_configs_load_and_save_merged_true_says_what_replaced_it():
    assert RunConfig.model_validate({"output": {"save_merged": False}}).output.export is None
    with pytest.raises(ValueError, match="output.save_merged was replaced by output.export"):
        RunConfig.model_validate({"output": {"save_merged": True}})
    with pytest.raises(ValueError, match="check_prompts is set but output.export.check is false"):
        RunConfig.model_validate({"output": {"export": {"check": False, "check_prompts": 3}}})
    assert RunConfig.model_validate({"output": {"export": {}}}).output.export.check_prompts == 8


def test_a_failed_export_at_the_end_of_training_leaves_the_run_complete(tmp_path):
    """A GGUF llama.cpp cannot write (the toy task's own BPE, a tokenizer its converter does not know): training
    still finishes its run folder, the exit code says."""
    from shipsft.train.run import run_train

    path = write_tiny_run(tmp_path, eval=toy_eval(tmp_path), output={"dir": str(tmp_path / "runs"), "name": "t",
                                                                     "export": {"to": ["gguf"]}})
    notes = Notes()
    assert run_train(load_config(path), config_path=path, progress=notes) == 2
    assert any(n.startswith("export failed: GGUF export: llama.cpp does not know this tokenizer") for n in notes.lines)
    run_dir = tmp_path / "runs" / "t"
    assert json.loads((run_dir / "manifest.json").read_text())["steps"] == 4 and (run_dir / "final").is_dir()


def test_first_departure_is_where_greedy_decoding_would_leave_the_export():
    from shipsft.export.parity import first_departure

    stops, shared = {2, 9}, {2}
    assert first_departure([5, 6], [5, 6, 2], True, stops, shared) is None  # same tokens, stops there too
    assert first_departure([5, 6], [5, 7, 2], True, stops, shared) == 1  # another token
    assert first_departure([5, 6], [5, 6, 4], True, stops, shared) == 2  # would go on where the export stopped
    assert first_departure([5, 6], [5, 6, 9], True, stops, shared) == 2  # a stop id the export does not stop at
    assert first_departure([5, 9], [5, 9, 4], False, stops, shared) == 1  # would stop where the export went on
    assert first_departure([5, 6], [5, 6, 2], False, stops, shared) is None  # ran to the budget: nothing after
