"""A real `mlflow server` on 127.0.0.1 for the tracker tests: its own SQLite store (a copy of an already migrated
one: MLflow's schema migrations take ~16 s on a 2-core CPU) and artifact folder, started, stopped (SIGKILL, as a
crashed server) and started again on the same port and store."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, folder: Path, migrated_db: Path):
        self.folder = folder
        self.store = folder / "server"
        self.store.mkdir(parents=True)
        shutil.copy(migrated_db, self.store / "mlflow.db")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = folder / "server.log"

    def start(self) -> "MlflowServer":
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}",
                 "--artifacts-destination", str(self.store / "artifacts")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # no background job runner (seven huey consumers: 84 s to start on 2 cores, 39 without)
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        end = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > end:
                self.stop(signal.SIGKILL)
                pytest.fail(f"mlflow server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and the workers it started (SIGKILL: as a crash, nothing flushed)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
