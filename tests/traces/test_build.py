"""Traces -> suites on planted data: duplicates, leaks, failures, the stratified sample, provenance, nothing lost."""
from __future__ import annotations

from collections import Counter

from shipsft.data.types import Example
from shipsft.traces.build import build_suites, pattern_clusters, sample
from shipsft.traces.read import Trace, outcome_of

NAMES = ["Ann", "Bo", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivo", "Jo"]
PATTERNS = {  # request pattern -> the label its answer carries
    "refund": "Please refund order {n} for {name}, the parcel arrived broken and the box was wet.",
    "track": "Where is my parcel right now? The tracking number is {n} and the name on it is {name}.",
    "address": "I would like to change the delivery address of order {n} to {name} street, house {n}.",
}


def trace(k: int, pattern: str, answer: str | None = None, feedback: str | None = None, correction=None,
          text: str | None = None) -> Trace:
    q = text or PATTERNS[pattern].format(n=1000 + 37 * k, name=NAMES[k % len(NAMES)])
    ex = Example(source=f"t.jsonl:{k + 1}", messages=[{"role": "user", "content": q},
                                                      {"role": "assistant", "content": answer or pattern}])
    return Trace(ex.source, ex, f"id{k}", outcome_of(feedback), feedback, correction)


def test_templated_requests_cluster_by_pattern():
    traces = [trace(k, p) for k, p in enumerate(["refund", "track", "address"] * 4)]
    assert pattern_clusters([t.example for t in traces]) == [0, 1, 2] * 4


def test_planted_duplicates_leaks_and_failures():
    traces = [trace(k, p) for k, p in enumerate(["refund", "track", "address"] * 10)]  # 10 per label: labels
    traces.append(trace(30, "refund", text=traces[0].example.messages[0]["content"].upper()))  # exact (case)
    near = traces[2].example.messages[0]["content"] + " Thanks!"
    traces.append(trace(31, "address", text=near))  # near: a word added to a 16-word prompt
    traces.append(trace(32, "refund", "refund", "bad", correction="address"))
    traces.append(trace(33, "address", "refund", "thumbs_down"))
    cancel = "Cancel my plan 4411 today, I no longer need the monthly box of tea."
    traces.append(trace(34, "refund", "cancel", text=cancel))
    train = [Example(source="train.jsonl:1", messages=traces[34].example.messages),  # an exact prompt: a leak
             Example(source="train.jsonl:2", messages=trace(99, "track").example.messages),  # the track pattern
             Example(source="train.jsonl:3", messages=[{"role": "user", "content": "unrelated words here"},
                                                        {"role": "assistant", "content": "refund"}])]
    built = build_suites(traces, train)
    track = [k for k in range(30) if k % 3 == 1]  # other values, but a sentence pattern training saw
    assert [r["trace_id"] for r in built.suite] == [f"id{k}" for k in range(30) if k not in track]
    reasons = {d["trace_id"]: (d["reason"], d.get("kept")) for d in built.dropped}
    assert reasons == {"id30": ("exact duplicate", "t.jsonl:1"), "id31": ("near duplicate", "t.jsonl:3"),
                       "id34": ("leaks into training (exact prompt)", None),
                       **{f"id{k}": ("leaks into training (sentence pattern)", None) for k in track}}
    fixed, = built.failures  # a correction: the reference is the corrected answer, the logged one is kept
    assert fixed["messages"][-1] == {"role": "assistant", "content": "address"} and fixed["rejected"] == "refund"
    assert fixed["label"] == "address" and fixed["feedback"] == "bad" and fixed["trace_source"] == "t.jsonl:33"
    open_, = built.uncorrected  # no correction: the logged (bad) answer stays, for win_rate
    assert open_["messages"][-1]["content"] == "refund" and open_["rejected"] == "refund"
    assert open_["trace_id"] == "id33" and open_["feedback"] == "thumbs_down"
    first = built.suite[0]
    assert first["messages"] == traces[0].example.messages and first["trace_source"] == "t.jsonl:1"
    assert (first["cluster"], first["cluster_size"], first["label"]) == (0, 12, "refund")  # 10 + the copy + a failure
    n = len(built.suite) + len(built.failures) + len(built.uncorrected) + len(built.dropped)
    assert n == len(traces)  # every trace is in exactly one file
    assert built.stats["dropped"] == {"leaks into training": 11, "exact duplicate": 1, "near duplicate": 1}
    assert built.stats["answer_shape"] == "label" and built.stats["clusters"] == 4
    assert built.stats["labels"] == ["address", "refund"]
    unchecked = build_suites(traces, None)
    assert unchecked.stats["leak_check"] is False and len(unchecked.suite) == 31  # no training data: nothing checked


def test_the_sample_covers_every_pattern_and_every_label():
    # 30 refund requests in one pattern and 3 in each of two others: a uniform sample would be mostly the first
    skewed = [trace(k, "refund") for k in range(30)]
    skewed += [trace(30 + k, "refund", text=f"My order {k} came late and cold, can I get my money back please?")
               for k in range(3)]
    skewed += [trace(40 + k, "refund", text=f"Cancel subscription {k} and return what I paid this month for it.")
               for k in range(3)]
    built = build_suites(skewed, None, size=6, seed=3)
    assert Counter(r["cluster"] for r in built.suite) == {0: 2, 1: 2, 2: 2}  # round-robin over the patterns
    assert sum(d["reason"] == "not sampled (--size 6)" for d in built.dropped) == 30
    labels = ["refund"] * 20 + ["track"] * 10 + ["address"] * 2
    picked = sample(labels, list(range(32)), 8, seed=0)
    assert Counter(labels[i] for i in picked) == {"refund": 5, "track": 2, "address": 1}  # shares; every label
    assert picked == sorted(picked) and sample(labels, list(range(32)), 8, seed=0) == picked  # seeded
