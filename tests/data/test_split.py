"""data/split.py: templated data gets whole sentence patterns held out (no eval pattern in training, every label kept
in eval), natural data a plain random split that says so, one-pattern data a random split with the reason, and the
same split for the same seed."""
from __future__ import annotations

import json

from patterns_data import PATTERNS, examples, natural, templated

from shipsft.data.inspect import answer_shape, reference_answer, split_indices
from shipsft.data.split import cluster_split, plan_split


def plan(exs: list, seed: int = 0, **kw):
    shape = answer_shape([reference_answer(ex) for ex in exs])
    return plan_split(exs, shape, seed, **kw)


def test_templated_data_holds_out_whole_patterns_with_every_label():
    texts, which = templated(480)
    exs = examples(texts)
    p = plan(exs)
    assert p.by == "patterns" and p.n_clusters == 12 and "whole clusters go to eval" in p.why
    train_patterns = {which[i] for i in p.train_idx}
    eval_patterns = {which[i] for i in p.eval_idx}
    assert not train_patterns & eval_patterns  # no eval example's pattern was trained on
    assert {json.loads(reference_answer(exs[i]))["category"] for i in p.eval_idx} == set(PATTERNS)
    assert sorted(p.train_idx + p.eval_idx) == list(range(480))
    # 10% of 480 is 48; a pattern holds 40 examples, so eval takes whole ones: one per label, three in all
    assert len(p.eval_idx) == 120 and p.eval_clusters == 3
    again = plan(exs)
    assert (again.train_idx, again.eval_idx) == (p.train_idx, p.eval_idx)
    assert plan(exs, seed=1).eval_idx != p.eval_idx


def test_natural_data_keeps_a_random_split_and_says_so():
    p = plan(examples(natural()))
    assert p.by == "random" and "not written from sentence patterns), so a plain random split" in p.why
    assert len(p.eval_idx) == 22  # a fifth of 110 (data/inspect.py: eval_size)


def test_one_pattern_falls_back_to_random_with_the_reason():
    texts = [(f"Where is my order number {i}?", [json.dumps({"order": i})]) for i in range(100)]
    p = plan(examples(texts))
    assert p.by == "random" and p.n_clusters == 1
    assert "from 0 cluster(s) (a pattern split needs 3+ clusters and half the examples), so a plain random" in p.why


def test_cluster_split_holds_whole_patterns_and_keeps_every_label():
    # label b: patterns of 5 and 5 in 100 examples; its share of a 10-example eval is 1, which no pattern fits
    labels = ["a"] * 90 + ["b"] * 10
    units = [i // 10 for i in range(90)] + [9] * 5 + [10] * 5  # label a: nine patterns of 10
    train, held = cluster_split(labels, 10, seed=0, units=units)
    assert sum(labels[i] == "b" for i in held) == 5  # every label measurable: b's smallest pattern
    assert {units[i] for i in held if labels[i] == "a"} and all(  # a's share (9) taken as one whole pattern of 10
        sum(units[j] == units[i] for j in held) == 10 for i in held if labels[i] == "a")
    assert sorted(train + held) == list(range(100))
    # a pattern of fewer than 3 examples (a variant of a bigger one) goes to eval only when nothing bigger is left
    units2 = [i // 10 for i in range(90)] + [9, 9] + [10] * 8
    _, held2 = cluster_split(labels, 10, seed=0, units=units2)
    assert [i for i in held2 if labels[i] == "b"] == list(range(92, 100))
    # the plain stratified split takes no group of b: none fits its share of 1
    _, plain = split_indices(labels, 10, seed=0, groups=units)
    assert not any(labels[i] == "b" for i in plain)


def test_a_canned_reply_many_conversations_share_does_not_fuse_the_patterns():
    """Multi-turn data whose assistant asks the same clarifying question in many conversations (the recipe bench's
    schedule_chat: "Which day and what time?" in 300 of 900) still gets whole patterns held out; a long answer that
    a few examples share (a copied example) still keeps them on one side."""
    from shipsft.data.inspect import CANNED_ANSWER, leak_groups, leak_keys
    from shipsft.data.types import Example

    texts, which = templated(480)
    ask = "Which day and what time would suit you?"
    exs = [Example(source=f"t.jsonl:{i + 1}", messages=[
        {"role": "user", "content": p},
        *([{"role": "assistant", "content": ask}, {"role": "user", "content": "Friday."}] if i // 12 % 2 else []),
        {"role": "assistant", "content": a[-1]}]) for i, (p, a) in enumerate(texts)]
    p = plan(exs)
    assert p.by == "patterns" and p.eval_clusters >= 3
    assert not {which[i] for i in p.train_idx} & {which[i] for i in p.eval_idx}
    # the question, held by 240 conversations, joins none of them; held by one fewer than CANNED_ANSWER, it joins all
    keys = [leak_keys(e, answers=True) for e in exs]
    assert len(set(leak_groups(keys))) == 480
    asking = [k for k in keys if len(k) == 3][: CANNED_ANSWER - 1]  # prompt, question, answer
    assert len(set(leak_groups(asking))) == 1
