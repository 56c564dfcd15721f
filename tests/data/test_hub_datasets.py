"""Data by hub id and dataset repository folders (data/hub.py through data/formats.py and data/pipeline.py): one
config and split (slicing included) of a local repository read through `datasets.load_dataset`, the same repository
from a pre-populated hub cache under HF_HUB_OFFLINE=1 with its commit, only the chosen config's files fetched online
(tests/hubserver.py on 127.0.0.1), one-line errors, and mixtures of ids and files."""
from __future__ import annotations

import json

import pytest
from helpers import cache_snapshot, conversations, tiny_tokenizer, write_dataset_repo
from hubserver import FakeHub, require_online_client

from shipsft.config import DataConfig, RunConfig, check_paths
from shipsft.data.formats import load_examples
from shipsft.data.hub import DatasetRef
from shipsft.data.pipeline import prepare
from shipsft.errors import ConfigError, DataError, HubError

COMMIT = "d" * 40


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """`datasets` writes its Arrow copy of what it reads here, not into the home folder."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache_snapshot(cache, "dataset", "org/reverse", COMMIT, write_dataset_repo(tmp_path / "repo-src"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_repository_folder_reads_one_config_and_split_with_slicing(tmp_path):
    repo = write_dataset_repo(tmp_path / "repo")
    res = load_examples([repo], "auto", "error", None, False, DatasetRef(split="train[:25%]"))
    assert [ex.messages for ex in res.examples] == conversations(24, 0)[:6]
    assert res.format == "messages"
    assert res.examples[0].source == f"{repo}/train[:25%]:#0"
    assert res.files[0].commit is None and res.files[0].licenses == ["apache-2.0"]
    test = load_examples([repo], "auto", "error", None, False, DatasetRef(split="test"))
    assert [ex.messages for ex in test.examples] == conversations(8, 5)
    plain = load_examples([repo], "auto", "error", None, False, DatasetRef(config="plain"))
    assert (plain.format, [ex.text for ex in plain.examples]) == ("text", [f"plain {i}" for i in range(5)])
    assert plain.examples[4].source == f"{repo}/plain/train:#4"


def test_a_cached_hub_dataset_loads_offline_with_its_commit(offline_hub):
    res = load_examples(["org/reverse"], "auto", "error", None, False, DatasetRef())
    assert [ex.messages for ex in res.examples] == conversations(24, 0)
    assert (res.files[0].path, res.files[0].commit) == ("org/reverse/train", COMMIT)
    assert res.examples[23].source == "org/reverse/train:#23"


def test_prepare_reads_data_train_and_eval_ids_with_their_splits(offline_hub):
    data = DataConfig(train=["org/reverse"], eval=["org/reverse"], max_length=64)
    tok = tiny_tokenizer()
    train = prepare(data, tok, "train", strict=True, rejects_path=None)
    held = prepare(data, tok, "eval", strict=True, rejects_path=None)
    assert (len(train.rendered), len(held.rendered)) == (24, 8)  # eval_dataset_split null = test
    assert held.files[0].path == "org/reverse/test"
    half = prepare(data.model_copy(update={"split": "train[12:]"}), tok, "train", strict=True, rejects_path=None)
    assert [r.ids for r in half.rendered] == [r.ids for r in train.rendered[12:]]
    assert half.fingerprint != train.fingerprint


def test_a_mixture_takes_ids_and_files(offline_hub, tmp_path):
    (tmp_path / "extra.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(6, 9)))
    data = DataConfig.model_validate({"sources": [{"path": "org/reverse", "examples": 10, "split": "test"},
                                                  {"path": str(tmp_path / "extra.jsonl"), "examples": 6}],
                                      "max_length": 64, "mix_seed": 0})
    prep = prepare(data, tiny_tokenizer(), "train", strict=True, rejects_path=None)
    assert {c.name: c.examples for c in prep.mixture} == {"reverse": 10, "extra": 6}
    assert sorted({f.path for f in prep.files}) == sorted(["org/reverse/test", str(tmp_path / "extra.jsonl")])


def test_an_uncached_dataset_id_offline_is_one_line(offline_hub):
    with pytest.raises(HubError) as e:
        load_examples(["org/absent"], "auto", "error", None, False, DatasetRef())
    assert e.value.lines == [
        f"data.train: dataset org/absent is not in the Hugging Face cache (searched {offline_hub}), no local folder "
        "has that name, and HF_HUB_OFFLINE=1 forbids downloading it. Fix: run once with network access (unset "
        "HF_HUB_OFFLINE), or `hf download org/absent --repo-type dataset` where there is one, or check the path"]


def test_a_wrong_config_or_split_names_the_choices(tmp_path):
    repo = write_dataset_repo(tmp_path / "repo")
    with pytest.raises(DataError) as e:
        load_examples([repo], "auto", "error", None, False, DatasetRef(config="nope"))
    assert e.value.lines == [f"{repo}: BuilderConfig 'nope' not found. Available: ['chat', 'plain']. Fix: set "
                             "data.config to one of them"]
    with pytest.raises(DataError) as e:
        load_examples([repo], "auto", "error", None, False, DatasetRef(split="validation", key="data.eval"))
    assert e.value.lines == [f"{repo}: split 'validation': Unknown split \"validation\". Should be one of ['train', "
                             "'test']. Fix: set data.eval_dataset_split to one of them"]


def test_hub_data_settings_without_a_repository_are_errors(tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"messages": conversations(1)[0]}) + "\n")
    cfg = RunConfig.model_validate({"data": {"train": str(tmp_path / "t.jsonl"), "split": "train[:10%]",
                                             "config": "all"}})
    with pytest.raises(ConfigError) as e:
        check_paths(cfg, tmp_path / "c.yaml")
    assert e.value.lines == [
        f"{tmp_path / 'c.yaml'}: data.{k} applies to hub dataset ids and dataset repository folders, and {where} names "
        f"none, so it would be ignored. Fix: remove data.{k}"
        for k, where in (("config", "data.train, data.eval or data.sources"), ("split", "data.train or data.sources"))]
    check_paths(RunConfig.model_validate({"data": {"train": "org/reverse", "split": "train[:10%]"}}),
                tmp_path / "c.yaml")  # an id: resolved later, from the cache or the Hub


def test_online_fetches_only_the_chosen_configs_files(tmp_path, monkeypatch):
    require_online_client()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    src = write_dataset_repo(tmp_path / "src")
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    with FakeHub({("dataset", "org/reverse"): files}, commit=COMMIT) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        res = load_examples(["org/reverse"], "auto", "error", None, False, DatasetRef())
    assert len(res.examples) == 24 and res.files[0].commit == COMMIT
    fetched = sorted(p.split(f"/resolve/{COMMIT}/")[1] for m, p in hub.requests if m == "GET" and "/resolve/" in p)
    assert fetched == ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00002.parquet",
                       "data/train-00001-of-00002.parquet"]  # not plain/train.parquet: another config
