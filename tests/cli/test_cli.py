"""The command line as a user meets it: --version, `config explain`, and user mistakes as one line, exit 2, no
traceback (each case is run in-process through typer's runner; tests/data/test_formats.py runs real subprocesses)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shipsft import __version__
from shipsft.cli.main import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "300"})
    return res.exit_code, res.output, res.exception  # click >= 8.2: output holds stdout and stderr


def test_version():
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"shipsft {__version__}"


def test_config_explain_one_key_a_section_and_a_typo():
    code, out, _ = run("config", "explain", "train.save_every")
    assert code == 0 and out.startswith("train.save_every (int | None, default null): Save a checkpoint every N")
    code, out, _ = run("config", "explain", "eval")
    assert code == 0 and "eval.gates.N.op (" in out and "eval.suites.N.max_new_tokens (int | None, default null)" in out
    code, out, _ = run("config", "explain", "optim.betaz")
    assert code == 2 and "did you mean 'optim.betas'" in out


@pytest.mark.parametrize("case", ["folder", "latin1", "not_gguf", "unknown_key"])
def test_user_mistakes_are_one_line_exit_2_no_traceback(tmp_path, case):
    if case == "folder":
        args, says = ("audit", tmp_path), f"{tmp_path}: is a folder; give the config YAML file"
    elif case == "latin1":
        p = tmp_path / "c.yaml"
        p.write_bytes("output:\n  name: Zürich\n".encode("latin-1"))
        args, says = ("preview", p), "not valid UTF-8"
    elif case == "not_gguf":
        (tmp_path / "m.gguf").write_text("hello")
        (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
        p = tmp_path / "c.yaml"
        p.write_text(f"model:\n  path: {tmp_path / 'm.gguf'}\ndata:\n  train: x.jsonl\n")
        args, says = ("audit", p), "is not a GGUF file"
    else:
        p = tmp_path / "c.yaml"
        p.write_text("trian:\n  epochs: 2\n")
        args, says = ("train", p), "unknown key 'trian' — did you mean 'train'?"
    code, out, exc = run(*args)
    assert code == 2 and isinstance(exc, SystemExit), out
    lines = [x for x in out.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], out
    assert "Traceback" not in out


def test_missing_files_name_the_config_file_and_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  path: ./models/nope\ndata:\n  train: [trian.jsonl]\neval:\n  suites:\n"
                 "    - {name: qa, data: qa.jsonl}\n")
    code, out, _ = run("train", p)
    lines = [x for x in out.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 3, out
    assert lines[0] == f"error: {p}: data.train: trian.jsonl: file not found (relative paths are read from {tmp_path})"
    assert lines[1].startswith(f"error: {p}: eval.suites.0.data: qa.jsonl: file not found")
    assert lines[2].startswith(f"error: {p}: model.path: './models/nope' is not a local folder")
