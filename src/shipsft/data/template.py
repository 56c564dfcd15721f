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
        plain, alias = _prepare_steps()
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        return alias(plain(chat)), plain(tools)

    def render_prepared(self, chat: list[dict], add_generation_prompt: bool = False, tools: list | None = None) -> str:
        # the same call render_jinja_template makes (its compile cache included), minus the per-call deep copies:
        # about 2x faster, and byte-identical (tests/test_render.py checks parity for every fixture family)
        from transformers.utils.chat_template_utils import _compile_jinja_template

        if self._compiled is None:
            self._compiled = _compile_jinja_template(self.source)
            self._plain_kwargs = _prepare_steps()[0]({**self.special, **self.kwargs})
        variables = {"documents": None, "tools": None, **self._plain_kwargs}  # template_kwargs may give `tools`
        if tools is not None:  # an example's own tools win over a default given in data.template_kwargs
            variables["tools"] = tools
        return self._compiled.render(messages=chat, add_generation_prompt=add_generation_prompt, **variables)


def _prepare_steps():
    """The two steps the installed transformers' render_jinja_template applies to a conversation before rendering:
    plain JSON types, then reasoning fields aliased. transformers 5.17 (the GPU image's, docs/gpu.md) has neither and
    hands the messages over as they are, so a step it lacks is skipped: parity is with the version installed."""
    from transformers.utils import chat_template_utils as ctu

    same = lambda value: value  # noqa: E731
    return getattr(ctu, "_plain_template_data", same), getattr(ctu, "_alias_reasoning_fields", same)


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




# ------------------------------------------------------------------------------------------------------------
# Where an assistant turn ends, read off the template's own structure


@dataclass(frozen=True)
class TurnEnd:
    """How this template closes an assistant turn, found by rendering probe conversations and diffing them.

    close_final     the text after the answer of the LAST turn, through the special token that ends it: what the
                    model must emit at inference to stop ('<|im_end|>', '<|eot_id|>', ' </s>', '<|return|>')
    close_nonfinal  the same for a turn that another turn follows ('<|end|>' for gpt-oss, else == close_final)
    after_final     what the template writes after close_final only at the end of a conversation ('\\n',
                    '\\n<eos>', '\\n<|endoftext|>'): never trained; the model stops before it
    stop_token      the special token generation stops at: the last one of close_final (None: nothing closes a turn)
    """

    close_final: str
    close_nonfinal: str
    after_final: str
    stop_token: str | None

    def describe(self) -> str:
        if not self.close_final:
            return (f"nothing closes an assistant turn (the template writes {self.after_final!r} after an answer, "
                    "no special token), so no token can teach the model to stop")
        text = f"{self.close_final!r} ends every assistant turn"
        if self.close_nonfinal != self.close_final:
            text = (f"{self.close_final!r} ends the last assistant turn and {self.close_nonfinal!r} a turn another "
                    "follows, so each turn is trained as the last one in its own sequence")
        if self.after_final:
            text += f"; {self.after_final!r} written after the last turn is never trained"
        return text


PROBE = ("shipsftQ1", "shipsftA1", "shipsftQ2", "shipsftA2")


def specials_at(text: str, specials: tuple[str, ...]) -> list[tuple[int, str]]:
    """(position, token) of every special-token string in `text`, left to right (`specials` longest first)."""
    out, i = [], 0
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit:
            out.append((i, hit))
            i += len(hit)
        else:
            i += 1
    return out


def _common_prefix(a: str, b: str, specials: tuple[str, ...]) -> int:
    """Length of the common prefix of a and b, backed off so that it cuts no special token of either string."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    for text in (a, b):
        for pos, tok in specials_at(text, specials):
            if pos < k < pos + len(tok):
                k = pos
    return k


def _close(text: str, specials: tuple[str, ...], last: bool) -> tuple[str, str | None]:
    """`text` through its last (or first) special token, and that token; ("", None) when it has none."""
    found = specials_at(text, specials)
    if not found:
        return "", None
    pos, tok = found[-1] if last else found[0]
    return text[:pos + len(tok)], tok


def find_turn_end(template: ChatTemplate, specials: tuple[str, ...]) -> TurnEnd:
    """Render [user, assistant] and [user, assistant, user, assistant] and compare what follows the first answer:
    the part both share, through its last special token, closes every turn; what only the one-turn render has after
    it is written at the end of a conversation and is never trained. When they share no special token the last turn
    closes differently (gpt-oss) or nothing closes a turn (ChatGLM3). Raises TemplateError when the template cannot
    render a plain conversation."""
    q1, a1, q2, a2 = PROBE
    try:
        one = template.render([{"role": "user", "content": q1}, {"role": "assistant", "content": a1}])
        two = template.render([{"role": "user", "content": q1}, {"role": "assistant", "content": a1},
                               {"role": "user", "content": q2}, {"role": "assistant", "content": a2}])
    except Exception as e:  # noqa: BLE001 - Jinja raise_exception / anything a user template throws
        raise TemplateError([f"the chat template ({template.origin}) cannot render a plain user/assistant "
                             f"conversation ({str(e)[:200]}), so where an assistant turn ends cannot be found. Fix: "
                             "use a template that renders user and assistant turns (data.template)."]) from None
    if a1 not in one or a1 not in two or q2 not in two:
        raise TemplateError([f"the chat template ({template.origin}) does not write the messages' content into the "
                             "text it renders. Fix: use the model's own chat template, or a template that renders "
                             "message['content']."])
    final_tail = one[one.index(a1) + len(a1):]
    nonfinal_tail = two[two.index(a1) + len(a1):two.index(q2)]
    k = _common_prefix(final_tail, nonfinal_tail, specials)
    shared, tok = _close(final_tail[:k], specials, last=True)
    if shared:
        # The shared text may run into the next header: Llama-3-8B-Instruct's first template always appends the
        # generation prompt, so both renders continue '<|eot_id|><|start_header_id|>' after the answer. A turn ends
        # at the token that ends the user's turn too (the first special token between Q1 and A1), never past it.
        between = specials_at(one[one.index(q1) + len(q1):one.index(a1)], specials)
        user_close = between[0][1] if between else None
        if user_close and user_close in shared and not shared.endswith(user_close):
            shared, tok = shared[:shared.index(user_close) + len(user_close)], user_close
        return TurnEnd(shared, shared, final_tail[len(shared):], tok)
    close_final, tok = _close(final_tail, specials, last=False)
    close_nonfinal, _ = _close(nonfinal_tail, specials, last=False)
    return TurnEnd(close_final, close_nonfinal, final_tail[len(close_final):], tok)
