"""The one oracle of the mask bench, and the scoring of a contender's output against it.

The oracle uses no mask code of any contender: it renders text with the template (transformers'
`apply_chat_template(tokenize=False)`, the renderer the models ship their templates for) and tokenises with the
tokenizer. For assistant turn i of a conversation C:

    prompt  P_i = render(C[:i], add_generation_prompt=True)      what the model is fed at inference
    turn    F_i = render(C[:i+1])                                the conversation through that answer
    target  T_i = F_i[len(P_i):], cut after the first stop token   what the model must produce, stop included

As token ids: the prompt is tokenize(P_i) and the target the ids that follow it in tokenize(P_i + T_i) (or
tokenize(T_i) alone where a token would straddle the seam: the prompt is tokenised alone at inference). An exact
contender trains every assistant turn once, in a sequence that starts with exactly the prompt ids, on exactly the
target ids, and trains nothing else.

Where no exact answer exists the oracle is `undefined` and the only right answer is a refusal: the prompt of a turn
is not a prefix of the turn's render (the template renders the context differently once the answer is there), the
turn's text holds no stop token (nothing can teach the model to stop), a render raises for a prefix, or the template
drops a message's content or a tool call (training would silently lose it). A conversation the template rejects
outright (its full render raises) is `n/a`: not scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXACT, REFUSED, WRONG, CRASHED, NA = "exact", "refused", "wrong", "crashed", "n/a"
PAST_STOP = "trains the token after the stop token"


@dataclass
class Turn:
    index: int  # message index of the assistant turn
    prompt: list[int]
    target: list[int]
    seam: bool = False  # tokenize(P + T) does not start with tokenize(P): the target was tokenised alone


@dataclass
class Oracle:
    status: str  # "defined" | "undefined" | "n/a"
    why: str = ""
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Outcome:
    """What a contender did with one conversation: sequences of (ids, trained mask), or an error."""

    kind: str  # "output" | REFUSED | CRASHED
    seqs: list[tuple[list[int], list[bool]]] = field(default_factory=list)
    message: str = ""


def _render(tok, messages, tools, kwargs, gen: bool) -> str:
    return tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen, **kwargs)


def _encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _missing(m: dict, text: str) -> str | None:
    content = m.get("content")
    if isinstance(content, str) and content.strip() and content.strip() not in text:
        return "its content"
    for c in m.get("tool_calls") or []:
        name = c.get("function", {}).get("name")
        if name and name not in text:
            return f"its tool call {name!r}"
    return None


def oracle(tok, messages: list[dict], tools: list | None, stop: list[str], kwargs: dict | None = None) -> Oracle:
    kwargs = kwargs or {}
    try:
        full = _render(tok, messages, tools, kwargs, False)
    except Exception as e:  # noqa: BLE001 - the template's own raise_exception, or a template bug
        return Oracle("n/a", f"the template rejects this conversation ({str(e)[:120]})")
    for j, m in enumerate(messages):
        if m["role"] != "assistant" and _missing(m, full):
            return Oracle("undefined", f"the template drops {_missing(m, full)} of messages[{j}] ({m['role']})")
    turns = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        try:
            prompt = _render(tok, messages[:i], tools, kwargs, True)
            upto = _render(tok, messages[: i + 1], tools, kwargs, False)
        except Exception as e:  # noqa: BLE001
            return Oracle("undefined", f"the template cannot render the prompt of messages[{i}] ({str(e)[:120]})")
        if not upto.startswith(prompt):
            k = next(j for j, (a, b) in enumerate(zip(prompt, upto + "\0")) if a != b)
            return Oracle("undefined", f"messages[{i}]: the inference prompt is not a prefix of the turn's render "
                                       f"(prompt has {prompt[k:k + 30]!r}, the turn {upto[k:k + 30]!r})")
        tail = upto[len(prompt):]
        lost = _missing(m, tail)
        if lost:
            return Oracle("undefined", f"the template drops {lost} of messages[{i}] (assistant)")
        ends = [tail.find(s) + len(s) for s in stop if s in tail]
        if not ends:
            return Oracle("undefined", f"messages[{i}]: no stop token ({', '.join(stop)}) in the turn's text "
                                       f"{tail[-40:]!r}: nothing teaches the model to stop")
        target_text = tail[: min(ends)]
        p_ids = _encode(tok, prompt)
        both = _encode(tok, prompt + target_text)
        if both[: len(p_ids)] == p_ids:
            turns.append(Turn(i, p_ids, both[len(p_ids):]))
        else:
            turns.append(Turn(i, p_ids, _encode(tok, target_text), seam=True))
    if not turns:
        return Oracle("n/a", "no assistant turn")
    return Oracle("defined", turns=turns)


def _diagnose_missing(t: Turn, seqs) -> str:
    n, k = len(t.prompt), len(t.target)
    starts = [(ids, mask) for ids, mask in seqs if ids[:n] == t.prompt]
    if not starts:
        return f"messages[{t.index}]: no sequence has the inference prompt as the context of this answer"
    for ids, mask in starts:
        if ids[n:n + k] != t.target:
            return f"messages[{t.index}]: the answer's tokens differ from what the model must produce"
    windows = [mask[n:n + k] for ids, mask in starts]
    if any(all(w[:-1]) and not w[-1] for w in windows):
        return f"messages[{t.index}]: the stop token is not trained"
    if not any(any(w) for w in windows):
        return f"messages[{t.index}]: the answer is not trained"
    return f"messages[{t.index}]: part of the answer is not trained"


def _diagnose_extra(ids, mask, windows: list[range]) -> str:
    covered = {p for w in windows for p in w}
    extra = [p for p, m in enumerate(mask) if m and p not in covered]
    p = extra[0]
    if all(any(q == w.stop for w in windows) for q in extra):
        return PAST_STOP
    if any(w.start - 1 == p for w in windows):
        return "trains the last prompt token"
    return f"trains {len(extra)} token(s) outside every answer (prompt or later turns)"


def score(orc: Oracle, out: Outcome, which: str = "all") -> tuple[str, str]:
    """(verdict, reason) of one contender outcome. `which`: "all" assistant turns are expected to be trained, or only
    the "last" (a prompt/completion contender, whose prompt holds the earlier turns)."""
    if orc.status == "n/a":
        return NA, orc.why
    if out.kind != "output":
        return out.kind, out.message
    seqs = out.seqs
    if not any(any(mask) for _, mask in seqs):
        return WRONG, "nothing trained"
    if orc.status == "undefined":
        return WRONG, "trained although " + orc.why
    expected = orc.turns if which == "all" else orc.turns[-1:]
    windows: list[list[range]] = [[] for _ in seqs]
    for t in expected:
        n, k = len(t.prompt), len(t.target)
        hits = [s for s, (ids, mask) in enumerate(seqs)
                if ids[:n + k] == t.prompt + t.target and all(mask[n:n + k])]
        if not hits:
            return WRONG, _diagnose_missing(t, seqs)
        if len(hits) > 1:
            return WRONG, f"messages[{t.index}] is trained {len(hits)} times"
        windows[hits[0]].append(range(n, n + k))
    extra = [_diagnose_extra(ids, mask, ws) for (ids, mask), ws in zip(seqs, windows)
             if any(m and p not in {q for w in ws for q in w} for p, m in enumerate(mask))]
    if extra:
        return WRONG, next((x for x in extra if x != PAST_STOP), PAST_STOP)
    return EXACT, ""


def summarise(verdicts: list[str]) -> dict[str, Any]:
    counts = {v: verdicts.count(v) for v in (EXACT, REFUSED, WRONG, CRASHED, NA)}
    counts["scored"] = len(verdicts) - counts[NA]
    return counts
