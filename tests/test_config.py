"""Typed config: defaults, dotted overrides, every problem reported at once with close-match hints."""
from __future__ import annotations

import pytest

from shipsft.config import RunConfig, load_config
from shipsft.errors import ConfigError


def _write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_defaults_and_method_aware_lr():
    cfg = RunConfig()
    assert cfg.model.path == "smollm2"
    assert cfg.data.mask == "all_assistant" and cfg.data.train_eot and cfg.data.packing
    assert cfg.method.lora.target_modules == "all-linear" and cfg.method.lora.dropout == 0.0
    assert cfg.optim.min_lr_ratio == 0.1 and cfg.optim.max_grad_norm == 1.0
    assert cfg.resolved_lr() == 2e-4
    cfg.method.name = "full"
    assert cfg.resolved_lr() == 2e-5
    cfg.optim.lr = 1e-3
    assert cfg.resolved_lr() == 1e-3


def test_dotted_overrides_apply_before_validation(tmp_path):
    p = _write(tmp_path, "data:\n  train: [a.jsonl]\n  max_length: 512\n")
    cfg = load_config(p, ["data.max_length=1024", "method.lora.r=8", "data.template_kwargs.date_string=1 Jan 2025"])
    assert cfg.data.max_length == 1024 and cfg.method.lora.r == 8
    assert cfg.data.template_kwargs == {"date_string": "1 Jan 2025"}
    assert cfg.data.train == ["a.jsonl"]  # a single string or a list


def test_unknown_keys_all_reported_with_close_match_hints(tmp_path):
    p = _write(tmp_path, "data:\n  max_lenght: 512\n  packnig: true\nmethod:\n  lora:\n    rank: 8\ntrian: {}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, ["optim.lrr=1e-4"])
    text = "\n".join(e.value.lines)
    assert len(e.value.lines) == 5  # every problem at once
    assert "unknown key 'data.max_lenght' — did you mean 'data.max_length'?" in text
    assert "did you mean 'data.packing'?" in text
    assert "did you mean 'optim.lr'?" in text
    assert "did you mean 'train'?" in text
    assert "unknown key 'method.lora.rank'" in text and "valid keys here: r, alpha" in text
    assert all(line.startswith(str(p)) for line in e.value.lines)


def test_bad_values_name_the_key(tmp_path):
    p = _write(tmp_path, "data:\n  max_length: -3\n  mask: assistant\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    text = "\n".join(e.value.lines)
    assert "data.max_length" in text and "data.mask" in text and "'all_assistant'" in text


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    p = _write(tmp_path, "data:\n  train: train.jsonl\n")
    cfg = load_config(p)
    assert cfg.data.train == [str(tmp_path / "train.jsonl")]


def test_hash_changes_with_config():
    a, b = RunConfig(), RunConfig()
    assert a.config_hash() == b.config_hash()
    b.data.max_length = 512
    assert a.config_hash() != b.config_hash()


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    p = _write(tmp_path, "data: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["data.max_length"])


def test_cli_error_lines_print_brackets_verbatim(tmp_path):
    """Errors are printed without rich markup eating user text like '[insert …]'; exit 2, no traceback."""
    import subprocess
    import sys

    p = _write(tmp_path, "data:\n  '[insert key]': 1\n")
    out = subprocess.run([sys.executable, "-m", "shipsft.cli", "preview", str(p)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown key 'data.[insert key]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_readme_yaml_snippets_are_valid_configs():
    """Docs cannot drift from the schema: every ```yaml block in the README validates as a RunConfig."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        RunConfig.model_validate(yaml.safe_load(block))
