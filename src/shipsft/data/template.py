"""Chat templates: the Jinja source plus exactly the variables `apply_chat_template` hands it.

`ChatTemplate.render` calls the very function transformers' `apply_chat_template` uses (`render_jinja_template`'s
compiled template, the same special-token strings and kwargs), so its text is byte-identical to
`tokenizer.apply_chat_template(messages, tokenize=False)` (tests/test_render.py checks every fixture family).
`resolve_template` picks the model's own template, a named one shipped with shipsft, a .jinja file or inline Jinja.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from shipsft.errors import TemplateError

NAMED_TEMPLATES = ("chatml",)  # shipped in shipsft/assets/templates/<name>.jinja
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def special_strings(tokenizer) -> tuple[str, ...]:
    """Every special-token string of the tokenizer, longest first."""
    found = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    found |= {v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


@dataclass
class ChatTemplate:
    source: str
    special: dict[str, str]  # bos_token/eos_token/... strings, as tokenizer.special_tokens_map gives them
    kwargs: dict[str, Any] = field(default_factory=dict)  # user template kwargs, e.g. date_string for Llama 3.2
    origin: str = "tokenizer"  # "tokenizer" | "named:<name>" | "file:<path>" | "inline"
    _compiled: Any = field(default=None, repr=False, compare=False)
    _plain_kwargs: dict = field(default_factory=dict, repr=False, compare=False)

    def render(self, messages: list[dict], add_generation_prompt: bool = False, tools: list | None = None) -> str:
        chat, tools = self.prepare(messages, tools)
        return self.render_prepared(chat, add_generation_prompt, tools)

    def prepare(self, messages: list[dict], tools: list | None = None) -> tuple[list[dict], list | None]:
        """The conversation exactly as `render_jinja_template` hands it to the template: None-valued keys dropped
        (apply_chat_template does that first), plain JSON types, reasoning fields aliased. Done once per
        conversation; its prefixes are then rendered from slices (the sandbox cannot mutate them)."""
        from transformers.utils.chat_template_utils import _alias_reasoning_fields, _plain_template_data

        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        return _alias_reasoning_fields(_plain_template_data(chat)), _plain_template_data(tools)

    def render_prepared(self, chat: list[dict], add_generation_prompt: bool = False, tools: list | None = None) -> str:
        # the same call render_jinja_template makes (its compile cache included), minus the per-call deep copies:
        # about 2x faster, and byte-identical (tests/test_render.py checks parity for every fixture family)
        from transformers.utils.chat_template_utils import _compile_jinja_template, _plain_template_data

        if self._compiled is None:
            self._compiled = _compile_jinja_template(self.source)
            self._plain_kwargs = _plain_template_data({**self.special, **self.kwargs})
        return self._compiled.render(messages=chat, tools=tools, documents=None,
                                     add_generation_prompt=add_generation_prompt, **self._plain_kwargs)


def template_from_tokenizer_config(path: str | Path, kwargs: dict | None = None) -> ChatTemplate:
    """A template from a bare `tokenizer_config.json` (e.g. Gemma fixtures that ship no tokenizer.json)."""
    cfg = json.loads(Path(path).read_text())
    src = cfg.get("chat_template")
    if isinstance(src, list):  # named templates: take "default"
        src = next((t["template"] for t in src if t.get("name") == "default"), src[0]["template"])
    if not src:
        raise TemplateError([f"{path}: no chat_template in this tokenizer_config.json"])
    special = {}
    for key in _SPECIAL_KEYS:
        val = cfg.get(key)
        if isinstance(val, dict):
            val = val.get("content")
        if isinstance(val, str):
            special[key] = val
    return ChatTemplate(src, special, dict(kwargs or {}), origin=f"file:{path}")


def resolve_template(tokenizer, template: str | None, kwargs: dict | None) -> ChatTemplate:
    """The model's own template, or a named/custom one when configured. No template at all is an error."""
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    kwargs = dict(kwargs or {})
    if template is None:
        src = tokenizer.chat_template
        if isinstance(src, dict):
            src = src.get("default") or next(iter(src.values()))
        if not src:
            raise TemplateError(
                ["the tokenizer has no chat template and data.template is not set. Fix: set data.template to a "
                 f"named template ({', '.join(NAMED_TEMPLATES)}), a path to a .jinja file, or an inline Jinja string "
                 "(or use data.format: text for raw-text continued pre-training)."]
            )
        return ChatTemplate(src, special, kwargs, origin="tokenizer")
    if template in NAMED_TEMPLATES:
        src = resources.files("shipsft").joinpath(f"assets/templates/{template}.jinja").read_text()
        return ChatTemplate(src, special, kwargs, origin=f"named:{template}")
    if template.endswith(".jinja"):
        p = Path(template)
        if not p.exists():
            raise TemplateError([f"data.template: file {template} not found"])
        return ChatTemplate(p.read_text(), special, kwargs, origin=f"file:{template}")
    if "{%" in template or "{{" in template:
        return ChatTemplate(template, special, kwargs, origin="inline")
    raise TemplateError(
        [f"data.template: {template!r} is not a named template ({', '.join(NAMED_TEMPLATES)}), a .jinja file, "
         "or an inline Jinja template"]
    )


