"""bench/train_vs_trl.py's arithmetic: step times read back from the loop's records, and a lever's warm pace."""
from __future__ import annotations

import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import machine, train_vs_trl  # noqa: E402


def records(step_s: list[float], trained: int = 10, tokens: int = 50) -> list[dict]:
    """Step records as the loop writes them: trained_tok_s is the running rate since the first step."""
    out, clock = [], 0.0
    for k, s in enumerate(step_s):
        clock += s
        out.append({"step": k + 1, "loss": 1.0, "trained_tokens": trained, "tokens": tokens,
                    "trained_tok_s": trained * (k + 1) / clock})
    return out


def test_step_times_and_the_warm_pace_of_a_compiled_run():
    assert machine.step_times(records([30.0, 4.0, 2.0, 2.0])) == pytest.approx([30.0, 4.0, 2.0, 2.0])
    assert machine.step_times([{"step": 1, "eval_loss": 2.0}]) == []  # no step records
    warm = train_vs_trl.warm_rate(records([30.0, 4.0, 2.0, 2.0]))
    # the second half's pace: 100 tokens in 4 s; the first half took (30 - 2) + (4 - 2) s beyond it
    assert warm["warm_processed_tok_s"] == pytest.approx(25.0) and warm["warmup_s"] == pytest.approx(30.0)
