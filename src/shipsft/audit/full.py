"""The checks that must see every training example when the audit reads a sample of them (a split larger than
data/pipeline.py's EXAMPLE_SAMPLE): exact duplicates and eval examples whose prompt or answer is verbatim in training.
Near-duplicates, n-gram overlap, content, template and mask checks read the sample and say so.

One streaming pass over the split's files (the same reader training uses) keeps one 64-bit hash per example of its
normalised record, and of its normalised user prompt and answers where they are long enough to count as a leak (the
rules of text.py: check_duplicates, check_contamination); a million examples hold ~24 MB of hashes, never their
text. Python's str hash is salted per process, which is fine: the hashes are compared within this pass only.

    findings, stats = full_set_checks(cfg.data, eval_texts)
"""
from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

from shipsft.audit.findings import Finding
from shipsft.audit.text import ExampleText, example_text, normalise
from shipsft.config import DataConfig
from shipsft.data.inspect import CANNED_ANSWER, LEAK_MIN_WORDS
SHOWN = 40  # sources named per finding


def _h(text: str) -> int:
    return hash(text) & 0xFFFFFFFFFFFFFFFF


def long_enough(s: str) -> bool:
    return len(s.split()) >= LEAK_MIN_WORDS


def full_set_checks(data: DataConfig, evals: dict[str, list[ExampleText]],
                    source_of: Callable[[int], str]) -> tuple[list[Finding], dict[str, Any]]:
    """Exact duplicates within data.train, and exact eval contamination, over every example (module docstring).
    `source_of(k)`: the source of example k (the store of the prepared split knows them)."""
    from shipsft.data.pipeline import split_stream

    full, prompts, answers = array("Q"), array("Q"), array("Q")  # 8 bytes a hash: no Python int per example
    for chunk in split_stream(data.model_copy(update={"rejects_file": None, "on_invalid": "skip"}), "train", None):
        for ex in chunk:
            t = example_text(ex, data.mask)
            full.append(_h(normalise(t.full)))
            if long_enough(t.user):
                prompts.append(_h(normalise(t.user)))
            answers.extend({_h(normalise(a)) for a in t.answers if long_enough(a)})  # once per example
    hashes = np.frombuffer(full, dtype=np.uint64)
    _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
    groups = counts[counts > 1]
    n_extra = int((groups - 1).sum())
    stats: dict[str, Any] = {"n": len(hashes), "exact_groups": int(len(groups)), "exact_extra": n_extra}
    findings: list[Finding] = []
    if n_extra:
        copies = np.flatnonzero(counts[inverse] > 1)  # every member of a duplicate group, in file order
        copies = copies[copies != first[inverse[copies]]][:SHOWN]  # the copies after the first of each group
        findings.append(Finding(
            "duplicates.exact", "warning",
            f"{n_extra} of {len(hashes):,} example(s) ({n_extra / len(hashes):.1%}) are exact copies of another after "
            f"lower-casing and collapsing whitespace, in {len(groups)} group(s); the largest has {int(groups.max())} "
            "copies (every example checked). Duplicates are trained once per copy, so they weigh more and speed up "
            "overfitting.",
            fix="keep one copy of each (or up-weight on purpose, by repeating in the config, not in the file)",
            examples=[source_of(int(k)) for k in copies], data={"groups": int(len(groups)), "extra": n_extra}))
    train_prompts = np.sort(np.frombuffer(prompts, dtype=np.uint64))
    # a canned answer (data/inspect.py: canned, whose rule this applies to hashes) is no leak
    train_answers, held = np.unique(np.frombuffer(answers, dtype=np.uint64), return_counts=True)
    train_answers = train_answers[held < CANNED_ANSWER]
    stats["contamination"] = {}
    for name, items in evals.items():
        exact = []
        for t in items:
            p_hit = long_enough(t.user) and member(train_prompts, _h(normalise(t.user)))
            a_hit = long_enough(t.answer) and member(train_answers, _h(normalise(t.answer)))
            if p_hit or a_hit:
                exact.append(f"{t.source} ({'prompt' if p_hit else 'answer'})")
        stats["contamination"][name] = {"n": len(items), "exact": len(exact)}
        if exact:
            findings.append(Finding(
                "contamination.exact", "error",
                f"{len(exact)} of {len(items)} {name} example(s) have their prompt or answer verbatim in the "
                "training data (after normalising case/whitespace; every training example checked): the eval would "
                "measure memorisation, and eval gates and early stopping would trust it.",
                fix=f"remove these examples from the training files (or from {name}); the ids are listed here and "
                    "in audit.json",
                examples=exact, data={"set": name, "count": len(exact)}))
    return findings, stats


def member(sorted_hashes: np.ndarray, h: int) -> bool:
    k = int(np.searchsorted(sorted_hashes, np.uint64(h)))
    return k < len(sorted_hashes) and int(sorted_hashes[k]) == h
