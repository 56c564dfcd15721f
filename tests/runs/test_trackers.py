"""Trackers besides metrics.jsonl, each read back from what it wrote: the TensorBoard event file (EventAccumulator),
the MLflow store (MlflowClient), a real `mlflow server` on 127.0.0.1 (its REST API), W&B offline run files (the
record log) and trackio's local database. Every one holds the numeric metrics at their steps (never a null loss as
0), the resolved config as params and the config / data / token / tokenizer / template hashes as tags; a resume
continues the same run without a duplicated step; a missing package is one line naming the extra."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import Notes, write_tiny_run
from servers import MlflowServer
from shipsft.config import RunConfig, TrackConfig, load_config
from shipsft.errors import ConfigError
from shipsft.runs.jsonio import jsonl_records, read_json, read_jsonl
from shipsft.runs.layout import RunFolder
from shipsft.runs.manifest import write_manifest
from shipsft.runs.sinks import MetricsSink
from shipsft.runs.trackers import Resume, build_trackers, catch_up, config_params, numbers
from shipsft.runs.trackers.sync import sync
from shipsft.train.run import run_train

NAN = float("nan")
# what a run logs: eval loss and a baseline at step 0, training steps (step 2 went non-finite: its loss is NaN),
# an eval loss at a step that also has a training record
RECORDS = [{"step": 0, "eval_loss": 3.5}, {"step": 0, "baseline/toy/exact_match": 0.25},
           {"step": 1, "epoch": 0.5, "loss": 2.5, "lr": 1e-3, "grad_norm": 1.5, "trained_tokens": 120,
            "cursor": [0, 4], "skipped": False},
           {"step": 2, "epoch": 1.0, "loss": NAN, "lr": 1e-3, "grad_norm": NAN, "trained_tokens": 118,
            "cursor": [1, 0], "skipped": True},
           {"step": 3, "epoch": 1.5, "loss": 2.0, "lr": 5e-4, "grad_norm": 1.25, "trained_tokens": 121,
            "cursor": [1, 4], "skipped": False},
           {"step": 3, "eval_loss": 2.75}]
FINGERPRINTS = {"train": "0123456789abcdef", "eval": "fedcba9876543210"}
EXTRA = {"tokenizer_hash": "aaaabbbbccccdddd", "template_hash": "1111222233334444", "token_fingerprint": {"train":
         "5555666677778888"}}
LONG_TEMPLATE = "{{ 'x' }}" * 1000  # 9000 characters: over MLflow's 6000-character param value limit


def run_folder(tmp_path: Path, track: dict | list, **sections) -> tuple[RunFolder, RunConfig]:
    """A run folder as setup leaves it before training: config.yaml, manifest.json, the audit files."""
    # 40 template kwargs: the params pass MLflow's 100 per request
    data = {"train": ["train.jsonl"], "template": LONG_TEMPLATE, "template_kwargs": {f"k{i}": i for i in range(40)}}
    cfg = RunConfig.model_validate({"data": data,
                                    "eval": {"suites": [{"name": "toy", "data": "toy.jsonl"}]}, "track": track,
                                    **sections})
    folder = RunFolder(tmp_path / "runs" / "t")
    write_manifest(folder, cfg, argv=["shipsft", "train", "config.yaml"], fingerprints=FINGERPRINTS, extra=EXTRA)
    for path in (folder.audit_html, folder.report):
        path.write_text("<html>report</html>")
    folder.audit_json.write_text("{}")
    return folder, cfg


def write_all(sink: MetricsSink, records: list[dict]) -> None:
    for r in records:
        sink.write(r)


# -- what reaches a tracker ------------------------------------------------------------------------------------

def test_numbers_keep_finite_numbers_only_and_flatten_nested_metrics():
    assert numbers(RECORDS[2]) == {"epoch": 0.5, "loss": 2.5, "lr": 1e-3, "grad_norm": 1.5, "trained_tokens": 120}
    # the non-finite step: no loss, no grad norm (not 0), the rest kept
    assert numbers(RECORDS[3]) == {"epoch": 1.0, "lr": 1e-3, "trained_tokens": 118}
    assert numbers({"step": 4, "loss": None, "eval": {"toy": {"exact_match": 0.5, "samples": ["a"]}}}) == {
        "eval/toy/exact_match": 0.5}


def test_params_are_the_resolved_config_with_dotted_keys():
    cfg = RunConfig.model_validate({"data": {"train": ["a.jsonl"]}, "eval": {"suites": [{"name": "toy",
                                                                                        "data": "t.jsonl"}]}})
    params = config_params(cfg.model_dump(mode="json"))
    assert params["optim.lr"] == "0.0002" and params["method.lora.r"] == "16" and params["data.packing"] == "true"
    assert params["data.train"] == '["a.jsonl"]' and params["data.template"] == "null"
    assert params["eval.suites.0.name"] == "toy" and params["eval.suites.0.metrics"] == '["exact_match"]'
    assert params["track.sinks"] == "[]"


def test_track_config_shorthand_defaults_and_rules():
    cfg = RunConfig.model_validate({"track": ["tensorboard", "mlflow"]})
    assert cfg.track == TrackConfig(sinks=["tensorboard", "mlflow"], mlflow_experiment="shipsft")
    assert cfg.track.wandb_project is None and cfg.track.mlflow_uri is None
    assert RunConfig.model_validate(cfg.model_dump(mode="json")) == cfg  # the resolved config loads unchanged
    assert RunConfig.model_validate({"track": {"sinks": ["wandb"]}}).track.wandb_mode == "offline"
    with pytest.raises(ConfigError) as e:
        load_config(None, ["track.sinks=[mlflow]", "track.wandb_project=p", "track.trackio_project=q"])
    assert e.value.lines == [
        "<defaults>: track.wandb_project is set but wandb is not in track.sinks, so it would be ignored. Fix: add "
        "wandb to track.sinks, or remove track.wandb_project",
        "<defaults>: track.trackio_project is set but trackio is not in track.sinks, so it would be ignored. Fix: add "
        "trackio to track.sinks, or remove track.trackio_project"]
    with pytest.raises(ConfigError, match="repeats a tracker"):
        load_config(None, ["track=[mlflow, mlflow]"])
    with pytest.raises(ConfigError, match="track.sinks.0"):
        load_config(None, ["track=[tensorbord]"])


def test_a_missing_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails as if it were not installed
    with pytest.raises(ConfigError) as e:
        build_trackers(TrackConfig(sinks=["tensorboard", "mlflow"]), RunFolder(tmp_path), resumed=False)
    assert len(e.value.lines) == 1
    assert e.value.lines[0].startswith("track.sinks has mlflow, but mlflow is not installed")
    assert "Fix: pip install 'shipsft[mlflow]' (or 'shipsft[track]' for every tracker)" in e.value.lines[0]


def test_a_missing_package_stops_training_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    path = write_tiny_run(tmp_path, track=["wandb"])
    with pytest.raises(ConfigError, match=r"shipsft\[wandb\]"):
        run_train(load_config(path), config_path=path)
    assert not (tmp_path / "runs" / "t").exists()


# -- a tracker that stops answering ---------------------------------------------------------------------------

def steps_in(client, run_id: str, key: str = "loss") -> list[int]:
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.fixture
def store(tmp_path, mlflow_db, monkeypatch) -> Path:
    """An MLflow SQLite store in a folder of its own, so the test can take the folder away (writes then fail: SQLite
    cannot create its journal) and put it back, as a tracking store that stops answering and comes back. (MLflow
    puts a named store's artifacts in ./mlruns: the test runs in tmp_path.)"""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(mlflow_db, folder / "mlflow.db")
    return folder


def tracked(tmp_path, store, **track):
    folder, cfg = run_folder(tmp_path, {"sinks": ["tensorboard", "mlflow"],
                                        "mlflow_uri": f"sqlite:///{store / 'mlflow.db'}", **track})
    return folder, cfg, MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))


def wait_for(sink: MetricsSink, text: str) -> list[str]:
    """The tracker lines so far, once one holds `text` (each line comes from a tracker's own thread)."""
    lines: list[str] = []
    for _ in range(6000):
        lines += sink.news()
        if any(text in line for line in lines):
            return lines
        time.sleep(0.01)
    pytest.fail(f"no tracker line with {text!r}: {lines}")


def drained(sink: MetricsSink, name: str) -> None:
    """Wait until the tracker `name` has sent everything queued so far."""
    box = next(b for b in sink.trackers.boxes if b.name == name)
    for _ in range(6000):
        if box.queue.empty() and box.current is None:
            return
        time.sleep(0.01)
    pytest.fail(f"{name} did not send its queue")


def test_a_store_that_stops_answering_is_retried_and_receives_every_step_in_order(tmp_path, store):
    folder, cfg, sink = tracked(tmp_path, store, retry_max_s=0.05)
    write_all(sink, [{"step": s, "loss": 10.0 - s} for s in (1, 2, 3)])
    drained(sink, "mlflow")
    store.rename(tmp_path / "away")  # the store goes away: training goes on
    write_all(sink, [{"step": s, "loss": 10.0 - s} for s in (4, 5, 6)])
    down = wait_for(sink, "mlflow failed at step")
    away_from = int(down[0].split("failed at step ")[1].split(" ")[0])
    assert down[0].startswith(f"tracking: mlflow failed at step {away_from} (MlflowException: ")
    assert down[0].endswith("retrying in the background (at most every 0.05 s), training goes on and metrics.jsonl "
                            "has every step")
    assert read_json(folder.trackers)["mlflow"]["pending"] == {"from": offset_of(folder, away_from)}
    (tmp_path / "away").rename(store)  # it comes back
    write_all(sink, [{"step": s, "loss": 10.0 - s} for s in (7, 8)])
    up = wait_for(sink, "answers again")
    assert up[-1].startswith("tracking: mlflow answers again after ") and up[-1].endswith(
        f"what it missed from step {away_from} is being sent")
    sink.close()
    assert sink.problems == []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    run_id = read_json(folder.trackers)["mlflow"]["run_id"]
    assert steps_in(client, run_id) == list(range(1, 9))  # each step once, none lost
    assert client.get_run(run_id).info.status == "FINISHED"
    assert "pending" not in read_json(folder.trackers)["mlflow"]
    assert [e.step for e in tensorboard_scalars(folder)["loss"]] == list(range(1, 9))  # the other tracker: unaffected


def offset_of(folder: RunFolder, step: int) -> int:
    return next(o for o, r in jsonl_records(folder.metrics, 0) if r.get("step") == step)


def test_a_store_still_down_at_the_end_keeps_what_it_missed_and_sync_sends_it(tmp_path, store):
    folder, cfg, sink = tracked(tmp_path, store, retry_max_s=0.05, flush_timeout_s=0.5)
    write_all(sink, [{"step": 1, "loss": 9.0}])
    drained(sink, "mlflow")
    store.rename(tmp_path / "away")
    write_all(sink, [{"step": s, "loss": 10.0 - s} for s in (2, 3, 4)])
    sink.log_run_files()
    sink.close()
    (line,) = sink.problems
    assert line.startswith("tracking: mlflow did not receive from step 2 on (MlflowException: ")
    assert line.endswith(f"; metrics.jsonl has every step. Fix: once it answers, send them with: shipsft sync "
                         f"{folder.root}")
    assert read_json(folder.trackers)["mlflow"]["pending"] == {"from": offset_of(folder, 2), "artifacts": True,
                                                               "status": "FINISHED"}
    (tmp_path / "away").rename(store)
    lines, ok = sync(folder, cfg.track)
    assert ok and lines == ["tracking: mlflow received what it missed: 3 metric records (steps 2-4), the run's "
                            "files; status FINISHED"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    run_id = read_json(folder.trackers)["mlflow"]["run_id"]
    steps = steps_in(client, run_id)
    # every step, none lost; the first missed one may be there twice: SQLite can keep a row whose write then failed
    # (the journal could not be made in the folder taken away), and sync resends from the first record not confirmed
    # (seen once, in a fresh-clone run on the 2-core Xeon, 2026-12-07): at-least-once, as any retrying tracker client
    assert sorted(set(steps)) == [1, 2, 3, 4] and steps in ([1, 2, 3, 4], [1, 2, 2, 3, 4])
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["audit.html", "audit.json", "config.yaml",
                                                                     "manifest.json", "report.html"]
    assert "pending" not in read_json(folder.trackers)["mlflow"]
    assert sync(folder, cfg.track) == ([f"{folder.root}: every tracker received the whole run; nothing to send"],
                                       True)


@pytest.mark.parametrize("case", ["healthy", "missed before the checkpoint", "missed after it"])
def test_a_resume_sends_a_tracker_what_it_missed_and_no_step_twice(tmp_path, case):
    """Steps 1-6 logged, the checkpoint after step 4 (its offset), killed; a tracker that missed everything from step
    3 (or 6) on, or nothing."""
    folder, _ = run_folder(tmp_path, [])
    with MetricsSink(folder) as sink:
        write_all(sink, [{"step": s, "loss": float(s)} for s in range(1, 5)])
        cut = sink.offsets()[0]
        write_all(sink, [{"step": s, "loss": float(s)} for s in (5, 6)])
    resume = Resume(5, 6, offset=cut)
    pending = {"healthy": None, "missed before the checkpoint": {"from": offset_of(folder, 3)},
               "missed after it": {"from": offset_of(folder, 6)}}[case]
    replay, skip = catch_up(folder, resume, pending)
    assert ([r["step"] for _, r in replay], skip) == {"healthy": ([], 6), "missed before the checkpoint": ([3, 4], None),
                                                      "missed after it": ([], 5)}[case]


# -- TensorBoard -----------------------------------------------------------------------------------------------

def tensorboard_scalars(folder: RunFolder) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder.tensorboard))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def tensorboard_text(folder: RunFolder, tag: str) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder.tensorboard))
    acc.Reload()
    return acc.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()


def test_tensorboard_event_file_holds_every_metric_and_the_tags(tmp_path):
    folder, cfg = run_folder(tmp_path, ["tensorboard"])
    sink = MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))
    write_all(sink, RECORDS)
    sink.close()
    scalars = tensorboard_scalars(folder)
    assert [(e.step, e.value) for e in scalars["loss"]] == [(1, 2.5), (3, 2.0)]  # step 2's NaN is not a 0
    assert [(e.step, e.value) for e in scalars["eval_loss"]] == [(0, 3.5), (3, 2.75)]
    assert [(e.step, e.value) for e in scalars["baseline/toy/exact_match"]] == [(0, 0.25)]
    assert [e.step for e in scalars["lr"]] == [1, 2, 3] and "cursor" not in scalars and "skipped" not in scalars
    tags = tensorboard_text(folder, "tags")
    for value in (cfg.config_hash(), *FINGERPRINTS.values(), *EXTRA["token_fingerprint"].values(),
                  EXTRA["tokenizer_hash"], EXTRA["template_hash"]):
        assert value in tags
    assert "| optim.lr | 0.0002 |" in tensorboard_text(folder, "config")


# -- MLflow ----------------------------------------------------------------------------------------------------

def mlflow_run(folder: RunFolder):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder.mlflow_db}")
    runs = client.search_runs([client.get_experiment_by_name("shipsft").experiment_id])
    assert len(runs) == 1  # a resume continues the run, never starts a second one
    return client, runs[0]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_mlflow_store_in_the_run_folder_holds_metrics_params_tags_and_artifacts(tmp_path, mlflow_db):
    folder, cfg = run_folder(tmp_path, ["mlflow"])
    shutil.copy(mlflow_db, folder.mlflow_db)
    sink = MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))
    write_all(sink, RECORDS)
    sink.log_run_files()
    sink.close()
    client, run = mlflow_run(folder)
    assert run.info.status == "FINISHED" and run.info.run_name == "t"
    assert read_json(folder.trackers)["mlflow"] == {"uri": f"sqlite:///{folder.mlflow_db.resolve()}",
                                                    "run_id": run.info.run_id, "experiment": "shipsft"}
    assert history(client, run.info.run_id, "loss") == [(1, 2.5), (3, 2.0)]
    assert history(client, run.info.run_id, "eval_loss") == [(0, 3.5), (3, 2.75)]
    assert history(client, run.info.run_id, "baseline/toy/exact_match") == [(0, 0.25)]
    assert history(client, run.info.run_id, "grad_norm") == [(1, 1.5), (3, 1.25)]
    assert "cursor" not in run.data.metrics and "skipped" not in run.data.metrics
    params = run.data.params
    expected = config_params(cfg.model_dump(mode="json"))
    assert len(expected) > 100 and set(params) == set(expected)  # more than one batch of 100
    assert params["optim.lr"] == "0.0002" and params["eval.suites.0.name"] == "toy"
    long = params["data.template"]  # cut to MLflow's limit, saying so
    assert len(long) == 6000 and long.endswith("... [9000 characters; the whole value is in config.yaml]")
    tags = run.data.tags
    assert tags["shipsft.config_hash"] == cfg.config_hash()
    assert tags["shipsft.data_fingerprint.train"] == FINGERPRINTS["train"]
    assert tags["shipsft.data_fingerprint.eval"] == FINGERPRINTS["eval"]
    assert tags["shipsft.token_fingerprint.train"] == EXTRA["token_fingerprint"]["train"]
    assert tags["shipsft.tokenizer_hash"] == EXTRA["tokenizer_hash"]
    assert tags["shipsft.template_hash"] == EXTRA["template_hash"]
    assert tags["shipsft.command"] == "shipsft train config.yaml"
    assert tags["shipsft.version"] == read_json(folder.manifest)["packages"]["shipsft"]
    names = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    assert names == ["audit.html", "audit.json", "config.yaml", "manifest.json", "report.html"]
    # the artifacts sit beside the store in the run folder, not in the current directory
    assert (folder.mlflow_artifacts / run.info.run_id / "artifacts" / "manifest.json").exists()


def test_an_mlflow_retry_of_a_stored_step_stores_it_once(tmp_path, mlflow_db):
    """The outbox resends a call whose request failed; when the server had stored it before the connection broke
    (killed between storing and answering), the resend carries the same timestamp and MLflow keeps one copy."""
    from shipsft.runs.trackers.mlflow import MlflowTracker

    folder, _ = run_folder(tmp_path, ["mlflow"])
    shutil.copy(mlflow_db, folder.mlflow_db)
    tracker = MlflowTracker(None, "shipsft", folder)
    tracker.start({}, {}, None, None)
    tracker.log(3, {"loss": 2.0})
    time.sleep(0.01)  # a retry comes later than the first try
    tracker.log(3, {"loss": 2.0})  # the retry of a call the server had stored
    tracker.log(4, {"loss": 1.5})
    tracker.close("FINISHED")
    client, run = mlflow_run(folder)
    assert history(client, run.info.run_id, "loss") == [(3, 2.0), (4, 1.5)]


def test_a_resume_continues_the_same_runs_without_a_duplicated_step(tmp_path, mlflow_db):
    """A run killed after logging steps 5 and 6 past its step-4 checkpoint, resumed from it: MLflow keeps one run
    with each step once; TensorBoard shows the resumed run's values for the steps logged again."""
    folder, cfg = run_folder(tmp_path, ["tensorboard", "mlflow"])
    shutil.copy(mlflow_db, folder.mlflow_db)
    sink = MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))
    write_all(sink, [{"step": s, "loss": 10.0 - s} for s in range(1, 5)])
    checkpoint = sink.offsets()  # what the step-4 checkpoint records
    write_all(sink, [{"step": 5, "loss": 99.0}, {"step": 6, "loss": 98.0}])
    del sink  # killed: nothing closed
    sink = MetricsSink(folder, checkpoint, build_trackers(cfg.track, folder, resumed=True))
    write_all(sink, [{"step": s, "loss": 10.0 - s} for s in range(5, 9)])
    sink.close()
    assert [r["step"] for r in read_jsonl(folder.metrics)] == list(range(1, 9))
    client, run = mlflow_run(folder)
    assert [s for s, _ in history(client, run.info.run_id, "loss")] == list(range(1, 9))
    assert run.info.status == "FINISHED"
    assert [(e.step, e.value) for e in tensorboard_scalars(folder)["loss"]] == [(s, 10.0 - s) for s in range(1, 9)]


def rest(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def mlflow_server(tmp_path, mlflow_db):
    """A real `mlflow server` on 127.0.0.1 (its own SQLite store and artifact folder), stopped after the test."""
    server = MlflowServer(tmp_path, mlflow_db).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_a_real_mlflow_server_on_localhost_receives_the_run(tmp_path, mlflow_server):
    folder, cfg = run_folder(tmp_path, {"sinks": ["mlflow"], "mlflow_uri": mlflow_server,
                                        "mlflow_experiment": "sft"})
    sink = MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))
    write_all(sink, RECORDS)
    sink.log_run_files()
    sink.close()
    assert not folder.mlflow_db.exists()  # nothing local when a server is named
    run_id = read_json(folder.trackers)["mlflow"]["run_id"]
    api = f"{mlflow_server}/api/2.0/mlflow"
    run = rest(f"{api}/runs/get?run_id={run_id}")["run"]
    assert run["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert tags["shipsft.config_hash"] == cfg.config_hash() and tags["shipsft.template_hash"] == EXTRA["template_hash"]
    assert params["optim.lr"] == "0.0002" and len(params) == len(config_params(cfg.model_dump(mode="json")))
    loss = rest(f"{api}/metrics/get-history?run_id={run_id}&metric_key=loss")["metrics"]
    assert sorted((m["step"], m["value"]) for m in loss) == [(1, 2.5), (3, 2.0)]
    experiment = rest(f"{api}/experiments/get?experiment_id={run['info']['experiment_id']}")["experiment"]
    assert experiment["name"] == "sft"
    files = rest(f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={run_id}")["files"]
    assert sorted(f["path"] for f in files) == ["audit.html", "audit.json", "config.yaml", "manifest.json",
                                                "report.html"]


# -- Weights & Biases (offline) --------------------------------------------------------------------------------

def wandb_records(path: Path):
    """The records of a W&B run file (run-<id>.wandb): LevelDB's log format (32 KiB blocks of chunks with a 7-byte
    header: crc32, length, type) after a 7-byte W&B header; each record a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST chunk of one
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def finished_records(path: Path) -> list:
    """The records of a W&B run file once its writer is done: W&B's service writes the file after `run.finish()`
    returns (seen on the 2-core machine under load, with and without shipsft's tracker threads: read at once, the file
    held no record in 3 of 5 tries), and the run's `exit` record is the last it writes."""
    for _ in range(1200):
        records = list(wandb_records(path)) if path.stat().st_size else []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        time.sleep(0.1)
    pytest.fail(f"{path}: W&B never wrote the run's exit record")


def wandb_history(run_dir: Path) -> tuple[list[dict], dict, list[str]]:
    """(history rows, config, artifact names) of every offline run folder under <run>/wandb."""
    rows, config, artifacts = [], {}, []
    for file in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for r in finished_records(file):
            kind = r.WhichOneof("record_type")
            if kind == "history":
                rows.append({item_key(i): json.loads(i.value_json) for i in r.history.item})
            elif kind == "run":
                config.update({item_key(u): json.loads(u.value_json) for u in r.run.config.update})
            elif kind == "config":
                config.update({item_key(u): json.loads(u.value_json) for u in r.config.update})
            elif kind == "artifact":
                artifacts.append(r.artifact.name)
    return rows, config, artifacts


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_wandb_offline_writes_the_run_with_its_history_config_and_artifact(tmp_path, wandb_home):
    folder, cfg = run_folder(tmp_path, {"sinks": ["wandb"], "wandb_project": "sft"})
    sink = MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))
    write_all(sink, RECORDS)
    sink.log_run_files()
    sink.close()
    rows, config, artifacts = wandb_history(folder.root)
    loss = [(r["_step"], r["loss"]) for r in rows if "loss" in r]
    assert loss == [(1, 2.5), (3, 2.0)]  # one row per step: step 3's eval loss joined it
    assert [(r["_step"], r.get("eval_loss")) for r in rows if r["_step"] in (0, 3)] == [(0, 3.5), (3, 2.75)]
    assert config["shipsft.config_hash"] == cfg.config_hash() and config["optim.lr"] == "0.0002"
    assert config["shipsft.template_hash"] == EXTRA["template_hash"]
    assert artifacts == ["t-files"]
    assert read_json(folder.trackers)["wandb"]["mode"] == "offline"


# -- trackio ---------------------------------------------------------------------------------------------------

TRACKIO_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_trackers as t
from shipsft.runs.sinks import MetricsSink
from shipsft.runs.trackers import build_trackers
from trackio.sqlite_storage import SQLiteStorage

folder, cfg = t.run_folder(Path({tmp!r}), {{"sinks": ["trackio"], "trackio_project": "sft"}})
sink = MetricsSink(folder, None, build_trackers(cfg.track, folder, resumed=False))
t.write_all(sink, t.RECORDS)
sink.log_run_files()
sink.close()
logs = SQLiteStorage.get_logs("sft", "t")
print(json.dumps({{"loss": [[r["step"], r["loss"]] for r in logs if r.get("loss") is not None],
                  "config": SQLiteStorage.get_run_config("sft", "t"),
                  "state": json.loads(folder.trackers.read_text()),
                  "said": sink.trackers.lines + sink.trackers.problems}}, default=str))
"""


def test_trackio_logs_locally_with_the_config_and_tags(tmp_path):
    # trackio reads TRACKIO_DIR when it is imported: a fresh interpreter keeps it inside tmp_path
    script = TRACKIO_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path))
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith('{"loss"')))
    assert result["loss"] == [[1, 2.5], [3, 2.0]]
    assert result["config"]["shipsft.config_hash"] and result["config"]["optim.lr"] == "0.0002"
    assert result["config"]["shipsft.template_hash"] == EXTRA["template_hash"]
    # the close went through on the first try: nothing pending, no failure said (trackio.finish() raised on the
    # outbox's thread, so every close was retried until the flush deadline and reported as missed)
    assert result["state"] == {"trackio": {"project": "sft", "name": "t"}} and result["said"] == []
    assert "Run finished" not in out.stdout  # trackio's atexit hook did not finish the run a second time


# -- end to end ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_run_train_logs_to_every_tracker_and_a_resume_continues_them(tmp_path, mlflow_db, wandb_home):
    path = write_tiny_run(tmp_path, track=["tensorboard", "mlflow", "wandb"],
                          train={"max_steps": 4, "batch_size": 16, "precision": "fp32", "save_every": 2,
                                 "keep_checkpoints": 3})
    folder = RunFolder(tmp_path / "runs" / "t")
    folder.root.mkdir(parents=True)
    shutil.copy(mlflow_db, folder.mlflow_db)
    notes = Notes()
    assert run_train(load_config(path), config_path=path, argv=["shipsft", "train", str(path)], progress=notes) == 0
    assert f"tracking: tensorboard --logdir {folder.tensorboard}" in notes.lines
    manifest = read_json(folder.manifest)
    client, run = mlflow_run(folder)
    first_run = run.info.run_id
    assert [s for s, _ in history(client, first_run, "loss")] == [1, 2, 3, 4]
    assert [s for s, _ in history(client, first_run, "eval_loss")] == [0, 4]
    assert run.data.params["train.max_steps"] == "4"
    tags = run.data.tags
    assert tags["shipsft.config_hash"] == manifest["config_hash"]
    assert tags["shipsft.data_fingerprint.train"] == manifest["data_fingerprint"]["train"]
    assert tags["shipsft.data_fingerprint.eval"] == manifest["data_fingerprint"]["eval"]
    assert tags["shipsft.template_hash"] == manifest["template_hash"] and len(manifest["template_hash"]) == 16
    assert tags["shipsft.tokenizer_hash"] == manifest["tokenizer_hash"]
    assert tags["shipsft.token_fingerprint.train"] == manifest["token_fingerprint"]["train"]
    names = sorted(a.path for a in client.list_artifacts(first_run))
    assert names == ["audit.html", "audit.json", "config.yaml", "manifest.json", "report.html"]
    logged = json.loads(Path(client.download_artifacts(first_run, "manifest.json", str(tmp_path))).read_text())
    assert logged["steps"] == 4  # the manifest as it reads at the end
    assert [e.step for e in tensorboard_scalars(folder)["loss"]] == [1, 2, 3, 4]
    rows, config, _ = wandb_history(folder.root)
    assert [r["_step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert config["shipsft.data_fingerprint.train"] == manifest["data_fingerprint"]["train"]

    # resume from step 2: steps 3 and 4 are trained and logged again, each tracker holds every step once
    losses = [(r["step"], r["loss"]) for r in read_jsonl(folder.metrics) if "loss" in r]
    assert run_train(load_config(path), config_path=path, resume=folder.checkpoint(2), progress=Notes()) == 0
    client, run = mlflow_run(folder)
    assert run.info.run_id == first_run and run.info.status == "FINISHED"
    assert [s for s, _ in history(client, first_run, "loss")] == [1, 2, 3, 4]
    assert [s for s, _ in history(client, first_run, "eval_loss")] == [0, 4]
    tb = tensorboard_scalars(folder)["loss"]
    assert [e.step for e in tb] == [1, 2, 3, 4]
    assert all(math.isclose(e.value, loss, rel_tol=1e-6) for e, (_, loss) in zip(tb, losses))
    rows, _, _ = wandb_history(folder.root)
    assert [r["_step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    # one id: offline-run-<YYYYMMDD_HHMMSS>-<id>, and wandb appends -1 to the folder when the resume starts in the
    # same second as the first run (seen on a fast machine: ...-cxmroug3 and ...-cxmroug3-1, one id)
    ids = {re.match(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)", p.name).group(1)
           for p in (folder.root / "wandb").glob("offline-run-*")}
    assert len(ids) == 1, ids
