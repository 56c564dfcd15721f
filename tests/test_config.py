"""Typed config: defaults, dotted overrides, every problem reported at once with close-match hints."""
from __future__ import annotations

import pytest

from shipsft.config import RunConfig, load_config
from shipsft.errors import ConfigError


def _write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_defaults_and_method_aware_lr_are_resolved_into_the_config():
    cfg = RunConfig()
    assert cfg.model.path == "smollm2"
    assert cfg.data.mask == "all_assistant" and cfg.data.train_eot and cfg.data.packing
    assert cfg.method.lora.target_modules == "all-linear" and cfg.method.lora.dropout == 0.0
    assert cfg.optim.min_lr_ratio == 0.1 and cfg.optim.max_grad_norm == 1.0
    assert cfg.optim.lr == 2e-4 and cfg.optim.betas == (0.9, 0.95) and cfg.optim.eps == 1e-8
    assert cfg.optim.warmup_ratio == 0.03 and cfg.optim.warmup_steps is None
    full = RunConfig.model_validate({"method": {"name": "full"}})
    assert full.optim.lr == 2e-5 and full.method.lora is None
    assert RunConfig.model_validate({"optim": {"lr": 1e-3}}).optim.lr == 1e-3


def test_resolved_config_round_trips_unchanged():
    """The resolved config.yaml written into a run folder loads again to the same config (and hash)."""
    import yaml

    for raw in ({}, {"method": {"name": "full"}, "optim": {"warmup_steps": 5, "schedule": "constant"}},
                {"optim": {"name": "adafactor"}, "eval": {"suites": [{"name": "s", "data": "e.jsonl"}],
                                                          "smoke_every": 5}}):
        cfg = RunConfig.model_validate(raw)
        again = RunConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
        assert again == cfg and again.config_hash() == cfg.config_hash()


@pytest.mark.parametrize("raw, says", [
    ({"eval": {"gates": [{"metric": "exact_match", "value": 0.9}]}}, "eval.gates is set but eval.suites is empty"),
    ({"eval": {"early_stopping": {"metric": "exact_match"}}}, "eval.early_stopping is set but eval.suites is empty"),
    ({"eval": {"select_metric": "exact_match"}}, "eval.select_metric is set but eval.suites is empty"),
    ({"eval": {"smoke_every": 5}}, "eval.smoke_every is set but eval.suites is empty"),
    ({"eval": {"full_every": 50}}, "eval.full_every is set but eval.suites is empty"),
    ({"eval": {"suites": [{"name": "s", "data": "e.jsonl"}], "smoke_size": 4}}, "eval.smoke_size is set but"),
    ({"eval": {"suites": [{"name": "s", "data": "e.jsonl"}], "judge_url": "http://x/v1"}},
     "eval.judge_url is set but no suite uses the judge metric"),
    ({"eval": {"suites": [{"name": "s", "data": "a"}, {"name": "s", "data": "b"}]}}, "names must be unique"),
    ({"optim": {"warmup_steps": 3, "warmup_ratio": 0.1}}, "optim.warmup_steps and optim.warmup_ratio are both set"),
    ({"optim": {"name": "adafactor", "betas": [0.9, 0.99]}}, "optim.betas is not used by optim.name=adafactor"),
    ({"optim": {"name": "adafactor", "eps": 1e-6}}, "optim.eps is not used by optim.name=adafactor"),
    ({"optim": {"name": "lion", "eps": 1e-6}}, "optim.eps is not used by optim.name=lion"),
    ({"optim": {"schedule": "constant", "min_lr_ratio": 0.2}}, "optim.min_lr_ratio is not used by"),
    ({"method": {"name": "full", "lora": {"r": 8}}}, "method.lora is set but method.name is full"),
    ({"train": {"eval_every": 10}}, "train.eval_every is set but data.eval is empty"),
    ({"data": {"rejects_file": "r.jsonl"}}, "data.rejects_file is only used with data.on_invalid: skip"),
    ({"train": {"compile": True}, "model": {"attn_implementation": "sdpa"}}, "train.compile with data.packing"),
])
def test_a_knob_that_would_be_ignored_is_a_startup_error(tmp_path, raw, says):
    import yaml

    p = _write(tmp_path, yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert any(says in line and line.startswith(str(p)) for line in e.value.lines), e.value.lines
    assert any("Fix:" in line or "unique" in line or "needs" in line for line in e.value.lines)


def test_every_problem_of_a_section_is_one_line(tmp_path):
    p = _write(tmp_path, "eval:\n  gates: [{metric: exact_match, value: 1}]\n  select_metric: exact_match\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert len(e.value.lines) == 2


def test_list_items_are_overridable_by_index(tmp_path):
    p = _write(tmp_path, "eval:\n  suites:\n    - {name: a, data: a.jsonl}\n    - {name: b, data: b.jsonl}\n")
    cfg = load_config(p, ["eval.suites.1.max_new_tokens=8", "eval.suites.0.metrics=[json_valid]"])
    assert [s.max_new_tokens for s in cfg.eval.suites] == [None, 8]
    assert cfg.eval.suites[0].metrics == ["json_valid"]
    with pytest.raises(ConfigError, match=r"eval.suites is a list of 2 item\(s\); use an index 0..1"):
        load_config(p, ["eval.suites.5.max_new_tokens=8"])


def test_explain_prints_type_default_and_description():
    from shipsft.config import all_keys, explain

    [line] = explain("optim.lr")
    assert line.startswith("optim.lr (float | None, default null): Peak learning rate.")
    assert explain("eval.suites.0.max_new_tokens")[0].startswith("eval.suites.N.max_new_tokens (int | None, default null)")
    assert len(explain("train")) == 1 + len(RunConfig.model_fields["train"].annotation.model_fields)
    assert all(RunConfig.model_fields[k].description for k in RunConfig.model_fields)
    every = explain()
    assert len(every) == len(all_keys()) and all(": " in line and line.split(": ", 1)[1] for line in every)
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        explain("optim.lrr")


def test_a_config_that_is_a_folder_or_not_utf8_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; give the config YAML file"):
        load_config(tmp_path)
    p = tmp_path / "latin1.yaml"
    p.write_bytes("data:\n  template_kwargs: {city: 'Z\u00fcrich'}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not valid UTF-8 .*save the config as UTF-8"):
        load_config(p)


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
    out = subprocess.run([sys.executable, "-m", "shipsft", "preview", str(p)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown key 'data.[insert key]'" in out.stderr
    assert "Traceback" not in out.stderr
