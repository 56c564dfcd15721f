"""`shipsft runs` and `shipsft compare` on two real runs (conftest.py: two_runs) and on user mistakes."""
from __future__ import annotations

import json

from helpers import make_run
from typer.testing import CliRunner

from shipsft.cli.main import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return res.exit_code, res.output


def test_runs_lists_every_run_with_its_numbers_and_writes_the_index(two_runs):
    runs, _ = two_runs
    code, out = run("runs", runs, "--html")
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    assert lines[0] == f"2 run(s) in {runs}, oldest first"
    assert lines[1].split() == ["run", "status", "steps", "promoted", "toy.unseen/exact_match", "KL", "time"]
    for line, name in zip(lines[3:5], ("quiet", "loud")):  # oldest first: quiet was trained first
        promo = json.loads((runs / name / "promotion.json").read_text())
        full = [json.loads(x) for x in (runs / name / "eval.jsonl").read_text().splitlines()]
        kl = next(e for e in full if e["kind"] == "full")["metrics"]["kl_to_base"]
        assert " ".join(line.split()).startswith(
            f"{name} finished 4 yes (step 4) {promo['value']:.3f} {kl:.3g} "), line
        assert line.endswith((" s", " min")), line  # the time it took
    assert lines[-1] == f"wrote {runs / 'index.html'}"
    page = (runs / "index.html").read_text()
    assert "href='quiet/report.html'" in page and "href='loud/audit.html'" in page


def test_compare_diffs_the_settings_and_writes_the_page(two_runs):
    runs, _ = two_runs
    code, out = run("compare", runs / "quiet", runs / "loud")
    assert code == 0, out
    text = [line.strip() for line in out.splitlines() if line.strip()]
    assert text[0].split() == ["quiet", "loud"]
    assert text[2].split() == ["status", "finished", "finished"] and text[3].split() == ["steps", "4", "4"]
    differ = text[text.index(next(t for t in text if t.startswith("settings that differ"))):]
    # the learning rate was the one change (-v changes the console, not the run)
    assert differ[0].startswith("settings that differ: 1 of ")
    assert differ[1].split() == ["setting", "quiet", "loud"] and differ[3].split() == ["optim.lr", "0.0002", "0.001"]
    assert text[-1] == f"wrote {runs / 'compare.html'}"
    page = (runs / "compare.html").read_text()
    assert page.count("<svg") == 5 and "href='quiet/report.html'" in page


def test_runs_and_compare_mistakes_are_one_line_errors(tmp_path):
    code, out = run("runs", tmp_path)
    assert code == 2 and len(out.splitlines()) == 1
    assert out.startswith(f"error: {tmp_path}: no run folders here")
    a = make_run(tmp_path / "a")
    code, out = run("compare", a)
    assert code == 2 and "give two or more run folders" in out and len(out.splitlines()) == 1
    code, out = run("compare", a, tmp_path / "nope")
    assert code == 2 and out.strip() == (f"error: {tmp_path / 'nope'}: not a run folder (no config.yaml + "
                                         "manifest.json). Fix: give the folders `shipsft train` wrote, e.g. "
                                         "runs/quickstart")


def test_compare_names_runs_of_the_same_name_by_their_folder(tmp_path):
    a, b = make_run(tmp_path / "x" / "run"), make_run(tmp_path / "y" / "run", lr=1e-3)
    code, out = run("compare", a, b, "--out", tmp_path / "c.html")
    assert code == 0, out
    assert out.splitlines()[1].split() == ["x/run", "y/run"]
    assert "href='x/run/report.html'" not in (tmp_path / "c.html").read_text()  # make_run writes no report
    assert "<h1>shipsft compare: x/run vs y/run</h1>" in (tmp_path / "c.html").read_text()


def test_a_damaged_metrics_file_is_one_line_naming_it(tmp_path):
    run_dir = make_run(tmp_path / "a")
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2,\n{"step": 3, "loss": 0.5}\n')
    code, out = run("runs", tmp_path)
    assert code == 2 and out.splitlines() == [f"error: {run_dir / 'metrics.jsonl'}:2: not a JSON record (Expecting "
                                              "property name enclosed in double quotes); the file is damaged. Fix: "
                                              "restore it from a copy, or delete that line"]
