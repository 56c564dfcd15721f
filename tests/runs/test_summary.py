"""runs/summary.py: a run folder read back into the numbers `shipsft runs`, `shipsft compare`, the closing summary
of `shipsft train` and the sweep tables show (from records written as a training run writes them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_run

from shipsft.errors import DataError
from shipsft.runs.layout import COMPLETE, STATE_DIR, RunFolder
from shipsft.runs.summary import curves, differing, find_runs, flatten, outcomes, settings, summarize


def test_summary_of_finished_runs(tmp_path):
    r = summarize(make_run(tmp_path / "a"))
    assert (r.name, r.status, r.steps, r.total_steps, r.promoted, r.step) == ("a", "finished", 10, 10, True, 10)
    assert (r.metric, r.value, r.base_value, r.kl, r.probe_kl) == ("qa/exact_match", 0.9, 0.2, 0.12, 0.05)
    # eval loss on data.eval: the last eval-loss line of metrics.jsonl; before training: none logged at step 0 here
    assert (r.eval_loss, r.base_eval_loss, r.seconds, r.trained_tok_s) == (1.1, None, 125.4, 160.0)
    assert r.train_loss == pytest.approx(sum(3.0 / s for s in range(1, 11)) / 10)
    assert (r.method, r.model, r.started) == ("lora", "/models/smollm2", "2026-01-02T10:00:00+0000")
    assert r.gates[0]["metric"] == "qa/exact_match" and r.before_after[0]["tuned"] == 0.9
    assert sorted(r.files) == ["config"]  # no report.html, audit.html, weights or log written here
    n = summarize(make_run(tmp_path / "b", promoted=False))
    assert (n.promoted, n.message) == (False, "NOT PROMOTED: none of 1 checkpoint(s) passed every gate.")


def test_a_stopped_run_is_resumable_with_its_planned_steps_and_an_unsaved_one_incomplete(tmp_path):
    run = make_run(tmp_path / "c", finished=False)
    r = summarize(run)
    assert (r.status, r.steps, r.total_steps, r.promoted) == ("incomplete", 10, None, None)
    # the time of an unfinished run: the training time its step records account for (trained tokens / rate)
    assert r.seconds == round(4000 / 160.0, 1)
    assert (r.metric, r.value) == ("qa/exact_match", 0.9)  # no decision yet: the last full eval's first metric
    state = RunFolder(run).checkpoint(5) / STATE_DIR
    state.mkdir(parents=True)
    (state / "loop.json").write_text(json.dumps({"step": 5, "total_steps": 40}))
    assert summarize(run).status == "incomplete"  # no COMPLETE marker: not a checkpoint
    (RunFolder(run).checkpoint(5) / COMPLETE).write_text("")
    r = summarize(run)
    assert (r.status, r.total_steps) == ("resumable", 40)


def test_find_runs_walks_folders_of_runs_and_sweeps_oldest_first(tmp_path):
    make_run(tmp_path / "late", started="2026-03-01T00:00:00+0000")
    make_run(tmp_path / "early", started="2026-01-01T00:00:00+0000")
    make_run(tmp_path / "sweep" / "runs" / "lr-1", started="2026-02-01T00:00:00+0000")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "config.yaml").write_text("{}")  # no manifest: not a run folder
    found = find_runs(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["early", "sweep/runs/lr-1", "late"]
    assert find_runs(tmp_path / "early") == [tmp_path / "early"]  # a run folder itself
    assert find_runs(tmp_path / "missing") == []


def test_settings_are_the_config_and_the_manifest_facts_as_dotted_keys(tmp_path):
    a = settings(make_run(tmp_path / "a", lr=2e-4))
    b = settings(make_run(tmp_path / "b", lr=1e-3))
    assert a["optim.lr"] == 2e-4 and a["manifest.data_fingerprint.train"] == "abc123"
    assert "output.name" not in a and "output.dir" not in a  # where a run went is not what it trained
    assert differing([a, b]) == ["optim.lr"]
    assert differing([a, {**a, "data.eval": ["x.jsonl"]}]) == ["data.eval"]  # absent vs set differs
    assert flatten({"eval": {"suites": [{"name": "qa"}, {"name": "x"}], "gates": []}}) == {
        "eval.suites.0.name": "qa", "eval.suites.1.name": "x"}


def test_curves_and_outcomes_read_the_same_records(tmp_path):
    run = make_run(tmp_path / "a")
    c = curves(run)
    assert [m["step"] for m in c["step_records"]] == list(range(1, 11))
    assert c["eval_loss_points"] == [[5, 1.1]] and [e["kind"] for e in c["evals"]] == ["baseline", "full"]
    o = outcomes(RunFolder(run))
    assert (o["steps"], o["trained_tokens"], o["kl_to_base"], o["task"]) == (10, 4000, 0.12, {"qa/exact_match": 0.9})


def test_a_line_a_kill_cut_in_half_is_not_a_record(tmp_path):
    """A run killed while writing metrics.jsonl leaves half a line: `shipsft runs` reads the whole ones."""
    run = make_run(tmp_path / "k", finished=False)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "loss": 0.2')
    assert summarize(run).steps == 10
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n{"step": 3, "loss": 0.5}\n')
    with pytest.raises(DataError) as e:  # a broken line inside the file is damage, not a kill: named, with the fix
        summarize(run)
    assert e.value.lines == [f"{run / 'metrics.jsonl'}:2: not a JSON record (Unterminated string starting at); the "
                             "file is damaged. Fix: restore it from a copy, or delete that line"]
