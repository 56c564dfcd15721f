"""Models by hub id (model/hub.py through model/locate.py): a pre-populated hub cache read under HF_HUB_OFFLINE=1, the
one-line errors (offline and not cached, gated, missing, unreachable), which files a download fetches (a local
server on 127.0.0.1 stands in for the Hub: tests/hubserver.py), and the commit a revision resolves to."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cache_snapshot, save_tiny_model
from hubserver import GATED, MISSING, FakeHub, require_online_client

from shipsft.config import ModelConfig
from shipsft.errors import ConfigError, HubError
from shipsft.model.hub import allow_patterns
from shipsft.model.load import hf_config
from shipsft.model.locate import hub_commit, load_tokenizer, resolve_model_dir

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def cached_model(cache: Path, repo_id: str, commit: str, ref: str | None = "main", files: Path | None = None) -> Path:
    """A tiny model (or the folder `files`) in the hub cache under `repo_id` at `commit`."""
    if files is None:
        files = save_tiny_model(cache.parent / f"model-{commit[:4]}")
    return cache_snapshot(cache, "model", repo_id, commit, files, ref)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_cached_hub_id_resolves_offline_to_its_snapshot(offline_cache):
    snap = cached_model(offline_cache, "org/tiny", COMMIT_A)
    model = ModelConfig(path="org/tiny")
    assert resolve_model_dir(model) == snap
    assert hub_commit(model) == COMMIT_A
    tok = load_tokenizer(model)
    assert tok("red cat")["input_ids"] == load_tokenizer(ModelConfig(path=str(snap)))("red cat")["input_ids"]
    assert hf_config(model).hidden_size == 64


def test_a_revision_picks_its_snapshot(offline_cache):
    cached_model(offline_cache, "org/tiny", COMMIT_A)
    snap_b = cached_model(offline_cache, "org/tiny", COMMIT_B, ref="v2")
    assert resolve_model_dir(ModelConfig(path="org/tiny", revision="v2")) == snap_b
    assert resolve_model_dir(ModelConfig(path="org/tiny", revision=COMMIT_B)) == snap_b
    assert hub_commit(ModelConfig(path="org/tiny")) == COMMIT_A


def test_an_uncached_id_offline_is_one_line_with_the_cache_and_the_fix(offline_cache):
    with pytest.raises(HubError) as e:
        resolve_model_dir(ModelConfig(path="org/absent"))
    assert e.value.lines == [
        f"model.path: model org/absent is not in the Hugging Face cache (searched {offline_cache}), no local folder "
        "has that name, and HF_HUB_OFFLINE=1 forbids downloading it. Fix: run once with network access (unset "
        "HF_HUB_OFFLINE), or `hf download org/absent` where there is one, or check the path"]


def test_pickled_weights_are_refused_unless_allowed(offline_cache, tmp_path):
    bare = tmp_path / "bare"
    save_tiny_model(bare)
    (bare / "model.safetensors").rename(bare / "pytorch_model.bin")  # stands in for a .bin-only repository
    cached_model(offline_cache, "org/pickled", COMMIT_A, files=bare)
    with pytest.raises(ConfigError) as e:
        resolve_model_dir(ModelConfig(path="org/pickled"))
    assert e.value.lines == [
        f"model.path: org/pickled (commit {COMMIT_A}) has no *.safetensors weights, only pickled pytorch_model.bin. "
        "Pickles can run code when loaded, so shipsft does not download them. Fix: a repository with safetensors "
        "weights, or model.allow_pickle: true if you trust its author"]
    assert resolve_model_dir(ModelConfig(path="org/pickled", allow_pickle=True)).name == COMMIT_A
    # the tokenizer alone (audit, preview) needs no weights
    assert resolve_model_dir(ModelConfig(path="org/pickled"), weights=False).name == COMMIT_A


def test_only_the_files_a_model_needs_are_asked_for():
    tok = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
           "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
           "chat_template.jinja", "chat_template.json", "*.tiktoken"]
    assert allow_patterns(ModelConfig(path="org/x"), weights=False) == tok
    assert allow_patterns(ModelConfig(path="org/x"), weights=True) == tok + ["*.safetensors",
                                                                             "*.safetensors.index.json"]
    assert allow_patterns(ModelConfig(path="org/x", allow_pickle=True, trust_remote_code=True), weights=True) == \
        tok + ["*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.py"]


def repo_files(tmp_path) -> dict[str, bytes]:
    src = save_tiny_model(tmp_path / "src")
    files = {f.name: f.read_bytes() for f in src.iterdir()}
    files["pytorch_model.bin"] = b"a pickle that must never be fetched"
    files["modeling_evil.py"] = b"raise SystemExit('remote code ran')"
    return files


def test_online_download_fetches_safetensors_and_tokenizer_never_pickles(tmp_path, monkeypatch):
    require_online_client()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    files = repo_files(tmp_path)
    with FakeHub({("model", "org/tiny"): files}, commit=COMMIT_A) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        tok_only = resolve_model_dir(ModelConfig(path="org/tiny"), weights=False)
        assert not (tok_only / "model.safetensors").exists()  # the audit's tokenizer does not pull the weights
        folder = resolve_model_dir(ModelConfig(path="org/tiny"))
    assert folder == tmp_path / "hub" / "models--org--tiny" / "snapshots" / COMMIT_A
    assert sorted(p.name for p in folder.iterdir()) == sorted(set(files) - {"pytorch_model.bin", "modeling_evil.py"})
    assert (folder / "model.safetensors").read_bytes() == files["model.safetensors"]
    fetched = {p.rsplit("/", 1)[-1] for m, p in hub.requests if m == "GET" and "/resolve/" in p}
    assert "pytorch_model.bin" not in fetched and "modeling_evil.py" not in fetched
    assert "model.safetensors" in fetched
    # the cache now answers offline, with the ref main -> the commit huggingface_hub wrote
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_commit(ModelConfig(path="org/tiny")) == COMMIT_A


@pytest.mark.parametrize("why, line", [
    (GATED, "model.path: model org/locked is gated. Fix: accept its terms at https://huggingface.co/org/locked, then "
            "log in with `hf auth login` or set HF_TOKEN (a token of the account that accepted)"),
    (MISSING, "model.path: model org/locked is not on the Hub, or it is private, and no local folder has that name. "
              "Fix: check the id (https://huggingface.co/org/locked) or the path; for a private repository log in "
              "with `hf auth login` or set HF_TOKEN with an account that can read it"),
])
def test_gated_and_missing_repositories_name_the_token_fix(tmp_path, monkeypatch, why, line):
    require_online_client()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with FakeHub({}, refused={("model", "org/locked"): why}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(HubError) as e:
            resolve_model_dir(ModelConfig(path="org/locked"))
    assert e.value.lines == [line]


def test_no_network_and_not_cached_is_one_line(tmp_path, monkeypatch):
    require_online_client()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with FakeHub({}) as hub:
        closed = hub.url  # the server is shut down when the block ends: nothing listens there any more
    monkeypatch.setenv("HF_ENDPOINT", closed)
    with pytest.raises(HubError) as e:
        resolve_model_dir(ModelConfig(path="org/tiny"))
    assert e.value.lines == [
        f"model.path: model org/tiny is not in the Hugging Face cache (searched {tmp_path / 'hub'}) and the Hub cannot "
        "be reached (LocalEntryNotFoundError). Fix: connect to the network (or set HF_ENDPOINT to a mirror), or `hf "
        "download org/tiny` where there is one"]


def test_hub_id_or_path():
    from shipsft.config import is_hub_id

    assert [is_hub_id(x) for x in ("Qwen/Qwen2.5-0.5B-Instruct", "microsoft/phi-1.5", "HuggingFaceTB/smoltalk")] == \
        [True, True, True]
    assert [is_hub_id(x) for x in ("data/train.jsonl", "smollm2", "a/b/c", "/abs/x", "org/x.gguf", "org--x/y",
                                   "./x/y", "org/x.parquet")] == [False] * 8


def test_hub_settings_on_a_local_model_are_errors(tmp_path):
    from shipsft.config import RunConfig, check_paths

    folder = save_tiny_model(tmp_path / "m")
    cfg = RunConfig.model_validate({"model": {"path": str(folder), "revision": "main", "allow_pickle": True}})
    with pytest.raises(ConfigError) as e:
        check_paths(cfg, tmp_path / "c.yaml")
    assert e.value.lines == [
        f"{tmp_path / 'c.yaml'}: model.{k} applies to a hub id, and model.path {str(folder)!r} is a local model, so it "
        f"would be ignored. Fix: remove model.{k}" for k in ("revision", "allow_pickle")]
    ok = RunConfig.model_validate({"model": {"path": "org/tiny", "revision": "main"}})
    check_paths(ok, tmp_path / "c.yaml")  # a hub id is not a missing file
    assert json.loads(json.dumps(ok.model.model_dump()))["revision"] == "main"
