"""Session fixtures (helpers live in tests/helpers.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from shipsft.config import ModelConfig
    from shipsft.model.locate import load_tokenizer

    return load_tokenizer(ModelConfig(path="smollm2"))
