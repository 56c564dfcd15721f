"""Chat template -> token ids + trained mask, with parity against the tokenizer's own template by construction.

How a conversation becomes a training sequence (no string markers, no guessed spans):

1. The whole conversation is rendered with the model's own Jinja template, through the very function
   `tokenizer.apply_chat_template` uses (`render_jinja_template`, same special-token strings and kwargs), so the
   text is byte-identical to `apply_chat_template(messages, tokenize=False)`; it is tokenised once with
   `add_special_tokens=False`, exactly as `apply_chat_template(tokenize=True)` does, so the ids are identical too.
2. For each trained assistant turn i, the template itself says where the turn starts and ends:
   `render(messages[:i], add_generation_prompt=True)` is the prompt the model sees at inference (it ends right
   after the assistant header), and `render(messages[:i+1])` ends right after the turn. The trained text is what
   lies between the two: the content plus anything the template puts there (e.g. Qwen3's `<think>` block), up to
   and including the end-of-turn marker (the last special token of the turn; what follows it, such as ChatML's
   "\\n", is not trained).
3. This is only valid when the template is *prefix-stable*: the prompt is a prefix of the turn, and the turn is a
   prefix of the whole conversation. Templates that rewrite earlier turns (Qwen3 drops the think block of earlier
   turns; Mistral v0.3 moves the system message into the last user turn) fail that check. Then each assistant turn
   becomes its own training sequence, `render(messages[:i+1])`, trained on that turn only — exactly the text the
   model sees when it answers turn i at inference. If even that is not prefix-stable (the context of turn i renders
   differently with and without the answer), we raise with the fix: never a guessed mask.
4. Character spans become token masks through the tokenizer's offsets: a token is trained when it overlaps a
   trained span.

    from shipsft.data.render import render_conversation
    [seq] = render_conversation(tok, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])
    seq.ids, seq.mask, labels_from_mask(seq.ids, seq.mask)
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Iterable

from shipsft.config import DataConfig
from shipsft.data.template import ChatTemplate, resolve_template, special_strings
from shipsft.data.types import Example, Rendered
from shipsft.errors import TemplateError


# ------------------------------------------------------------------------------------------------------------
# The renderer: template + tokenizer + masking policy


@dataclass
class Renderer:
    tokenizer: Any
    template: ChatTemplate | None  # None only for tokenizers without a template used on text/completion_text data
    mode: str = "all_assistant"
    train_eot: bool = True
    system_message: str = "keep"  # keep | merge (into the first user turn) | drop
    specials: tuple[str, ...] = ()  # special-token strings, longest first (end-of-turn detection)

    @property
    def bos_id(self) -> int | None:
        return self.tokenizer.bos_token_id

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id


def load_renderer(tokenizer, data: DataConfig, need_template: bool = True) -> Renderer:
    """The renderer of `data` (template, kwargs, mask mode, end-of-turn, system policy) for this tokenizer."""
    tmpl = resolve_template(tokenizer, data.template, data.template_kwargs) if need_template else None
    return Renderer(tokenizer, tmpl, data.mask, data.train_eot, data.system_message, special_strings(tokenizer))


# ------------------------------------------------------------------------------------------------------------
# Chat conversations -> (text, trained character spans)


def apply_system_policy(messages: list[dict], policy: str) -> list[dict]:
    if policy == "keep" or not messages or messages[0].get("role") != "system":
        return messages
    system, rest = messages[0], messages[1:]
    if policy == "drop":
        return rest
    # merge: fold the system text into the first user turn, as templates without a system role expect
    for j, m in enumerate(rest):
        if m.get("role") == "user":
            merged = dict(m, content=f"{system.get('content', '')}\n\n{m.get('content', '')}")
            return rest[:j] + [merged] + rest[j + 1:]
    return rest


def trained_turns(messages: list[dict], mode: str, n_prompt: int | None) -> list[int]:
    """Indices of the assistant turns that carry loss under mask `mode` (the one turn-selection rule: rendering,
    the audit's text checks and eval references all use it). prompt/completion data trains the completion only."""
    assistant = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if n_prompt is not None:  # prompt/completion data: only the completion's assistant turns are trained
        assistant = [i for i in assistant if i >= n_prompt]
    if mode == "last_assistant":
        return assistant[-1:]
    return assistant


def _last_special(turn_text: str, specials: tuple[str, ...]) -> tuple[int, str] | None:
    """The end-of-turn marker of a rendered assistant turn: its last special token when only whitespace follows it
    (ChatML '<|im_end|>' + '\\n', Llama-3 '<|eot_id|>', Mistral '</s>', Gemma '<end_of_turn>' + '\\n')."""
    best, best_tok = -1, ""
    for s in specials:
        pos = turn_text.rfind(s)
        if pos > best or (pos == best and pos >= 0 and len(s) > len(best_tok)):
            best, best_tok = pos, s
    if best >= 0 and not turn_text[best + len(best_tok):].strip():
        return best, best_tok
    return None


def _eot_end(turn_text: str, specials: tuple[str, ...], train_eot: bool) -> tuple[int, bool]:
    """Where the trained part of a rendered assistant turn ends, and whether an end-of-turn marker was found."""
    found = _last_special(turn_text, specials)
    if found is None:
        return len(turn_text), False
    pos, tok = found
    return (pos + len(tok) if train_eot else pos), True


def end_of_turn_marker(r: Renderer) -> str | None:
    """The special token this renderer's template closes an assistant turn with (the same rule the masks use), so
    generation stops exactly where training taught the model to stop. None when the template has no such token."""
    sentinel = "shipsft-sentinel-7f3a"
    try:
        text = r.template.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": sentinel}])
    except Exception:  # noqa: BLE001 - a template that rejects this minimal chat tells us nothing
        return None
    if sentinel not in text:
        return None
    found = _last_special(text[text.index(sentinel) + len(sentinel):], r.specials)
    return found[1] if found else None


class _Unstable(Exception):
    pass


def _render_safe(tmpl: ChatTemplate, messages, source: str, gen: bool = False, tools=None,
                 prepared: bool = False) -> str:
    try:
        if prepared:
            return tmpl.render_prepared(messages, add_generation_prompt=gen, tools=tools)
        return tmpl.render(messages, add_generation_prompt=gen, tools=tools)
    except Exception as e:  # noqa: BLE001 - Jinja raise_exception / TypeError from user data
        msg = str(e)
        fix = ""
        if "system" in msg.lower():
            fix = " Fix: set data.system_message: merge (fold it into the first user turn) or drop."
        elif "alternate" in msg.lower():
            fix = " Fix: make roles alternate user/assistant after an optional system message."
        raise TemplateError([f"{source}: the chat template ({tmpl.origin}) raised: {msg}.{fix}"]) from None


def chat_spans(r: Renderer, ex: Example) -> list[tuple[str, list[tuple[int, int]], int | None, bool]]:
    """Render one chat example: [(text, trained char spans, turn or None, eot_found)].

    One element when the template is prefix-stable; one per trained assistant turn otherwise.
    """
    tmpl = r.template
    msgs = apply_system_policy(ex.messages or [], r.system_message)
    shift = len(ex.messages or []) - len(msgs)  # merge/drop removed the leading system message
    n_prompt = None if ex.n_prompt is None else ex.n_prompt - shift
    chat, tools = tmpl.prepare(msgs, ex.tools)
    full = _render_safe(tmpl, chat, ex.source, tools=tools, prepared=True)
    if r.mode == "everything":
        return [(full, [(0, len(full))], None, True)]
    turns = trained_turns(msgs, r.mode, n_prompt)
    if not turns:
        return [(full, [], None, True)]
    try:
        spans, eot_ok = [], True
        for i in turns:
            gen = _render_safe(tmpl, chat[:i], ex.source, gen=True, tools=tools, prepared=True)
            upto = full if i == len(chat) - 1 else _render_safe(tmpl, chat[: i + 1], ex.source, tools=tools,
                                                                 prepared=True)
            if not (upto.startswith(gen) and full.startswith(upto)):
                raise _Unstable
            end, found = _eot_end(upto[len(gen):], r.specials, r.train_eot)
            spans.append((len(gen), len(gen) + end))
            eot_ok &= found
        return [(full, spans, None, eot_ok)]
    except _Unstable:
        pass
    # Not prefix-stable: one sequence per trained turn, each exactly what the model sees when answering that turn.
    out = []
    for i in turns:
        gen = _render_safe(tmpl, chat[:i], ex.source, gen=True, tools=tools, prepared=True)
        upto = _render_safe(tmpl, chat[: i + 1], ex.source, tools=tools, prepared=True)
        if not upto.startswith(gen):
            k = next((j for j, (a, b) in enumerate(zip(gen, upto)) if a != b), min(len(gen), len(upto)))
            raise TemplateError(
                [f"{ex.source}: messages[{i}]: the chat template ({tmpl.origin}) renders the context of this "
                 "assistant turn differently with the answer present than at inference "
                 f"(inference prompt has {gen[k:k + 40]!r} where the training text has {upto[k:k + 40]!r}); "
                 "training on it would teach a context the model never sees when served. "
                 "Fix: data.system_message: merge (fold the system message into the first user turn) or drop, "
                 "or data.template with a prefix-stable template."]
            )
        end, found = _eot_end(upto[len(gen):], r.specials, r.train_eot)
        out.append((upto, [(len(gen), len(gen) + end)], i, found))
    return out


# ------------------------------------------------------------------------------------------------------------
# Text -> ids + mask


def _mask_from_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """A token is trained when its character range overlaps a trained span (offsets are sorted)."""
    n = len(offsets)
    mask = [False] * n
    if not spans:
        return mask
    ends = [o[1] for o in offsets]
    starts = [o[0] for o in offsets]
    for s, e in spans:
        if e <= s:
            continue
        a = bisect.bisect_right(ends, s)  # first token ending after s
        b = bisect.bisect_left(starts, e)  # first token starting at/after e
        for t in range(a, b):
            if offsets[t][1] > offsets[t][0] or s <= offsets[t][0] < e:
                mask[t] = True
    return mask


def _encode_batch(tokenizer, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Token ids + character offsets of each text, add_special_tokens=False as apply_chat_template tokenises.

    Fast tokenizers go straight to the Rust backend (`encode_batch`, all cores): the same call transformers makes,
    without its per-encoding Python conversion (~10% of rendering time)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch"):
        return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return list(zip(enc["input_ids"], enc["offset_mapping"]))


def _check_bos(ids: list[int], r: Renderer, source: str) -> None:
    bos = r.bos_id
    if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        raise TemplateError(
            [f"{source}: the sequence starts with two BOS tokens ({r.tokenizer.bos_token!r} twice): the text already "
             "contains BOS and the tokenizer adds another. Fix: remove the BOS string from the data or the template."]
        )


def render_examples(r: Renderer, examples: Iterable[Example], batch_size: int = 4096) -> list[Rendered]:
    """Render many examples; tokenisation is batched (the Rust tokenizer uses every core)."""
    out: list[Rendered] = []
    pending: list[tuple[str, str, list, int | None]] = []  # (source, text, spans, turn)

    def flush():
        if not pending:
            return
        ids_offs = _encode_batch(r.tokenizer, [p[1] for p in pending])
        for (source, text, spans, turn), (ids, offs) in zip(pending, ids_offs):
            mask = _mask_from_spans(offs, spans)
            _check_bos(ids, r, source)
            first = next((k for k, m in enumerate(mask) if m), len(mask))
            out.append(Rendered(source, ids, mask, text, turn, first))
        pending.clear()

    for ex in examples:
        if ex.kind == "chat":
            for text, spans, turn, _ in chat_spans(r, ex):
                pending.append((ex.source, text, spans, turn))
            if len(pending) >= batch_size:
                flush()
        else:
            flush()  # keep output order equal to input order
            out.append(_render_plain(r, ex))
    flush()
    return out


def _render_plain(r: Renderer, ex: Example) -> Rendered:
    tok = r.tokenizer
    eos = [r.eos_id] if (r.train_eot and r.eos_id is not None) else []
    if ex.kind == "text":
        # continued pre-training: loss on every token; the tokenizer adds BOS as the model expects; EOS ends the doc
        ids = tok(ex.text, add_special_tokens=True)["input_ids"]
        if eos and ids and ids[-1] == eos[0]:
            eos = []
        ids = ids + eos
        _check_bos(ids, r, ex.source)
        return Rendered(ex.source, ids, [True] * len(ids), ex.text, None, 0)
    # completion_text: the prompt is tokenised on its own, exactly as at inference, then the completion + EOS
    p = tok(ex.prompt, add_special_tokens=True)["input_ids"]
    c = tok(ex.completion, add_special_tokens=False)["input_ids"] + eos
    ids = p + c
    _check_bos(ids, r, ex.source)
    if r.mode == "everything":
        mask = [True] * len(ids)
    else:
        mask = [False] * len(p) + [True] * len(c)
    return Rendered(ex.source, ids, mask, ex.prompt + ex.completion, None, len(p))


def render_example(r: Renderer, ex: Example) -> list[Rendered]:
    return render_examples(r, [ex])


def render_conversation(tokenizer, messages: list[dict], data: DataConfig | None = None,
                        tools: list | None = None) -> list[Rendered]:
    """Render one conversation with the chat template of `data` (DataConfig(); its defaults: the tokenizer's own
    template, every assistant turn trained with its end-of-turn marker): token ids and the trained mask.

    Returns one `Rendered` (ids, mask, text), or one per trained assistant turn when the template is not
    prefix-stable (see module docstring). Labels: `shipsft.data.labels.labels_from_mask(r.ids, r.mask)`.
    """
    r = load_renderer(tokenizer, data if data is not None else DataConfig())
    return render_examples(r, [Example(source="<conversation>", messages=messages, tools=tools)])


def trained_text(tokenizer, rendered: Rendered) -> list[str]:
    """The trained runs of a rendered sequence, decoded with special tokens kept (for checks and preview)."""
    runs, cur = [], []
    for tok_id, m in zip(rendered.ids, rendered.mask):
        if m:
            cur.append(tok_id)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]
