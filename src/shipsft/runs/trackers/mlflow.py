"""MLflow: a run in `track.mlflow_uri` (a tracking server or a database), or, when it is null, in a SQLite store
inside the run folder (<run>/mlflow.db, artifacts in <run>/mlartifacts). MLflow 3 refuses its old file store
(./mlruns) unless MLFLOW_ALLOW_FILE_STORE is set; SQLite is the local store it recommends.

Through `MlflowClient` (no global active run; its log_batch splits params and tags into requests of 100, MLflow's
MAX_PARAMS_TAGS_PER_BATCH): param values cut to 6000 characters and tag values to 8000 (MAX_PARAM_VAL_LENGTH,
MAX_TAG_VAL_LENGTH in mlflow/utils/validation.py), saying so in the value; metric and param names reduced to the
characters MLflow accepts. A resume continues the run id kept in trackers.json (params are immutable in MLflow:
only keys the run lacks are added).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from shipsft.runs.layout import RunFolder

MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")  # MLflow's rule for metric and param names


def key(name: str) -> str:
    return BAD_KEY_CHARS.sub("_", name)[:MAX_KEY]


def cut(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    note = f"... [{len(value)} characters; the whole value is in config.yaml]"
    return value[:limit - len(note)] + note


def local_store(folder: RunFolder) -> str:
    return f"sqlite:///{folder.mlflow_db.resolve()}"


class MlflowTracker:
    name = "mlflow"
    rewinds = False

    def __init__(self, uri: str | None, experiment: str, folder: RunFolder):
        self.uri = uri or local_store(folder)
        self.experiment = experiment
        self.folder = folder
        self.local = uri is None
        self.client = None
        self.run_id: str | None = None
        self.stamp: tuple[tuple, int] | None = None  # the last log call and the timestamp it was sent with

    def start(self, params: dict[str, str], tags: dict[str, str], state: dict | None, resume) -> dict:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        if self.local:
            self.folder.root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        existing: dict[str, str] = {}
        if resume is not None and state and state.get("uri") == self.uri and state.get("run_id"):
            self.run_id = state["run_id"]
            existing = self.client.get_run(self.run_id).data.params
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(self.experiment_id(), run_name=self.folder.root.name).info.run_id
        new_params = [Param(key(k), cut(v, MAX_PARAM_VALUE)) for k, v in params.items() if key(k) not in existing]
        run_tags = [RunTag(key(k), cut(v, MAX_TAG_VALUE)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, params=new_params, tags=run_tags)  # the client splits it into requests
        return {"uri": self.uri, "run_id": self.run_id, "experiment": self.experiment}

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        # the local store keeps its artifacts beside it in the run folder (MLflow's default is ./mlartifacts in the
        # current directory); a server or a user's database keeps its own default
        location = self.folder.mlflow_artifacts.resolve().as_uri() if self.local else None
        return self.client.create_experiment(self.experiment, artifact_location=location)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        # a retry sends the timestamp of its first try: the outbox resends a call whose request may have reached the
        # server before the connection broke (a server killed between storing and answering), and MLflow drops a
        # metric equal to a stored one in key, timestamp, step and value, so the step is not stored twice
        call = (step, tuple(metrics.items()))
        if self.stamp is None or self.stamp[0] != call:
            self.stamp = (call, int(time.time() * 1000))
        now = self.stamp[1]
        self.client.log_batch(self.run_id, metrics=[Metric(key(k), float(v), now, step) for k, v in metrics.items()])

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        if self.client is not None and self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)

    def where(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            return f"mlflow run {self.run_id} at {self.uri}"
        return f"mlflow run {self.run_id}; view: mlflow ui --backend-store-uri {self.uri}"
