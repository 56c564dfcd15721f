"""The whole prepare pipeline (files -> rows) on the real SmolLM2 tokenizer: masks survive packing, nothing is
dropped, zero-trained examples are errors, completion-only works with packing."""
from __future__ import annotations

import json

import pytest

from shipsft.config import RunConfig
from shipsft.data.labels import IGNORE_INDEX
from shipsft.data.pipeline import prepare
from shipsft.errors import DataError


def run_prepare(cfg, tok, strict=True):
    return prepare(cfg.data, tok, "train", strict=strict, rejects_path=None)


def _cfg(tmp_path, records, **data):
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    return RunConfig.model_validate({"data": {"train": [str(p)], "max_length": 256, **data},
                                     "output": {"dir": str(tmp_path / "runs")}})


def _chat(i):
    return {"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}!"},
                         {"role": "user", "content": "Again."}, {"role": "assistant", "content": f"{i} again."}]}


def _trained_targets(prep):
    """Every trained target id across all rows, in row order (labels after the shift)."""
    return sorted(x for row in prep.rows for x in row.labels if x != IGNORE_INDEX)


@pytest.mark.parametrize("mask", ["all_assistant", "last_assistant"])
def test_assistant_mask_identical_with_and_without_packing(tmp_path, smollm2_tokenizer, mask):
    """Failure mode 8: assistant-only loss must not be silently dropped when packing is on."""
    records = [_chat(i) for i in range(12)]
    packed = run_prepare(_cfg(tmp_path, records, mask=mask, packing=True), smollm2_tokenizer)
    unpacked = run_prepare(_cfg(tmp_path, records, mask=mask, packing=False), smollm2_tokenizer)
    assert len(packed.rows) < len(unpacked.rows) == 12
    assert _trained_targets(packed) == _trained_targets(unpacked)
    per_example = 4 if mask == "last_assistant" else 7  # "N again.<|im_end|>" / + "N!<|im_end|>"
    assert sum(r.n_trained for r in packed.rows) == sum(x.n_trained for x in packed.rendered)
    # im_end (2) is trained once per trained turn even though pad == eos == 2
    assert _trained_targets(packed).count(2) == 12 * (1 if mask == "last_assistant" else 2)
    assert packed.n_trained >= 12 * per_example - 12


def test_completion_only_with_packing(tmp_path, smollm2_tokenizer):
    """Failure mode 9: completion-only loss works together with packing, on chat and plain prompt/completion."""
    chat = [{"prompt": [{"role": "user", "content": f"Count to {i}."}],
             "completion": [{"role": "assistant", "content": " ".join(map(str, range(1, i + 1)))}]} for i in (2, 3, 4)]
    prep = run_prepare(_cfg(tmp_path, chat, mask="completion"), smollm2_tokenizer)
    assert len(prep.rows) == 1 and len(prep.rows[0].seq_lens) == 3
    tok = smollm2_tokenizer
    trained = [tok.decode([t for t, m in zip(r.ids, r.mask) if m]) for r in prep.rendered]
    assert trained == ["1 2<|im_end|>", "1 2 3<|im_end|>", "1 2 3 4<|im_end|>"]

    plain = [{"prompt": f"Q{i}:", "completion": f" A{i}"} for i in range(3)]
    prep = run_prepare(_cfg(tmp_path, plain), smollm2_tokenizer)
    assert [tok.decode([t for t, m in zip(r.ids, r.mask) if m]) for r in prep.rendered] == \
        [f" A{i}<|im_end|>" for i in range(3)]


def test_zero_trained_tokens_is_an_error_or_a_recorded_problem(tmp_path, smollm2_tokenizer):
    """Failure modes 7/13: an example whose mask trains nothing is an error naming it, never a silent no-op; the
    audit's non-strict pass records the same problem instead of raising."""
    cut = {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]}
    cfg = _cfg(tmp_path, [_chat(1), cut], overlong="truncate", max_length=128)  # truncation cuts the whole answer
    with pytest.raises(DataError) as e:
        run_prepare(cfg, smollm2_tokenizer)
    text = "\n".join(e.value.lines)
    assert "1 example(s) have zero trained tokens" in text and "train.jsonl:2" in text and "train.jsonl:1" not in text
    recorded = run_prepare(cfg, smollm2_tokenizer, strict=False)
    assert recorded.zero_trained == [1] and recorded.problems[0].lines == e.value.lines
    assert recorded.full_lengths[1] > 300 and len(recorded.rendered[1].ids) == 128  # the audit sees both


def test_prefix_unstable_split_is_reported(tmp_path):
    from helpers import fixture_tokenizer

    tok = fixture_tokenizer("qwen3")
    prep = run_prepare(_cfg(tmp_path, [_chat(1), _chat(2)]), tok)
    assert len(prep.rendered) == 4 and [r.turn for r in prep.rendered] == [1, 3, 1, 3]
    assert any("not prefix-stable" in n for n in prep.notes)


def test_fingerprint_is_stable_and_sensitive(tmp_path, smollm2_tokenizer):
    a = run_prepare(_cfg(tmp_path, [_chat(1)]), smollm2_tokenizer).fingerprint
    b = run_prepare(_cfg(tmp_path, [_chat(1)]), smollm2_tokenizer).fingerprint
    c = run_prepare(_cfg(tmp_path, [_chat(2)]), smollm2_tokenizer).fingerprint
    assert a == b != c


def test_truncation_that_removes_the_whole_answer_is_an_error(tmp_path, smollm2_tokenizer):
    long_prompt = {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]}
    cfg = _cfg(tmp_path, [_chat(1), long_prompt], overlong="truncate", max_length=128)
    with pytest.raises(DataError) as e:
        run_prepare(cfg, smollm2_tokenizer)
    text = "\n".join(e.value.lines)
    assert "train.jsonl:2 (its answer was cut by truncation)" in text and "raise data.max_length" in text
    # truncation that keeps a trained token is counted and reported, never silent
    partial = {"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok " * 60}]}
    prep = run_prepare(_cfg(tmp_path, [_chat(1), partial], overlong="truncate", max_length=160), smollm2_tokenizer)
    assert prep.n_truncated == 1 and prep.n_answer_cut == 1
    assert any("1 of them lost trained (answer) tokens" in n for n in prep.notes)


def test_rendered_cache_round_trip(tmp_path, smollm2_tokenizer, monkeypatch):
    """Failure mode 15: an unchanged dataset is loaded from the fingerprint-keyed cache, identical to a fresh render."""
    monkeypatch.setenv("SHIPSFT_CACHE", str(tmp_path / "cache"))
    cfg = _cfg(tmp_path, [_chat(i) for i in range(5)])
    fresh = run_prepare(cfg, smollm2_tokenizer)
    entries = lambda: sorted((tmp_path / "cache" / "prepared").glob("*/COMPLETE"))  # noqa: E731
    assert len(entries()) == 1
    cached = run_prepare(cfg, smollm2_tokenizer)
    assert [(r.source, r.ids, r.mask, r.text, r.turn) for r in cached.rendered] == \
        [(r.source, r.ids, r.mask, r.text, r.turn) for r in fresh.rendered]
    assert cached.fingerprint == fresh.fingerprint
    # the second prepare really reads the cache: a marker planted in the stored texts comes back
    texts = entries()[0].parent / "texts.bin"
    first = fresh.rendered[0].text.encode()
    texts.write_bytes(b"PLANTED".ljust(len(first), b".") + texts.read_bytes()[len(first):])
    assert run_prepare(cfg, smollm2_tokenizer).rendered[0].text.startswith("PLANTED...")
    # a different masking mode is a different key
    cfg.data.mask = "last_assistant"
    run_prepare(cfg, smollm2_tokenizer)
    assert len(entries()) == 2
