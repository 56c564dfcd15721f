"""Every prediction kept: the eval session's records carry one prediction per example (with the base model's output
and scores in a full eval), runs/predictions.py writes and reads predictions.jsonl (strict JSON, resume-safe
replacement), the training loop writes the baseline's and every full eval's (rank 0 only), `shipsft eval` writes it
and `--failures N` prints the worst side by side in 80 columns, and report.html lists the failures by JSON field."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from helpers import save_tiny_model, tiny_llama, tiny_tokenizer, write_tiny_run
from shipsft.config import RunConfig
from shipsft.eval import session
from shipsft.report.run import render_report
from shipsft.runs.predictions import (failure_summary, field_failures, read_predictions, worst, wrong_fields,
                                      write_predictions)

REF = {"colour": "red", "animal": "cat", "count": "two"}
ANSWERS = [  # what a model answered for each of four examples; the reference is REF each time
    json.dumps(REF),                                             # right
    json.dumps({**REF, "animal": "dog"}),                       # one field wrong
    "not json at all",                                          # invalid: every field wrong
    json.dumps({**REF, "animal": "bird", "count": "one"}),      # two fields wrong
]


def json_suite(path: Path, n: int = 4) -> Path:
    with path.open("w") as f:
        for i in range(n):
            msgs = [{"role": "user", "content": f"describe picture {i}"},
                    {"role": "assistant", "content": json.dumps(REF)}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def scored_rows() -> list[dict]:
    from shipsft.eval.metrics import resolve_metrics, score_all

    metrics = resolve_metrics(["json_valid", "json_field_match", "exact_match"])
    return [{"suite": "pics", "source": f"pics.jsonl:{i + 1}", "prompt": f"describe picture {i}",
             "reference": json.dumps(REF), "output": a, "scores": score_all(metrics, a, json.dumps(REF))}
            for i, a in enumerate(ANSWERS)]


def test_worst_first_and_wrong_fields_counted():
    rows = scored_rows()
    assert [r["source"] for r in worst(rows, 10)] == ["pics.jsonl:3", "pics.jsonl:4", "pics.jsonl:2"]
    assert [r["source"] for r in worst(rows, 1)] == ["pics.jsonl:3"]  # the right answer is never a failure
    assert wrong_fields(rows[3]) == ["animal", "count"]
    assert field_failures(rows) == {"pics": {"animal": 3, "count": 2, "colour": 1}}


def test_write_read_strict_json_and_replace_only_own_kind_and_later_steps(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = scored_rows()
    rows[0]["scores"]["custom"] = math.nan  # a metric that could not be measured: null, never a bare NaN
    write_predictions(path, rows[:2], kind="full", step=10)
    write_predictions(path, rows[2:], kind="full", step=20)
    text = path.read_text()
    assert "NaN" not in text and all(json.loads(line) for line in text.splitlines())
    assert read_predictions(path, kind="full", step=10)[0]["scores"]["custom"] is None
    # a resumed run evaluates step 20 again: step 10 stays, step 20's lines are replaced, not duplicated
    write_predictions(path, rows[3:], kind="full", step=20)
    assert [(r["step"], r["source"]) for r in read_predictions(path)] == [
        (10, "pics.jsonl:1"), (10, "pics.jsonl:2"), (20, "pics.jsonl:4")]
    # `shipsft eval RUN` adds its own lines and keeps the training ones; a second eval replaces the first
    write_predictions(path, rows, kind="eval")
    write_predictions(path, rows[:1], kind="eval")
    assert [r["kind"] for r in read_predictions(path)] == ["full", "full", "full", "eval"]
    summary = failure_summary(path, step=None)
    assert (summary["step"], summary["n"], summary["n_failed"]) == (20, 1, 1)
    assert failure_summary(tmp_path / "missing.jsonl", step=None) is None


def test_session_records_every_prediction_with_the_base_output(tmp_path):
    tok = tiny_tokenizer()
    suite = json_suite(tmp_path / "pics.jsonl")
    cfg = RunConfig.model_validate({"eval": {
        "suites": [{"name": "pics", "data": str(suite), "metrics": ["json_valid", "json_field_match"],
                    "max_new_tokens": 4}], "kl_to_base": False, "forgetting_probe": False, "samples": 1}})
    model = tiny_llama(vocab_size=len(tok))
    sess = session.build_session(cfg.eval, cfg.data, tok, model, None)
    base = session.baseline(sess)
    assert [p["source"] for p in base.predictions] == [f"{suite}:{i}" for i in range(1, 5)]
    assert len(base.samples) == 1 and "base_output" not in base.predictions[0]
    full = session.full(sess, 3)
    p = full.predictions[2]
    assert (p["suite"], p["prompt"], p["reference"]) == ("pics", "describe picture 2", json.dumps(REF))
    assert set(p["scores"]) == {"json_valid", "json_field_match", *(f"json_field_match/{k}" for k in REF)}
    assert p["base_output"] == base.predictions[2]["output"] and p["base_scores"] == base.scores["pics"][2]
    assert "predictions" not in full.to_json("x")  # eval.jsonl stays small: predictions have their own file
    # a resumed run gets the base outputs back from the baseline record its checkpoint kept
    fresh = session.build_session(cfg.eval, cfg.data, tok, model, None)
    from dataclasses import asdict

    session.restore(fresh, json.loads(json.dumps(asdict(base))), None)
    assert fresh.base_outputs == sess.base_outputs and session.full(fresh, 3).predictions == full.predictions


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def test_eval_cli_writes_predictions_and_prints_failures_in_80_columns(tmp_path, tiny_model_dir):
    from shipsft.cli.main import app

    suite = json_suite(tmp_path / "pics.jsonl", n=3)
    args = ["eval", str(tiny_model_dir), "--suite", str(suite), "--metric", "json_valid", "--metric",
            "json_field_match", "--out", str(tmp_path / "out" / "eval.json"), "--failures", "2"]
    res = CliRunner().invoke(app, args, env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    rows = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert [r["source"] for r in rows] == [f"{suite}:{i}" for i in (1, 2, 3)]
    assert all(r["kind"] == "eval" and r["reference"] == json.dumps(REF) and "json_field_match/animal" in r["scores"]
               for r in rows)
    out = res.output
    ours = [line for line in out.splitlines() if "it/s]" not in line]  # not transformers' loading bar (stderr)
    assert max(cell_len(line) for line in ours) <= 80  # terminal cells (a random model writes odd characters)
    assert "…" not in out  # nothing cut: metric names and texts wrap
    assert "json_field_match/colour" in out and "the 2 worst of 3 predictions" in out
    assert out.count("#1 pics") == 1 and "#2 pics" in out and "#3 pics" not in out
    assert "reference" in out and '"colour": "red"' in out  # the reference printed beside the output
    assert f"{suite}:" in out.replace("\n", "")  # the source (file:line) to open


def test_report_lists_failures_by_field_and_the_worst(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = scored_rows()
    for r in rows:
        r["base_output"] = "I cannot see pictures"
    write_predictions(path, rows, kind="full", step=5)
    html = render_report("r", [], [], {"step": 5}, {}, failure_summary(path, step=5, n=2))
    section = html[html.index("id='failures'"):]
    assert "3 of 4 eval examples have a metric below 1 at step 5" in section
    assert "<td>animal</td><td>3</td><td>75.0%</td>" in section  # 3 of the 4 examples got `animal` wrong
    assert section.count("pics.jsonl:") == 2 and "pics.jsonl:3" in section and "I cannot see pictures" in section
    assert "No predictions recorded" in render_report("r", [], [], None, {}, None)


def test_training_writes_every_eval_prediction_and_the_report_lists_the_failures(tmp_path):
    """Through the real loop (train/run.py run_train): 32 examples, 16 per step -> full evals at steps 2 and 4."""
    from shipsft.config import load_config
    from shipsft.runs.jsonio import read_json, read_jsonl
    from shipsft.train.run import run_train

    suite = json_suite(tmp_path / "pics.jsonl", n=3)
    path = write_tiny_run(tmp_path, n_train=32, train={"max_steps": 4, "batch_size": 16, "precision": "fp32"},
                          eval={"suites": [{"name": "pics", "data": str(suite), "max_new_tokens": 6,
                                            "metrics": ["json_valid", "json_field_match"]}],
                                "kl_to_base": False, "forgetting_probe": False})
    assert run_train(load_config(path), config_path=path, skip_audit=True) == 0
    run = tmp_path / "runs" / "t"
    rows = read_predictions(run / "predictions.jsonl")
    sources = [f"{suite}:{i}" for i in (1, 2, 3)]
    assert [(r["kind"], r["step"], r["source"]) for r in rows] == [
        *(("baseline", 0, s) for s in sources), *(("full", 2, s) for s in sources), *(("full", 4, s) for s in sources)]
    assert all((r["suite"], r["prompt"], r["reference"]) == ("pics", f"describe picture {i % 3}", json.dumps(REF))
               for i, r in enumerate(rows))
    base = {r["source"]: r for r in rows if r["kind"] == "baseline"}
    assert all("base_output" not in r for r in base.values())
    for r in rows[3:]:  # a full eval's line carries the base model's output and scores on the same example
        assert (r["base_output"], r["base_scores"]) == (base[r["source"]]["output"], base[r["source"]]["scores"])
    # the lines are the numbers eval.jsonl reports: the mean of the per-example scores at each step
    evals = [e for e in read_jsonl(run / "eval.jsonl") if e["kind"] == "full"]
    for e in evals:
        step_rows = [r for r in rows if r["kind"] == "full" and r["step"] == e["step"]]
        assert e["metrics"]["pics/json_valid"] == pytest.approx(
            sum(r["scores"]["json_valid"] for r in step_rows) / 3, abs=1e-12)
    # checkpoints keep the baseline's predictions (a resume needs its outputs), not a copy of every full eval's
    loop = read_json(run / "checkpoints" / "step-4" / "shipsft_state" / "loop.json")
    assert len(loop["baseline"]["predictions"]) == 3 and [e["predictions"] for e in loop["evals"]] == [[], []]
    # report.html lists the promoted step's failures (a random model answers no picture right)
    step = read_json(run / "promotion.json")["step"]
    section = (run / "report.html").read_text().split("id='failures'", 1)[1]
    assert f"3 of 3 eval examples have a metric below 1 at step {step}" in section
    assert all(s in section for s in sources) and "No predictions recorded" not in section
    assert "<td>colour</td><td>3</td><td>100.0%</td>" in section
    # resumed from step 2, the run evaluates step 4 again: its lines are replaced (the same), never duplicated
    assert run_train(load_config(path), config_path=path, skip_audit=True, resume=run / "checkpoints" / "step-2") == 0
    assert read_predictions(run / "predictions.jsonl") == rows


def test_only_rank_0_writes_predictions(tmp_path):
    from shipsft.runs.layout import RunFolder
    from shipsft.runs.run import OneProcess, Run

    class SecondRank(OneProcess):
        @staticmethod
        def is_main() -> bool:
            return False

    rec = session.EvalRecord("full", 2, {}, predictions=scored_rows())
    Run(RunFolder(tmp_path), ranks=SecondRank).keep_predictions(rec.predictions, rec.kind, rec.step)
    assert not (tmp_path / "predictions.jsonl").exists()
    Run(RunFolder(tmp_path)).keep_predictions(rec.predictions, rec.kind, rec.step)
    assert [(r["kind"], r["step"]) for r in read_predictions(tmp_path / "predictions.jsonl")] == [("full", 2)] * 4
