"""steps/resolve.py: one resolve for every part. The audit, the memory planner and the training loop count the same
optimizer steps on a config where truncation and a token batch make the count depend on which lengths are counted."""
from __future__ import annotations

import json

import pytest
import yaml

from helpers import conversations, save_tiny_model
from shipsft.config import RunConfig, TrainConfig, load_config
from shipsft.steps.batches import BatchRule, Cursor, next_examples, walk
from shipsft.steps.resolve import TokenLengths, resolve
from shipsft.steps.schedule import plan_steps


def test_resolve_turns_auto_into_numbers_with_a_reason_each():
    r = resolve(RunConfig(), TokenLengths([100] * 1200, 128))
    assert (r.config.data.max_length, r.config.train.batch_size, r.config.train.epochs) == (128, 8, 1.0)
    assert (r.plan.steps_per_epoch, r.plan.total_steps) == (150, 150)
    assert [x.split(" ->")[0] for x in r.reasons] == ["train.batch_size auto", "train.epochs auto"]
    fixed = resolve(RunConfig.model_validate({"train": {"batch_size": 16, "epochs": 2}}), TokenLengths([50] * 64, 64))
    assert fixed.reasons == [] and fixed.plan.total_steps == 8


def test_a_token_batch_counts_the_steps_the_loop_draws():
    """With train.batch_tokens the step count depends on every length: the plan equals drawing steps with the loop's
    own cursor until the epochs are done."""
    lengths = [(7 * i) % 90 + 10 for i in range(300)]
    train = TrainConfig(batch_size=None, batch_tokens=400, epochs=2)
    plan = plan_steps(lengths, train)
    cursor, drawn = Cursor(), 0
    while cursor.epoch < 2:
        next_examples(cursor, lengths, BatchRule(tokens=400), train.seed)
        drawn += 1
    assert plan.total_steps == drawn and plan.steps_per_epoch < drawn
    assert [idx for _, _, idx in walk(lengths, BatchRule(tokens=400), train.seed, 3)] == \
        [next_examples(c, lengths, BatchRule(tokens=400), train.seed)[2] for c in [Cursor()] for _ in range(3)]


@pytest.fixture()
def truncating_run(tmp_path):
    """A tiny model folder and a config whose examples are partly cut by data.overlong: truncate, batched by tokens,
    epochs auto: the step count differs when lengths before truncation are counted."""
    model_dir = save_tiny_model(tmp_path / "tiny-model")
    rows = []
    for i, c in enumerate(conversations(96, seed=3)):
        if i % 3 == 0:  # a long answer: 40 words, over the 48-token rows
            c[1]["content"] = " ".join(["red green blue cat"] * 10)
        rows.append({"messages": c})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"model": {"path": str(model_dir)},
           "data": {"train": "train.jsonl", "max_length": 48, "overlong": "truncate"},
           "train": {"batch_size": None, "batch_tokens": 256, "epochs": "auto", "precision": "fp32"},
           "output": {"dir": str(tmp_path / "runs"), "name": "t"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_audit_planner_and_loop_count_the_same_steps(truncating_run):
    from shipsft.audit.run import run_audit
    from shipsft.data.pipeline import prepare
    from shipsft.model.locate import load_tokenizer
    from shipsft.sweep.plan import plan
    from shipsft.train.loop import fit
    from shipsft.train.run import setup

    from helpers import Notes

    cfg = load_config(truncating_run)
    tok = load_tokenizer(cfg.model)
    prep = prepare(cfg.data, tok, "train", strict=False, rejects_path=None)
    assert prep.n_truncated == 32  # the case is real: a third of the examples were cut
    audit_steps = run_audit(cfg, tok, prep).stats["recipe"]["optimizer_steps"]
    planner_steps = plan(cfg, truncating_run, device="cpu").batches.total_steps
    s = setup(cfg, truncating_run, False, None, Notes())
    try:
        loop_steps = fit(s).steps
    finally:
        s.run.close()
    assert audit_steps == planner_steps == s.plan.total_steps == loop_steps
    # counted on the lengths before truncation (as the audit once did) the same config makes another number
    before = resolve(cfg, TokenLengths(prep.full_lengths, prep.max_length)).plan.total_steps
    assert before != loop_steps
