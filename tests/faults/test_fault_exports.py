"""Exports that are atomic: a real `kill -9` of `shipsft export` while it writes hf/ leaves the previous hf/ in place,
intact as its save recorded it, and the next export replaces it cleanly; a full disk (a real tmpfs) during an export is
one line, exit 2, and the previous export stays intact. A LoRA run on the 4M-parameter tiny Llama (hf/ is 16 MB in
f32, 8 MB in f16: slow enough to be caught midway)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faultkit import BIG, LORA, cli, kill_when, shipsft, small_disk
from helpers import write_tiny_run
from shipsft.runs.integrity import check, recorded
from shipsft.runs.jsonio import read_json
from shipsft.runs.layout import RunFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunFolder:
    tmp = tmp_path_factory.mktemp("export")
    path = write_tiny_run(tmp, model_kw=BIG, **LORA, train={"max_steps": 2, "batch_size": 8, "precision": "fp32"})
    code, out = cli("train", path)
    assert code == 0, out
    return RunFolder(tmp / "runs" / "t")


def test_kill_9_during_an_export_keeps_the_previous_one(run, tmp_path):
    out = tmp_path / "export"
    code, text = cli("export", run.root, "--to", "hf", "--skip-check", "--out", out)
    assert code == 0, text
    before = recorded(out / "hf")
    record = read_json(out / "export.json")
    proc = shipsft("export", run.root, "--to", "hf", "--dtype", "f16", "--skip-check", "--out", out)
    caught = kill_when(proc, lambda: next(out.glob(".hf.tmp*"), None))
    if caught is None:
        pytest.skip("the export finished before the test saw it in progress")
    assert recorded(out / "hf") == before and check(out / "hf") == []  # the f32 export, byte for byte
    assert read_json(out / "export.json") == record
    assert cli("verify", run.root)[0] == 0
    code, text = cli("export", run.root, "--to", "hf", "--dtype", "f16", "--skip-check", "--out", out)
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "hf"]  # the killed one's leftovers are gone
    assert check(out / "hf") == [] and recorded(out / "hf") != before
    assert read_json(out / "hf" / "config.json")["dtype"] == "float16"


def test_a_full_disk_during_an_export_is_one_line_and_the_previous_export_stays(run, tmp_path):
    params = read_json(run.manifest)["total_params"]
    # room for the f16 export (2 bytes a parameter) and half of the f32 one (4): the second cannot fit beside the first
    with small_disk(tmp_path / "disk", (2 * params + 2 * params) // 2**20 + 1) as disk:
        code, text = cli("export", run.root, "--to", "hf", "--dtype", "f16", "--skip-check", "--out", disk)
        assert code == 0, text
        before = recorded(disk / "hf")
        code, text = cli("export", run.root, "--to", "hf", "--dtype", "f32", "--skip-check", "--out", disk)
        errors = [x for x in text.splitlines() if x.startswith("error: ")]
        assert code == 2 and len(errors) == 1 and "Traceback" not in text, text
        assert errors[0].startswith(f"error: export: could not write {disk / 'hf'}: no space left on the device (")
        assert errors[0].endswith(f"MB free); every folder of {disk} is either the previous one or complete (each is "
                                  "replaced only once written). Fix: free space, or write the export to a disk with "
                                  "room (--out DIR), then export again")
        assert recorded(disk / "hf") == before and check(disk / "hf") == []  # the f16 export, intact
        assert sorted(p.name for p in Path(disk).iterdir()) == ["export.json", "hf"]
        shutil.rmtree(disk / "hf")  # (so the tmpfs unmounts with nothing open)
