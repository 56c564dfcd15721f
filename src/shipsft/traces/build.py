"""Traces -> eval suites: near-duplicates out, leaks into training out, the rest sampled by pattern and label.

    built = build_suites(traces, train_examples, size=200, seed=0)
    built.suite        # records for suite.jsonl: traces not marked bad, one per near-duplicate group, not in training
    built.failures     # traces marked bad that carry a correction: the corrected answer is the reference
    built.uncorrected  # traces marked bad without one: the logged (bad) answer is the reference, for win_rate only
    built.dropped      # every other trace, with the reason (duplicate of which, leak of what kind, not sampled)

Steps, in order (docs/suites.md):
1. Near-duplicates: traces whose prompts (user turns, system prompt left out) are near-copies (the audit's MinHash,
   audit/text.py: Jaccard >= 0.8 over 5-word shingles, exact copies included) keep the first in file order, within
   the bad traces and within the others separately (a prompt can be a failure once and fine once).
2. Leaks: a trace whose prompt or answer is in the training data, or whose sentence pattern is, is dropped
   (`leaked`).
3. Patterns: prompts are clustered by sentence pattern (`pattern_clusters`, data/skeleton.py); each record carries
   its cluster and how many traces (before steps 1-2) share it, so a score can be weighted back to traffic.
4. Sampling (`size`): production traffic is skewed towards a few request patterns, so the suite takes examples
   round-robin over clusters (one from each before a second from any) within each label's share of the suite
   (labels: data/inspect.py's answer shape, as `shipsft init` stratifies). Failure suites are kept whole.

Every record keeps its provenance: `trace_source` (file:line), `trace_id`, `feedback` as logged, `cluster`,
`cluster_size`, `label`, and for failures `rejected` (the logged answer).
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from shipsft.audit.text import ExampleText, contamination_hits, example_text, normalise, texts_of
from shipsft.data.inspect import answer_shape, reference_answer, strata
from shipsft.data.similar import near_duplicate_clusters
from shipsft.data.skeleton import find_patterns, prompt_and_answers, seen_patterns
from shipsft.data.types import Example
from shipsft.traces.read import Trace

NEAR_DUPLICATE = 0.8  # the audit's near-duplicate threshold (audit/text.py: check_duplicates)


@dataclass
class Built:
    suite: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    uncorrected: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def leaked(train: list[Example], train_texts: list[ExampleText], traces: list[Example], texts: list[ExampleText]
           ) -> list[str | None]:
    """Per trace: None, or how it leaks into training: the audit's contamination test (audit/text.py: exact prompt or
    answer, or a 15-word run shared), then the sentence-pattern test (data/skeleton.py: its prompt's skeleton
    clusters with a training example's), the one `shipsft audit` applies to eval data (contamination.patterns): a
    suite of phrasings training saw would score recall of phrasings, not the task (docs/eval.md)."""
    out: list[str | None] = [None] * len(texts)
    if not train or not texts:
        return out
    hits, _ = contamination_hits(train_texts, {"traces": texts})
    for k, kind, what in hits["traces"]:
        out[k] = f"{kind} {what}"
    seen = seen_patterns([prompt_and_answers(e) for e in train], [prompt_and_answers(e) for e in traces])
    return [how if how is not None or not s else "sentence pattern" for how, s in zip(out, seen)]


def pattern_clusters(traces: list[Example]) -> list[int]:
    """Cluster id per trace (0, 1, ... in order of first appearance): the sentence patterns of their prompts
    (data/skeleton.py: values out, near-duplicate skeletons joined), as `shipsft init` finds them."""
    return find_patterns([prompt_and_answers(e) for e in traces]).cluster


def duplicates(texts: list[ExampleText]) -> dict[int, tuple[int, str]]:
    """{trace index: (index of the copy kept, "exact" | "near")} for every near-copy after the first of its group."""
    out: dict[int, tuple[int, str]] = {}
    for members, _ in near_duplicate_clusters([t.user for t in texts], NEAR_DUPLICATE):
        keep = members[0]
        for m in members[1:]:
            out[m] = (keep, "exact" if normalise(texts[m].user) == normalise(texts[keep].user) else "near")
    return out


def sample(labels: list[str | None], clusters: list[int], size: int, seed: int) -> list[int]:
    """`size` indices (in input order): each label's share of the suite by largest remainder (every label at least
    one while the size allows), filled round-robin over the label's clusters in a seeded order."""
    rng = random.Random(f"shipsft-suite:{seed}")
    by_label: dict[str | None, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by_label[lab].append(i)
    keys = list(by_label)
    n = len(labels)
    exact = {k: size * len(by_label[k]) / n for k in keys}
    quota = {k: min(len(by_label[k]), max(int(exact[k]), 1 if len(keys) <= size else 0)) for k in keys}
    for k in sorted(keys, key=lambda k: (-(exact[k] - int(exact[k])), keys.index(k))):
        if sum(quota.values()) >= size:
            break
        quota[k] += quota[k] < len(by_label[k])
    while sum(quota.values()) > size:  # the one-per-label floor overshot: take back from the largest share
        quota[max(keys, key=lambda k: (quota[k], -keys.index(k)))] -= 1
    chosen: list[int] = []
    for k in keys:
        pools: dict[int, list[int]] = defaultdict(list)
        for i in by_label[k]:
            pools[clusters[i]].append(i)
        order = list(pools.values())
        rng.shuffle(order)
        for pool in order:
            rng.shuffle(pool)
        taken = 0
        while taken < quota[k]:
            for pool in order:
                if pool and taken < quota[k]:
                    chosen.append(pool.pop())
                    taken += 1
    return sorted(chosen)


def _record(t: Trace, cluster: int, cluster_size: int, label: str | None, answer: str | None = None) -> dict:
    """The trace as a suite line: the conversation (its last assistant turn replaced by `answer` when given), then
    its provenance."""
    ex = t.example
    if ex.kind == "completion_text":
        rec: dict = {"prompt": ex.prompt, "completion": answer if answer is not None else ex.completion}
    else:
        msgs = [dict(m) for m in ex.messages or []]
        if answer is not None:
            last = max(i for i, m in enumerate(msgs) if m.get("role") == "assistant")
            msgs[last] = {"role": "assistant", "content": answer}
        rec = {"messages": msgs}
        if ex.tools:
            rec["tools"] = ex.tools
    rec.update({"trace_source": t.source, "trace_id": t.trace_id, "feedback": t.feedback, "cluster": cluster,
                "cluster_size": cluster_size, "label": label})
    if t.outcome == "bad":
        rec["rejected"] = reference_answer(ex)
    return rec


def build_suites(traces: list[Trace], train: list[Example] | None, size: int | None = None, seed: int = 0,
                 mask: str = "all_assistant") -> Built:
    """The suites (module docstring). `train`: the training examples (None: no leak check); `mask`: the training
    data's data.mask, so its answers are the ones it trains."""
    built = Built()
    texts = [example_text(t.example, "last_assistant") for t in traces]
    clusters = pattern_clusters([t.example for t in traces])
    traffic = defaultdict(int)
    for c in clusters:
        traffic[c] += 1
    drop: dict[int, dict] = {}
    for group in ([i for i, t in enumerate(traces) if t.outcome == "bad"],
                  [i for i, t in enumerate(traces) if t.outcome != "bad"]):
        for k, (keep, kind) in duplicates([texts[i] for i in group]).items():
            drop[group[k]] = {"reason": f"{kind} duplicate", "kept": traces[group[keep]].source}
    rest = [i for i in range(len(traces)) if i not in drop]
    for i, how in zip(rest, leaked(train or [], texts_of(train, mask) if train else [],
                                   [traces[i].example for i in rest], [texts[i] for i in rest])):
        if how is not None:
            drop[i] = {"reason": f"leaks into training ({how})"}
    kept = [i for i in range(len(traces)) if i not in drop]
    shape = answer_shape([reference_answer(traces[i].example) for i in kept])
    labels = dict(zip(kept, strata([reference_answer(traces[i].example) for i in kept], shape)))
    good = [i for i in kept if traces[i].outcome != "bad"]
    if size is not None and size < len(good):
        picked = [good[j] for j in sample([labels[i] for i in good], [clusters[i] for i in good], size, seed)]
        for i in sorted(set(good) - set(picked)):
            drop[i] = {"reason": f"not sampled (--size {size})"}
        good = picked
    built.suite = [_record(traces[i], clusters[i], traffic[clusters[i]], labels[i]) for i in good]
    for i in kept:
        t = traces[i]
        if t.outcome == "bad":
            target = built.failures if t.correction is not None else built.uncorrected
            label = strata([t.correction], shape)[0] if t.correction is not None else labels[i]
            target.append(_record(t, clusters[i], traffic[clusters[i]], label, t.correction))
    built.dropped = [{"trace_source": traces[i].source, "trace_id": traces[i].trace_id, **drop[i]}
                     for i in sorted(drop)]
    reasons: dict[str, int] = defaultdict(int)
    for d in built.dropped:
        reasons[d["reason"].split(" (")[0]] += 1
    built.stats = {"traces": len(traces), "bad": sum(t.outcome == "bad" for t in traces),
                   "good": sum(t.outcome == "good" for t in traces),
                   "unrated": sum(t.outcome == "unrated" for t in traces), "clusters": len(traffic),
                   "largest_cluster_share": max(traffic.values()) / len(traces) if traces else 0.0,
                   "answer_shape": shape.kind,
                   "labels": sorted({labels[i] for i in good if labels[i] is not None}),
                   "dropped": dict(reasons), "suite": len(built.suite), "failures": len(built.failures),
                   "uncorrected": len(built.uncorrected), "leak_check": train is not None}
    return built
