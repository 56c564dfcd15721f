"""data/skeleton.py: the values a prompt's skeleton takes out (copied answer values, numbers, quotes, names), the
clusters of templated prompts (one per sentence pattern, whatever greeting or sign-off surrounds it), natural data
left unclustered, and seen / unseen flags of eval examples against training."""
from __future__ import annotations

import json
import random

from patterns_data import PATTERNS, natural, templated

from shipsft.data.skeleton import find_patterns, name_words, seen_patterns, skeleton, trigrams

def test_skeleton_takes_out_copied_values_numbers_quotes_and_names():
    answer = json.dumps({"name": "Ravi Costa", "city": "Dublin", "item": "orange candles", "qty": 8})
    assert skeleton("Ship 8 orange candles to Dublin; the buyer is Ravi Costa.", [answer]) == \
        "ship {} to {} ; the buyer is {} ."  # "8" and the copied "orange candles": one slot
    # a quoted string, a number with separators, a spelled-out number, an ID; "I'm" is not a name
    assert skeleton('I\'m sending "the blue one" to ticket A-1042: 4,165 units, six boxes.') == \
        "i'm sending {} to ticket {} : {} units , {} boxes ."
    # a capitalised word past a sentence's start is a name, one that starts a sentence is not
    assert skeleton("Please call Maria about it. Tomorrow works.") == "please call {} about it . tomorrow works ."
    # a text answer gives away only its capitalised or numeric runs ("table for" stays: the reply repeats it)
    reply = "Your table for 2 at Trattoria Roma is booked for 20:00."
    assert skeleton("I'd like a table for 2 at Trattoria Roma, 8 pm please.", [reply]) == \
        "i'd like a table for {} at {} , {} pm please ."
    # a line break is a sentence's end
    assert skeleton("Hi,\nNimbus Router broke", []) == "hi , | nimbus {} broke"  # "Router": a name


def test_names_are_the_words_the_set_capitalises_mid_sentence():
    prompts = ["Please call Maria today", "we met Maria at noon", "Thanks, Please hurry", "you can please me"]
    names = name_words(prompts)
    assert names == {"maria"}  # "Please" is capitalised once past a start but written "please" there too
    assert skeleton("Thanks, Please hurry", [], names) == "thanks , please hurry"
    assert skeleton("Thanks, Please hurry", [], None) == "thanks , {} hurry"


def test_trigrams_count_slots_not_punctuation_and_need_two_words():
    assert trigrams("ship the {} to {} .") == ["ship the {}", "the {} to"]  # "{} to {}": one word, no pattern
    assert trigrams("{} at {} .") == ["{} at {}"]  # none with two words: one of all its words
    assert trigrams("play {}") == ["play {}"]
    assert trigrams(", .") == []


def test_templated_prompts_cluster_by_pattern_whatever_wraps_them():
    texts, which = templated(240)
    found = find_patterns(texts)
    # one cluster per pattern: 12 patterns, each cluster holds one pattern, each pattern one cluster
    by_cluster = {}
    for c, w in zip(found.cluster, which):
        by_cluster.setdefault(c, set()).add(w)
    assert found.n_clusters == 12 and all(len(ws) == 1 for ws in by_cluster.values())
    assert found.templated and found.repeated_share == 1.0 and found.largest_share == 20 / 240


def test_natural_data_keeps_one_cluster_per_example_nearly():
    found = find_patterns(natural())
    assert not found.templated
    assert found.repeated_share < 0.3 and found.n_clusters >= 95  # 110 conversations


def test_seen_patterns_flags_eval_examples_whose_pattern_was_trained():
    train_patterns = {k: v[:3] for k, v in PATTERNS.items()}  # the fourth pattern of each label is never trained
    held = {k: v[3:] for k, v in PATTERNS.items()}
    train, _ = templated(180, seed=1, patterns=train_patterns)
    seen_eval, _ = templated(30, seed=2, patterns=train_patterns)
    new_eval, _ = templated(30, seed=3, patterns=held)
    flags = seen_patterns(train, seen_eval + new_eval)
    assert flags == [True] * 30 + [False] * 30


def test_text_answers_give_away_the_lower_case_runs_the_set_repeats():
    topics = ["design sync"] * 3 + ["pottery class"]  # three confirmations repeat "design sync", one "pottery class"
    texts = [(f"Set up a {t} with Maria Lopez.", [f"Booked the {t} with Maria Lopez on Monday."]) for t in topics]
    assert find_patterns(texts).skeletons == ["set up a {} with {} ."] * 3 + ["set up a pottery class with {} ."]


def test_clusters_do_not_depend_on_the_order_of_the_examples():
    texts, _ = templated(240)
    order = list(range(240))
    random.Random(7).shuffle(order)
    a = find_patterns(texts).cluster
    b = find_patterns([texts[i] for i in order]).cluster
    partition = lambda cl, idx: sorted(sorted(idx[i] for i in range(len(cl)) if cl[i] == c) for c in set(cl))  # noqa
    assert partition(a, list(range(240))) == partition(b, order)


def test_the_set_pass_writes_each_skeleton_as_skeleton_does_with_the_sets_names_and_values():
    """find_patterns tokenises and matches each prompt once per pass; its skeletons must be skeleton()'s, given the
    names and repeated values of the whole set (a JSON set, a text set that repeats a value, natural questions)."""
    from shipsft.data.skeleton import repeated_values

    topics = ["design sync"] * 3 + ["pottery class"]
    booked = [(f"Set up a {t} with Maria Lopez.", [f"Booked the {t} with Maria Lopez on Monday."]) for t in topics]
    for texts in (templated(120)[0], booked, natural()):
        names, values = name_words([p for p, _ in texts]), repeated_values(texts)
        assert values or texts is not booked
        assert find_patterns(texts).skeletons == [skeleton(p, a, names, values) for p, a in texts]
