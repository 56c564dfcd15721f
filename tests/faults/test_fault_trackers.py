"""A tracking server killed in the middle of a real `shipsft train` run: training goes on (a line says the tracker
failed and is retried), the server is started again on the same port and store, and every step arrives in the same
MLflow run, once, with the run marked FINISHED; nothing is left pending. (The tracker unit tests in
tests/runs/test_trackers.py take an MLflow store away and back within a run, and send what a tracker still down at
the end missed with `shipsft sync`.)"""
from __future__ import annotations

import json
import signal
import urllib.request

import pytest

from faultkit import ENV, losses, lora_run, shipsft, wait_for_steps
from servers import MlflowServer
from shipsft.runs.jsonio import read_json
from shipsft.runs.layout import RunFolder

pytestmark = pytest.mark.slow


def rest(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_a_tracking_server_killed_mid_run_gets_every_step_after_it_restarts(tmp_path, mlflow_db):
    server = MlflowServer(tmp_path, mlflow_db).start()
    try:
        # the end of the run waits up to 10 minutes for the server, which restarts in 40-90 s on 2 busy cores
        path = lora_run(tmp_path, track={"sinks": ["mlflow"], "mlflow_uri": server.url, "retry_max_s": 0.5,
                                         "flush_timeout_s": 600})
        run = RunFolder(tmp_path / "runs" / "t")
        # each try fails at once instead of MLflow's own 7 retries: the backoff under test is shipsft's
        proc = shipsft("train", path, env={**ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                           "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
        wait_for_steps(run.root, proc, 3)
        server.stop(signal.SIGKILL)  # a crash: nothing flushed, connections refused
        wait_for_steps(run.root, proc, 6)  # training goes on without it
        server.start()
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        state = read_json(run.trackers)["mlflow"]
        api = f"{server.url}/api/2.0/mlflow"
        history = rest(f"{api}/metrics/get-history?run_id={state['run_id']}&metric_key=loss")["metrics"]
        status = rest(f"{api}/runs/get?run_id={state['run_id']}")["run"]["info"]["status"]
    finally:
        server.stop()
    lines = out.splitlines()
    down = [x for x in lines if x.startswith("tracking: mlflow failed at step ")]
    assert len(down) == 1 and "retrying in the background (at most every 0.5 s), training goes on" in down[0], out
    assert any(x.startswith("tracking: mlflow answers again after ") for x in lines), out
    assert "pending" not in state
    assert sorted(m["step"] for m in history) == list(range(1, 13))  # every step once, none lost
    assert sorted((m["step"], m["value"]) for m in history) == [(s, pytest.approx(v, abs=1e-6))
                                                                for s, v in losses(run.root)]
    assert status == "FINISHED"
