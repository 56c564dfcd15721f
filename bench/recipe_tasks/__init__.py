"""Generalisation benchmark of small SFT tasks for the recipe comparison (shipsft default vs TRL SFTTrainer).

Each generator is a pure, deterministic function of a seed (stdlib only, no files, no network) that returns a
TaskData: train records, an eval set split into a "seen" slice (training phrasing templates and entity pools,
fresh combinations) and an "unseen" slice (held-out phrasing templates and held-out entities), the shipsft
metric names to score it with, and the primary one.

    from bench.recipe_tasks import TASKS, write_task
    data = TASKS["classify_json"](0)
    write_task(data, Path("out/classify_json"))

    python -m bench.recipe_tasks --task classify_json --out out/classify_json [--seed 0]
    python -m bench.recipe_tasks --task all --out out            # one folder per task
"""
from __future__ import annotations

from collections.abc import Callable

from . import classify_json, extract_entities, rewrite_format, schedule_chat, tool_call
from ._common import TaskData, answer, write_task

TASKS: dict[str, Callable[[int], TaskData]] = {
    "classify_json": classify_json.generate,
    "extract_entities": extract_entities.generate,
    "rewrite_format": rewrite_format.generate,
    "tool_call": tool_call.generate,
    "schedule_chat": schedule_chat.generate,  # multi-turn, a free-text answer scored by ROUGE-L
}

__all__ = ["TASKS", "TaskData", "answer", "write_task"]
