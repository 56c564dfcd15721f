"""Session fixtures (helpers live in tests/helpers.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from shipsft.config import ModelConfig
    from shipsft.model.locate import load_tokenizer

    return load_tokenizer(ModelConfig(path="smollm2"))


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory):
    """An empty MLflow SQLite store with its tables created (MLflow's schema migrations take ~16 s on a 2-core
    CPU): each test copies it to where the tracker (or tests/servers.py's server) expects its store."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db
