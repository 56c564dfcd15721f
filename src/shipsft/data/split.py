"""Which held-out split a data set gets: whole sentence patterns, or a plain random split, and why.

    plan = plan_split(examples, shape, seed=0, by="auto")
    plan.by            # "patterns" (whole clusters of prompt skeletons held out) or "random"
    plan.train_idx, plan.eval_idx, plan.why, plan.n_clusters, plan.largest_share, plan.eval_clusters

`by: auto` reads the prompts' skeletons (data/skeleton.py). When the set was written from sentence patterns (at
least 30% of the examples share their cluster with another), a random split would put most eval examples' patterns
in training too, and the eval would measure recall of phrasings (issue 27: 1.000 on such a split against 0.685 on
new phrasings), so whole clusters go to eval. Natural data keeps a random split. Either way the split is stratified
by the answers' label (data/inspect.py: strata); a pattern split keeps every label with two or more clusters in
eval, and examples that share a prompt or a long answer stay on one side (data/inspect.py: leak_groups).

Used by `shipsft init` (recipe/starter.py) and by `data.eval_split` at the start of `shipsft train` (train/split.py).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from shipsft.data.inspect import (AnswerShape, eval_size, leak_groups, leak_keys, reference_answer, split_indices,
                                  strata)
from shipsft.data.similar import UnionFind
from shipsft.data.skeleton import TEMPLATED_SHARE, Patterns, find_patterns, prompt_and_answers
from shipsft.data.types import Example

MIN_EVAL_CLUSTERS = 3  # a pattern split whose eval would hold fewer clusters measures one or two phrasings
MIN_PATTERN = 3  # a cluster of fewer examples goes to eval only when its label has no bigger one


@dataclass
class SplitPlan:
    by: str  # "patterns" | "random"
    train_idx: list[int]
    eval_idx: list[int]
    why: str  # one sentence with the numbers behind the choice
    n_clusters: int = 0
    largest_share: float = 0.0
    repeated_share: float = 0.0
    eval_clusters: int = 0  # clusters the eval split holds (patterns)
    largest: str = ""  # a skeleton of the largest cluster
    labels: list[str | None] = field(default_factory=list, repr=False)


def pattern_groups(patterns: Patterns, groups: list[int]) -> list[int]:
    """Group id per example joining a skeleton cluster and a leak group (data/inspect.py: leak_groups): examples in
    either stay on one side of the split."""
    uf = UnionFind(len(groups))
    first: dict[tuple[str, int], int] = {}
    for i, (c, g) in enumerate(zip(patterns.cluster, groups)):
        for key in (("c", c), ("g", g)):
            uf.union(first.setdefault(key, i), i)
    return [uf.find(i) for i in range(len(groups))]


def cluster_split(labels: list[str | None], n_eval: int, seed: int, units: list[int]) -> tuple[list[int], list[int]]:
    """(train, eval) indices, each in file order, holding out whole units (pattern clusters joined with leak groups).

    Stratified: a unit counts for its most common label, and each label's units go to eval in a seeded random order
    until the label has its share of `n_eval` (the last unit may pass it: a pattern is held out whole or not at all).
    A unit of fewer than MIN_PATTERN examples is taken only when the label has no bigger one (a pair or a singleton is
    often a variant of a bigger pattern left in training: a lower-cased copy, a dropped full stop), one of more than
    twice the label's share only when nothing else fits, and every label keeps one unit (its smallest) in training.
    A label without any unit that fits still gets its smallest in eval: every label stays measurable. An eval of fewer than
    MIN_EVAL_CLUSTERS units gets more, up to twice `n_eval` examples."""
    rng = random.Random(f"shipsft-split:{seed}")
    members: dict[int, list[int]] = {}
    for i, u in enumerate(units):
        members.setdefault(u, []).append(i)
    by_label: dict[str | None, list[list[int]]] = {}
    for m in members.values():  # insertion order: no set iteration
        label = Counter(labels[i] for i in m).most_common(1)[0][0]
        by_label.setdefault(label, []).append(m)
    n = len(labels)
    held: list[int] = []
    spare: list[list[int]] = []  # units that may still go to eval (every label keeps one in training)
    for label, pool in by_label.items():
        if len(pool) < 2 or n_eval <= 0:
            continue
        share = n_eval * sum(len(m) for m in pool) / n
        pool = list(pool)
        rng.shuffle(pool)
        stays = min(pool, key=len)  # the smallest stays in training (a variant more often than a pattern)
        pool = [m for m in pool if m is not stays]
        real = [m for m in pool if len(m) >= MIN_PATTERN] or pool
        took = []
        for m in real:
            if sum(map(len, took)) >= share:
                break
            if len(m) <= 2 * share:
                took.append(m)
        if not took and label is not None:
            took.append(min(real, key=len))
        held += [i for m in took for i in m]
        spare += [m for m in real if m not in took and len(m) >= MIN_PATTERN]
    # fewer than MIN_EVAL_CLUSTERS patterns measure one or two phrasings: add more, up to twice the eval's size
    rng.shuffle(spare)
    for m in spare:
        if len({units[i] for i in held}) >= MIN_EVAL_CLUSTERS:
            break
        if len(held) + len(m) <= 2 * n_eval:
            held += m
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held)


def plan_split(examples: list[Example], shape: AnswerShape, seed: int, by: str = "auto",
               n_eval: int | None = None) -> SplitPlan:
    """The split of `examples` (module docstring). `by`: auto | patterns | random; `n_eval`: examples to hold out
    (default data/inspect.py: eval_size)."""
    answers = [reference_answer(ex) for ex in examples]
    labels = strata(answers, shape)
    n_eval = eval_size(len(examples)) if n_eval is None else n_eval
    groups = leak_groups([leak_keys(ex, answers=shape.kind != "label") for ex in examples])
    found = find_patterns([prompt_and_answers(ex) for ex in examples])
    numbers = (f"{found.n_clusters:,} sentence-pattern clusters in {len(examples):,} examples; "
               f"{found.repeated_share:.0%} of the examples share theirs, the largest holds {found.largest_share:.1%}")
    if by == "patterns" or (by == "auto" and found.templated):
        units = pattern_groups(found, groups)
        train_idx, eval_idx = cluster_split(labels, n_eval, seed, units)
        held = {found.cluster[i] for i in eval_idx}
        if by == "patterns" or (len(held) >= MIN_EVAL_CLUSTERS and len(eval_idx) >= n_eval / 2):
            why = (f"{numbers}: whole clusters go to eval ({len(held):,} clusters, {len(eval_idx):,} examples), so "
                   "the eval scores phrasings training never saw (a random split would score phrasings it trained on)"
                   if by == "auto" else f"{numbers}: whole clusters go to eval (data.eval_split.by: patterns)")
            return SplitPlan("patterns", train_idx, eval_idx, why, found.n_clusters, found.largest_share,
                             found.repeated_share, len(held), found.largest(), labels)
        joined = len(set(units))
        why_not = (f"; examples sharing an answer or a prompt join them into {joined:,} groups"
                   if joined < found.n_clusters else "")
        reason = (f"{why_not}; whole clusters would fill {len(eval_idx):,} of the {n_eval:,} eval examples from "
                  f"{len(held)} cluster(s) (a pattern split needs {MIN_EVAL_CLUSTERS}+ clusters and half the "
                  "examples), so a plain random split, whose eval shares its sentence patterns with training")
    elif by == "auto":
        reason = f" (under {TEMPLATED_SHARE:.0%}: not written from sentence patterns), so a plain random split"
    else:
        reason = ": a plain random split (data.eval_split.by: random)"
    train_idx, eval_idx = split_indices(labels, n_eval, seed, groups)
    why = numbers + reason
    return SplitPlan("random", train_idx, eval_idx, why, found.n_clusters, found.largest_share, found.repeated_share,
                     0, found.largest() if examples else "", labels)
