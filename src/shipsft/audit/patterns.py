"""Pattern leakage: the share of each eval set whose sentence pattern is also in training, found before any compute.

An eval example whose prompt skeleton (data/skeleton.py) clusters with a training example's scores recall of a
phrasing the model trained on, not the task; when most of an eval set is like that, its number overstates what users
who phrase requests their own way will see (issue 27: 1.000 on such an eval, 0.685 on new phrasings). Exact and
n-gram copies are audit/text.py's contamination check; this one finds the same pattern with other values.

    findings, stats = check_pattern_leakage(train_examples, {"data.eval": [...], "suite heldout": [...]})
"""
from __future__ import annotations

from typing import Any

from shipsft.audit.findings import Finding
from shipsft.data.skeleton import prompt_and_answers, seen_patterns

MOSTLY_SEEN = 0.5  # a set at least this share of whose examples have a training pattern is a warning


def check_pattern_leakage(train: list, evals: dict[str, list]) -> tuple[list[Finding], dict[str, Any]]:
    """Per eval set: how many examples share their sentence-pattern cluster with training (a warning from half of
    the set, else an info line naming the slices every eval reports apart)."""
    findings: list[Finding] = []
    stats: dict[str, Any] = {"sets": {}}
    if not train or not evals:
        return findings, stats
    train_texts = [prompt_and_answers(ex) for ex in train]
    for name, items in evals.items():
        if not items:
            continue
        seen = seen_patterns(train_texts, [prompt_and_answers(ex) for ex in items])
        k, n = sum(seen), len(seen)
        stats["sets"][name] = {"n": n, "seen": k, "share": round(k / n, 4),
                               "seen_ids": [ex.source for ex, s in zip(items, seen) if s][:50]}
        if not k:
            continue
        examples = [ex.source for ex, s in zip(items, seen) if s]
        if k >= MOSTLY_SEEN * n:
            findings.append(Finding(
                "contamination.patterns", "warning",
                f"{k} of {n} {name} example(s) ({k / n:.0%}) share a sentence pattern with training (the same "
                "prompt with other names, numbers or values): on them the eval measures recall of phrasings the "
                "model trained on, and gates, early stopping and checkpoint selection would trust that number.",
                fix="re-split with `shipsft init DATA` (it holds out whole patterns), or add an eval suite of "
                    "requests phrased in new ways; every eval reports the seen-pattern and unseen-pattern slices "
                    "apart, and gates read the unseen one (eval.pattern_slice)",
                examples=examples, data={"set": name, "count": k, "share": k / n}))
        else:
            findings.append(Finding(
                "contamination.patterns", "info",
                f"{k} of {n} {name} example(s) ({k / n:.0%}) share a sentence pattern with training; eval "
                "suites report the seen-pattern and unseen-pattern slices apart (<suite>.seen/..., <suite>.unseen/"
                "...) and gates read the unseen one (eval.pattern_slice).",
                examples=examples, data={"set": name, "count": k, "share": k / n}))
    return findings, stats
