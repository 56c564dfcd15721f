"""The console of `shipsft train`: quiet by default (the libraries' progress bars and warnings kept in the run's
train.log, off the terminal), everything with -v, one bar for training and one per eval, and a closing summary."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings
from pathlib import Path

from helpers import make_run
from rich.console import Console

from shipsft.cli.closing import show_closing
from shipsft.cli.console import RichProgress, quiet
from shipsft.runs.log import RunLog, log_to
from shipsft.runs.summary import summarize

TQDM_BAR = re.compile(r"\d+%\|")  # what a tqdm bar prints: "100%|██████████| 21/21"


def recording(width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False, highlight=False)


def test_run_log_holds_records_until_the_run_folder_exists_then_appends(tmp_path):
    handler = RunLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("somelib.loader").warning("before the folder")
        assert len(handler.held) == 1 and not (tmp_path / "train.log").exists()
        log_to(tmp_path / "train.log")
        logging.getLogger("peft").warning("after it")
        logging.getLogger("shipsft").warning("the console's own line")
    finally:
        root.removeHandler(handler)
        handler.close()
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING somelib.loader: before the folder", "WARNING peft: after it",
        "WARNING shipsft: the console's own line"]
    again = RunLog()  # a resumed run appends to the same log
    again.open(tmp_path / "train.log")
    again.emit(logging.LogRecord("shipsft", logging.INFO, "", 0, "resumed", None, None))
    again.close()
    assert (tmp_path / "train.log").read_text().splitlines()[:3] == lines


def test_quiet_routes_library_output_to_the_log_and_puts_every_switch_back(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    before = (hf_logging.is_progress_bar_enabled(), list(root.handlers), root.level, os.environ.get("TQDM_DISABLE"),
              warnings.showwarning, hf_logging.get_logger().propagate)
    with quiet(verbose=False) as log:
        assert not hf_logging.is_progress_bar_enabled() and os.environ["TQDM_DISABLE"] == "1"
        warnings.warn("planted warning", FutureWarning)
        hf_logging.get_logger("transformers.planted").warning("planted record")
        log_to(tmp_path / "train.log")
    after = (hf_logging.is_progress_bar_enabled(), list(root.handlers), root.level, os.environ.get("TQDM_DISABLE"),
             warnings.showwarning, hf_logging.get_logger().propagate)
    assert after == before
    err = capfd.readouterr().err
    assert "planted" not in err
    text = (tmp_path / "train.log").read_text()
    assert "WARNING py.warnings: " in text and "FutureWarning: planted warning" in text
    assert "WARNING transformers.planted: planted record" in text and text.count("FutureWarning: planted warning") == 1
    assert log.path == tmp_path / "train.log"


def test_verbose_shows_library_output_and_still_logs_it(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    with quiet(verbose=True):
        assert hf_logging.is_progress_bar_enabled()
        warnings.warn("loud warning", FutureWarning)
        hf_logging.get_logger("transformers.planted").warning("loud record")
        logging.getLogger("shipsft").info("the console's own line")  # on stdout already: not repeated on stderr
        log_to(tmp_path / "train.log")
    err = capfd.readouterr().err
    assert "FutureWarning: loud warning" in err and "loud record" in err and "own line" not in err
    text = (tmp_path / "train.log").read_text()
    assert "loud warning" in text and "loud record" in text and "INFO shipsft: the console's own line" in text


def test_progress_shows_phase_lines_one_training_bar_and_keeps_details_for_the_log(caplog):
    out = recording()
    p = RichProgress(out, details=False)
    with caplog.at_level(logging.INFO, logger="shipsft"):
        p.note("data: 3 train examples")
        p.note("note: train.epochs auto -> 3")
        p.eval_start("base model", 4)
        p.eval_step(2)
        p.eval_step(2)
        p.eval_stop()
        p.start(2)
        for step in (1, 2):
            p.step({"step": step, "loss": 1.0 / step, "lr": 1e-4, "trained_tok_s": 1234.5})
        p.eval_start("step 2", 4)
        p.eval_step(4)
        p.eval_stop()
        p.stop()
    lines = out.file.getvalue().splitlines()
    assert lines[0] == "data: 3 train examples"  # the note went to the log only; the evals' bars left no line
    assert len(lines) == 2 and re.fullmatch(r"step 2/2 ━+ loss 0\.5000  lr 1\.00e-04  1,234 trained tok/s 0:00:00",
                                            lines[1].strip()), lines
    assert [r.getMessage() for r in caplog.records] == ["data: 3 train examples", "note: train.epochs auto -> 3"]
    loud = recording()
    RichProgress(loud, details=True).note("note: train.epochs auto -> 3")
    assert loud.file.getvalue() == "note: train.epochs auto -> 3\n"


def test_closing_summary_of_a_promoted_run(tmp_path):
    run = make_run(tmp_path / "runs" / "a")
    (run / "report.html").write_text("<html></html>")
    (run / "final").mkdir()
    out = recording(width=100)
    show_closing(out, summarize(run))
    text = [line.rstrip() for line in out.file.getvalue().splitlines()]
    assert text[0].startswith(str(run) + " ───")
    assert text[1:] == [
        "PROMOTED step 10: qa/exact_match 0.900 (base 0.200)",
        "gates at step 10",
        "gate             value   needed",
        "──────────────────────────────────────",
        "qa/exact_match     0.9   >= 0.8   pass",
        "metric            base   step 10    delta             95% CI",
        "────────────────────────────────────────────────────────────",
        "qa/exact_match   0.200     0.900   +0.700   [+0.400, +0.900]",
        "eval loss 1.1 · KL to base 0.12 · 10 steps in 2 min 05 s (160 trained tok/s)",
        f"files  report.html, final/  (in {run})",
        f"next   shipsft eval {run} --failures 10",
        f"       shipsft export {run}",
        f"       shipsft chat {run}",
    ]


def test_closing_summary_of_a_run_that_failed_its_gates(tmp_path):
    run = make_run(tmp_path / "b", promoted=False)
    out = recording(width=100)
    show_closing(out, summarize(run))
    text = [line.rstrip() for line in out.file.getvalue().splitlines()]
    assert text[1] == "NOT PROMOTED — none of 1 checkpoint(s) passed every gate."
    assert "qa/exact_match     0.9   >= 0.95   fail by 0.05" in text
    assert text[-2:] == [f"next   shipsft eval {run} --failures 10",
                         f"       shipsft compare {run} RUN  (against another run)"]


def test_default_train_keeps_library_bars_and_warnings_off_the_terminal(two_runs):
    """A default `shipsft train` (a subprocess, as a user runs it): nothing from the libraries on stderr, all of it
    in the run's train.log; with -v the same bars and warnings are on stderr."""
    runs, out = two_runs
    quiet_run, loud_run = out["quiet"], out["loud"]
    assert quiet_run.stderr == ""
    assert not TQDM_BAR.search(quiet_run.stdout)
    log = (runs / "quiet" / "train.log").read_text()
    kept = re.findall(r"WARNING py\.warnings: \S+: (\w+Warning: [^\n]+)", log)
    assert "FutureWarning: planted scorer warning" in kept, log  # the scorer's (conftest.py): kept here, not shown
    assert TQDM_BAR.search(loud_run.stderr) and "Loading weights" in loud_run.stderr
    for warning in kept:  # every warning the quiet run kept in its log, the -v run showed
        assert warning in loud_run.stderr
    # the reasons behind automatic choices: in the log always, on the terminal with -v
    assert "note: " not in quiet_run.stdout and "INFO shipsft: note: train.epochs auto -> " in log
    assert "note: train.epochs auto -> " in loud_run.stdout


def test_default_train_prints_one_line_per_phase_and_closes_with_the_summary(two_runs):
    runs, out = two_runs
    lines = [line.rstrip() for line in out["quiet"].stdout.splitlines() if line.strip()]
    run = runs / "quiet"
    promotion = json.loads((run / "promotion.json").read_text())
    base = next(json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines() if '"baseline"' in x)
    heads = [line.split(":")[0] for line in lines[:4]]
    assert heads == ["data", "audit", "model", "eval loss before training"]
    audit = json.loads((run / "audit.json").read_text())["summary"]
    assert lines[1] == f"audit: {audit['warnings']} warning(s), {audit['info']} note(s); see {run / 'audit.html'}"
    assert re.fullmatch(r"step 4/4 ━+ loss \d\.\d{4}  lr \d\.\d\de-\d\d  [\d,]+ trained tok/s \d:\d\d:\d\d", lines[4])
    assert lines[5].startswith(f"{run} ───")
    metric = promotion["select_metric"]  # toy.unseen/exact_match: the toy eval holds seen and unseen patterns
    assert metric == "toy.unseen/exact_match"
    assert lines[6] == (f"PROMOTED step 4: {metric} {promotion['value']:.3f} "
                        f"(base {base['metrics'][metric]:.3f})")
    assert lines[-3:] == [f"next   shipsft eval {run} --failures 10", f"       shipsft export {run}",
                          f"       shipsft chat {run}"]
    assert lines[-4] == f"files  report.html, final/, adapter/, train.log, predictions.jsonl  (in {run})"
