"""The data units every stage shares.

`Example` is what a format adapter produces from one record of a user's file: a conversation in the OpenAI
`messages` shape (the canonical unit), or, for the two non-chat formats, plain prompt/completion strings or raw
text. `source` is always "file:line" (or "file:#index" for columnar files), so any later error can name it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shipsft.data.labels import n_targets

Kind = Literal["chat", "completion_text", "text"]


@dataclass(slots=True)
class Example:
    source: str  # "data/train.jsonl:12" — where a person finds this record
    kind: Kind = "chat"
    messages: list[dict[str, Any]] | None = None  # chat: [{role, content, (tool_calls, name, tool_call_id)}]
    n_prompt: int | None = None  # prompt/completion chat data: messages[:n_prompt] is the prompt
    prompt: str | None = None  # completion_text: plain prompt string (no chat template)
    completion: str | None = None  # completion_text: plain completion string
    text: str | None = None  # text: raw text for continued pre-training (loss on every token)
    tools: list[dict[str, Any]] | None = None  # tool schemas passed to the chat template
    meta: dict[str, Any] = field(default_factory=dict)  # id, license, source fields kept for provenance


@dataclass(slots=True)
class Rendered:
    """One training sequence: token ids and the per-token trained mask, built in the same pass.

    `mask[t]` is True when token t is a trained token (the model is taught to *produce* it). `labels` are derived
    from the mask by `shipsft.data.labels.labels_from_mask` (the one place where the next-token shift happens).
    """

    source: str
    ids: list[int]
    mask: list[bool]
    text: str = ""  # the rendered text (chat template output), for preview and parity checks
    turn: int | None = None  # when a prefix-unstable template forced one example per assistant turn: that turn
    n_prompt_tokens: int = 0  # tokens before the first trained token (audit: prompt length)
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return n_targets(self.mask)
