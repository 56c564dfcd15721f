"""Pre-flight audit: catch the failures that happen before training starts, when fixing them is cheap.

`run_audit` takes the training split exactly as the data pipeline prepared it (`data.pipeline.prepare` with
strict=False, so blocking problems are recorded instead of raised) and runs every check: template (parity, prefix
stability, end-of-turn trained, role markers, double BOS, pad == eos, saved template), masks, lengths,
duplicates, contamination against the eval data (copies, and shared sentence patterns: audit/patterns.py),
content quality, data size vs recipe (the run resolved by `steps/resolve.py`, as training resolves it), provenance.
It returns findings and writes nothing: `shipsft audit` prints and saves them, `shipsft train` saves them into the
run folder and refuses to start on errors unless `--skip-audit`.

    result = run_audit(cfg, tokenizer, prepare(cfg.data, tokenizer, "train", strict=False, rejects_path=None),
                       joined=rows_join(cfg.model, cfg.train, hf_config(cfg.model)))
    result.errors, result.warnings, result.stats["lengths"]["total"]["p99"]
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from shipsft.audit.findings import AuditResult, Finding
from shipsft.audit.patterns import check_pattern_leakage
from shipsft.audit.full import full_set_checks
from shipsft.audit.template import check_template
from shipsft.audit.text import Corpus, check_contamination, check_content, check_duplicates, texts_of
from shipsft.audit.tokens import batch_figures, check_lengths, check_masks, check_provenance, check_recipe
from shipsft.config import RunConfig
from shipsft.errors import ShipError
from shipsft.data.pack import Batching
from shipsft.data.pipeline import model_max_positions
from shipsft.data.store import token_lengths, trained_counts
from shipsft.steps.resolve import resolve

TEMPLATE_SAMPLE = 64  # examples re-rendered for parity: ~1 ms each; 64 finds any systematic template bug


def load_eval_sets(cfg: RunConfig) -> tuple[dict[str, list], list, list[Finding]]:
    """Eval examples for the contamination check: the eval split and every eval suite (JSONL conversations)."""
    from shipsft.data.formats import load_examples
    from shipsft.data.hub import DatasetRef, ref_for

    sets: dict[str, list] = {}
    files: list = []
    findings: list[Finding] = []
    wanted = []
    if cfg.data.eval:
        wanted.append(("data.eval", list(cfg.data.eval), cfg.data.format, ref_for(cfg.data, "eval")))
    for suite in cfg.eval.suites:
        wanted.append((f"suite {suite.name}", [suite.data], suite.format, DatasetRef()))
    for name, paths, fmt, ref in wanted:
        try:
            loaded = load_examples(paths, fmt, "error", None, cfg.data.allow_any_role_order, ref)
        except ShipError as e:
            findings.append(Finding("contamination.load", "error", f"could not read {name}: {e.lines[0]}",
                                    fix="fix the eval data (every problem is listed by `shipsft audit`)",
                                    data={"lines": e.lines[:20]}))
            continue
        sets[name] = loaded.examples
        files += list(loaded.files)
    return sets, files, findings


def _timed(timings: dict, name: str, fn: Callable[[], Any]) -> Any:
    """fn(), with its wall time recorded under `name` (bench/audit.py prints these)."""
    t0 = time.perf_counter()
    out = fn()
    timings[name] = round(time.perf_counter() - t0, 3)
    return out


def run_audit(cfg: RunConfig, tokenizer, prepared, *, joined: bool = False, eval_sets: dict[str, list] | None = None,
              eval_files: list | None = None, max_positions: int | None = None) -> AuditResult:
    """Every check over one prepared training split. `joined`: whether the loop joins a micro-batch's rows into one
    (model/attention.py: rows_join; the caller knows the model), for the padding figures. `eval_sets` (name ->
    Examples) default to cfg's eval data."""
    timings: dict[str, float] = {}
    findings: list[Finding] = []
    if prepared.render_failed:  # the template raised: report it; the text-level checks below still run
        e = prepared.problems[0]
        findings.append(Finding("template.render", "error", "rendering the training data failed: " + e.lines[0],
                                fix=" ".join(e.lines[1:])[:400] or "see the message", data={"lines": e.lines[:20]}))
    stats: dict[str, Any] = {"timings": timings}
    t_start = time.perf_counter()
    examples, rendered = prepared.examples, prepared.rendered
    sampled = prepared.sampled
    seen = prepared.sample_rendered()  # the sequences of `examples`: every one, or those of the sample
    d = cfg.data
    max_length = prepared.max_length  # resolved from 'auto' by the pipeline
    # the run resolved as training resolves it, so the recipe check and the padding figures see the loop's steps
    resolved = resolve(cfg, prepared)
    batching = Batching.of(resolved.config.data, resolved.config.train, joined)

    texts = _timed(timings, "text.extract", lambda: texts_of(examples, d.mask))
    tmpl = getattr(prepared.renderer, "template", None)
    turn_end = getattr(prepared.renderer, "turn_end", None)
    if turn_end is not None:
        stop = turn_end.stop_token
        stop_id = tokenizer.convert_tokens_to_ids(stop) if stop else None
        stats["turn_end"] = {"close_final": turn_end.close_final, "close_nonfinal": turn_end.close_nonfinal,
                             "after_final": turn_end.after_final, "stop_token": stop, "stop_id": stop_id}
        findings.append(Finding("template.turn_end", "info", f"end of turn: {turn_end.describe()}"
                                + (f"; generation stops at {stop!r} (id {stop_id})" if stop else "")))
    if rendered:
        source = None if tmpl is None or tmpl.origin == "tokenizer" else tmpl.source
        f, stats["template"] = check_template(
            tokenizer, examples, seen, template_source=source, template_kwargs=d.template_kwargs,
            system_message=d.system_message, mode=d.mask, train_eot=d.train_eot, sample=TEMPLATE_SAMPLE,
            seed=cfg.train.seed, timings=timings)
        findings += f
        f, stats["masks"] = _timed(timings, "masks", lambda: check_masks(seen, max_length))
        findings += f
        model_max = max_positions if max_positions is not None else model_max_positions(tokenizer)
        seed = cfg.train.seed
        batches = _timed(timings, "batches", lambda: batch_figures(rendered, resolved.plan, seed, batching))
        packed = (batch_figures(rendered, resolved.plan, seed, replace(batching, packing=True))
                  if not batching.packing else None)
        f, stats["lengths"] = _timed(timings, "lengths", lambda: check_lengths(
            rendered, prepared.full_lengths, max_length, model_max, d.overlong, batches, packed))
        findings += f
    corpus = _timed(timings, "text.words", lambda: Corpus.of(texts))  # shared by the next two checks
    f, stats["duplicates"] = _timed(timings, "duplicates", lambda: check_duplicates(texts, corpus=corpus))
    findings += f

    if eval_sets is None:
        eval_sets, more_files, f = _timed(timings, "contamination.load", lambda: load_eval_sets(cfg))
        eval_files = (eval_files or []) + more_files
        findings += f
    eval_texts = {name: texts_of(exs, "all_assistant") for name, exs in eval_sets.items()}
    f, stats["contamination"] = _timed(
        timings, "contamination", lambda: check_contamination(texts, eval_texts, corpus=corpus))
    findings += f
    f, stats["patterns"] = _timed(timings, "patterns", lambda: check_pattern_leakage(examples, eval_sets))
    findings += f
    f, stats["content"] = _timed(timings, "content", lambda: check_content(texts))
    findings += f

    trained = int(trained_counts(rendered).sum())
    if sampled:  # the text-level checks above read the sample; these read every example
        f, stats["full_set"] = _timed(timings, "full_set", lambda: full_set_checks(
            d, eval_texts, rendered.source_of_example))
        redone = {x.check for x in f} | {"duplicates.exact", "contamination.exact"}
        findings = [x for x in findings if x.check not in redone] + f + [Finding(
            "audit.sampled", "info",
            f"{prepared.n_examples:,} training examples: the text-level checks (near-duplicates, n-gram overlap with "
            "the eval data, sentence-pattern leakage, content, template parity, masks) read a seeded sample of "
            f"{len(examples):,} of them; "
            "lengths, max_length, zero-trained sequences, exact duplicates and exact eval contamination read every "
            "example.", data={"examples": prepared.n_examples, "sample": len(examples)})]
    if rendered:
        n_examples = prepared.n_examples or len(examples)
        f, stats["recipe"] = _timed(timings, "recipe", lambda: check_recipe(n_examples, trained, cfg.method.name,
                                                                            resolved.plan))
        findings += f + [Finding("recipe.auto", "info", reason) for reason in resolved.reasons]

    paths = {"train": list(d.train), "eval": list(d.eval)}
    for suite in cfg.eval.suites:
        paths[f"suite:{suite.name}"] = [suite.data]
    all_examples = {"train": examples, **eval_sets}
    files = list(prepared.files) + list(eval_files or [])
    f, stats["provenance"] = _timed(timings, "provenance", lambda: check_provenance(paths, all_examples, files))
    findings += f

    n_rejected = prepared.n_rejected
    if n_rejected:
        findings.append(Finding(
            "data.rejected", "warning",
            f"{n_rejected} record(s) were invalid and skipped (data.on_invalid: skip); they are in the rejects file.",
            fix="fix them at the source, or accept the loss knowingly"))
    timings["total"] = round(time.perf_counter() - t_start, 3)
    stats["overview"] = {
        "examples": prepared.n_examples or len(examples), "sequences": len(rendered),
        "tokens": int(token_lengths(rendered).sum()),
        "trained_tokens": trained, "format": prepared.format,
        "eval_sets": {k: len(v) for k, v in eval_sets.items()},
    }
    meta = {
        "model": cfg.model.path, "config_hash": cfg.config_hash(), "fingerprint": prepared.fingerprint,
        "template": getattr(tmpl, "origin", None), "mask": d.mask, "max_length": max_length,
        "method": cfg.method.name, "notes": list(prepared.notes),
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    return AuditResult(findings, stats, meta)
