"""The loss per mixture source, from the training forward itself (no second pass).

A mixture (`data.sources`, `data.replay`) trains several sources in each step; one "loss" line hides which of them
the model is learning and which it is not (a task source falling while replay rises is forgetting at work, the other
way round is replay crowding out the task). So each step also logs `source_loss/<name>`: the cross-entropy per trained
token of that source's examples in the step, from the per-token CE the chunked loss hands back (`train/loss.py`),
and `source_tokens/<name>`, how many trained tokens that was.
Weighted by each source's trained tokens, the sources' losses add up to the step's CE exactly
(tests/train/test_sources.py). A source with no trained token in a step has no entry for it.

    tally = Tally(len(names))
    tally.add(token_sources(group, mine, source_of)[labels != -100], per_token)   # each micro-batch
    record.update(tally.losses(names))
"""
from __future__ import annotations

import torch

from shipsft.data.pack import Row
from shipsft.train import dist


def token_sources(rows: list[Row], examples: list[int], source_of: list[int]) -> torch.Tensor:
    """[B, T] source index of every token of a micro-batch's rows, laid out as `collate` lays them out (T = the
    longest row), -1 on padding. `examples` maps a row's example_idx to the training list, whose source is
    `source_of[...]`."""
    out = torch.full((len(rows), max(len(r.ids) for r in rows)), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        start = 0
        for n, i in zip(r.seq_lens, r.example_idx):
            out[b, start:start + n] = source_of[examples[i]]
            start += n
    return out


class Tally:
    """CE sums and trained-token counts per source over one optimizer step (all its micro-batches)."""

    def __init__(self, n_sources: int):
        self.sums = torch.zeros(n_sources, dtype=torch.float64)
        self.counts = torch.zeros(n_sources, dtype=torch.float64)

    def add(self, sources: torch.Tensor, per_token: torch.Tensor) -> None:
        """`sources` and `per_token`: one entry per trained token of a micro-batch, in the same order."""
        self.sums.index_add_(0, sources.cpu(), per_token.detach().cpu().to(torch.float64))
        self.counts.index_add_(0, sources.cpu(), torch.ones(len(sources), dtype=torch.float64))

    def losses(self, names: list[str]) -> dict[str, float]:
        """{"source_loss/<name>": CE per trained token, "source_tokens/<name>": its trained tokens} over every rank;
        every rank reduces every source (the collectives must match), then sources without a trained token this
        step are left out."""
        sums = [dist.sum_over_ranks(float(x)) for x in self.sums]
        counts = [dist.sum_over_ranks(float(x)) for x in self.counts]
        out = {}
        for name, s, n in zip(names, sums, counts):
            if n > 0:
                out[f"source_loss/{name}"], out[f"source_tokens/{name}"] = s / n, int(n)
        return out
