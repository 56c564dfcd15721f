"""The run folder's owner: strict JSON everywhere, atomic files, checkpoints that are complete or not there."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shipsft.runs.checkpoint import (complete_checkpoints, copy_weights, incomplete_checkpoints, prune_checkpoints,
                                     save_atomic, save_checkpoint)
from shipsft.runs.integrity import recorded
from shipsft.runs.jsonio import JsonlWriter, dumps, read_jsonl, write_json
from shipsft.runs.layout import COMPLETE, STATE_DIR, RunFolder


def strict(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} is not JSON"))


def test_every_writer_turns_nan_and_infinity_into_null(tmp_path):
    record = {"loss": float("nan"), "grad": float("inf"), "m": {"x": -math.inf, "ok": 1.5},
              "arr": np.array([1.0, np.nan]), "n": np.int64(3), "t": (1, 2)}
    want = {"loss": None, "grad": None, "m": {"x": None, "ok": 1.5}, "arr": [1.0, None], "n": 3, "t": [1, 2]}
    assert strict(dumps(record)) == want
    write_json(tmp_path / "a.json", record)
    assert strict((tmp_path / "a.json").read_text()) == want
    with JsonlWriter(tmp_path / "m.jsonl") as w:
        w.write(record)
        w.write({"step": 2})
    assert [strict(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [want, {"step": 2}]
    assert read_jsonl(tmp_path / "m.jsonl")[1] == {"step": 2}


def test_save_atomic_keeps_the_old_folder_when_the_new_save_fails(tmp_path):
    target = tmp_path / "adapter"
    save_atomic(target, lambda d: (d.mkdir(), (d / "w.txt").write_text("v1")))

    def broken(d):
        d.mkdir()
        (d / "w.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_atomic(target, broken)
    assert (target / "w.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # the temporary folder is gone too
    save_atomic(target, lambda d: (d.mkdir(), (d / "w.txt").write_text("v2")))
    assert (target / "w.txt").read_text() == "v2"


def test_checkpoints_without_the_marker_are_not_checkpoints(tmp_path):
    folder = RunFolder(tmp_path)
    for step in (2, 4, 6):
        save_checkpoint(folder.checkpoint(step), lambda d: (d.mkdir(), (d / "w.txt").write_text("x")))
    (folder.checkpoint(8)).mkdir()  # a save that died before its marker
    (folder.checkpoint(8) / "w.txt").write_text("partial")
    assert [s for s, _ in complete_checkpoints(folder)] == [2, 4, 6]
    assert incomplete_checkpoints(folder) == [folder.checkpoint(8)]
    assert (folder.checkpoint(6) / COMPLETE).exists()
    assert prune_checkpoints(folder, keep_last=1, keep={2}) == [4]
    assert [s for s, _ in complete_checkpoints(folder)] == [2, 6]


def test_copy_weights_leaves_the_training_state_and_marker_behind(tmp_path):
    folder = RunFolder(tmp_path)

    def write(d):
        d.mkdir()
        (d / "adapter_model.safetensors").write_text("w")
        (d / STATE_DIR).mkdir()
        (d / STATE_DIR / "optimizer.pt").write_text("o")

    src = save_checkpoint(folder.checkpoint(3), write)
    copy_weights(src, folder.final)
    # final/ carries its own marker, recording the weights only
    assert sorted(p.name for p in folder.final.iterdir()) == ["COMPLETE", "adapter_model.safetensors"]
    assert list(recorded(folder.final)) == ["adapter_model.safetensors"]
