"""Every command that takes a model takes a hub id (preview, audit, plan, init --model, eval, chat; train:
tests/train/test_hub_run.py), read from a pre-populated hub cache with HF_HUB_OFFLINE=1."""
from __future__ import annotations

import json

import pytest
import yaml
from helpers import cache_snapshot, conversations, save_tiny_model, write_dataset_repo
from typer.testing import CliRunner

from shipsft.cli.main import app

COMMIT, DATA = "a" * 40, "d" * 40


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    cache_snapshot(cache, "model", "org/tiny", COMMIT, save_tiny_model(root / "model"))
    cache_snapshot(cache, "dataset", "org/reverse", DATA, write_dataset_repo(root / "data"))
    cfg = {"model": {"path": "org/tiny"}, "data": {"train": "org/reverse", "max_length": 128},
           "train": {"max_steps": 2, "batch_size": 8, "precision": "fp32"}, "output": {"dir": str(root / "runs")}}
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    (root / "suite.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(3, 7)))
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(root / "ds-cache"),
           "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "250"}
    return root, env


def cli(env, *args):
    res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return res.exit_code, " ".join(res.output.split())


def test_preview_audit_and_plan_read_a_hub_model_and_dataset(hub):
    root, env = hub
    code, out = cli(env, "preview", root / "config.yaml")
    assert code == 0 and "org/reverse/train:#0" in out, out
    code, out = cli(env, "audit", root / "config.yaml", "--out", root / "audit")
    assert code == 0, out
    assert json.loads((root / "audit" / "audit.json").read_text())["meta"]["model"] == "org/tiny"
    code, out = cli(env, "plan", root / "config.yaml")
    assert code == 0 and "planned peak resident (RSS)" in out, out


def test_init_eval_and_chat_take_a_hub_id(hub):
    root, env = hub
    code, out = cli(env, "init", root / "suite.jsonl", "--eval", root / "suite.jsonl", "--model", "org/tiny",
                    "--out", root / "init.yaml", "--force")
    assert code == 0, out
    assert yaml.safe_load((root / "init.yaml").read_text())["model"]["path"] == "org/tiny"
    code, out = cli(env, "eval", "org/tiny", "--suite", root / "suite.jsonl", "--metric", "exact_match",
                    "--out", root / "eval.json")
    assert code == 0, out
    assert json.loads((root / "eval.json").read_text())["suites"]["suite"]["n"] == 3
    code, out = cli(env, "chat", "org/tiny", "--prompt", "reverse: red cat", "--max-new-tokens", "4")
    assert code == 0, out
