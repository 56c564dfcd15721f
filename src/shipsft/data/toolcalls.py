"""Tool calls read back from text: what a model wrote, or what a chat template rendered, as (name, arguments).

    parse_tool_calls('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    # [ToolCall(name="get_weather", arguments={"city": "Oslo"})]

Templates write the same call in different wrappers, so the parser looks for the JSON, not the wrapper: every JSON
object (or list of objects) in the text that names a function and its arguments is a call, whatever surrounds it:
  Hermes / Qwen2.5 / SmolLM3   <tool_call>{"name": ..., "arguments": {...}}</tool_call>   (one block per call)
  Llama 3.1-3.3                {"name": ..., "parameters": {...}}
  Mistral                      [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
  OpenAI messages              {"type": "function", "function": {"name": ..., "arguments": "<JSON string>"}}
Arguments given as a JSON string (OpenAI's wire format) are parsed. Text between and around the calls (a preamble,
a closing sentence) is not a call and is ignored; a malformed call is not a call (the metric then scores it 0).
Used by the answer-shape check (data/inspect.py) and the `tool_call_match` metric (eval/metrics.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ARGUMENT_KEYS = ("arguments", "parameters")  # Llama 3.x templates write "parameters"


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


def as_call(obj: Any) -> ToolCall | None:
    """A JSON value as a tool call, or None when it is not one (see the module docstring for the shapes)."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI: {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    key = next((k for k in ARGUMENT_KEYS if k in obj), None)
    if not isinstance(name, str) or not name or key is None:
        return None
    args = obj[key]
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return None
    return ToolCall(name, args) if isinstance(args, dict) else None


_DECODER = json.JSONDecoder()  # stateless; building one per call cost as much as scanning a short answer


def next_json(text: str, i: int = 0) -> tuple[Any, int, int] | None:
    """(value, start, end) of the first JSON object or list that decodes at or after position `i`, or None."""
    decoder = _DECODER
    while True:
        start = min((j for j in (text.find("{", i), text.find("[", i)) if j >= 0), default=-1)
        if start < 0:
            return None
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        return value, start, end


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every tool call in `text`, in order (empty when the text holds none)."""
    calls: list[ToolCall] = []
    i = 0
    while (hit := next_json(text, i)) is not None:
        value, start, end = hit
        found = [as_call(v) for v in (value if isinstance(value, list) else [value])]
        if any(c is None for c in found) or not found:
            i = start + 1  # not a call (or a list that is not only calls): a call may still sit inside it
            continue
        calls.extend(found)
        i = end
    return calls


def message_tool_calls(message: dict) -> list[ToolCall]:
    """The calls of an assistant message's structured `tool_calls` field (OpenAI messages format)."""
    calls = [as_call(c) for c in message.get("tool_calls") or []]
    return [c for c in calls if c is not None]


def call_text(calls: list[ToolCall]) -> str:
    """Calls written as Hermes-style text, one `<tool_call>` block each: the form `parse_tool_calls` reads back."""
    return "\n".join("<tool_call>" + json.dumps({"name": c.name, "arguments": c.arguments}, ensure_ascii=False)
                     + "</tool_call>" for c in calls)
