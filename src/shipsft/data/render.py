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
import json
from dataclasses import dataclass
from typing import Any, Iterable

from shipsft.config import DataConfig
from shipsft.data.template import ChatTemplate, TurnEnd, find_turn_end, resolve_template, special_strings
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
    turn_end: TurnEnd | None = None  # how the template closes an assistant turn (template.find_turn_end)
    parse_json_arguments: bool = False  # the template JSON-encodes tool-call arguments itself (Qwen2.5 tojson)

    @property
    def bos_id(self) -> int | None:
        return self.tokenizer.bos_token_id

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id


def load_renderer(tokenizer, data: DataConfig, need_template: bool = True) -> Renderer:
    """The renderer of `data` (template, kwargs, mask mode, end-of-turn, system policy) for this tokenizer.

    Reads the template's turn structure once (`find_turn_end`); `no_stop_problem` says when nothing it writes could
    teach the model to stop (data/pipeline.py refuses that for training, the audit reports it)."""
    specials = special_strings(tokenizer)
    if not need_template:
        return Renderer(tokenizer, None, data.mask, data.train_eot, data.system_message, specials)
    tmpl = resolve_template(tokenizer, data.template, data.template_kwargs)
    return Renderer(tokenizer, tmpl, data.mask, data.train_eot, data.system_message, specials,
                    find_turn_end(tmpl, specials), encodes_arguments(tmpl))


def no_stop_problem(r: Renderer) -> TemplateError | None:
    """With data.train_eot on, a template that closes assistant turns with no special token of this vocabulary
    leaves nothing to train that makes the model stop: the answers would be trained without an end."""
    te = r.turn_end
    if te is None or te.close_final or not r.train_eot or r.mode == "everything":
        return None
    return TemplateError([f"the chat template ({r.template.origin}) closes an assistant turn with no special token "
                          f"of this tokenizer (it writes {te.after_final!r} after an answer), so no trained token "
                          "teaches the model to stop. Fix: data.template with a template whose end-of-turn marker is "
                          "a special token of this vocabulary, or data.train_eot: false to train answers without one."])


def encodes_arguments(tmpl: ChatTemplate) -> bool:
    """Whether the template JSON-encodes tool-call arguments itself: a string of JSON then comes out escaped twice
    ('"{\\"city\\": ...'), so such strings are parsed into objects first (OpenAI sends arguments as strings)."""
    call = {"type": "function", "function": {"name": "shipsft_probe", "arguments": '{"probe_key": 1}'}}
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    try:
        text = tmpl.render(msgs)
    except Exception:  # noqa: BLE001 - a template without tool support: nothing to parse for it
        return False
    return '\\"probe_key\\"' in text


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


def end_of_turn_marker(r: Renderer) -> str | None:
    """The special token the renderer's template ends an assistant turn with (the one the masks train), so generation
    stops exactly where training taught the model to stop. None when nothing closes a turn."""
    return r.turn_end.stop_token if r.turn_end is not None else None


def _render_safe(tmpl: ChatTemplate, messages, source: str, gen: bool = False, tools=None,
                 prepared: bool = False) -> str:
    try:
        if prepared:
            return tmpl.render_prepared(messages, add_generation_prompt=gen, tools=tools)
        return tmpl.render(messages, add_generation_prompt=gen, tools=tools)
    except Exception as e:  # noqa: BLE001 - Jinja raise_exception / TypeError from user data
        msg = str(e)
        has_system = bool(messages) and messages[0].get("role") == "system"
        fix = ""
        if has_system and ("system" in msg.lower() or "alternate" in msg.lower()):
            # e.g. Mixtral: a system message breaks "roles must alternate user/assistant"
            fix = " Fix: set data.system_message: merge (fold it into the first user turn) or drop."
        elif "alternate" in msg.lower():
            fix = (" Fix: make roles alternate user/assistant (merge consecutive messages of one role into one), or "
                   "use a template that accepts this order.")
        raise TemplateError([f"{source}: the chat template ({tmpl.origin}) raised: {msg}.{fix}"]) from None


def parse_string_arguments(messages: list[dict]) -> tuple[list[dict], bool]:
    """Tool calls whose `arguments` is a string holding a JSON object get the object instead (for templates that
    JSON-encode arguments themselves). Returns (messages, whether anything changed)."""
    out, changed = [], False
    for m in messages:
        calls = m.get("tool_calls")
        if m.get("role") == "assistant" and isinstance(calls, list):
            new_calls = []
            for c in calls:
                fn = c.get("function") if isinstance(c, dict) else None
                args = fn.get("arguments") if isinstance(fn, dict) else None
                if isinstance(args, str):
                    try:
                        parsed = json.loads(args)
                    except json.JSONDecodeError:
                        parsed = None
                    if isinstance(parsed, dict):
                        c = {**c, "function": {**fn, "arguments": parsed}}
                        changed = True
                new_calls.append(c)
            m = {**m, "tool_calls": new_calls}
        out.append(m)
    return out, changed


def _leaves(value: Any) -> list[str]:
    """The scalar values of a JSON-like object, as text (what a template must have written somewhere)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    if value is None or value == "":
        return []
    return [value if isinstance(value, str) else json.dumps(value)]


def dropped_parts(m: dict, text: str) -> list[str]:
    """What of message `m` is missing from `text`: its content, or a tool call's name or argument values."""
    missing = []
    content = m.get("content")
    if isinstance(content, str) and content.strip() and content.strip() not in text:
        missing.append("its content")
    for c in m.get("tool_calls") or []:
        fn = c.get("function", c) if isinstance(c, dict) else {}
        name = fn.get("name")
        if name and name not in text:
            missing.append(f"the tool call {name!r}")
            continue
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = [args]
        lost = [v for v in _leaves(args) if v not in text and json.dumps(v)[1:-1] not in text]
        if lost:
            missing.append(f"argument value(s) {', '.join(repr(v) for v in lost[:3])} of the tool call {name!r}")
    return missing


def _fidelity_error(source: str, j: int, m: dict, missing: list[str], tmpl: ChatTemplate) -> TemplateError:
    role = m.get("role")
    if role == "system":
        fix = "set data.system_message: merge (fold it into the first user turn), or use a template with a system role"
    elif m.get("tool_calls"):
        fix = ("use a template that renders tool calls (data.template; e.g. the model's tool-use template), or write "
               "the call into the assistant content as text")
    else:
        fix = "use the model's own chat template, or a data.template that renders every message"
    return TemplateError([f"{source}: messages[{j}] ({role}): the chat template ({tmpl.origin}) drops "
                          f"{' and '.join(missing)}; training would silently lose it. Fix: {fix}."])


def _span(gen: str, body: str, te: TurnEnd, train_eot: bool, source: str, i: int, tmpl: ChatTemplate
          ) -> tuple[int, int]:
    """The trained characters of one assistant turn: from the end of the generation prompt through the answer and,
    with train_eot, the text that closes the turn (`te.close_final`: the turn is the last one of `body`)."""
    turn_text = body[len(gen):]
    if not turn_text.endswith(te.close_final):
        raise TemplateError([f"{source}: messages[{i}]: this assistant turn does not end with the template's "
                             f"end-of-turn text {te.close_final!r} (it ends with {turn_text[-40:]!r}), so where "
                             f"the answer stops is unknown. Fix: check this message (the template ({tmpl.origin}) "
                             "renders it unlike a plain answer), or use a data.template that closes every turn alike."])
    end = len(turn_text) if train_eot else len(turn_text) - len(te.close_final)
    return len(gen), len(gen) + end


def chat_spans(r: Renderer, ex: Example) -> list[tuple[str, list[tuple[int, int]], int | None]]:
    """Render one chat example: [(text, trained char spans, turn or None)].

    One element when the template is prefix-stable; one per trained assistant turn otherwise. Every message's
    content and tool calls must appear in the text (else a TemplateError naming what the template dropped).
    """
    tmpl, te = r.template, r.turn_end
    msgs = apply_system_policy(ex.messages or [], r.system_message)
    if r.parse_json_arguments:
        msgs, _ = parse_string_arguments(msgs)
    shift = len(ex.messages or []) - len(msgs)  # merge/drop removed the leading system message
    n_prompt = None if ex.n_prompt is None else ex.n_prompt - shift
    chat, tools = tmpl.prepare(msgs, ex.tools)
    full = _render_safe(tmpl, chat, ex.source, tools=tools, prepared=True)
    for j, m in enumerate(msgs):  # context messages must all be there; answers are checked in their own turn below
        missing = dropped_parts(m, full) if m.get("role") != "assistant" else []
        if missing:
            raise _fidelity_error(ex.source, j + shift, m, missing, tmpl)
    if r.mode == "everything":
        return [(full, [(0, len(full))], None)]
    last = len(chat) - 1
    renders: dict[int, tuple[str, str, str]] = {}

    def turn(i: int) -> tuple[str, str, str]:
        """(generation prompt before turn i, the conversation through turn i, the end-of-conversation text the
        template wrote after it: `te.after_final`, or "")."""
        if i not in renders:
            gen = _render_safe(tmpl, chat[:i], ex.source, gen=True, tools=tools, prepared=True)
            upto = full if i == last else _render_safe(tmpl, chat[: i + 1], ex.source, tools=tools, prepared=True)
            tail = te.after_final if te.after_final and upto.endswith(te.after_final) else ""
            body = upto[: len(upto) - len(tail)]
            missing = dropped_parts(msgs[i], body[len(gen):] if body.startswith(gen) else body)
            if missing:
                raise _fidelity_error(ex.source, i + shift, msgs[i], missing, tmpl)
            renders[i] = gen, body, tail
        return renders[i]

    for i, m in enumerate(msgs):  # every assistant message, trained or context, as the model produces it
        if m.get("role") == "assistant":
            turn(i)
    turns = trained_turns(msgs, r.mode, n_prompt)
    if not turns:
        return [(full, [], None)]
    stable = te.close_final == te.close_nonfinal
    spans = []
    for i in turns:
        gen, body, _ = turn(i)
        if not (stable and body.startswith(gen) and full.startswith(body)):
            break
        spans.append(_span(gen, body, te, r.train_eot, ex.source, i + shift, tmpl))
    else:
        return [(full, spans, None)]
    # Not prefix-stable: one sequence per trained turn, each exactly what the model sees when answering that turn.
    out = []
    for i in turns:
        gen, body, tail = turn(i)
        if not body.startswith(gen):
            k = next((j for j, (a, b) in enumerate(zip(gen, body)) if a != b), min(len(gen), len(body)))
            raise TemplateError(
                [f"{ex.source}: messages[{i + shift}]: the chat template ({tmpl.origin}) renders the context of this "
                 "assistant turn differently with the answer present than at inference "
                 f"(inference prompt has {gen[k:k + 40]!r} where the training text has {body[k:k + 40]!r}); "
                 "training on it would teach a context the model never sees when served. "
                 "Fix: data.system_message: merge (fold the system message into the first user turn) or drop, "
                 "or data.template with a prefix-stable template."]
            )
        # the turn's own sequence is the conversation through it, as the template renders it (tail untrained)
        out.append((body + tail, [_span(gen, body, te, r.train_eot, ex.source, i + shift, tmpl)], i))
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


def seam_problem(source: str, text: str, offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> str | None:
    """A trained span that starts inside a token: the prompt's last characters and the answer's first ones merge
    into one token (ChatML 'assistant\\n' + an answer starting with '\\n' tokenise as '\\n\\n' in Qwen's BPE;
    Qwen3.5's generation prompt ends in '<think>\\n' before a turn whose reasoning is empty). At inference the prompt
    is tokenised alone and ends before that token, so the model would be trained to produce a token it is never in
    a position to produce there (torchtitan#4504). Refused: no exact single tokenisation of this text exists."""
    starts = [o[0] for o in offsets]
    for s, e in spans:
        t = bisect.bisect_right(starts, s) - 1  # the last token starting at or before the answer's first character
        if e > s and t >= 0 and starts[t] < s < offsets[t][1]:
            merged = text[starts[t]:offsets[t][1]]
            return (f"{source}: an assistant answer starts inside the token {merged!r}: the end of its prompt "
                    f"{text[max(0, s - 24):s]!r} and the start of the answer {text[s:s + 24]!r} tokenise as one token, "
                    "but at inference the prompt is tokenised alone, so no trained token sequence matches what the "
                    "model sees there. Fix: remove the whitespace the answer starts with; if the template itself "
                    "writes it (a generation prompt ending in '<think>\\n' before an empty reasoning block), give "
                    "the turn its reasoning_content or use a data.template whose generation prompt ends on a token "
                    "boundary.")
    return None


def _check_bos(ids: list[int], r: Renderer, source: str) -> None:
    bos = r.bos_id
    if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        raise TemplateError(
            [f"{source}: the sequence starts with two BOS tokens ({r.tokenizer.bos_token!r} twice): the text already "
             "contains BOS and the tokenizer adds another. Fix: remove the BOS string from the data or the template."]
        )


MAX_PROBLEMS = 20  # template problems listed in one error; the rest are counted


def render_examples(r: Renderer, examples: Iterable[Example], batch_size: int = 4096) -> list[Rendered]:
    """Render many examples; tokenisation is batched (the Rust tokenizer uses every core). Template problems are
    collected over every example and raised once (each line names its example)."""
    out: list[Rendered] = []
    pending: list[tuple[str, str, list, int | None]] = []  # (source, text, spans, turn)
    problems: list[str] = []

    def flush():
        if not pending:
            return
        ids_offs = _encode_batch(r.tokenizer, [p[1] for p in pending])
        for (source, text, spans, turn), (ids, offs) in zip(pending, ids_offs):
            seam = seam_problem(source, text, offs, spans)
            if seam:
                if not any(line.startswith(f"{source}: ") for line in problems):  # one line per example
                    problems.append(seam)
                continue
            mask = _mask_from_spans(offs, spans)
            _check_bos(ids, r, source)
            first = next((k for k, m in enumerate(mask) if m), len(mask))
            out.append(Rendered(source, ids, mask, text, turn, first))
        pending.clear()

    n = 0
    for n, ex in enumerate(examples, 1):
        if ex.kind == "chat":
            try:
                pending.extend((ex.source, text, spans, turn) for text, spans, turn in chat_spans(r, ex))
            except TemplateError as e:
                problems.extend(e.lines)
                continue
            if len(pending) >= batch_size:
                flush()
        else:
            flush()  # keep output order equal to input order
            out.append(_render_plain(r, ex))
    flush()
    if problems:
        lines = problems[:MAX_PROBLEMS] + ([f"... and {len(problems) - MAX_PROBLEMS} more"]
                                           if len(problems) > MAX_PROBLEMS else [])
        raise TemplateError(lines + [f"{len(problems)} of {n} examples cannot be rendered as training data; "
                                     "nothing was trained on."])
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
