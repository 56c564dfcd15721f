"""bench/recipe.py's plumbing: statistics, the budget cap, the table, a failing contender reported (not fatal), and
one end-to-end pass on a tiny random model with a few examples and a seconds-long budget (slow)."""
from __future__ import annotations

import json
import sys

import pytest

from helpers import REPO, save_tiny_model

sys.path.insert(0, str(REPO))
from bench import recipe  # noqa: E402


def test_bootstrap_ci_and_slices():
    assert recipe.bootstrap_ci([1.0] * 10) == (1.0, 1.0, 1.0)
    mean, lo, hi = recipe.bootstrap_ci([0.0, 1.0] * 50)
    assert mean == 0.5 and 0.38 < lo < 0.5 < hi < 0.62 and recipe.bootstrap_ci([0.0, 1.0] * 50) == (mean, lo, hi)
    preds = [{"suite": "eval_seen", "scores": {"m": 1.0}, "base_scores": {"m": 0.0}},
             {"suite": "eval_seen", "scores": {"m": 0.0}, "base_scores": {"m": 0.0}},
             {"suite": "eval_unseen", "scores": {"m": 0.0}, "base_scores": {"m": 1.0}}]
    assert recipe.slice_scores(preds, "m") == {"seen": [1.0, 0.0], "unseen": [0.0], "all": [1.0, 0.0, 0.0]}
    s = recipe.summarise(preds, "m", "base_scores")
    assert (s["seen"][0], s["unseen"][0], s["all"][3]) == (0.0, 1.0, 3)


def test_budget_cap_and_step_seconds():
    assert recipe.cap_steps(100, 2.0, 60) == (27, True)  # 90% of 60 s at 2 s/step
    assert recipe.cap_steps(20, 2.0, 60) == (20, False)
    assert recipe.cap_steps(20, 500.0, 60) == (1, True)  # at least one step
    # cumulative trained tokens / trained tok/s: steps end at 2, 5, 7, 11 s -> the first (warm-up) dropped, steps of
    # 3, 2, 4 s -> mean 3 (the median, 3 too, is not what a budget that sums step times needs: see the next case)
    records = [{"step": i + 1, "loss": 1.0, "trained_tokens": 100, "trained_tok_s": 100 * (i + 1) / t}
               for i, t in enumerate([2, 5, 7, 11])]
    assert recipe.step_seconds(records) == pytest.approx(3.0)
    assert recipe.train_seconds(records) == pytest.approx(11.0)
    assert recipe.calibrated_step_s([9.0, 2.0, 2.0, 5.0]) == pytest.approx(3.0)  # mean; the median would say 2
    assert recipe.calibrated_step_s([70.0]) == 70.0  # one slow step stopped the calibration: its own time


def test_table_reports_failures_with_their_reason():
    ok = {"task": "t", "contender": "shipsft", "metric": "exact_match", "status": "ok", "steps": 27,
          "planned_steps": 135, "capped": True, "train_s": 540.2, "precision": "fp32",
          "scores": {"seen": [0.8, 0.7, 0.9, 100], "unseen": [0.6, 0.5, 0.7, 100], "all": [0.7, 0.63, 0.77, 200]}}
    bad = {"task": "t", "contender": "trl-recipe", "metric": "exact_match", "status": "failed",
           "error": "exit 1: python worker: ValueError: boom | more"}
    ok.update(estimate=0.95, split="patterns", estimate_error=0.35)
    lines = recipe.table([ok, bad]).splitlines()
    assert len(lines) == 4 and lines[1].count("---") == 12
    assert ("| 80.0% [70%, 90%] | 60.0% [50%, 70%] | 70.0% [63%, 77%] | +20.0% | 95.0% (patterns) | +35.0% | 540 | "
            "27 (capped from 135) |" in lines[2])
    assert "failed: exit 1: python worker: ValueError: boom / more" in lines[3]


def test_a_failing_contender_is_reported_and_the_others_run(tmp_path, capsys):
    code = recipe.main(["--task", "classify_json", "--out", str(tmp_path), "--model", str(tmp_path / "missing"),
                        "--contenders", "shipsft", "trl-recipe", "--train-limit", "30", "--eval-limit", "2",
                        "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert code == 1 and [r["status"] for r in results] == ["failed", "failed"]
    assert "not a local folder" in results[0]["error"] or "not found" in results[0]["error"]
    assert "| classify_json | shipsft | json_field_match | failed: exit 2" in out and "trl-recipe" in out
    assert len((tmp_path / "classify_json" / "data" / "train.jsonl").read_text().splitlines()) == 30


@pytest.mark.slow
def test_one_task_end_to_end_on_a_tiny_model(tmp_path, capsys):
    """shipsft always; TRL's worker too where the bench extra is installed (`pip install -e '.[bench]'`): CI installs
    only the test extra, and TRL is a bench-only dependency."""
    import importlib.util

    contenders = ["shipsft"] + (["trl-recipe"] if importlib.util.find_spec("trl") else [])
    model = save_tiny_model(tmp_path / "tiny-model")
    code = recipe.main(["--task", "classify_json", "--out", str(tmp_path / "out"), "--model", str(model),
                        "--train-limit", "48", "--eval-limit", "3", "--budget-min", "0.05",
                        "--contenders", *contenders, "--levers", "full", "--results", str(tmp_path / "results")])
    # trl-defaults: the same worker, other args
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == 0, out
    assert [r["contender"] for r in results] == ["base model (no training)", *contenders, "shipsft+full"]
    for r in results[1:]:
        assert r["status"] == "ok" and r["scores"]["seen"][3] == 3 and r["scores"]["all"][3] == 6
        assert r["steps"] >= 1 and r["train_s"] > 0
        preds = (tmp_path / "out" / "classify_json" / r["contender"] / "eval" / "predictions.jsonl")
        assert len(preds.read_text().splitlines()) == 6  # every eval example of both slices kept
    assert results[1]["precision"] in ("fp32", "bf16")  # shipsft: auto
    # init's own estimate of the checkpoint it shipped, and its error against the unseen slice
    shipsft = results[1]
    assert shipsft["split"] in ("patterns", "random") and isinstance(shipsft["estimate"], float)
    assert shipsft["estimate_error"] == pytest.approx(shipsft["estimate"] - shipsft["scores"]["unseen"][0])
    saved = json.loads((tmp_path / "results" / "recipe-classify_json.json").read_text())
    assert [r["contender"] for r in saved["rows"]] == [r["contender"] for r in results]
    if "trl-recipe" in contenders:
        assert results[2]["precision"] == "fp32"
    # a row per contender (base model and the lever included), the lever's paired row, shipsft vs TRL's best, and
    # the estimate table's row of each shipsft run (plain and the lever): its held-out split resampled by pattern
    assert out.count("| classify_json |") == 1 + len(contenders) + 2 + ("trl-recipe" in contenders) + 2
    assert len(shipsft["estimate_ci"]) == 2 and shipsft["estimate_patterns"] >= 1
    assert set(shipsft["clusters"]) == set(shipsft["example_scores"])  # every scored example has its pattern
    # the lever ran init's config with its one change: full fine-tuning at a tenth of init's LoRA LR
    import yaml

    task = tmp_path / "out" / "classify_json"
    init_lr = yaml.safe_load((task / "shipsft" / "config.yaml").read_text())["optim"]["lr"]
    ran = yaml.safe_load((task / "shipsft+full" / "runs" / "run" / "config.yaml").read_text())
    assert ran["method"]["name"] == "full" and ran["optim"]["lr"] == pytest.approx(init_lr / 10)
    assert "| classify_json | full |" in out


def test_paired_difference_and_the_versus_table():
    a = {"eval_seen|t:1": 1.0, "eval_seen|t:2": 1.0, "eval_unseen|t:3": 0.5, "eval_unseen|t:4": 1.0, "x|t:5": 1.0}
    b = {"eval_seen|t:1": 1.0, "eval_seen|t:2": 0.0, "eval_unseen|t:3": 0.5, "eval_unseen|t:4": 0.0}
    d = recipe.paired_delta(a, b)
    assert d["seen"][0] == 0.5 and d["unseen"][0] == 0.5 and d["all"][0] == 0.5 and d["all"][3] == 4
    assert 0.0 <= d["all"][1] <= 0.5 <= d["all"][2] <= 1.0
    assert recipe.paired_delta(a, a)["all"][:3] == [0.0, 0.0, 0.0]  # identical scores: no difference, no spread
    # the unseen slice's gain minus the seen slice's: equal gains here (0.5 each), spread by both slices' resamples
    assert d["unseen-seen"][0] == 0.0 and d["unseen-seen"][3] == 4 and -1.0 <= d["unseen-seen"][1] < 0.0
    assert 0.0 < d["unseen-seen"][2] <= 1.0
    # gains only on unseen (every unseen example +1, every seen one 0): +100% with no spread; the other way -100%
    only_unseen = recipe.paired_delta({**b, "eval_unseen|t:3": 1.5, "eval_unseen|t:4": 1.0}, b)["unseen-seen"]
    assert only_unseen == [1.0, 1.0, 1.0, 4]
    assert recipe.paired_delta(b, {**b, "eval_seen|t:1": 0.0, "eval_seen|t:2": -1.0})["unseen-seen"] == [
        -1.0, -1.0, -1.0, 4]
    assert recipe.paired_delta({"eval_seen|t:1": 1.0}, {"eval_seen|t:1": 0.0})["unseen-seen"][3] == 0  # one slice
    preds = [{"suite": "eval_seen", "source": "t:1", "scores": {"m": 1.0}},
             {"suite": "heldout", "source": "t:9", "scores": {"m": 1.0}}]
    assert recipe.example_scores(preds, "m") == {"eval_seen|t:1": 1.0}
    stat = lambda v: {"all": [v, v, v, 4]}  # noqa: E731
    results = [{"task": "t", "contender": "shipsft", "status": "ok", "scores": stat(0.75), "example_scores": a},
               {"task": "t", "contender": "trl-defaults", "status": "ok", "scores": stat(0.0),
                "example_scores": {k: 0.0 for k in b}},
               {"task": "t", "contender": "trl-recipe", "status": "ok", "scores": stat(0.375), "example_scores": b}]
    assert recipe.versus_table(results).splitlines()[2] == (
        "| t | trl-recipe | +50.0% [+0.0%, +100.0%] | +50.0% [+0.0%, +100.0%] | "
        f"+50.0% [{d['all'][1]:+.1%}, {d['all'][2]:+.1%}] | "
        f"+0.0% [{d['unseen-seen'][1]:+.1%}, {d['unseen-seen'][2]:+.1%}] |")


def test_levers_are_one_override_each_and_their_table_pairs_against_plain_shipsft():
    cfg = {"optim": {"lr": 0.0002}, "method": {"name": "lora"}}
    assert recipe.lever_sets(None, cfg) == []
    assert recipe.lever_sets("lr-half", cfg) == ["--set", "optim.lr=0.0001"]
    assert recipe.lever_sets("full", cfg) == ["--set", "method.name=full", "--set", f"optim.lr={0.0002 / 10}"]
    assert recipe.lever_sets("rank64", cfg) == ["--set", "method.lora.r=64", "--set", "method.lora.alpha=128"]
    base = {"eval_seen|t:1": 1.0, "eval_seen|t:2": 0.0, "eval_unseen|t:3": 1.0, "eval_unseen|t:4": 0.0}
    better = {**base, "eval_unseen|t:4": 1.0}
    stat = {"all": [0.5, 0.5, 0.5, 4]}
    results = [{"task": "t", "contender": "shipsft", "status": "ok", "scores": stat, "example_scores": base},
               {"task": "t", "contender": "shipsft+neftune", "status": "ok", "scores": stat, "steps": 7,
                "example_scores": better},
               {"task": "t", "contender": "shipsft+full", "status": "failed", "error": "oom"}]
    rows = recipe.levers_table(results).splitlines()
    assert len(rows) == 3  # a failed lever has no paired row (the main table reports its failure)
    assert rows[2].startswith("| t | neftune | +0.0% [+0.0%, +0.0%] | +50.0% [") and rows[2].endswith("| 7 |")
    assert "shipsft+neftune" not in recipe.versus_table(results)  # levers never stand in for shipsft vs TRL


def test_init_estimate_is_the_shipped_steps_heldout_metric(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "promotion.json").write_text(json.dumps({"step": 20, "promoted": True}))
    (run / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"kind": "baseline", "step": 0, "metrics": {"heldout/m": 0.1}},
        {"kind": "full", "step": 10, "metrics": {"heldout/m": 0.9}},
        {"kind": "full", "step": 20, "metrics": {"heldout/m": 0.8, "heldout.unseen/m": 0.7}}]))
    assert recipe.init_estimate(run, "m") == {"estimate": 0.8, "estimate_step": 20}
    assert recipe.init_estimate(run, "other") == {"estimate": None, "estimate_step": 20}
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  # 90 of the 100 examples; the other 10 are the eval split, held out whole\n"
                      "  # sentence patterns (stratified)\n  train: t.jsonl\n")
    assert recipe.init_split(config) == "patterns"
    config.write_text("data:\n  # ... held out at random (stratified)\n  train: t.jsonl\n")
    assert recipe.init_split(config) == "random"
    # results saved per task as they finish; --table prints every file's rows
    row = {"task": "t", "contender": "shipsft", "metric": "m", "status": "ok", "estimate": 0.8, "split": "patterns",
           "estimate_error": 0.1, "steps": 3, "scores": {k: [0.7, 0.6, 0.8, 10] for k in ("seen", "unseen", "all")}}
    recipe.save_results(str(tmp_path / "res"), "t", [row])
    assert recipe.main(["--table", "--results", str(tmp_path / "res")]) == 0
    assert "| t | shipsft | m | 70.0% [60%, 80%] |" in capsys.readouterr().out


def test_a_levers_only_call_keeps_the_rows_it_did_not_run_and_pairs_with_them(tmp_path):
    res = str(tmp_path / "res")
    scores = {k: [0.5, 0.4, 0.6, 2] for k in ("seen", "unseen", "all")}
    plain = {"eval_seen|t:1": 1.0, "eval_unseen|t:2": 0.0}

    def row(contender, example_scores=plain):
        return {"task": "t", "contender": contender, "metric": "m", "status": "ok", "scores": scores,
                "example_scores": example_scores, "steps": 3}
    recipe.save_results(res, "t", [row("base model (no training)"), row("shipsft"), row("trl-recipe")])
    first = json.loads((tmp_path / "res" / "recipe-t.json").read_text())
    recipe.save_results(res, "t", [row("shipsft+prompt-loss", {**plain, "eval_unseen|t:2": 1.0})])
    rows = json.loads((tmp_path / "res" / "recipe-t.json").read_text())["rows"]
    assert [r["contender"] for r in rows] == ["base model (no training)", "shipsft", "trl-recipe",
                                             "shipsft+prompt-loss"]
    assert rows[1]["measured"] == {k: first[k] for k in ("machine", "date", "command")}  # who measured what
    assert recipe.lever_sets("prompt-loss", {}) == ["--set", "data.mask=everything"]
    lever = recipe.levers_table(recipe.saved_results(res)).splitlines()[2]
    assert lever.startswith("| t | prompt-loss | +0.0% [+0.0%, +0.0%] | +100.0% [+100.0%, +100.0%] |")
    # a call with another --out: its sources name another folder, the same files and lines
    elsewhere = {"eval_seen|/other/out/t/data/t:1": 1.0, "eval_unseen|/other/out/t/data/t:2": 1.0}
    recipe.save_results(res, "t", [row("shipsft+replay", elsewhere)])
    lever = [x for x in recipe.levers_table(recipe.saved_results(res)).splitlines() if "| replay |" in x][0]
    assert lever.startswith("| t | replay | +0.0% [+0.0%, +0.0%] | +100.0% [+100.0%, +100.0%] |")
    recipe.save_results(res, "t", [row("shipsft", {**plain, "eval_seen|t:1": 0.0})])  # a re-run replaces its row
    rows = json.loads((tmp_path / "res" / "recipe-t.json").read_text())["rows"]
    assert [r["contender"] for r in rows].count("shipsft") == 1
    assert next(r for r in rows if r["contender"] == "shipsft")["example_scores"]["eval_seen|t:1"] == 0.0


def test_the_paired_tables_numbers_go_to_a_results_file(tmp_path):
    res = tmp_path / "res"
    both = {"eval_seen|t:1": 1.0, "eval_unseen|t:2": 1.0}
    rows = [{"task": "t", "contender": c, "metric": "m", "status": "ok", "example_scores": e, "steps": 3,
             "scores": {"seen": [s, s, s, 1], "unseen": [u, u, u, 1], "all": [(s + u) / 2] * 3 + [2]}}
            for c, e, s, u in (("shipsft", both, 1.0, 1.0), ("trl-recipe", {**both, "eval_unseen|t:2": 0.0}, 1.0, 0.0),
                               ("shipsft+replay", {**both, "eval_seen|t:1": 0.0}, 0.0, 1.0))]
    recipe.save_results(str(res), "t", rows)
    assert recipe.main(["--table", "--results", str(res), "--json", str(tmp_path / "paired.json")]) == 0
    out = json.loads((tmp_path / "paired.json").read_text())
    assert out["computed_from"] == {str(res / "recipe-t.json"): json.loads((res / "recipe-t.json").read_text())["date"]}
    assert [(g["contender"], g["gap"]) for g in out["gaps"]] == [("shipsft", 0.0), ("trl-recipe", 1.0),
                                                                  ("shipsft+replay", -1.0)]
    assert out["versus"][0]["vs"] == "trl-recipe" and out["versus"][0]["unseen"][:3] == [1.0, 1.0, 1.0]
    assert out["levers"][0]["lever"] == "replay" and out["levers"][0]["seen"][:3] == [-1.0, -1.0, -1.0]
    assert out["estimates"] == [] and out["selection"] == []  # no held-out interval, no selection run
    rows[0].update(split="patterns", estimate=0.5, estimate_ci=[0.0, 1.0], estimate_patterns=2,
                   heldout={"scores": [0.0, 1.0], "units": [0, 1]})
    recipe.save_results(str(res), "t", rows)
    assert recipe.main(["--table", "--results", str(res), "--json", str(tmp_path / "paired.json")]) == 0
    est = json.loads((tmp_path / "paired.json").read_text())["estimates"]
    assert [(e["contender"], e["patterns"], e["estimate_ci"], e["error"][0]) for e in est] == [
        ("shipsft", 2, [0.0, 1.0], -0.5)]  # held out 0.5, unseen 1.0
    curve = [{"step": 3, "heldout": 0.5, "unseen": [1.0, 1.0, 1.0, 1], "promoted": True}]
    recipe.save_results(str(res), "t", [{**rows[2], "contender": "shipsft+select", "curve": curve}])
    assert recipe.main(["--table", "--results", str(res), "--json", str(tmp_path / "paired.json")]) == 0
    assert json.loads((tmp_path / "paired.json").read_text())["selection"] == [{"task": "t", "steps": 3,
                                                                               "curve": curve}]


def test_intervals_resample_the_slices_sentence_patterns(tmp_path):
    """The bench's slices and init's held-out split are resampled by sentence pattern, as shipsft's own eval is: two
    patterns of ten examples each, one all right and one all wrong, are two observations, not twenty."""
    sys.path.insert(0, str(REPO / "tests"))
    from patterns_data import records, templated

    scores = [1.0] * 10 + [0.0] * 10
    _, lo, hi = recipe.bootstrap_ci(scores)
    assert 0.25 < lo < hi < 0.75  # examples one by one: as if twenty phrasings
    assert recipe.bootstrap_ci(scores, clusters=["a"] * 10 + ["b"] * 10) == (0.5, 0.0, 1.0)
    assert recipe.bootstrap_ci(scores, clusters=list(range(20))) == recipe.bootstrap_ci(scores)  # draw for draw
    a = {f"eval_unseen|u:{i}": s for i, s in enumerate(scores)}
    b = dict.fromkeys(a, 0.0)
    plain = recipe.paired_delta(a, b)["unseen"]
    assert recipe.paired_delta(a, b, clusters={k: k for k in a})["unseen"] == plain
    assert recipe.paired_delta(a, b, clusters={k: int(k.split(":")[1]) // 10 for k in a})["unseen"] == [
        0.5, 0.0, 1.0, 20]
    # the patterns of written slices, found against the training file: one id per template
    texts, which = templated(240)
    data = tmp_path / "data"
    data.mkdir()
    for name, part in (("train", slice(0, 120)), ("eval_seen", slice(120, 180)), ("eval_unseen", slice(180, 240))):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(texts[part])))
    clusters = recipe.slice_clusters(data)
    assert len(clusters) == 120 and clusters["eval_seen|eval_seen.jsonl:1"].startswith("seen:")
    for slice_name, start in (("eval_seen", 120), ("eval_unseen", 180)):
        ids = {}
        for i in range(60):
            ids.setdefault(which[start + i], set()).add(clusters[f"{slice_name}|{slice_name}.jsonl:{i + 1}"])
        assert all(len(v) == 1 for v in ids.values()) and len({c for v in ids.values() for c in v}) == 12


def test_init_estimate_has_its_patterns_interval_and_its_error_against_the_unseen_slice(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    from patterns_data import records, templated

    texts, which = templated(120)
    work, run = tmp_path, tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    for name, part in (("t.train.jsonl", texts[:96]), ("t.eval.jsonl", texts[96:])):
        (work / name).write_text("".join(json.dumps(r) + "\n" for r in records(part)))
    (run / "config.yaml").write_text("data:\n  train: [t.train.jsonl]\neval:\n  suites:\n"
                                     "  - {name: heldout, data: t.eval.jsonl}\n")
    (run / "promotion.json").write_text(json.dumps({"step": 5}))
    right = {w: k % 2 for k, w in enumerate(dict.fromkeys(which[96:]))}  # every second held-out pattern right
    (run / "eval.jsonl").write_text(json.dumps({"kind": "full", "step": 5, "metrics": {
        "heldout/m": sum(right[w] for w in which[96:]) / 24}}) + "\n")
    (run / "predictions.jsonl").write_text("".join(json.dumps(
        {"kind": "full", "step": 5, "suite": "heldout", "source": f"t.eval.jsonl:{i + 1}",
         "scores": {"m": float(right[w])}}) + "\n" for i, w in enumerate(which[96:])))
    est = recipe.init_estimate(run, "m")
    assert est["estimate"] == 0.5 and est["estimate_patterns"] == 12 and est["heldout"]["scores"][:2] == [0.0, 1.0]
    assert 0.0 < est["estimate_ci"][0] < 0.5 < est["estimate_ci"][1] < 1.0
    # minus the unseen slice (all right): -50% with both sides' spread; the table counts it as outside 0.10
    row = {"task": "t", "contender": "shipsft", "status": "ok", "split": "patterns", **est,
           "scores": {"unseen": [1.0, 1.0, 1.0, 4]},
           "example_scores": {f"eval_unseen|u:{i}": 1.0 for i in range(4)}, "clusters": {}}
    err = recipe.estimate_error(row)
    assert err[0] == -0.5 and err[1] < -0.5 < err[2] < 0.0
    table = recipe.estimate_table([row, {**row, "contender": "shipsft@split1", "heldout": {
        "scores": [1.0] * 24, "units": [0] * 24}, "estimate": 1.0, "estimate_ci": [1.0, 1.0]}])
    assert "| t | shipsft | patterns, 12 patterns | 50.0% [" in table and "| -50.0% [" in table
    assert "within 0.10 of the unseen score: 1 of 2; the error's interval holds zero: 1 of 2." in table
    assert "| -50.0% [-" in table and "| nan; 0 |" in table  # the rows name no unseen patterns
    # four unseen patterns scored 1/3, 1, 1, 1 (a spread of 1/3): (1.645 * (1/3) / 0.10)^2 = 30.1 -> 31 patterns
    keys = [f"eval_unseen|u:{i}" for i in range(6)]
    row.update(example_scores=dict(zip(keys, [0.0, 1.0, 0.0, 1.0, 1.0, 1.0])),
               clusters=dict(zip(keys, ["a", "a", "a", "b", "c", "d"])))
    assert recipe.patterns_needed(row) == (pytest.approx(1 / 3), 31)
    assert recipe.patterns_needed({**row, "clusters": dict.fromkeys(keys, "a")})[1] == 0  # one pattern: no spread
    assert recipe.contender_spec("shipsft@split2") == (None, 2)
    assert recipe.contender_spec("shipsft+neftune") == ("neftune", 0)


def test_a_lever_can_train_plain_shipsfts_steps(tmp_path):
    import argparse

    a = argparse.Namespace(results=str(tmp_path / "res"))
    ok = {"task": "t", "contender": "shipsft", "metric": "m", "status": "ok", "steps": 49,
          "scores": {k: [0.5, 0.4, 0.6, 2] for k in ("seen", "unseen", "all")}}
    assert recipe.plain_steps(a, "t", [ok]) == 49  # this call's row
    with pytest.raises(recipe.Failed, match="no plain shipsft row for t in this call or in .*res; run"):
        recipe.plain_steps(a, "t", [])
    recipe.save_results(a.results, "t", [{**ok, "steps": 56}])
    assert recipe.plain_steps(a, "t", []) == 56  # ... else the saved one
    assert recipe.plain_steps(a, "t", [{**ok, "contender": "shipsft+neftune", "steps": 3}]) == 56


def test_the_selection_lever_evaluates_every_sixth_of_three_times_plains_steps_and_tables_them():
    assert recipe.select_sets(38, 152) == (114, True, ["--set", "eval.full_every=19", "--set",
                                                       "train.keep_checkpoints=7"])
    assert recipe.select_sets(56, 132) == (132, False, ["--set", "eval.full_every=22", "--set",
                                                        "train.keep_checkpoints=7"])  # init's one epoch at most
    assert recipe.select_sets(5, 100)[2][1] == "eval.full_every=3"  # 15 steps: evals at 3, 6, ..., 15
    s = {k: [0.5, 0.4, 0.6, 2] for k in ("seen", "unseen", "all")}
    plain = {"task": "t", "contender": "shipsft", "metric": "m", "status": "ok", "steps": 10, "estimate": 0.8,
             "example_scores": {"unseen|1": 1.0},
             "scores": s}
    sel = {**plain, "contender": "shipsft+select", "steps": 30, "curve": [
        {"step": 10, "heldout": 0.7, "unseen": [0.6, 0.5, 0.7, 2], "promoted": False},
        {"step": 20, "heldout": 0.9, "unseen": [0.5, 0.4, 0.6, 2], "promoted": True}]}
    assert recipe.selection_table([plain, sel]).splitlines()[2:] == [
        "| t | 10 | 80.0% | 50.0% [40%, 60%] | plain shipsft |",
        "| t | 10 | 70.0% | 60.0% [50%, 70%] |  |",
        "| t | 20 | 90.0% | 50.0% [40%, 60%] | promoted by selection |"]
    assert recipe.selection_table([plain]).count("\n") == 1  # no selection row: the header only
