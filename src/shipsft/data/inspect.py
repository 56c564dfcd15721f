"""Facts about a data set that choose a recipe: the shape of its answers, and a held-out split that never changes.

    shape = answer_shape([reference_answer(ex) for ex in examples])
    shape.kind          # "tool_call", "json" (JSON objects), "label" (a few short answers repeated), "short_text"
                        # or "text"
    shape.label_field   # json: the categorical field a split is stratified on ("category"), else None
    groups = leak_groups([leak_keys(ex, answers=shape.kind != "label") for ex in examples])
    train_idx, eval_idx = split_indices(strata(answers, shape), eval_size(len(answers)), 0, groups)
    write_records(records, eval_idx, path)   # the eval split as JSONL, written once by `shipsft init`

Answer shapes (the reference answer is the last assistant turn, or the completion):
  tool_call   at least half of the answers hold a tool call, in any template's wrapper (data/toolcalls.py), or
              structured `tool_calls`: scored call by call (name, each argument), the other answers by exact match
  json   at least 90% of the answers parse as JSON objects; a field is a label when its values are strings, at
         most one distinct value per 10 examples (and at most 50), so each value is seen about 10 times or more
  label       not JSON, and the answers themselves are such labels (sentiment, a class name, yes/no)
  short_text  other answers of at most 30 words at the median: reformatted text, a short fact
  text        longer free text (summaries, explanations, chat replies)

Imports only `shipsft.config`, `shipsft.errors` and data/ (tests/test_architecture.py).
"""
from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.data.toolcalls import call_text, message_tool_calls, parse_tool_calls
from shipsft.data.types import Example

TOOL_CALL_SHARE = 0.5  # answers that must hold a tool call for the set to count as a tool-calling task
JSON_SHARE = 0.9  # answers that must parse as JSON objects for the set to count as a JSON task
FIELD_SHARE = 0.5  # a key present in at least half of the answers is a field of the task
EXAMPLES_PER_LABEL = 10  # a label field has at most one distinct value per 10 examples ...
MAX_LABELS = 50  # ... and at most 50 values
LABEL_MAX_CHARS = 40  # a plain-text answer longer than this (median) is text, not a label
SHORT_TEXT_WORDS = 30  # up to this many words (median): a formatted answer or a short fact, scored by exact match
MIN_SPLIT = 20  # fewer examples than this: no eval split (a handful of examples measures nothing)
LEAK_MIN_WORDS = 4  # answers this long that repeat are leaks; shorter ones ("positive") are labels (audit/text.py)
# ... unless this many examples share one: a multi-turn set's "Which day and what time?" (300 of the recipe bench's 900
# schedule_chat conversations, five more in 47-79 each) joined every conversation into 3 groups, so no sentence pattern
# could be held out; copied examples repeat a handful of times (tool_call's most repeated call: 7 of 600)
CANNED_ANSWER = 20
# the eval metrics an answer shape is scored by, and the one that selects the checkpoint (recipe/starter.py gives the
# reasons in the config it writes; data.eval_split's held-out suite uses the same)
TASK_METRICS = {"tool_call": ["tool_call_match", "exact_match", "rouge_l"],
                "json": ["json_valid", "json_field_match", "exact_match"], "label": ["exact_match"],
                "short_text": ["exact_match", "rouge_l"], "text": ["rouge_l", "token_f1"]}
SELECT_METRIC = {"tool_call": "tool_call_match", "json": "json_field_match", "label": "exact_match",
                 "short_text": "exact_match", "text": "rouge_l"}


@dataclass
class AnswerShape:
    kind: str  # tool_call | json | label | short_text | text
    why: str
    fields: list[str] = field(default_factory=list)  # json: the top-level keys, in order of first appearance
    label_field: str | None = None  # json: the field stratified on and gated (None: no categorical field)
    n_labels: int = 0  # distinct labels (json: values of label_field; label: answers)
    majority_share: float = 0.0  # share of the most common label: the accuracy of always answering it
    majority: str | None = None


def reference_answer(ex: Example) -> str | None:
    """The answer an example teaches: its last assistant turn's text (its structured `tool_calls` written after it as
    `<tool_call>` blocks), or its completion."""
    if ex.kind == "completion_text":
        return ex.completion
    if ex.kind != "chat":
        return None
    last = [m for m in ex.messages or [] if m.get("role") == "assistant"
            and (isinstance(m.get("content"), str) or m.get("tool_calls"))]
    if not last:
        return None
    content = last[-1].get("content") if isinstance(last[-1].get("content"), str) else ""
    calls = message_tool_calls(last[-1])
    return "\n".join(t for t in (content.strip(), call_text(calls)) if t) if calls else content


def _json_object(text: str) -> dict | None:
    text = text.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        text = text[3:-3].removeprefix("json").strip()
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _is_label_set(values: list, n: int) -> tuple[bool, Counter]:
    counts = Counter(values)
    limit = min(MAX_LABELS, max(2, n // EXAMPLES_PER_LABEL))
    return 2 <= len(counts) <= limit, counts


def answer_shape(answers: list[str | None]) -> AnswerShape:
    """What the answers look like (module docstring); `why` says it in numbers."""
    texts = [a for a in answers if isinstance(a, str)]
    n = len(texts)
    calls = [parse_tool_calls(t) for t in texts]
    n_calls = sum(bool(c) for c in calls)
    if n and n_calls >= TOOL_CALL_SHARE * n:
        names = Counter(c.name for cs in calls for c in cs)
        return AnswerShape("tool_call", f"{n_calls:,} of {n:,} answers are tool calls ({len(names)} functions, the "
                           f"most common {names.most_common(1)[0][0]!r}); the other {n - n_calls:,} are text")
    objects = [o for o in (_json_object(a) for a in texts) if o is not None]
    if n and len(objects) >= JSON_SHARE * n:
        seen: Counter = Counter(k for o in objects for k in o)
        fields = [k for k in dict.fromkeys(k for o in objects for k in o) if seen[k] >= FIELD_SHARE * len(objects)]
        why = f"{len(objects):,} of {n:,} answers are JSON objects with fields {', '.join(fields)}"
        for f in fields:
            values = [o.get(f) for o in objects]
            if not all(isinstance(v, str) for v in values):
                continue
            ok, counts = _is_label_set(values, len(values))
            if ok:
                top, k = counts.most_common(1)[0]
                return AnswerShape("json", f"{why}; {f!r} takes {len(counts)} values (the most common, {top!r}, in "
                                   f"{k / len(values):.0%})", fields, f, len(counts), k / len(values), top)
        return AnswerShape("json", why + "; no field takes few enough values to be a label", fields)
    ok, counts = _is_label_set(texts, n)
    lengths = sorted(len(t) for t in texts)
    if ok and lengths and lengths[len(lengths) // 2] <= LABEL_MAX_CHARS:
        top, k = counts.most_common(1)[0]
        return AnswerShape("label", f"the {n:,} answers are {len(counts)} short labels (the most common, {top!r}, "
                           f"in {k / n:.0%})", n_labels=len(counts), majority_share=k / n, majority=top)
    median = lengths[len(lengths) // 2] if lengths else 0
    words = sorted(len(t.split()) for t in texts)
    median_words = words[len(words) // 2] if words else 0
    if median_words <= SHORT_TEXT_WORDS:
        return AnswerShape("short_text", f"the answers are short text ({len(set(texts)):,} distinct of {n:,}, "
                           f"median {median_words} words): one right answer each, so exact match is the measure")
    return AnswerShape("text", f"the answers are free text ({len(set(texts)):,} distinct of {n:,}, median "
                       f"{median_words} words, {median} characters)")


def strata(answers: list[str | None], shape: AnswerShape) -> list[str | None]:
    """The label each example is stratified by (None for every example when the answers have no label; tool calls:
    the first function called, None for the text answers)."""
    if shape.kind == "tool_call":
        calls = [parse_tool_calls(a) if isinstance(a, str) else [] for a in answers]
        return [c[0].name if c else None for c in calls]
    if shape.kind == "label":
        return list(answers)
    if shape.kind == "json" and shape.label_field:
        out = []
        for a in answers:
            o = _json_object(a) if isinstance(a, str) else None
            v = o.get(shape.label_field) if o is not None else None
            out.append(v if isinstance(v, str) else None)
        return out
    return [None] * len(answers)


def eval_size(n: int) -> int:
    """Examples held out for the eval split: 10% of the set, at least 50 (or a fifth of a small set), at most 200
    (a 200-example eval gives a metric's 95% CI of about +-7 points; more costs generation time at every eval)."""
    if n < MIN_SPLIT:
        return 0
    return min(200, max(n // 10, min(50, n // 5)))


def leak_keys(ex: Example, answers: bool) -> list[str]:
    """Texts that must not land on both sides of a split, normalised (lower case, whitespace collapsed): the user
    turns before the first answer, and (`answers`) each answer of 4+ words. The audit's exact-contamination rule
    (audit/text.py: check_contamination): an eval example whose prompt or answer is in training measures memory."""
    if ex.kind == "completion_text":
        prompt, outs = ex.prompt or "", [ex.completion or ""]
    elif ex.kind == "chat":
        msgs = ex.messages or []
        first = next((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), len(msgs))
        prompt = "\n".join(str(m.get("content") or "") for m in msgs[:first] if m.get("role") not in ("system",))
        outs = [str(m.get("content") or "") for m in msgs if m.get("role") == "assistant"]
    else:
        return []
    keys = [f"p:{_norm(prompt)}"] if prompt.split() else []
    return keys + [f"a:{_norm(o)}" for o in outs if answers and len(o.split()) >= LEAK_MIN_WORDS]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def canned(answer_sets: Iterable[Iterable[str]]) -> set[str]:
    """The answers that CANNED_ANSWER or more examples give (each example's answers counted once): a reply that many
    requests share is the data's template (a clarifying question, a refusal), a label in effect, not a copied example.
    The split joins nothing on them (leak_groups) and the audit counts no leak on them (audit/text.py)."""
    held = Counter(a for answers in answer_sets for a in set(answers))
    return {a for a, n in held.items() if n >= CANNED_ANSWER}


def leak_groups(keys: list[list[str]]) -> list[int]:
    """Group id per example: examples sharing any key are in one group (union-find), so a split keeps them together.
    An answer key `canned` joins nothing."""
    template = canned([k for k in ks if k.startswith("a:")] for ks in keys)
    keys = [[k for k in ks if k not in template] for ks in keys]
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            j = owner.setdefault(k, i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(keys))]


def split_indices(labels: list[str | None], n_eval: int, seed: int, groups: list[int] | None = None
                  ) -> tuple[list[int], list[int]]:
    """(train, eval) indices, each in file order. Stratified: each label gets its share of the eval set (largest
    remainder), and a label seen only once stays in training. `groups` (leak_groups) keeps examples that share a
    prompt or an answer on one side: a group goes to eval only whole, when it fits its label's share. Deterministic
    for a seed (a string-seeded `random.Random`, independent of PYTHONHASHSEED). Whole sentence patterns:
    data/split.py's cluster_split."""
    rng = random.Random(f"shipsft-split:{seed}")
    groups = groups if groups is not None else list(range(len(labels)))
    units: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        units.setdefault(g, []).append(i)
    by_label: dict[str | None, list[list[int]]] = {}
    for members in units.values():  # insertion order: the first member's position, no set iteration
        by_label.setdefault(labels[members[0]], []).append(members)
    n = len(labels)
    keys = list(by_label)
    size = {k: sum(len(u) for u in by_label[k]) for k in keys}
    exact = {k: n_eval * size[k] / n if n else 0 for k in keys}
    quota = {k: min(int(exact[k]), size[k] - 1) for k in keys}
    for k in sorted(keys, key=lambda k: (-(exact[k] - int(exact[k])), keys.index(k))):
        if sum(quota.values()) >= n_eval:
            break
        if quota[k] < size[k] - 1:
            quota[k] += 1
    held: list[int] = []
    for k in keys:
        pool = list(by_label[k])
        rng.shuffle(pool)
        room = max(0, quota[k])
        for u in pool:
            if len(u) <= room:
                held += u
                room -= len(u)
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held)


def write_records(rows: list, idx: list[int], path: Path) -> Path:
    """The records at `idx` (raw dicts, as read from the file) as JSONL, one per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for i in idx:
            f.write(json.dumps(rows[i], ensure_ascii=False) + "\n")
    return path
