"""A run whose model and data are hub ids, from a pre-populated hub cache with HF_HUB_OFFLINE=1: it trains end to end,
the manifest records both commits, `shipsft reproduce` and `--resume` notice when the model's revision moves, and an
uncached id is one line from the command."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from helpers import cache_snapshot, save_tiny_model, write_dataset_repo

from shipsft.config import ModelConfig, check_paths, load_config
from shipsft.model.locate import hub_commit
from shipsft.runs.jsonio import read_json
from shipsft.train.reproduce import reproduce
from shipsft.train.run import resume_changes, run_train

MODEL_A, MODEL_B, DATA = "a" * 40, "b" * 40, "d" * 40


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "ds-cache")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cache_snapshot(cache, "model", "org/tiny", MODEL_A, save_tiny_model(tmp_path / "model-a"))
    cache_snapshot(cache, "dataset", "org/reverse", DATA, write_dataset_repo(tmp_path / "data-src"))
    return cache, env


def hub_config(tmp_path, **model) -> str:
    cfg = {"model": {"path": "org/tiny", **model}, "data": {"train": "org/reverse", "eval": "org/reverse",
                                                           "max_length": 128},
           "train": {"max_steps": 2, "batch_size": 8, "precision": "fp32"},
           "output": {"dir": str(tmp_path / "runs"), "name": "hub"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return str(tmp_path / "config.yaml")


def test_a_cached_hub_model_and_dataset_train_offline_and_reproduce_notices_a_moved_revision(tmp_path, hub_env):
    cache, _ = hub_env
    path = hub_config(tmp_path)
    cfg = load_config(path)
    check_paths(cfg, path)  # what every command runs first: hub ids are not missing files
    assert run_train(cfg, config_path=path, argv=["shipsft", "train", path]) == 0
    run = tmp_path / "runs" / "hub"
    manifest = read_json(run / "manifest.json")
    assert manifest["model_commit"] == MODEL_A
    assert manifest["data_commits"] == {"train": {"org/reverse/train": DATA}, "eval": {"org/reverse/test": DATA}}
    assert manifest["model_dir"] == str(cache / "models--org--tiny" / "snapshots" / MODEL_A)
    report = reproduce(run, check_steps=None)
    rows = {r.what: r for r in report.rows}
    assert report.ok, [r for r in report.rows if not r.ok]
    assert (rows["model commit (org/tiny)"].recorded, rows["data commit org/reverse/train"].now) == (MODEL_A, DATA)
    # main moves to a new commit (a newer download): the same config now means other weights
    cache_snapshot(cache, "model", "org/tiny", MODEL_B, save_tiny_model(tmp_path / "model-b", seed=1), ref=None)
    (cache / "models--org--tiny" / "refs" / "main").write_text(MODEL_B)
    report = reproduce(run, check_steps=None)
    assert [(r.what, r.recorded, r.now) for r in report.rows if not r.ok] == [
        ("model commit (org/tiny)", MODEL_A, MODEL_B)]
    assert not report.ok
    # pinned to the commit the run used (model.revision), the old snapshot is still what it reads
    assert hub_commit(ModelConfig(path="org/tiny", revision=MODEL_A)) == MODEL_A


def test_a_resume_on_a_moved_revision_is_a_change(tmp_path, hub_env):
    from types import SimpleNamespace

    cfg = load_config(hub_config(tmp_path))
    state = SimpleNamespace(config_yaml=cfg.to_yaml())
    manifest = {"model_commit": MODEL_A, "data_fingerprint": {"train": "f"}}
    assert resume_changes(cfg, state, manifest, {"train": "f"}, MODEL_A) == []
    assert resume_changes(cfg, state, manifest, {"train": "f"}, MODEL_B) == [
        f"model commit of org/tiny: {MODEL_A} -> {MODEL_B} (its revision moved on the Hub or in the cache: the weights "
        "differ from the checkpoint's base)"]


def test_an_uncached_model_id_offline_is_one_line_from_the_command(tmp_path, hub_env):
    _, env = hub_env
    path = hub_config(tmp_path)
    text = open(path).read().replace("path: org/tiny", "path: org/not-cached")
    open(path, "w").write(text)
    done = subprocess.run([sys.executable, "-m", "shipsft", "audit", path], env={**os.environ, **env,
                          "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "250"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: model.path: model org/not-cached is not in the Hugging Face cache (searched {env['HF_HUB_CACHE']}), "
        "no local folder has that name, and HF_HUB_OFFLINE=1 forbids downloading it. Fix: run once with network access "
        "(unset HF_HUB_OFFLINE), or `hf download org/not-cached` where there is one, or check the path"]
