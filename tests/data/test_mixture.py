"""Training mixtures and replay (data/mixture.py, the data.sources / data.replay config, data/pipeline.py): exact
counts per source, deterministic draws, nothing left out unless the plan asks for fewer, and the counts recorded."""
from __future__ import annotations

import json
import random
from collections import Counter
from importlib import resources

import pytest

from helpers import conversations, tiny_tokenizer
from shipsft.config import DataConfig, RunConfig, load_config
from shipsft.data.mixture import SourceCount, draw, largest_remainder, mix, parts, plan_counts
from shipsft.data.pipeline import prepare
from shipsft.data.types import Rendered
from shipsft.errors import ConfigError, DataError


def data_cfg(sources=None, **kw) -> DataConfig:
    raw = {"max_length": 128, **kw}
    if sources is not None:
        raw["sources"] = sources
    cfg = RunConfig.model_validate({"data": raw, "train": {"seed": 3}})
    return cfg.data


def seqs(n: int, trained: int = 2, tag: str = "s") -> list[Rendered]:
    return [Rendered(f"{tag}:{i}", [i, i + 1, i + 2], [False] + [True] * trained) for i in range(n)]


# -- the plan: exact counts ---------------------------------------------------------------------------------------


def test_weights_share_the_total_by_largest_remainder():
    data = data_cfg([{"path": "a.jsonl", "weight": 2}, {"path": "b.jsonl", "weight": 1},
                     {"path": "c.jsonl", "weight": 1}])
    # 150 examples at 2:1:1 -> quotas 75, 37.5, 37.5; the one left over goes to the earlier of the tied remainders
    assert plan_counts(data, [100, 40, 10]) == [75, 38, 37]


def test_largest_down_samples_no_source():
    data = data_cfg([{"path": "a.jsonl", "weight": 2}, {"path": "b.jsonl", "weight": 1},
                     {"path": "c.jsonl", "weight": 1}], mix_size="largest")
    # a needs 100 * 4 / 2 = 200 in all, b 40 * 4 = 160, c 40: 200 -> a seen once, b and c repeated
    assert plan_counts(data, [100, 40, 10]) == [100, 50, 50]
    data = data_cfg([{"path": "a.jsonl", "weight": 0.3}, {"path": "b.jsonl", "weight": 0.7}], mix_size="largest")
    counts = plan_counts(data, [10, 10])  # 10 / 0.3 = 33.3 -> 34 -> 10.2 and 23.8 -> 10 and 24
    assert counts == [10, 24] and all(c >= 10 for c in counts)


def test_a_number_size_and_exact_examples():
    data = data_cfg([{"path": "a.jsonl", "weight": 1}, {"path": "b.jsonl", "weight": 1},
                     {"path": "c.jsonl", "weight": 1}, {"path": "d.jsonl", "examples": 25}], mix_size=7)
    assert plan_counts(data, [5, 5, 5, 3]) == [3, 2, 2, 25]


def test_replay_share_of_the_whole():
    data = data_cfg(train="t.jsonl", replay={"path": "r.jsonl", "share": 0.25})
    assert [p.name for p in parts(data)] == ["train", "replay"]
    assert plan_counts(data, [150, 20]) == [150, 50]  # 50 / 200 = 25%
    data = data_cfg(train="t.jsonl", replay={"path": "r.jsonl", "share": 0.2})
    assert plan_counts(data, [150, 20]) == [150, 38]  # 0.2 / 0.8 x 150 = 37.5, half up (exact: 0.2 read as 1/5)
    assert plan_counts(data, [10, 20]) == [10, 3]  # 2.5 -> 3


def test_largest_remainder_adds_up():
    rng = random.Random(0)
    from fractions import Fraction

    for _ in range(200):
        weights = [Fraction(rng.randint(1, 9), rng.randint(1, 9)) for _ in range(rng.randint(1, 5))]
        total = rng.randint(0, 1000)
        counts = largest_remainder(total, weights)
        assert sum(counts) == total
        for c, w in zip(counts, weights):
            assert abs(c - total * w / sum(weights)) < 1


# -- the draw: deterministic, nothing silently dropped -------------------------------------------------------------


def test_draw_repeats_every_example_then_samples_the_rest():
    got = draw(4, 10, random.Random("x"))
    assert len(got) == 10 and sorted(Counter(got).values()) == [2, 2, 3, 3]
    assert draw(4, 10, random.Random("x")) == got
    down = draw(10, 4, random.Random("x"))
    assert len(set(down)) == 4 and all(0 <= i < 10 for i in down)
    assert draw(5, 5, random.Random("y")) == [0, 1, 2, 3, 4]


def test_mix_counts_and_report():
    data = data_cfg([{"path": "a.jsonl", "weight": 3}, {"path": "b.jsonl", "weight": 1}], mix_size=8)
    a, b = seqs(10, trained=2, tag="a"), seqs(1, trained=3, tag="b")
    out, report = mix(data, [a, b])
    assert [(c.name, c.available, c.examples, c.trained_tokens, c.sampling) for c in report] == [
        ("a", 10, 6, 12, "down-sampled"), ("b", 1, 2, 6, "up-sampled")]
    assert Counter(x.source.split(":")[0] for x in out) == {"a": 6, "b": 2}
    again, _ = mix(data, [a, b])
    assert [x.source for x in again] == [x.source for x in out]
    other, _ = mix(data.model_copy(update={"mix_seed": 4}), [a, b])
    assert [x.source for x in other] != [x.source for x in out]
    assert report[0].describe(18) == ("mixture: a: 6 examples of 10, 12 trained tokens (66.7%); down-sampled: 4 "
                                      "examples left out (a seeded sample)")
    assert report[1].describe(18) == ("mixture: b: 2 examples of 1, 6 trained tokens (33.3%); up-sampled: every "
                                      "example twice")
    assert SourceCount("c", 4, 10).describe(0).endswith("up-sampled: every example twice, 2 of them 3 times")
    assert SourceCount("d", 6, 9).describe(0).endswith("up-sampled: every example once, 3 of them twice")


def test_an_empty_source_is_an_error():
    data = data_cfg([{"path": "a.jsonl", "weight": 1}, {"path": "b.jsonl", "examples": 2}])
    with pytest.raises(DataError, match="source 'b' has no examples"):
        mix(data, [seqs(3), []])


def test_adding_a_source_does_not_change_another_ones_draw():
    one = data_cfg([{"path": "a.jsonl", "examples": 5}])
    two = data_cfg([{"path": "a.jsonl", "examples": 5}, {"path": "b.jsonl", "examples": 3}])
    a = seqs(9, tag="a")
    assert [x.source for x in mix(one, [a])[0]] == [x.source for x in mix(two, [a, seqs(4, tag="b")])[0][:5]]


# -- the config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, message", [
    ({"train": "t.jsonl", "sources": [{"path": "a.jsonl"}]}, "data.train and data.sources are both set"),
    ({"sources": [{"path": "a.jsonl", "weight": 1, "examples": 3}]}, "weight and examples are both set"),
    ({"sources": [{"path": "a.jsonl", "examples": 3}], "mix_size": "total"}, "data.mix_size is set but no"),
    ({"train": "t.jsonl", "mix_seed": 1}, "data.mix_seed is set but there is no mixture"),
    ({"replay": {"share": 0.2}}, "data.replay is set but there is no training data"),
    ({"sources": [{"path": "a.jsonl"}, {"path": "x/a.json"}]}, "names must be unique; repeated: a"),
    ({"sources": [{"path": "a.jsonl", "mask": "completion", "format": "messages"}]}, "needs prompt/completion"),
    ({"sources": [{"path": []}]}, "needs at least one file"),
])
def test_knobs_that_would_be_ignored_are_errors(tmp_path, raw, message):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"data": raw}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_resolved_config_loads_again_unchanged(tmp_path):
    (tmp_path / "a.jsonl").write_text("")
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"data": {"format": "messages", "mask": "last_assistant", "sources": [
        {"path": "a.jsonl", "weight": 2}, {"path": "a.jsonl", "name": "again", "examples": 3, "mask": "everything"}],
        "replay": {}}, "train": {"seed": 9}}))
    cfg = load_config(path)
    first, second = cfg.data.sources
    assert (first.name, first.weight, first.format, first.mask) == ("a", 2.0, "messages", "last_assistant")
    assert (second.weight, second.mask, cfg.data.mix_size, cfg.data.mix_seed) == (None, "everything", "total", 9)
    assert first.path == [str(tmp_path / "a.jsonl")]
    assert (cfg.data.replay.share, cfg.data.replay.format) == (0.2, "messages")
    assert RunConfig.model_validate(json.loads(json.dumps(cfg.model_dump(mode="json")))) == cfg
    plain = RunConfig.model_validate({"data": {"train": "t.jsonl", "replay": {}}, "train": {"seed": 5}})
    assert plain.data.mix_seed == 5 and plain.data.replay.share == 0.2 and plain.data.mix_size is None


def test_shipped_replay_set_is_disjoint_from_the_forgetting_probe():
    assets = resources.files("shipsft").joinpath("assets")
    prompts = lambda name: [json.loads(line)["messages"][0]["content"]  # noqa: E731
                            for line in assets.joinpath(name).read_text(encoding="utf-8").splitlines() if line]
    replay, probe = prompts("replay_general.jsonl"), prompts("forgetting_probe.jsonl")
    assert len(replay) == 48 and len(set(replay)) == 48
    assert not set(replay) & set(probe)


# -- the pipeline: each source read with its own settings, the counts on Prepared ------------------------------


def write(path, convs):
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    return str(path)


def test_prepare_mixes_sources_with_their_own_mask(tmp_path):
    two_turns = [c + [{"role": "user", "content": "again"}, {"role": "assistant", "content": "red"}]
                 for c in conversations(6, 1)]
    a = write(tmp_path / "a.jsonl", conversations(10, 0))
    b = write(tmp_path / "b.jsonl", two_turns)
    data = data_cfg([{"path": a, "weight": 1}, {"path": b, "examples": 9, "mask": "last_assistant"}],
                    format="messages", mix_size=5)
    prep = prepare(data, tiny_tokenizer(), "train", strict=True, rejects_path=None)
    assert [(c.name, c.available, c.examples, c.sampling) for c in prep.mixture] == [
        ("a", 10, 5, "down-sampled"), ("b", 6, 9, "up-sampled")]
    assert len(prep.rendered) == 14 and sum(c.trained_tokens for c in prep.mixture) == prep.n_trained
    tok = tiny_tokenizer()
    for x in prep.rendered[5:]:  # last_assistant: only the second answer "red" + <|im_end|> is trained
        assert tok.decode([t for t, m in zip(x.ids, x.mask) if m]) == "red<|im_end|>"
    assert prep.rendered[0].source.startswith(a)
    assert [n for n in prep.notes if n.startswith("mixture")] == [
        "mixture: a: 5 examples of 10, 21 trained tokens (53.8%); down-sampled: 5 examples left out (a seeded sample)",
        "mixture: b: 9 examples of 6, 18 trained tokens (46.2%); up-sampled: every example once, 3 of them twice"]
    again = prepare(data, tiny_tokenizer(), "train", strict=True, rejects_path=None)
    assert again.fingerprint == prep.fingerprint
    reseeded = prepare(data.model_copy(update={"mix_seed": 4}), tiny_tokenizer(), "train", strict=True,
                       rejects_path=None)
    assert reseeded.fingerprint != prep.fingerprint


def test_prepare_with_replay_of_the_shipped_set(tmp_path):
    t = write(tmp_path / "t.jsonl", conversations(12, 0))
    data = data_cfg(train=t, replay={"share": 0.25}, format="messages")
    prep = prepare(data, tiny_tokenizer(), "train", strict=True, rejects_path=None)
    assert [(c.name, c.available, c.examples) for c in prep.mixture] == [("train", 12, 12), ("replay", 48, 4)]
    # a share of examples, not of tokens: the shipped answers are longer than the toy task's (docs/training.md)
    assert [c.trained_tokens for c in prep.mixture] == [50, 108]
    assert prep.notes[-1] == ("mixture: replay: 4 examples of 48, 108 trained tokens (68.4%); down-sampled: 44 "
                              "examples left out (a seeded sample)")
    assert all("replay_general.jsonl" in x.source for x in prep.rendered[12:])
    assert prepare(data_cfg(train=t), tiny_tokenizer(), "train", strict=True, rejects_path=None).mixture == []


def test_a_run_records_the_mixture_in_its_manifest(tmp_path):
    """End to end through `shipsft train`'s setup: counts per source in manifest.json, the resolved mixture in
    config.yaml (which loads again), and with train.kl_coef the loss logged as its two terms."""
    from helpers import Notes, write_tiny_run
    from shipsft.runs.jsonio import read_jsonl
    from shipsft.train.run import run_train

    path = write_tiny_run(tmp_path, n_train=20, data={
        "sources": [{"path": "train.jsonl", "weight": 1}, {"path": "train.jsonl", "name": "again", "examples": 6}],
        "replay": {"share": 0.25}, "eval": "eval.jsonl", "max_length": 128, "format": "messages"},
        train={"max_steps": 2, "batch_size": 16, "precision": "fp32", "kl_coef": 0.5})
    notes = Notes()
    assert run_train(load_config(path), config_path=path, argv=["shipsft", "train", str(path)], progress=notes) == 0
    run = tmp_path / "runs" / "t"
    manifest = json.loads((run / "manifest.json").read_text())
    mixture = {name: (c["available"], c["examples"], c["sampling"]) for name, c in manifest["mixture"].items()}
    # replay: 0.25 / 0.75 x (20 + 6) = 8.67 -> 9
    assert mixture == {"train": (20, 20, "as is"), "again": (20, 6, "down-sampled"), "replay": (48, 9, "down-sampled")}
    assert sum(c["trained_tokens"] for c in manifest["mixture"].values()) > 0
    assert any(line.startswith("note: mixture: replay: 9 examples of 48") for line in notes.lines)
    cfg = load_config(run / "config.yaml")
    assert cfg.data.mix_seed == 42 and [s.name for s in cfg.data.sources] == ["train", "again"]
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert [r["loss_kl"] for r in steps][0] == 0.0 and steps[1]["loss_kl"] > 0
    # the loss per source (train/sources.py): weighted by its trained tokens, the sources' CE is the step's CE
    for r in steps:
        names = [k.split("/", 1)[1] for k in r if k.startswith("source_tokens/")]
        assert set(names) <= {"train", "again", "replay"} and len(names) >= 2
        n = sum(r[f"source_tokens/{k}"] for k in names)
        assert n == r["trained_tokens"]
        assert sum(r[f"source_loss/{k}"] * r[f"source_tokens/{k}"] for k in names) / n == pytest.approx(
            r["loss_ce"], rel=1e-5)
