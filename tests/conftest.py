"""Session fixtures (helpers live in tests/helpers.py)."""
from __future__ import annotations

import huggingface_hub.constants  # noqa: F401 - see below
import pytest

# huggingface_hub reads HF_HUB_OFFLINE, HF_HUB_CACHE and HF_ENDPOINT once, when it is first imported; imported here,
# before any test sets them (tests/model/test_hub_models.py sets HF_HUB_OFFLINE=1 for one test), a test's setting cannot
# leak into every later test. shipsft reads those variables at call time (config.hub_cache_dir, hub_offline).


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from shipsft.config import ModelConfig
    from shipsft.model.locate import load_tokenizer

    return load_tokenizer(ModelConfig(path="smollm2"))


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory):
    """Two real tiny runs, trained by `shipsft train` as a user runs it (a subprocess, its stdout and stderr kept):
    runs/quiet with the defaults, and runs/loud with -v and another learning rate. The console tests read their
    output; `shipsft runs` and `shipsft compare` read their folders."""
    import os
    import subprocess
    import sys

    from helpers import write_tiny_run

    root = tmp_path_factory.mktemp("two_runs")
    # A user's scorer that warns each time it runs: one warning the run is sure to meet, whatever the installed
    # libraries' own deprecations are this month (peft 0.21 met one of transformers'; 0.22 meets none).
    (root / "planted.py").write_text(
        "import warnings\n\n\ndef score(prediction, reference, example):\n"
        "    warnings.warn('planted scorer warning', FutureWarning)\n"
        "    return float(prediction.strip() == reference.strip())\n")
    config = write_tiny_run(root, eval={"suites": [{"name": "toy", "data": "eval.jsonl",
                                                    "metrics": ["exact_match", "planted:score"],
                                                    "max_new_tokens": 8}]})
    env = {**os.environ, "SHIPSFT_ALLOCATOR": "system", "COLUMNS": "120", "PYTHONWARNINGS": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = {}
    for name, extra in (("quiet", []), ("loud", ["-v", "--set", "optim.lr=0.001"])):
        out[name] = subprocess.run([sys.executable, "-m", "shipsft", "train", str(config), "--set",
                                    f"output.name={name}", *extra], capture_output=True, text=True, cwd=root,
                                   env=env, timeout=900)
        assert out[name].returncode == 0, out[name].stdout + out[name].stderr
    return root / "runs", out


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory):
    """An empty MLflow SQLite store with its tables created (MLflow's schema migrations take ~16 s on a 2-core
    CPU): each test copies it to where the tracker (or tests/servers.py's server) expects its store."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db
