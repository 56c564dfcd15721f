"""Text-level audit checks: duplicates, eval contamination, and content quality of the answers.

These checks read the conversations, not the tokens, so they are pure functions over `ExampleText`
(prompt / answers of one example) and run without a tokenizer. The word n-gram hashing and MinHash are
data/similar.py's (vectorised over the whole corpus at once; the prompt-skeleton clusters share them).

    from shipsft.audit.text import texts_of, check_duplicates
    findings, stats = check_duplicates(texts_of(examples, mask="all_assistant"))
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shipsft.audit.findings import Finding
from shipsft.data.inspect import LEAK_MIN_WORDS, canned
from shipsft.data.render import trained_turns
from shipsft.data.similar import (WordIndex, clusters_from_signatures, minhash_signatures, near_duplicate_clusters,
                                  ngram_hashes, signatures, sorted_member, sorted_unique)

# ------------------------------------------------------------------------------------------------------------
# What an example says: prompt and answers as plain text


@dataclass
class ExampleText:
    source: str
    prompt: str  # everything the model reads before its first trained answer
    answers: list[str] = field(default_factory=list)  # trained answers (assistant turns / completion)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (the user turn just before, the answer)
    full: str = ""  # the whole record, role-tagged, for duplicate detection
    user: str = ""  # the prompt without system messages: what makes the example unique (near-dups, leaks)

    @property
    def answer(self) -> str:
        return "\n".join(self.answers)


def content_text(content: Any) -> str:
    """Message content as text: strings as they are, OpenAI content parts joined, None -> ''."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _message_text(m: dict) -> str:
    text = content_text(m.get("content"))
    if not text and m.get("tool_calls"):  # an assistant turn that only calls tools: its answer is the call
        text = json.dumps(m["tool_calls"], sort_keys=True, ensure_ascii=False)
    return text


def example_text(ex, mask: str) -> ExampleText:
    """Split one `Example` into prompt and trained answers, following the configured mask mode."""
    meta = ex.meta or {}
    # "(id X)", not "[id=X]": the CLI prints findings through rich, which would take "[id=X]" for a style tag
    source = ex.source if meta.get("id") is None else f"{ex.source} (id {meta['id']})"
    if ex.kind == "text":
        return ExampleText(source, "", [], [], ex.text or "", ex.text or "")
    if ex.kind == "completion_text":
        p, c = ex.prompt or "", ex.completion or ""
        return ExampleText(source, p, [c], [(p, c)], f"prompt: {p}\ncompletion: {c}", p)
    msgs = ex.messages or []
    # the renderer's own turn selection ("everything" and "completion" train the same turns as all_assistant here)
    turns = trained_turns(msgs, "last_assistant" if mask == "last_assistant" else "all_assistant", ex.n_prompt)
    first = turns[0] if turns else len(msgs)
    prompt = "\n".join(_message_text(m) for m in msgs[:first] if m.get("role") != "assistant")
    answers, pairs = [], []
    for i in turns:
        ans = _message_text(msgs[i])
        before = next((_message_text(m) for m in reversed(msgs[:i]) if m.get("role") == "user"), "")
        answers.append(ans)
        pairs.append((before, ans))
    full = "\n".join(f"{m.get('role')}: {_message_text(m)}" for m in msgs)
    user = "\n".join(_message_text(m) for m in msgs[:first] if m.get("role") not in ("assistant", "system"))
    return ExampleText(source, prompt, answers, pairs, full, user)


def texts_of(examples: Iterable, mask: str) -> list[ExampleText]:
    return [example_text(ex, mask) for ex in examples]


def normalise(text: str) -> str:
    """Lower-case and collapse whitespace: the key for 'exact' duplicate and contamination matches."""
    return " ".join(text.lower().split())


# ------------------------------------------------------------------------------------------------------------
# The corpus the duplicate and contamination checks share (the hashing itself: data/similar.py)


@dataclass
class Corpus:
    """Words of each example as two consecutive documents, prompt then answer (offsets: 2 * n_examples + 1).

    The prompt document leaves out system messages: a system prompt shared by every example would make all of them
    look alike, and every 13-gram that spans its end would look like a leak. Encoded once and shared by the
    duplicate and contamination checks (splitting 100k conversations into words is the costliest step of both).
    A raw-text example puts its text in the prompt slot.
    """

    index: WordIndex
    words: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, texts: list[ExampleText], index: WordIndex | None = None) -> Corpus:
        index = index or WordIndex()
        docs: list[str] = []
        for t in texts:
            docs += (t.user, t.answer) if t.answers else (t.full, "")
        return cls(index, *index.encode(docs))

    def example_offsets(self) -> np.ndarray:
        return self.offsets[::2]


# ------------------------------------------------------------------------------------------------------------
# Duplicates within the training set


def _snippet(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def check_duplicates(texts: list[ExampleText], threshold: float = 0.8, num_perm: int = 64, shingle: int = 5,
                     corpus: Corpus | None = None) -> tuple[list[Finding], dict]:
    """Exact duplicates (after normalisation) and near-duplicates (MinHash LSH) within one set.

    Exact: the whole record (every role and message) after lower-casing and collapsing whitespace. Near: MinHash
    over the user turns and trained answers (system prompts left out), among one representative of each exact
    group.
    """
    findings: list[Finding] = []
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        by_key[normalise(t.full)].append(i)
    exact = sorted((g for g in by_key.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    n_extra = sum(len(g) - 1 for g in exact)
    reps = [g[0] for g in by_key.values()]  # one representative per distinct text
    corpus = corpus or Corpus.of(texts)
    sig, has = signatures(corpus.words, corpus.example_offsets(), num_perm, shingle)
    near = clusters_from_signatures(sig[reps], has[reps], threshold)
    near = [([reps[k] for k in mem], s) for mem, s in near]
    n_near = sum(len(m) - 1 for m, _ in near)
    stats = {
        "n": len(texts), "exact_groups": len(exact), "exact_extra": n_extra, "near_clusters": len(near),
        "near_extra": n_near, "threshold": threshold, "num_perm": num_perm, "shingle": shingle,
        "top_exact": [{"size": len(g), "sources": [texts[i].source for i in g[:8]],
                       "text": _snippet(texts[g[0]].full)} for g in exact[:12]],
        "top_near": [{"size": len(m), "similarity": round(s, 3), "sources": [texts[i].source for i in m[:8]],
                      "texts": [_snippet(texts[i].full) for i in m[:3]]} for m, s in near[:12]],
        "cluster_sizes": sorted([len(g) for g in exact] + [len(m) for m, _ in near], reverse=True)[:40],
    }
    if exact:
        share = n_extra / max(len(texts), 1)
        findings.append(Finding(
            "duplicates.exact", "warning",
            f"{n_extra} example(s) ({share:.1%}) are exact copies of another after lower-casing and collapsing "
            f"whitespace, in {len(exact)} group(s); the largest has {len(exact[0])} copies. Duplicates are trained "
            "once per copy, so they weigh more and speed up overfitting.",
            fix="keep one copy of each (or up-weight on purpose, by repeating in the config, not in the file)",
            examples=[texts[i].source for g in exact for i in g][:40],
            data={"groups": len(exact), "extra": n_extra}))
    if near:
        share = n_near / max(len(texts), 1)
        findings.append(Finding(
            "duplicates.near", "warning" if share >= 0.01 else "info",
            f"{n_near} example(s) ({share:.1%}) are near-duplicates (MinHash Jaccard >= {threshold} over "
            f"{shingle}-word shingles) of another, in {len(near)} cluster(s); the largest has {len(near[0][0])}. "
            "Near-copies cut diversity: the model sees one query many times instead of the input distribution.",
            fix="review the clusters in audit.html and keep the most useful variant of each",
            examples=[texts[i].source for m, _ in near for i in m][:40],
            data={"clusters": len(near), "extra": n_near}))
    return findings, stats


# ------------------------------------------------------------------------------------------------------------
# Contamination: eval examples whose prompt or answer appears in training


def contamination_hits(train: list[ExampleText], evals: dict[str, list[ExampleText]], ngram: int = 13,
                       min_exact_words: int = LEAK_MIN_WORDS, corpus: Corpus | None = None, boilerplate_docs: int = 10,
                       min_shared: int = 3) -> tuple[dict[str, list[tuple[int, str, str]]], int]:
    """Per eval set, its leaked examples as (index, "exact" | "overlap", "prompt" | "answer"), and the number of
    boilerplate n-grams ignored. The rules are `check_contamination`'s (its docstring)."""

    def long_enough(s: str) -> bool:
        return len(s.split()) >= min_exact_words

    train_prompts = {normalise(t.user) for t in train if long_enough(t.user)}
    # a canned answer (a refusal, a clarifying question) crosses the split (data/inspect.py), so it is no leak here
    answers = [{normalise(a) for a in t.answers if long_enough(a)} for t in train]
    train_answers = set().union(*answers) - canned(answers)
    corpus = corpus or Corpus.of(train)
    train_h, train_d = ngram_hashes(corpus.words, corpus.offsets, ngram)
    # Sort the small side (eval n-grams) and binary-search the large one (~18M training n-grams for 100k
    # conversations): sorting the training side would cost ~1 s more.
    encoded = {name: ngram_hashes(*corpus.index.encode([d for t in items for d in (t.user, t.answer)]), ngram)
               for name, items in evals.items()}
    eval_u = sorted_unique(np.concatenate([h for h, _ in encoded.values()] + [np.zeros(0, dtype=np.uint64)]))
    hit = sorted_member(eval_u, train_h)
    # Boilerplate is not a leak: an n-gram found in >= `boilerplate_docs` training examples (a shared system prompt
    # or instruction header) is ignored. A leaked eval example appears in training once or a few times.
    pairs = np.unique(np.stack([train_h[hit], train_d[hit] // 2]), axis=1)  # (hash, training example), distinct
    shared, n_docs = np.unique(pairs[0], return_counts=True) if pairs.size else (pairs[0], np.zeros(0, dtype=int))
    shared = shared[n_docs < boilerplate_docs]
    hits: dict[str, list[tuple[int, str, str]]] = {}
    for name, items in evals.items():
        h, d = encoded[name]
        # doc 2k: prompt of eval example k, 2k+1: its answer. A doc counts as overlapping when it shares at least
        # `min_shared` n-grams, i.e. a run of >= ngram + min_shared - 1 words: a lone shared 13-gram is usually a
        # boilerplate header plus one common word after it.
        per_doc = np.bincount(d[sorted_member(shared, h)], minlength=2 * len(items))
        hit_docs = set(np.flatnonzero(per_doc >= min_shared).tolist())
        found = hits[name] = []
        for k, t in enumerate(items):
            p_hit = long_enough(t.user) and normalise(t.user) in train_prompts
            a_hit = long_enough(t.answer) and normalise(t.answer) in train_answers
            if p_hit or a_hit:
                found.append((k, "exact", "prompt" if p_hit else "answer"))
            elif 2 * k in hit_docs or 2 * k + 1 in hit_docs:
                found.append((k, "overlap", "prompt" if 2 * k in hit_docs else "answer"))
    return hits, int((n_docs >= boilerplate_docs).sum())


def check_contamination(train: list[ExampleText], evals: dict[str, list[ExampleText]], ngram: int = 13,
                        min_exact_words: int = LEAK_MIN_WORDS, corpus: Corpus | None = None, boilerplate_docs: int = 10,
                        min_shared: int = 3) -> tuple[list[Finding], dict]:
    """Eval examples (per eval set name) whose prompt or answer is in the training data.

    Prompts are the user turns (system messages are shared instructions, not content).
    Exact: the normalised eval prompt equals a training prompt, or the normalised answer equals a training answer
    (only for texts of >= `min_exact_words` words: two classification examples both answering "positive" are not
    a leak; nor is an answer that CANNED_ANSWER or more training examples give: data/inspect.py: canned). Overlap:
    the eval prompt or answer shares a `ngram`-word sequence with any training prompt/answer (13-grams: the GPT-3
    paper's contamination unit; long enough that shared boilerplate rarely matches).
    """
    findings: list[Finding] = []
    stats: dict[str, Any] = {"ngram": ngram, "sets": {}}
    if not evals:
        return [Finding(
            "contamination.no_eval", "info",
            "no eval data is configured (data.eval, eval.suites), so nothing was checked for leaks and training "
            "will have no held-out signal for early stopping or promotion.",
            fix="hold out a few hundred examples as data.eval or an eval suite (eval-gated, not "
                "loss-gated)")], stats
    hits, stats["boilerplate_ngrams"] = contamination_hits(train, evals, ngram, min_exact_words, corpus,
                                                           boilerplate_docs, min_shared)
    for name, items in evals.items():
        exact = [(items[k].source, what) for k, kind, what in hits[name] if kind == "exact"]
        overlap = [(items[k].source, what) for k, kind, what in hits[name] if kind == "overlap"]
        stats["sets"][name] = {"n": len(items), "exact": len(exact), "overlap": len(overlap),
                               "exact_ids": [s for s, _ in exact[:50]], "overlap_ids": [s for s, _ in overlap[:50]]}
        if exact:
            findings.append(Finding(
                "contamination.exact", "error",
                f"{len(exact)} of {len(items)} {name} example(s) have their prompt or answer verbatim in the "
                "training data (after normalising case/whitespace): the eval would measure memorisation, and eval "
                "gates and early stopping would trust it.",
                fix=f"remove these examples from the training files (or from {name}); the ids are listed here and "
                    "in audit.json",
                examples=[f"{s} ({what})" for s, what in exact], data={"set": name, "count": len(exact)}))
        if overlap:
            findings.append(Finding(
                "contamination.ngram", "warning",
                f"{len(overlap)} of {len(items)} {name} example(s) share a run of {ngram + min_shared - 1}+ words "
                "with a training prompt or answer: likely paraphrased or templated leaks.",
                fix="inspect them; drop near-copies from training so the eval stays held-out",
                examples=[f"{s} ({what})" for s, what in overlap], data={"set": name, "count": len(overlap)}))
    return findings, stats


# ------------------------------------------------------------------------------------------------------------
# Content quality of the trained answers

_PLACEHOLDER = re.compile(
    r"lorem ipsum|\bTODO\b|\bFIXME\b|\[\s*insert[^\]]*\]|<\s*placeholder\s*>|\[\s*placeholder\s*\]"
    r"|\{\{\s*[\w.]+\s*\}\}|\[your [^\]]{1,30}\]", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\bI(?:'m| am) sorry,? but I (?:can(?:not|'t)|won't|am unable)|\bI can(?:not|'t) (?:help|assist) with"
    r"|\bAs an AI\b|\bas a language model\b|\bI(?:'m| am) (?:not able|unable) to (?:help|assist|provide|comply)",
    re.IGNORECASE)
_FENCE = re.compile(r"^\s*```", re.MULTILINE)
# Cheap substring pre-filters: the case-insensitive regexes above cost ~40 us per answer, `in` well under 1 us,
# and only a small share of answers contains any of these keys.
_PLACEHOLDER_KEYS = ("lorem", "todo", "fixme", "insert", "placeholder", "{{", "[your")
_REFUSAL_KEYS = ("sorry", "as an ai", "language model", "unable", "can't", "cannot", "not able")


def has_placeholder(text: str) -> bool:
    low = text.lower()
    return any(k in low for k in _PLACEHOLDER_KEYS) and _PLACEHOLDER.search(text) is not None


def is_refusal(text: str) -> bool:
    low = text.lower()
    return any(k in low for k in _REFUSAL_KEYS) and _REFUSAL.search(text) is not None


def _echoes(prompt: str, answer: str) -> bool:
    """The answer starts by repeating a prompt of 3+ words (cheap first-characters test before normalising)."""
    p, a = prompt.lstrip()[:8].lower(), answer.lstrip()[:8].lower()
    return p == a and len(prompt.split()) >= 3 and normalise(answer).startswith(normalise(prompt))


def _looks_json(s: str) -> bool:
    s = s.strip()
    if s.startswith("```"):
        s = s.strip("`").removeprefix("json").strip()
    return s[:1] in ("{", "[")


def _parses_json(s: str) -> bool:
    s = s.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", s)
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


def check_content(texts: list[ExampleText], refusal_warn: float = 0.05) -> tuple[list[Finding], dict]:
    """Empty answers, placeholders, broken code fences, echoed prompts, outlier-short answers, JSON consistency,
    refusal share."""
    findings: list[Finding] = []
    answered = [t for t in texts if t.answers]
    empty = [t.source for t in answered if any(not a.strip() for a in t.answers)]
    placeholder = [t.source for t in answered if any(has_placeholder(a) for a in t.answers)]
    fences = [t.source for t in answered if any("```" in a and len(_FENCE.findall(a)) % 2 for a in t.answers)]
    echo = [t.source for t in answered if any(_echoes(p, a) for p, a in t.pairs)]
    refusals = [t.source for t in answered if any(is_refusal(a) for a in t.answers)]

    n_words = [[len(a.split()) for a in t.answers] for t in answered]  # split once: the costliest step here
    words = np.array([n for ns in n_words for n in ns if n], dtype=np.int64)
    median = float(np.median(words)) if len(words) else 0.0
    # A reply under a tenth of the median (when the median is >= 20 words) is usually a truncated or lazy target.
    short_cut = max(1.0, median / 10) if median >= 20 else 0.0
    short = [t.source for t, ns in zip(answered, n_words) if any(0 < n < short_cut for n in ns)]

    all_answers = [(t.source, a) for t in answered for a in t.answers if a.strip()]
    js = [(s, a) for s, a in all_answers if _looks_json(a)]
    json_share = len(js) / len(all_answers) if all_answers else 0.0
    not_json = [s for s, a in all_answers if not _looks_json(a)] if json_share >= 0.5 else []
    bad_json = [s for s, a in js if not _parses_json(a)] if json_share >= 0.5 else []

    stats = {"n_answers": len(all_answers) + len(empty), "median_answer_words": median,
             "empty": len(empty), "placeholder": len(placeholder), "unbalanced_fences": len(fences),
             "echo_prompt": len(echo), "short_answers": len(short), "short_cutoff_words": short_cut,
             "json_share": round(json_share, 4), "not_json": len(not_json), "bad_json": len(bad_json),
             "refusals": len(refusals), "refusal_share": round(len(refusals) / max(len(answered), 1), 4)}
    rules = [  # (sources, check, severity, message, fix)
        (empty, "content.empty_answer", "error",
         (f"{len(empty)} example(s) have an empty or whitespace-only answer: the model is taught to answer with "
          "nothing."), "fill in or remove these examples"),
        (placeholder, "content.placeholder", "warning",
         (f"{len(placeholder)} answer(s) contain placeholder text (lorem ipsum, TODO, [insert ...], <placeholder>, "
          "{{var}}): the model will learn to emit it."), "replace the placeholders with real content or drop these"),
        (fences, "content.code_fence", "warning",
         (f"{len(fences)} answer(s) have an odd number of ``` fences (an unclosed code block): broken markdown gets "
          "learned as the format."), "close the code blocks"),
        (echo, "content.echo_prompt", "warning",
         f"{len(echo)} answer(s) start by repeating the user's message verbatim: the model learns to parrot.",
         "strip the echoed prompt from the answers (often a data-extraction bug)"),
        (short, "content.short_answer", "warning",
         (f"{len(short)} answer(s) are under {short_cut:.0f} words where the median answer has {median:.0f}: "
          "likely truncated or lazy targets."), "check them; complete or remove"),
    ]
    for sources, check, severity, message, fix in rules:
        if sources:
            findings.append(Finding(check, severity, message, fix=fix, examples=sources))
    if not_json or bad_json:
        findings.append(Finding(
            "content.json_format", "warning",
            f"{json_share:.0%} of answers are JSON, but {len(not_json)} are not JSON and {len(bad_json)} look like "
            "JSON but do not parse: an inconsistent target format teaches the model to break the format sometimes.",
            fix="make every answer the same format (validate each with json.loads) or split the tasks",
            examples=bad_json + not_json, data={"not_json": len(not_json), "bad_json": len(bad_json)}))
    if refusals:
        share = len(refusals) / max(len(answered), 1)
        findings.append(Finding(
            "content.refusals", "warning" if share >= refusal_warn else "info",
            f"{len(refusals)} answer(s) ({share:.1%}) are refusals or AI disclaimers (\"I'm sorry, but I can't\", "
            "\"As an AI\"). Some refusals are right; a high share teaches the model to refuse the task.",
            fix=f"keep refusals only where declining is the desired behaviour (warning above {refusal_warn:.0%})",
            examples=refusals, data={"share": share}))
    return findings, stats
