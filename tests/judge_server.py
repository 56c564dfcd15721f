"""A real OpenAI-compatible judge for the tests: llama.cpp serving a GGUF on 127.0.0.1 (tests/judge_server/server.mjs).

node-llama-cpp 3.21.1 ships llama.cpp's CPU build as an npm package (@node-llama-cpp/linux-x64), so nothing is
compiled or downloaded beyond the npm registry. Installed by the README's test command:

    npm ci --omit=optional --ignore-scripts --prefix tests/judge_server

(--omit=optional leaves out the CUDA and Vulkan builds, 620 MB; --ignore-scripts skips node-llama-cpp's postinstall,
which would try to download or build llama.cpp.)

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
INSTALL = "npm ci --omit=optional --ignore-scripts --prefix tests/judge_server"
START_S = 300  # loading the model on a busy 2-core machine; the server prints its port once loaded


def judge_server_skip_reason() -> str | None:
    """Why the server cannot start here (None when it can)."""
    if shutil.which("node") is None:
        return "node is missing: apt-get install -y nodejs npm"
    if not (SERVER_DIR / "node_modules" / "node-llama-cpp").is_dir():
        return f"node-llama-cpp is not installed: {INSTALL}"
    return None


@contextmanager
def judge_server(gguf: Path, log: Path) -> Iterator[str]:
    """Serve `gguf` until the block ends; every request and reply is appended to `log` (JSONL)."""
    proc = subprocess.Popen(["node", str(SERVER_DIR / "server.mjs"), "--model", str(gguf), "--port", "0",
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
