"""bench/patterns.py on the recipe bench's classify_json (no training): the skeleton clusters find its request
patterns, init's split holds them out whole (a random split of the same size holds none out), the bench's own
seen / unseen slices are told apart, and the audit's check of init's split agrees with it (no eval example's pattern
clusters with a training one, whatever the order of the examples)."""
from __future__ import annotations

import sys

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import patterns  # noqa: E402
from bench.recipe_tasks import TASKS  # noqa: E402


def test_classify_json_patterns_are_held_out_and_told_apart():
    r = patterns.measure_task("classify_json", 0)
    assert r["split"] == "patterns" and r["leak_pattern"] == 0.0 and r["leak_random"] == 1.0
    assert r["flag_seen"] == 1.0 and r["flag_unseen"] == 0.0
    assert 100 <= r["clusters"] <= 130  # 110 request templates


def test_the_audit_agrees_with_inits_split():
    from shipsft.data.inspect import answer_shape, reference_answer
    from shipsft.data.skeleton import prompt_and_answers, seen_patterns
    from shipsft.data.split import plan_split
    from shipsft.data.types import Example

    train = [Example(source=r["id"], messages=r["messages"]) for r in TASKS["classify_json"](0).train]
    plan = plan_split(train, answer_shape([reference_answer(ex) for ex in train]), 0)
    texts = [prompt_and_answers(ex) for ex in train]
    # the audit sees the training part first, then the eval part: another order than the split's
    assert not any(seen_patterns([texts[i] for i in plan.train_idx], [texts[i] for i in plan.eval_idx]))
