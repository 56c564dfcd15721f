"""The mask bench's shipsft column as a regression test, and the bench's own scoring.

Every template of bench/masks/corpus.json x every conversation kind: shipsft's data path (pipeline.prepare) must be
exact or refuse with a fix, never silently wrong; and wherever an exact answer exists it must be exact, except for
three refusals by design: an empty answer (formats reject it as invalid data), a tokenisation seam (render refuses
it), and a turn that ends with another stop token than a plain answer does. Tokenizers: the fixtures' real ones, stand-ins elsewhere (no npm package needed). The peers' columns run only
in `python bench/masks.py`.
"""
from __future__ import annotations

import json
import sys

import pytest

from helpers import FIXTURES, REPO, fixture_tokenizer

sys.path.insert(0, str(REPO / "bench"))
from masks_corpus import CORPUS, STANDIN_BASE, attach_tokenizer, conversation_kinds, load_entries  # noqa: E402
from masks_oracle import EXACT, NA, PAST_STOP, REFUSED, WRONG, Outcome, oracle, score  # noqa: E402
from masks_peers import run_shipsft  # noqa: E402

NAMES = [e["name"] for e in json.loads((CORPUS / "corpus.json").read_text())["entries"]]
KINDS = conversation_kinds()


def _needs_fixtures():
    if not (FIXTURES / STANDIN_BASE).exists():
        pytest.skip(f"tokenizer fixtures not present at {FIXTURES}")


def _empty_answer(messages: list[dict]) -> bool:
    return any(m["role"] == "assistant" and not m.get("content") and not m.get("tool_calls") for m in messages)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_shipsft_is_exact_or_refuses_clearly(name):
    _needs_fixtures()
    got = load_entries([name])
    if not got:
        pytest.skip(f"{name}: its fixture folder is not present")
    [entry] = got
    attach_tokenizer(entry, use_npm=False)
    tok = entry.tokenizer
    orcs = {k: oracle(tok, c["messages"], c.get("tools"), entry.stop, entry.kwargs) for k, c in KINDS.items()}
    cases = [(k, c["messages"], c.get("tools")) for k, c in KINDS.items() if orcs[k].status != NA]
    outcomes = run_shipsft(tok, cases, entry.kwargs)
    for kind, messages, _ in cases:
        verdict, reason = score(orcs[kind], outcomes[kind])
        assert verdict in (EXACT, REFUSED), (name, kind, verdict, reason)
        if verdict == REFUSED:
            assert "fix" in reason.lower(), (name, kind, reason)  # a refusal says what to do
            plain = orcs["single"].turns[0].target[-1] if orcs["single"].status == "defined" else None
            solvable = (orcs[kind].status == "defined" and not any(t.seam for t in orcs[kind].turns)
                        and not _empty_answer(messages)
                        # known gap: a turn closed by another stop token than a plain answer's (Gemma 4's tool call
                        # ends '<|tool_response>'): refused, named in docs/masks.md
                        and all(t.target[-1] == plain for t in orcs[kind].turns))
            assert not solvable, (name, kind, "refused a conversation with an exact answer", reason)


def test_the_corpus_is_forty_distinct_templates_with_sources():
    _needs_fixtures()
    entries = load_entries()
    assert len({e.template for e in entries}) >= 40
    sources = (CORPUS / "SOURCES.md").read_text()
    for e in entries:
        assert e.stop and e.stop_source, e.name
        assert f"| {e.name} |" in sources, e.name


# ------------------------------------------------------------------------------------------------------------
# the scorer: built from the oracle's own turns, then broken on purpose


def _qwen_multi():
    _needs_fixtures()
    tok = fixture_tokenizer("qwen2.5-instruct")
    conv = KINDS["multi"]["messages"]
    orc = oracle(tok, conv, None, ["<|im_end|>", "<|endoftext|>"])
    assert orc.status == "defined" and [t.index for t in orc.turns] == [1, 3, 5]
    return tok, orc


def _one_sequence(orc, widen: int = 0, shift: int = 0):
    last = orc.turns[-1]
    ids = last.prompt + last.target + [198]  # the '\n' ChatML writes after <|im_end|>
    mask = [False] * len(ids)
    for t in orc.turns:
        assert ids[:len(t.prompt) + len(t.target)] == t.prompt + t.target  # Qwen2.5's template is prefix-stable
        for p in range(len(t.prompt) + shift, len(t.prompt) + len(t.target) + widen + shift):
            mask[p] = True
    return ids, mask


def test_the_scorer_accepts_exactly_the_oracle():
    tok, orc = _qwen_multi()
    assert tok.decode(orc.turns[0].target) == "Hello! How can I help?<|im_end|>"
    assert score(orc, Outcome("output", [_one_sequence(orc)])) == (EXACT, "")
    per_turn = [(t.prompt + t.target, [False] * len(t.prompt) + [True] * len(t.target)) for t in orc.turns]
    assert score(orc, Outcome("output", per_turn)) == (EXACT, "")  # one sequence per turn is exact too


def test_the_scorer_names_each_way_to_be_wrong():
    tok, orc = _qwen_multi()
    ids, mask = _one_sequence(orc, widen=1)
    assert score(orc, Outcome("output", [(ids, mask)])) == (WRONG, PAST_STOP)
    ids, mask = _one_sequence(orc, shift=-1)
    assert score(orc, Outcome("output", [(ids, mask)])) == (WRONG, "messages[1]: the stop token is not trained")
    ids, _ = _one_sequence(orc)
    verdict, reason = score(orc, Outcome("output", [(ids, [True] * len(ids))]))
    assert verdict == WRONG and "outside every answer" in reason
    assert score(orc, Outcome("output", [(ids, [False] * len(ids))])) == (WRONG, "nothing trained")
    only_last = [(t.prompt + t.target, [False] * len(t.prompt) + [True] * len(t.target)) for t in orc.turns[-1:]]
    assert score(orc, Outcome("output", only_last)) == (WRONG, "messages[1]: the answer is not trained")
    other_context = [(orc.turns[0].target + orc.turns[0].prompt, [True] * len(orc.turns[0].target)
                      + [False] * len(orc.turns[0].prompt))]
    assert score(orc, Outcome("output", other_context))[1] == ("messages[1]: no sequence has the inference prompt as "
                                                               "the context of this answer")
    twice = [_one_sequence(orc), (orc.turns[0].prompt + orc.turns[0].target,
                                  [False] * len(orc.turns[0].prompt) + [True] * len(orc.turns[0].target))]
    assert score(orc, Outcome("output", twice)) == (WRONG, "messages[1] is trained 2 times")
    assert score(orc, Outcome(REFUSED, message="no")) == (REFUSED, "no")
    # the last turn only, for a prompt/completion contender: one window is exact, three are not
    assert score(orc, Outcome("output", only_last), which="last") == (EXACT, "")
    verdict, _ = score(orc, Outcome("output", [_one_sequence(orc)]), which="last")
    assert verdict == WRONG


def test_the_oracle_refuses_what_has_no_exact_answer():
    _needs_fixtures()
    mistral = fixture_tokenizer("mistral-7b-instruct-v0.3")
    conv = KINDS["system"]["messages"]
    orc = oracle(mistral, conv, None, ["</s>"])  # v0.3 puts the system text into the last user turn only
    assert orc.status == "undefined" and "drops its content of messages[0] (system)" in orc.why
    verdict, reason = score(orc, Outcome("output", [([1, 2, 3], [False, True, True])]))
    assert verdict == WRONG and reason.startswith("trained although the template drops")
    qwen = fixture_tokenizer("qwen2.5-instruct")
    orc = oracle(qwen, KINDS["whitespace"]["messages"], None, ["<|im_end|>"])
    assert orc.status == "defined" and [t.seam for t in orc.turns] == [True, False]  # 'assistant\n' + '\n  leading'
    assert oracle(qwen, KINDS["single"]["messages"], None, ["</s>"]).why.startswith("messages[1]: no stop token")
