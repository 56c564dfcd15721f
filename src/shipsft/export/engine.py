"""Run llama.cpp itself on a GGUF (node-llama-cpp's prebuilt binaries, engine.mjs in a node child process).

    runs = run_engine(tc, gguf_file, [EnginePrompt(text, ref_prompt_ids, ref_answer_ids, max_new)], eog_check=[eot])
    runs.results[0].ids         # llama.cpp's tokenization of the prompt text
    runs.results[0].generated   # its greedy answer (cut before the end-of-generation token), .stopped
    runs.results[0].forced      # its greedy choice at each reference position (teacher forcing)
    runs.eog[eot]               # does llama.cpp end generation at the trained end-of-turn token?

The parity check compares these with the run's own greedy answers: llama.cpp's own tokenizer, chat-template
metadata, rope implementation and kernels, not a re-reading of the file by another library.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.errors import ConfigError

SCRIPT = Path(__file__).with_name("engine.mjs")


@dataclass
class EnginePrompt:
    text: str  # the prompt as the GGUF's chat template renders it
    ids: list[int]  # the reference prompt ids (training's rendering)
    reference: list[int]  # the reference greedy answer, without its stop token
    max_new: int


@dataclass
class EngineResult:
    ids: list[int]
    generated: list[int]
    stopped: bool
    stop_token: int | None
    forced: list[int | None]
    forced_eog: list[bool]


@dataclass
class EngineRun:
    results: list[EngineResult]
    eog: dict[int, bool]
    info: dict = field(default_factory=dict)


def run_engine(tc, gguf_file: Path, prompts: list[EnginePrompt], eog_check: list[int],
               threads: int = 1) -> EngineRun:
    """llama.cpp on `prompts`. One thread: ggml's worker threads spin while they wait for each other, and on a machine
    whose cores other jobs share that spinning dominates (this 2-core CPU at load average ~16: 2 threads took 235 s a
    prompt, 1 thread 23 s on SmolLM2-135M F32); the check needs the answers, not the speed."""
    # room for llama.cpp's own tokenisation of the prompt too, which may be longer than training's when they differ
    width = max((2 * len(p.ids) + max(len(p.reference), p.max_new) + 8 for p in prompts), default=16)
    context = max(64, -(-width // 64) * 64)
    request = {"model": str(gguf_file), "threads": threads, "context": context,
               "eog_check": [int(i) for i in eog_check],
               "prompts": [{"text": p.text, "ids": p.ids, "reference": p.reference, "max_new": p.max_new}
                           for p in prompts]}
    res = subprocess.run(["node", str(SCRIPT), str(tc.node_modules)], input=json.dumps(request),
                         capture_output=True, text=True)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-4:])
        raise ConfigError([f"GGUF parity: llama.cpp ({tc.describe()}) could not run {Path(gguf_file).name} (exit "
                           f"{res.returncode}): {tail[:600]}"])
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return EngineRun([EngineResult(r["ids"], r["generated"], r["stopped"], r["stop_token"], r["forced"],
                                   r["forced_eog"])
                      for r in out["results"]], {int(k): v for k, v in out["eog"].items()}, out.get("info") or {})
