"""The loss per mixture source (train/sources.py): which token belongs to which source, and the tally."""
from __future__ import annotations

import pytest
import torch

from shipsft.data.pack import Row, collate
from shipsft.data.mixture import SourceCount, source_of_examples
from shipsft.train.sources import Tally, token_sources


def test_every_token_gets_its_examples_source_and_padding_none():
    # training list: examples 0-2 from source 0, 3-4 from source 1 (mix lays sources out in order)
    source_of = source_of_examples([SourceCount("task", 3, 3), SourceCount("replay", 9, 2)])
    assert source_of == [0, 0, 0, 1, 1]
    mine = [4, 0, 3, 2]  # this step's examples, in the order they were handed to pack_examples
    rows = [Row([1, 2, 3, 4, 5], [-100] * 5, [0, 1, 2, 0, 1], [3, 2], [0, 1]),  # mine[0]=4 (replay), mine[1]=0
            Row([6, 7], [-100] * 2, [0, 1], [2], [3])]                            # mine[3]=2 (task)
    got = token_sources(rows, mine, source_of)
    assert got.tolist() == [[1, 1, 1, 0, 0], [0, 0, -1, -1, -1]]
    assert got.shape == collate(rows, 0)["input_ids"].shape


def test_tally_means_per_source_and_leaves_out_absent_ones():
    t = Tally(3)
    t.add(torch.tensor([0, 0, 2]), torch.tensor([1.0, 3.0, 5.0]))
    t.add(torch.tensor([2]), torch.tensor([7.0]))
    assert t.losses(["a", "b", "c"]) == {"source_loss/a": 2.0, "source_tokens/a": 2,
                                         "source_loss/c": 6.0, "source_tokens/c": 2}


def test_per_token_ce_is_the_sum_split_by_position():
    from shipsft.train.loss import linear_ce_sum

    torch.manual_seed(0)
    h, head, y = torch.randn(10, 6), torch.nn.Linear(6, 20, bias=False), torch.randint(0, 20, (10,))
    per = torch.empty(10)
    total = linear_ce_sum(h, head, y, chunk_rows=4, per_token=per)  # three chunks, the last one partial
    ref = torch.nn.functional.cross_entropy(head(h), y, reduction="none")
    assert torch.allclose(per, ref.detach(), atol=1e-6)
    assert float(total.detach()) == pytest.approx(float(ref.sum()), rel=1e-6)
