"""A saved folder proves its bytes: the COMPLETE marker records each file's size and sha256 (runs/integrity.py), a
truncated, bit-flipped, missing or added file is named with what is wrong, a copy is checked against the record of
what it copied, a rewritten file keeps the folder sealed, and a save killed between its two renames is put right."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from shipsft.runs.checkpoint import DamagedFolder, copy_weights, recover, save_atomic, save_checkpoint
from shipsft.runs.integrity import check, recorded, replace_file
from shipsft.runs.layout import COMPLETE, STATE_DIR, RunFolder
from shipsft.runs.verify import DAMAGED, NOTE, OK, verified, verified_weights, verify_run

WEIGHTS = bytes(range(256)) * 40  # 10,240 bytes


def write(d):
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(WEIGHTS)
    (d / STATE_DIR).mkdir()
    (d / STATE_DIR / "loop.json").write_text('{"step": 3}')


def test_the_marker_records_every_file_size_and_sha256(tmp_path):
    ckpt = save_checkpoint(RunFolder(tmp_path).checkpoint(3), write)
    marker = json.loads((ckpt / COMPLETE).read_text())
    assert marker == {"format": 1, "files": {
        "adapter_model.safetensors": {"size": 10240, "sha256": hashlib.sha256(WEIGHTS).hexdigest()},
        "shipsft_state/loop.json": {"size": 11, "sha256": hashlib.sha256(b'{"step": 3}').hexdigest()}}}
    assert check(ckpt) == []


def test_a_truncated_a_bit_flipped_a_missing_and_an_added_file_are_each_named(tmp_path):
    ckpt = save_checkpoint(RunFolder(tmp_path).checkpoint(3), write)
    weights = ckpt / "adapter_model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(4096)
    assert check(ckpt) == [f"{weights}: 4096 bytes, 10240 when it was saved (truncated)"]

    flipped = bytearray(WEIGHTS)
    flipped[5000] ^= 0x01  # one bit inside the data: same size, same header
    weights.write_bytes(bytes(flipped))
    now = hashlib.sha256(bytes(flipped)).hexdigest()
    assert check(ckpt) == [f"{weights}: sha256 {now[:12]}..., {hashlib.sha256(WEIGHTS).hexdigest()[:12]}... when it "
                           "was saved (same size, other bytes: a disk or copy error)"]

    weights.write_bytes(WEIGHTS)
    (ckpt / STATE_DIR / "loop.json").unlink()
    (ckpt / "extra.safetensors").write_bytes(b"x")
    assert check(ckpt) == [f"{ckpt / STATE_DIR / 'loop.json'}: missing (11 bytes when it was saved)",
                           f"{ckpt / 'extra.safetensors'}: not part of the save (a file added after it)"]


def test_a_marker_of_an_older_shipsft_is_accepted_unchecked_and_no_marker_is_named(tmp_path):
    d = tmp_path / "old"
    write(d)
    assert check(d) == [f"{d}: no COMPLETE marker (its save did not finish, or it was not written by shipsft)"]
    (d / COMPLETE).write_text("ok\n")
    assert recorded(d) is None and check(d) == []


def test_a_copy_is_checked_against_the_record_of_its_source(tmp_path):
    folder = RunFolder(tmp_path)
    ckpt = save_checkpoint(folder.checkpoint(3), write)
    with open(ckpt / "adapter_model.safetensors", "r+b") as f:  # damaged after its save, before promotion
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(DamagedFolder) as e:
        copy_weights(ckpt, folder.final)
    assert e.value.lines[0].startswith(f"{folder.final / 'adapter_model.safetensors'}: differs from the record of the "
                                       "folder it was copied from")
    assert not folder.final.exists() and not list(tmp_path.glob(".final*"))  # nothing half-promoted


def test_a_rewritten_file_keeps_the_folder_sealed(tmp_path):
    hf = save_atomic(tmp_path / "hf", lambda d: (d.mkdir(), (d / "README.md").write_text("card v1")))
    replace_file(hf, "README.md", "card v2 with the parity lines")
    assert check(hf) == [] and recorded(hf)["README.md"]["size"] == len("card v2 with the parity lines")
    assert sorted(p.name for p in hf.iterdir()) == [COMPLETE, "README.md"]  # no temporary file left


def test_a_save_killed_between_its_renames_gets_the_previous_folder_back(tmp_path):
    target = save_atomic(tmp_path / "adapter", lambda d: (d.mkdir(), (d / "w").write_text("v1")))
    os.replace(target, tmp_path / f".adapter.old{os.getpid() + 1}")  # killed after moving the old one aside
    (tmp_path / ".adapter.tmp77").mkdir()  # ... with its new folder not yet in place
    recover(target)
    assert (target / "w").read_text() == "v1" and check(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_verified_weights_and_verify_run_name_every_damaged_folder(tmp_path):
    folder = RunFolder(tmp_path / "run")
    for step in (2, 4):
        save_checkpoint(folder.checkpoint(step), write)
    folder.checkpoint(6).mkdir()  # an interrupted save
    copy_weights(folder.checkpoint(4), folder.final)
    assert verified_weights(folder) == (folder.final, "")
    with open(folder.final / "adapter_model.safetensors", "r+b") as f:
        f.truncate(10)
    with pytest.raises(DamagedFolder) as e:
        verified_weights(folder)
    assert e.value.lines[0] == f"{folder.final / 'adapter_model.safetensors'}: 10 bytes, 10240 when it was saved " \
                               "(truncated)"
    assert e.value.lines[1].startswith(f"{folder.final}: its files differ from what its save recorded, so nothing "
                                       "was loaded. Fix:")
    found = {f.path.relative_to(folder.root).as_posix(): f.status for f in verify_run(folder.root)}
    assert found == {"checkpoints/step-2": OK, "checkpoints/step-4": OK, "checkpoints/step-6": NOTE, "final": DAMAGED}
    verified(folder.checkpoint(2))  # intact: no error
