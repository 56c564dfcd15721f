"""audit/patterns.py: an eval set written from the training set's sentence patterns is a warning with the share and
the fix; one of new patterns gives no finding; a mix is an info line; and `run_audit` reports it from the config's
suites before any compute."""
from __future__ import annotations

import json

from patterns_data import PATTERNS, examples, records, templated

from shipsft.audit.patterns import check_pattern_leakage

TRAIN_PATTERNS = {k: v[:3] for k, v in PATTERNS.items()}
NEW_PATTERNS = {k: v[3:] for k, v in PATTERNS.items()}


def sets():
    train = examples(templated(180, seed=1, patterns=TRAIN_PATTERNS)[0])
    leaked = examples(templated(40, seed=2, patterns=TRAIN_PATTERNS)[0], "eval.jsonl")
    clean = examples(templated(40, seed=3, patterns=NEW_PATTERNS)[0], "eval.jsonl")
    return train, leaked, clean


def test_planted_leakage_is_a_warning_with_the_share_and_the_fix():
    train, leaked, clean = sets()
    findings, stats = check_pattern_leakage(train, {"suite heldout": leaked})
    assert [(f.check, f.severity) for f in findings] == [("contamination.patterns", "warning")]
    f = findings[0]
    assert f.message.startswith("40 of 40 suite heldout example(s) (100%) share a sentence pattern with training")
    assert "shipsft init DATA" in f.fix and f.examples[:2] == ["eval.jsonl:1", "eval.jsonl:2"]
    assert stats["sets"]["suite heldout"]["share"] == 1.0


def test_clean_eval_gives_no_finding_and_a_mix_an_info_line():
    train, leaked, clean = sets()
    findings, stats = check_pattern_leakage(train, {"suite new": clean})
    assert findings == [] and stats["sets"]["suite new"] == {"n": 40, "seen": 0, "share": 0.0, "seen_ids": []}
    findings, _ = check_pattern_leakage(train, {"data.eval": leaked[:10] + clean})
    assert [(f.check, f.severity) for f in findings] == [("contamination.patterns", "info")]
    assert findings[0].message.startswith("10 of 50 data.eval example(s) (20%) share a sentence pattern")


def test_the_audit_reads_the_suites_of_the_config(tmp_path):
    from shipsft.audit.run import run_audit
    from shipsft.config import load_config
    from shipsft.data.pipeline import prepare
    from helpers import tiny_tokenizer

    for name, texts in (("train", templated(180, seed=1, patterns=TRAIN_PATTERNS)[0]),
                        ("eval", templated(40, seed=2, patterns=TRAIN_PATTERNS)[0])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(texts)))
    (tmp_path / "c.yaml").write_text("data: {train: train.jsonl, template: chatml}\n"
                                     "eval: {suites: [{name: heldout, data: eval.jsonl}]}\n")
    cfg = load_config(tmp_path / "c.yaml")
    tok = tiny_tokenizer()
    result = run_audit(cfg, tok, prepare(cfg.data, tok, "train", strict=False, rejects_path=None))
    leak = [f for f in result.findings if f.check == "contamination.patterns"]
    assert [f.severity for f in leak] == ["warning"] and "40 of 40 suite heldout" in leak[0].message
