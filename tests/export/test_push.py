"""`shipsft export RUN --push-to-hub org/name [--private] [--adapter-only]` on a tiny trained run, through
huggingface_hub's own upload code against a local stand-in for the Hub on 127.0.0.1 (tests/hubserver.py): the files
and the commit message it sends, the repository created private with the token; and one line, nothing lost, without
a token, offline or without a network."""
from __future__ import annotations

import json

import pytest
from helpers import write_tiny_run
from hubserver import FakeHub, require_online_client
from typer.testing import CliRunner

from shipsft.cli.main import app
from shipsft.config import load_config

TOKEN = "hf_test_token"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LoRA run, trained to the end (adapter/ with the tokenizer and the training template)."""
    from shipsft.train.run import run_train

    root = tmp_path_factory.mktemp("run")
    path = write_tiny_run(root, train={"max_steps": 2, "batch_size": 8, "precision": "fp32"})
    assert run_train(load_config(path), config_path=path) == 0
    return root / "runs" / "t"


def cli(*args, **env):
    res = CliRunner().invoke(app, [str(a) for a in args],
                             env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "400", "HF_HUB_OFFLINE": None, **env})
    return res.exit_code, res.output


def test_adapter_only_uploads_the_adapter_and_a_card_in_one_commit(trained):
    require_online_client()
    adapter = trained / "adapter"
    with FakeHub({}) as hub:
        code, out = cli("export", trained, "--push-to-hub", "me/tiny-adapter", "--private", "--adapter-only",
                        HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN)
    assert code == 0, out
    assert hub.created == [{"name": "tiny-adapter", "organization": "me", "visibility": "private",
                            "authorization": f"Bearer {TOKEN}"}]
    [commit] = hub.commits
    assert (commit["repo"], commit["summary"]) == ("me/tiny-adapter", "Upload lora adapter of shipsft run t")
    manifest = json.loads((trained / "manifest.json").read_text())
    assert commit["description"] == f"base model {load_config(trained / 'config.yaml').model.path}; config hash " \
                                    f"{manifest['config_hash']}; not promoted: its last saved adapter/"
    local = {p.relative_to(adapter).as_posix() for p in adapter.rglob("*") if p.is_file()}
    assert set(commit["files"]) == {f for f in local if not f.startswith("shipsft_state/") and f != "COMPLETE"} \
        | {"README.md"}
    assert "adapter_model.safetensors" in commit["files"] and "shipsft_state/loop.json" not in commit["files"]
    assert commit["files"]["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    card = commit["files"]["README.md"].decode()
    assert "library_name: peft" in card and 'AutoPeftModelForCausalLM.from_pretrained("me/tiny-adapter")' in card
    assert not (trained / "export").exists()  # --adapter-only merges and exports nothing
    assert f"push: {hub.url}/me/tiny-adapter/commit/{'b' * 40}" in out


def test_a_promoted_checkpoint_uploads_without_its_training_state(trained):
    """final/ is a copy of a checkpoint: its optimizer state, RNG and COMPLETE marker stay home."""
    from shipsft.export.hub import upload_files

    step = trained / "checkpoints" / "step-2"
    assert (step / "shipsft_state" / "optimizer.pt").exists() and (step / "COMPLETE").exists()
    assert sorted(upload_files(step)) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                          "chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]


def test_push_uploads_the_hf_export(trained, tmp_path):
    require_online_client()
    out_dir = tmp_path / "export"
    with FakeHub({}) as hub:
        code, out = cli("export", trained, "--to", "hf", "--skip-check", "--out", out_dir, "--push-to-hub", "me/tiny",
                        HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN)
    assert code == 0, out
    [commit] = hub.commits
    assert commit["summary"] == "Upload merged model (HF export) of shipsft run t"
    hf = out_dir / "hf"
    assert (hf / "COMPLETE").exists() and "COMPLETE" not in commit["files"]  # the local seal stays home
    assert commit["files"] == {p.relative_to(hf).as_posix(): p.read_bytes() for p in hf.rglob("*")
                               if p.is_file() and p.name != "COMPLETE"}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= set(commit["files"])
    assert hub.created[0]["visibility"] == "public"


def test_without_a_token_or_offline_it_stops_before_the_export(trained, tmp_path, monkeypatch):
    from huggingface_hub import get_token

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    out_dir = tmp_path / "export"
    code, out = cli("export", trained, "--to", "hf", "--out", out_dir, "--push-to-hub", "me/tiny", HF_HUB_OFFLINE="1")
    assert (code, out.strip().splitlines()) == (2, [
        "error: --push-to-hub me/tiny: HF_HUB_OFFLINE=1 forbids uploading. Fix: unset HF_HUB_OFFLINE and run the "
        "command again"])
    if get_token():
        pytest.skip("this machine has a Hugging Face token stored (hf auth login): the no-token case cannot be seen")
    code, out = cli("export", trained, "--to", "hf", "--out", out_dir, "--push-to-hub", "me/tiny")
    assert (code, out.strip().splitlines()) == (2, [
        "error: --push-to-hub me/tiny: no Hugging Face token. Fix: `hf auth login` with a token that can write, or "
        "set HF_TOKEN, then run the command again"])
    assert not out_dir.exists()  # refused before a minute of merging


def test_no_network_during_the_upload_is_one_line_and_the_export_stays(trained, tmp_path):
    require_online_client()
    with FakeHub({}) as hub:
        closed = hub.url
    out_dir = tmp_path / "export"
    code, out = cli("export", trained, "--to", "hf", "--skip-check", "--out", out_dir, "--push-to-hub", "me/tiny",
                    HF_ENDPOINT=closed, HF_TOKEN=TOKEN)
    assert code == 2
    assert out.strip().splitlines()[-1] == (
        f"error: --push-to-hub me/tiny: the Hub cannot be reached (ConnectError). Fix: connect to the network and run "
        f"the command again; the files stay in {out_dir / 'hf'}; upload them as they are with `hf upload me/tiny "
        f"{out_dir / 'hf'}`")
    assert (out_dir / "hf" / "model.safetensors").exists() and (out_dir / "hf" / "README.md").exists()


def test_push_flags_without_push_to_hub_and_a_bad_id_are_refused(trained):
    assert cli("export", trained, "--adapter-only")[1].strip() == (
        "error: --private and --adapter-only apply to --push-to-hub. Fix: add --push-to-hub org/name")
    assert cli("export", trained, "--push-to-hub", "not an id", HF_TOKEN=TOKEN)[1].strip() == (
        "error: --push-to-hub not an id: not a Hugging Face repository id. Fix: org/name (your user or organisation, a "
        "slash, the model's name)")


def test_a_hub_base_names_the_gguf_by_its_repository_and_an_uncached_one_keeps_the_shipped_tokenizer(
        trained, tmp_path, monkeypatch):
    """The GGUF's general.name carries the base's name (llama.cpp reads the family from it): a hub id's repository
    name, not its snapshot folder's (a commit). The tokenizer files are looked for in the base's snapshot too; an
    uncached id offline leaves the shipped weights' folder alone."""
    from dataclasses import replace

    from shipsft.export.run import gguf_name, tokenizer_folders
    from shipsft.export.source import open_run

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = open_run(trained)
    hub = replace(src, cfg=src.cfg.model_copy(update={"model": src.cfg.model.model_copy(
        update={"path": "HuggingFaceTB/SmolLM2-135M-Instruct"})}))
    assert gguf_name(hub) == "t (SmolLM2-135M-Instruct)"
    assert gguf_name(src) == "t (tiny-model)"
    assert tokenizer_folders(hub) == [src.weights]
    assert tokenizer_folders(src) == [src.weights, trained.parent.parent / "tiny-model"]
