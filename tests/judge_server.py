"""A real OpenAI-compatible judge for the tests: llama.cpp serving a GGUF on 127.0.0.1 (tests/judge_server/server.mjs).

The llama.cpp it runs is the one the GGUF export pins (node-llama-cpp 3.21.1's prebuilt CPU build), installed into
shipsft's cache by `shipsft setup gguf`, which the README's test command runs before the suite (export/llamacpp.py).

    from judge_server import judge_server, judge_server_skip_reason   # tests/ is on sys.path under pytest
    with judge_server(gguf, log=tmp_path / "requests.jsonl") as url:   # url = "http://127.0.0.1:PORT/v1"
        ...
"""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_DIR = Path(__file__).resolve().parent / "judge_server"
INSTALL = "shipsft setup gguf"
START_S = 300  # loading the model on a busy 2-core machine; the server prints its port once loaded


def judge_server_skip_reason() -> str | None:
    """Why the server cannot start here (None when it can)."""
    if shutil.which("node") is None:
        return "node is missing: apt-get install -y nodejs npm"
    if not (node_modules() / "node-llama-cpp").is_dir():
        return f"llama.cpp is not installed: {INSTALL}"
    return None


def node_modules() -> Path:
    from shipsft.export.llamacpp import default_root

    return default_root() / "node_modules"


@contextmanager
def judge_server(gguf: Path, log: Path) -> Iterator[str]:
    """Serve `gguf` until the block ends; every request and reply is appended to `log` (JSONL)."""
    proc = subprocess.Popen(["node", str(SERVER_DIR / "server.mjs"), "--node-modules", str(node_modules()),
                             "--model", str(gguf), "--port", "0",
                             "--log", str(log)], cwd=SERVER_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_S)
    try:
        line = first[0] if first else ""
        if not line.startswith("listening "):
            proc.kill()
            raise RuntimeError(f"the judge server did not start: {line!r} {proc.stderr.read()[-2000:]}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.terminate()
        proc.wait(30)


def requests_in(log: Path) -> list[dict]:
    """What the server was asked and answered, in order: [{"request": {...}, "reply": {...}}]."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
