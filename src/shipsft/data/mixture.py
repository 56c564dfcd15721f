"""Training mixtures and replay: how many examples each source gives, drawn deterministically from the seed.

A mixture is `data.sources` (each with a weight or an exact example count, and its own format and mask), or plain
`data.train` as one source; `data.replay` adds general conversations at a share of the whole. The
pipeline (`data/pipeline.py: prepare`) reads and renders every source on its own (`parts`), then `mix` draws the
training list. Counts are exact and planned first (`plan_counts`), with exact fractions, so they never depend on
float rounding:

* `examples: N`   exactly N from that source.
* `weight: w`     the weighted sources share `data.mix_size` examples in proportion to their weights, rounded by
                  largest remainder (the counts add up to the size exactly; ties go to the earlier source). `total` =
                  the sources' own sizes added up; `largest` = the smallest size that down-samples no source.
* `replay.share s`  round(s / (1 - s) x the other examples), half up, so replay is share s of the mixed list.

Drawing N from a source of n examples takes every example N // n times and a seeded sample (without repetition) of
N % n more: nothing is left out unless the plan asks for fewer than the source holds, and then the notes say how
many (`SourceCount.describe`). The sample is seeded by (data.mix_seed, source name), so adding a source does not
change what another one draws. The loop then shuffles the mixed list per epoch (steps/batches.py): each step holds
every source at its share on average.

    counts = plan_counts(data, available=[120, 40, 300])
    rendered, report = mix(data, [part_a, part_b, part_replay])
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from fractions import Fraction
from importlib import resources

from shipsft.config import DataConfig
from shipsft.data.types import Rendered
from shipsft.errors import DataError

REPLAY = "replay"
SHIPPED_REPLAY = "assets/replay_general.jsonl"


@dataclass
class Part:
    """One source as the pipeline reads it: `data` is the data section with this source's files in `train` and its
    own format and mask (the template and its kwargs are the run's: the audit checks every sequence against them)."""

    name: str
    data: DataConfig


@dataclass
class SourceCount:
    name: str
    available: int  # examples the source holds (after rendering)
    examples: int  # examples the mixture takes from it
    trained_tokens: int = 0  # trained tokens of those examples

    @property
    def sampling(self) -> str:
        if self.examples > self.available:
            return "up-sampled"
        return "down-sampled" if self.examples < self.available else "as is"

    def describe(self, total_trained: int) -> str:
        share = self.trained_tokens / total_trained if total_trained else 0.0
        line = (f"mixture: {self.name}: {self.examples:,} examples of {self.available:,}, {self.trained_tokens:,} "
                f"trained tokens ({share:.1%})")
        whole, rest = divmod(self.examples, self.available) if self.available else (0, 0)
        if self.examples > self.available:
            more = f", {rest:,} of them {_times(whole + 1)}" if rest else ""
            line += f"; up-sampled: every example {_times(whole)}{more}"
        elif self.examples < self.available:
            line += f"; down-sampled: {self.available - self.examples:,} examples left out (a seeded sample)"
        return line

    def to_json(self) -> dict:
        return {**asdict(self), "sampling": self.sampling}


def _times(k: int) -> str:
    return {1: "once", 2: "twice"}.get(k, f"{k} times")


def is_mixture(data: DataConfig) -> bool:
    return bool(data.sources) or data.replay is not None


def shipped_replay() -> str:
    """The general conversations shipsft ships for replay (written for shipsft, Apache-2.0)."""
    return str(resources.files("shipsft").joinpath(SHIPPED_REPLAY))


def parts(data: DataConfig) -> list[Part]:
    """The sources of the training mixture in order (data.sources, or data.train as one source named 'train'; then
    replay), each as the data section it is read and rendered with."""
    plain = {"sources": [], "replay": None, "mix_size": None, "mix_seed": None}
    out = [Part(s.name, data.model_copy(update={**plain, "train": s.path, "format": s.format, "mask": s.mask,
                                                "config": s.config if s.config is not None else data.config,
                                                "split": s.split if s.split is not None else data.split}))
           for s in data.sources]
    if not data.sources:
        out.append(Part("train", data.model_copy(update=plain)))
    if data.replay is not None:
        out.append(Part(REPLAY, data.model_copy(update={**plain, "train": data.replay.path or [shipped_replay()],
                                                        "format": data.replay.format, "mask": "all_assistant"})))
    return out


def _exact(x: float) -> Fraction:
    return Fraction(str(x))  # the decimal the user wrote: 0.2 is 1/5, not the nearest binary float


def largest_remainder(total: int, weights: list[Fraction]) -> list[int]:
    """Split `total` in proportion to `weights`: floors, then one more each to the largest remainders (ties to the
    earlier entry). The parts add up to `total` exactly."""
    wsum = sum(weights)
    quotas = [total * w / wsum for w in weights]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def plan_counts(data: DataConfig, available: list[int]) -> list[int]:
    """Examples to take from each of `parts(data)` (whose sizes are `available`)."""
    n_sources = len(data.sources) if data.sources else 1
    counts = [0] * (n_sources + (data.replay is not None))
    if not data.sources:
        counts[0] = available[0]
    weighted = [i for i, s in enumerate(data.sources) if s.weight is not None]
    for i, s in enumerate(data.sources):
        if s.examples is not None:
            counts[i] = s.examples
    if weighted:
        weights = [_exact(data.sources[i].weight) for i in weighted]
        if data.mix_size == "total":
            size = sum(available[i] for i in weighted)
        elif data.mix_size == "largest":
            wsum = sum(weights)
            size = max(math.ceil(available[i] * wsum / w) for i, w in zip(weighted, weights))
        else:
            size = int(data.mix_size)
        for i, n in zip(weighted, largest_remainder(size, weights)):
            counts[i] = n
    if data.replay is not None:
        share = _exact(data.replay.share)
        counts[-1] = math.floor(share * sum(counts[:-1]) / (1 - share) + Fraction(1, 2))
    return counts


def recount(report: list[SourceCount], rendered: list[Rendered]) -> None:
    """Trained tokens per source again over the mixed list (`mix` lays it out source by source), after the
    pipeline's truncation may have cut some."""
    start = 0
    for c in report:
        c.trained_tokens = sum(x.n_trained for x in rendered[start:start + c.examples])
        start += c.examples


def source_of_examples(report: list[SourceCount]) -> list[int]:
    """The source index (into `report`) of every example of the mixed list, which `mix` lays out source by source."""
    return [k for k, c in enumerate(report) for _ in range(c.examples)]


def draw(n: int, count: int, rng: random.Random) -> list[int]:
    """`count` indices into a source of `n`: every index count // n times, then a sorted seeded sample of the rest."""
    whole, rest = divmod(count, n)
    return list(range(n)) * whole + sorted(rng.sample(range(n), rest))


def mix(data: DataConfig, rendered: list[list[Rendered]]) -> tuple[list[Rendered], list[SourceCount]]:
    """The training list of a mixture (source by source; the loop shuffles it) and what each source gave."""
    names = [p.name for p in parts(data)]
    available = [len(r) for r in rendered]
    counts = plan_counts(data, available)
    empty = [f"data mixture: source {name!r} has no examples, but the mixture takes {k} from it. Fix: check its "
             "files, or remove the source" for name, n, k in zip(names, available, counts) if n == 0 and k > 0]
    if empty:
        raise DataError(empty)
    out: list[Rendered] = []
    report = []
    for name, seqs, k in zip(names, rendered, counts):
        take = [seqs[i] for i in draw(len(seqs), k, random.Random(f"{data.mix_seed}/{name}"))] if k else []
        out += take
        report.append(SourceCount(name, len(seqs), k, sum(x.n_trained for x in take)))
    return out, report
