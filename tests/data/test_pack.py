"""Packing: best-fit-decreasing, position ids, boundary masking, efficiency, overlong handling, and isolation."""
from __future__ import annotations

import pytest
import torch

from helpers import tiny_llama
from shipsft.data.labels import IGNORE_INDEX, count_trained, labels_from_mask
from shipsft.data.pack import (best_fit_decreasing, collate, overlong_error, pack_examples, packed_row_count,
                               truncated)
from shipsft.data.types import Rendered


def _rendered(lengths, seed=0, trained_from=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(lengths):
        ids = torch.randint(3, 128, (n,), generator=g).tolist()
        out.append(Rendered(f"d.jsonl:{i + 1}", ids, [k >= trained_from for k in range(n)]))
    return out


def test_labels_from_mask_shift_and_ignore():
    ids = [10, 11, 12, 13, 14]
    mask = [False, False, True, True, False]
    assert labels_from_mask(ids, mask) == [IGNORE_INDEX, 12, 13, IGNORE_INDEX, IGNORE_INDEX]
    assert count_trained(labels_from_mask(ids, mask)) == 2


def test_best_fit_decreasing_exact_bins():
    # 9 opens bin 0; 7 fills it exactly (16); 5 opens bin 1; 4 and 3 join it (fullest bin with room)
    assert best_fit_decreasing([5, 9, 3, 7, 4], 16) == [[1, 3], [0, 4, 2]]
    # every item lands in exactly one bin, and no bin overflows
    lengths = [13, 2, 8, 8, 1, 16, 5, 11, 3, 7, 9, 4]
    bins = best_fit_decreasing(lengths, 16)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 16 for b in bins)


def scan_best_fit(lengths, capacity):
    """Best-fit-decreasing by the definition, in O(items x bins): each item (longest first, ties in index order) into
    the bin with the least room that still fits it (the earliest such bin on a tie), else a new bin."""
    bins, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = [b for b in range(len(bins)) if room[b] >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: (room[b], b))
            bins[b].append(i)
            room[b] -= lengths[i]
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


@pytest.mark.parametrize("seed,capacity", [(0, 64), (1, 128), (2, 512), (3, 100)])
def test_best_fit_decreasing_is_the_definition_on_random_lengths(seed, capacity):
    """The O(log bins) placement (a heap per room value, a bit set of the rooms open) gives the bins of the plain
    scan, item for item, and packed_row_count their number without building them."""
    import random

    rng = random.Random(seed)
    lengths = [rng.randint(1, capacity) if rng.random() < 0.2 else rng.randint(1, capacity // 4) for _ in range(600)]
    want = scan_best_fit(lengths, capacity)
    assert best_fit_decreasing(lengths, capacity) == want
    assert packed_row_count(lengths, capacity) == len(want)


def test_pack_rows_positions_and_boundaries():
    rs = _rendered([5, 9, 3, 7, 4])
    res = pack_examples(rs, 16, True)
    assert [r.seq_lens for r in res.rows] == [[9, 7], [5, 3, 4]]  # data order kept inside a row
    row = res.rows[1]
    assert row.position_ids == list(range(5)) + list(range(3)) + list(range(4))
    # the last target of every packed example is IGNORE: no example learns to predict its neighbour
    ends = [sum(row.seq_lens[: k + 1]) - 1 for k in range(len(row.seq_lens))]
    assert all(row.labels[e] == IGNORE_INDEX for e in ends)
    # nothing dropped: every trained target survives packing
    assert sum(r.n_trained for r in res.rows) == sum(count_trained(labels_from_mask(x.ids, x.mask)) for x in rs)
    assert res.efficiency == pytest.approx(28 / 32)


def test_overlong_examples_are_left_out_of_rows_and_named_with_the_fix():
    rs = _rendered([5, 40, 50])
    res = pack_examples(rs, 32, True)
    assert res.left_out == [1, 2] and [r.example_idx for r in res.rows] == [[0]]  # never cut here
    text = "\n".join(overlong_error([rs[i] for i in res.left_out], 32).lines)
    assert "2 example(s) are longer than data.max_length=32" in text
    assert "d.jsonl:3, 50 tokens" in text and "data.overlong: truncate" in text and "data.max_length=64" in text


def test_overlong_truncate_counts_cut_answers():
    rs = _rendered([5, 40], trained_from=30) + [Rendered("d.jsonl:3", list(range(3, 43)), [False] * 40)]
    rs[2].mask[5] = True  # trained token inside the kept part: truncation does not cut its answer
    cut = truncated(rs, 32)
    assert [(len(x.ids), x.truncated) for x in cut] == [(5, False), (32, True), (32, True)]
    assert [x.n_trained for x in cut] == [0, 2, 1] and [x.n_trained for x in rs] == [0, 10, 1]  # one answer cut
    res = pack_examples(cut, 32, True)
    assert res.left_out == [] and max(len(r.ids) for r in res.rows) <= 32


def test_collate_pads_with_own_position_run():
    rs = _rendered([6, 3])
    res = pack_examples(rs, 6, True)
    batch = collate(res.rows, pad_id=0)
    assert batch["input_ids"].shape == (2, 6)
    short = 1 if len(res.rows[1].ids) == 3 else 0
    assert batch["position_ids"][short].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch["labels"][short, 3:].tolist() == [IGNORE_INDEX] * 3


@pytest.mark.parametrize("attn", ["sdpa", "per_document"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "mistral", "gemma"])
def test_packed_logits_equal_each_example_alone(arch, attn):
    """Isolation: a packed row's logits for each example == that example run alone (1e-5), with SDPA's masked pass
    over the row and with per-document attention (shipsft.model.attention)."""
    model = _tiny(arch)
    if attn == "per_document":
        from shipsft.model.attention import register

        model.set_attn_implementation(register())
    rs = _rendered([7, 5, 9, 3, 11, 4, 6], seed=1)
    res = pack_examples(rs, 16, True)
    assert any(len(r.seq_lens) > 1 for r in res.rows)
    batch = collate(res.rows, pad_id=0)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        for b, row in enumerate(res.rows):
            off = 0
            for i, n in zip(row.example_idx, row.seq_lens):
                alone = model(input_ids=torch.tensor([rs[i].ids]), use_cache=False).logits[0]
                torch.testing.assert_close(packed[b, off:off + n], alone, atol=1e-5, rtol=0)
                off += n


def test_packed_loss_equals_unpacked_loss():
    model = _tiny("llama")
    rs = _rendered([7, 5, 9, 3, 11], seed=2, trained_from=2)
    res = pack_examples(rs, 16, True)
    batch = collate(res.rows, pad_id=0)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        packed = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")
        alone = sum(
            torch.nn.functional.cross_entropy(
                model(input_ids=torch.tensor([r.ids]), use_cache=False).logits[0],
                torch.tensor(labels_from_mask(r.ids, r.mask)), reduction="sum")
            for r in rs)
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-6)


def _tiny(arch: str):
    import transformers as T

    torch.manual_seed(0)
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, attn_implementation="sdpa")
    if arch == "llama":
        return tiny_llama()
    cfg_cls, model_cls = {
        "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM),
        "qwen3": (T.Qwen3Config, T.Qwen3ForCausalLM),
        "mistral": (T.MistralConfig, T.MistralForCausalLM),
        "gemma": (T.GemmaConfig, T.GemmaForCausalLM),
    }[arch]
    extra = {"head_dim": 16} if arch in ("qwen3", "gemma") else {}
    return model_cls(cfg_cls(**common, **extra)).eval()


def test_collate_masks_padding_by_position_never_by_token_id():
    """Failure mode 10: with pad == eos (SmolLM2), masking labels equal to pad_id would erase every trained
    end-of-turn token; padding is masked by position, so the trained eos labels survive collation."""
    eos = 2
    rs = [Rendered("a:1", [5, 6, 7, eos], [False, False, True, True]), Rendered("a:2", [5, eos], [False, True])]
    batch = collate(pack_examples(rs, 4, False).rows, pad_id=eos)
    assert batch["input_ids"].tolist() == [[5, 6, 7, eos], [5, eos, eos, eos]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 7, eos, IGNORE_INDEX],
                                        [eos, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert count_trained(batch["labels"]) == 3


def test_join_rows_puts_a_micro_batch_end_to_end_without_padding():
    from shipsft.data.pack import join_rows

    rs = _rendered([7, 5, 9, 3, 11, 4], seed=3, trained_from=2)
    rows = pack_examples(rs, 12, True).rows
    assert [len(r.ids) for r in rows] == [11, 12, 12, 4]  # best fit: [11], [9, 3], [7, 5], [4]
    joined = join_rows(rows, 24)
    assert [len(r.ids) for r in joined] == [23, 16]  # 11 + 12 | 12 + 4 (23 + 12 > 24)
    assert joined[0].seq_lens == rows[0].seq_lens + rows[1].seq_lens
    assert joined[0].example_idx == rows[0].example_idx + rows[1].example_idx
    assert joined[1].position_ids == rows[2].position_ids + rows[3].position_ids
    assert sum(r.n_trained for r in joined) == sum(r.n_trained for r in rows)
    batch = collate(joined[:1], pad_id=0)
    assert batch["input_ids"].shape == (1, 23) and batch["n_real"] == 23  # no padding
    assert [len(r.ids) for r in join_rows(rows, 10)] == [11, 12, 12, 4]  # longer than the limit: alone
