"""Resume and reproduce: a second Ctrl-C stops at once, an incomplete checkpoint is skipped and named, a resumed run
keeps the checkpoint it resumed from for promotion, and `shipsft reproduce` says what still matches and retrains the
first steps. Tiny random Llamas, fp32, CPU. The faults
a run survives (kill -9 mid-step or mid-save, SIGTERM, a full disk, damaged checkpoints, a tracker server gone) are
injected in tests/faults/."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from helpers import write_tiny_run
from shipsft.config import load_config
from shipsft.runs.checkpoint import complete_checkpoints
from shipsft.runs.layout import RunFolder
from shipsft.train.run import run_train


def test_a_second_ctrl_c_stops_at_once():
    from shipsft.train.preempt import StopRequest

    stop = StopRequest()
    stop._handle(signal.SIGINT, None)
    assert stop.signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_an_incomplete_checkpoint_is_skipped_and_named(tmp_path):
    from shipsft.runs.resume import find_checkpoint

    path = write_tiny_run(tmp_path, train={"max_steps": 4, "batch_size": 16, "precision": "fp32", "save_every": 2})
    assert run_train(load_config(path), config_path=path) == 0
    run = RunFolder(tmp_path / "runs" / "t")
    (run.checkpoint(4) / "COMPLETE").unlink()  # as if the process died before the marker
    ckpt, notes = find_checkpoint("latest", load_config(path).output, path)
    assert ckpt == complete_checkpoints(run)[-1][1] and ckpt != run.checkpoint(4)
    assert notes == [f"skipped {run.checkpoint(4)}: incomplete (its save was interrupted)"]


def test_reproduce_reports_what_matches_and_retrains_the_first_steps(tmp_path):
    from shipsft.train.reproduce import reproduce

    path = write_tiny_run(tmp_path, train={"max_steps": 4, "batch_size": 16, "precision": "fp32"})
    assert run_train(load_config(path), config_path=path, argv=["shipsft", "train", str(path)]) == 0
    run = tmp_path / "runs" / "t"
    report = reproduce(run, check_steps=3)
    assert report.ok, [r for r in report.rows if not r.ok]
    what = {r.what for r in report.rows}
    assert {"config hash", "data fingerprint (train)", "rendered tokens (train)", "tokenizer", "chat template",
            "package torch"} <= what and any(w.startswith("file ") for w in what)
    assert [s for s, _, _ in report.losses] == [1, 2, 3] and report.max_loss_diff <= 1e-6
    readme = (run / "README.md").read_text()
    assert f"shipsft train {run / 'config.yaml'} --resume {run}" in readme and f"shipsft reproduce {run}" in readme
    # an edited data file is caught: its hash, the data fingerprint and the token stream all differ
    (tmp_path / "train.jsonl").write_text((tmp_path / "train.jsonl").read_text().replace("reverse", "invert", 1))
    report = reproduce(run, check_steps=None)
    differs = {r.what for r in report.rows if not r.ok}
    assert not report.ok and {"data fingerprint (train)", "rendered tokens (train)"} <= differs
    assert any(w.startswith("file ") for w in differs)


def test_a_resumed_run_keeps_the_checkpoint_it_resumed_from_for_promotion(tmp_path):
    """The checkpoint a run resumes from is one promotion may choose, as in the run never interrupted: its own
    loop state lists it (it was once saved listing only the ones before it, so a resumed run forgot it)."""
    from helpers import Notes
    from shipsft.train.loop import fit
    from shipsft.train.run import setup

    def train(name: str, resume: Path | None = None, limit: int | None = None):
        path = write_tiny_run(tmp_path, train={"max_steps": 6, "batch_size": 8, "precision": "fp32", "save_every": 2,
                                               "keep_checkpoints": 10}, output={"dir": str(tmp_path / "runs"),
                                                                                 "name": name})
        s = setup(load_config(path), path, False, None, Notes(), resume=resume)
        try:
            return fit(s, limit_steps=limit)
        finally:
            s.run.close()

    whole = train("whole")
    train("killed", limit=3)  # stopped after step 3: step-2 is its last checkpoint
    resumed = train("killed", resume=tmp_path / "runs" / "killed" / "checkpoints" / "step-2")
    assert sorted(whole.checkpoints) == sorted(resumed.checkpoints) == [2, 4, 6]
