"""The GGUF tests run llama.cpp from the cache that `shipsft setup gguf` fills (the README's test command runs it
before the suite): a test never installs it, so no test touches the network."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def llama_cpp_installed():
    from shipsft.export.llamacpp import default_root

    if not (default_root() / "COMPLETE").exists():
        pytest.fail(f"llama.cpp is not installed in {default_root()} for the GGUF export tests. Fix: shipsft setup "
                    "gguf (the README's test command runs it)")
