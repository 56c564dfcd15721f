"""Larger than memory: the on-disk store of rendered sequences reads back exactly what was rendered (truncated views
included, with the same token fingerprint as a list), `prepare` streams the files into it and keeps a seeded sample
of the examples, the audit says it sampled and still sees every example for exact duplicates and eval
contamination, and the data order is the same as before (the shuffle of an int array draws like a list's)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from helpers import conversations, tiny_tokenizer

from shipsft.config import DataConfig, RunConfig
from shipsft.data.formats import load_examples
from shipsft.data.pack import truncated
from shipsft.data.pipeline import prepare, token_fingerprint
from shipsft.data.store import RenderedStore, StoreSubset, StoreWriter, token_lengths, trained_counts
from shipsft.data.types import Rendered
from shipsft.errors import DataError
from shipsft.steps.batches import epoch_order


def sequences(n: int, seed: int = 0) -> list[Rendered]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(1, 40)
        mask = [j >= rng.randint(0, k) for j in range(k)]
        out.append(Rendered(f"f.jsonl:{i + 1}", [rng.randint(0, 50_000) for _ in range(k)], mask, f"text {i} é",
                            rng.choice([None, 0, 2]), rng.randint(0, k)))
    return out


def as_tuples(rs):
    return [(r.source, r.ids, r.mask, r.text, r.turn, r.n_prompt_tokens, r.truncated) for r in rs]


def test_a_store_reads_back_what_was_written(tmp_path):
    rs = sequences(300)
    w = StoreWriter(tmp_path / "s")
    w.append(rs[:120])
    w.append(rs[120:], example_of=[120 + k // 2 for k in range(180)])  # two sequences per example from here
    store = w.close()
    assert len(store) == 300 and as_tuples(store) == as_tuples(rs)
    assert as_tuples([store[7], store[-1]]) == as_tuples([rs[7], rs[-1]])
    assert as_tuples(store[100:130]) == as_tuples(rs[100:130]) and as_tuples(store[5:50:7]) == as_tuples(rs[5:50:7])
    assert token_lengths(store).tolist() == [len(r.ids) for r in rs]
    assert trained_counts(store).tolist() == [r.n_trained for r in rs]
    assert store.example.tolist() == list(range(120)) + [120 + k // 2 for k in range(180)]
    assert store.source_of_example(121) == rs[122].source
    assert token_fingerprint(store) == token_fingerprint(rs)
    with pytest.raises(IndexError):
        store[300]
    again = RenderedStore(tmp_path / "s")  # opened from disk alone
    assert as_tuples(again[200:203]) == as_tuples(rs[200:203])


def test_a_truncated_view_is_the_truncated_list(tmp_path):
    rs = sequences(200, seed=3)
    w = StoreWriter(tmp_path / "s")
    w.append(rs)
    view = w.close().truncated(17)
    cut = truncated(rs, 17)
    assert as_tuples(view) == as_tuples(cut)
    assert view.lengths.tolist() == [len(r.ids) for r in cut]
    assert view.n_trained.tolist() == [r.n_trained for r in cut]
    assert token_fingerprint(view) == token_fingerprint(cut)
    assert [len(ids) for _, ids, _ in view.chunks(size=33)] == [
        sum(len(r.ids) for r in cut[s:s + 33]) for s in range(0, 200, 33)]


def write_jsonl(path, convs):
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    return path


def test_prepare_streams_into_the_store_and_keeps_a_seeded_sample(tmp_path):
    convs = conversations(200, seed=1)
    data = DataConfig(train=[str(write_jsonl(tmp_path / "t.jsonl", convs))], max_length=64)
    tok = tiny_tokenizer()
    whole = prepare(data, tok, "train", strict=True, rejects_path=None)
    part = prepare(data, tok, "train", strict=True, rejects_path=None, example_sample=40)
    assert isinstance(part.rendered, RenderedStore) and len(part.rendered) == 200 and part.n_examples == 200
    assert whole.sample_index is None and len(whole.examples) == 200
    assert part.sampled and len(part.examples) == 40 and part.sample_index.tolist() == sorted(part.sample_index)
    assert [ex.messages for ex in part.examples] == [convs[i] for i in part.sample_index]
    again = prepare(data, tok, "train", strict=True, rejects_path=None, example_sample=40)
    assert again.sample_index.tolist() == part.sample_index.tolist()  # seeded: the same sample every time
    seen = part.sample_rendered()  # the sample's sequences, read from the store when asked for
    assert isinstance(seen, StoreSubset) and [r.source for r in seen] == [ex.source for ex in part.examples]
    assert token_lengths(seen).tolist() == [len(seen[k].ids) for k in range(len(seen))]
    assert part.fingerprint == whole.fingerprint and part.n_trained == whole.n_trained
    assert any("200 examples: 40 of them (a seeded sample)" in n for n in part.notes)


def test_the_sampled_audit_still_sees_every_example_for_exact_duplicates_and_leaks(tmp_path):
    from shipsft.audit.run import run_audit

    convs = [[{"role": "user", "content": f"question number {i} about the river and the hills"},
              {"role": "assistant", "content": f"answer number {i} for you"}] for i in range(200)]
    for k in range(10):  # ten duplicate pairs: 180+k repeats k
        convs[180 + k] = convs[k]
    leak = [{"role": "user", "content": "question number 77 about the river and the hills"},
            {"role": "assistant", "content": "something else entirely here"}]
    cfg = RunConfig.model_validate({"data": {"train": str(write_jsonl(tmp_path / "t.jsonl", convs)),
                                             "eval": str(write_jsonl(tmp_path / "e.jsonl", [leak])),
                                             "max_length": 64}})
    prep = prepare(cfg.data, tiny_tokenizer(), "train", strict=False, rejects_path=None, example_sample=30)
    found = {f.check: f for f in run_audit(cfg, tiny_tokenizer(), prep).findings}
    assert found["audit.sampled"].data == {"examples": 200, "sample": 30}
    dup = found["duplicates.exact"]
    assert dup.message.startswith("10 of 200 example(s) (5.0%) are exact copies of another") and \
        "every example checked" in dup.message
    assert dup.examples == [f"{tmp_path / 't.jsonl'}:{181 + k}" for k in range(10)]
    assert found["contamination.exact"].examples == [f"{tmp_path / 'e.jsonl'}:1 (prompt)"]


def test_the_sampled_audit_lets_a_canned_answer_cross_as_the_split_does(tmp_path):
    from shipsft.audit.run import run_audit
    from shipsft.data.inspect import CANNED_ANSWER

    refusal = "I cannot help with that request."
    convs = [[{"role": "user", "content": f"question number {i} about the river and the hills"},
              {"role": "assistant", "content": refusal if i < CANNED_ANSWER else f"answer number {i} for you"}]
             for i in range(200)]
    evals = [[{"role": "user", "content": "a new question about the sea"}, {"role": "assistant", "content": refusal}],
             [{"role": "user", "content": "another new question about the sea"},
              {"role": "assistant", "content": "answer number 150 for you"}]]
    e = tmp_path / "e.jsonl"
    cfg = RunConfig.model_validate({"data": {"train": str(write_jsonl(tmp_path / "t.jsonl", convs)),
                                             "eval": str(write_jsonl(e, evals)), "max_length": 64}})
    prep = prepare(cfg.data, tiny_tokenizer(), "train", strict=False, rejects_path=None, example_sample=30)
    found = {f.check: f for f in run_audit(cfg, tiny_tokenizer(), prep).findings}
    assert "audit.sampled" in found and found["contamination.exact"].examples == [f"{e}:2 (answer)"]
    convs[0][1]["content"] = "answer number 0 for you"  # one example fewer gives the refusal: a copied answer again
    write_jsonl(tmp_path / "t.jsonl", convs)
    prep = prepare(cfg.data, tiny_tokenizer(), "train", strict=False, rejects_path=None, example_sample=30)
    found = {f.check: f for f in run_audit(cfg, tiny_tokenizer(), prep).findings}
    assert found["contamination.exact"].examples == [f"{e}:1 (answer)", f"{e}:2 (answer)"]


def test_a_bad_line_far_down_a_streamed_file_is_still_named(tmp_path):
    p = tmp_path / "big.jsonl"
    good = "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(499))
    p.write_bytes(good.encode() + b'{"text": "caf\xe9"}\n')
    with pytest.raises(DataError) as e:
        load_examples([p], "auto", "error", None, False)
    assert e.value.lines == [f"{p}:500: not valid UTF-8 (byte 0xe9); save the file as UTF-8"]


def test_the_epoch_order_is_the_shuffle_of_a_list():
    """Runs and checkpoints made before the order moved into an int32 array keep their data order."""
    for n, seed, epoch in ((1, 0, 0), (1000, 42, 0), (1000, 42, 3), (77, 7, 1)):
        want = list(range(n))
        random.Random(seed + epoch).shuffle(want)
        assert list(epoch_order(n, seed, epoch)) == want
    assert np.array_equal(np.asarray(epoch_order(1000, 42, 3)), np.asarray(epoch_order(1000, 42, 3)))
