"""Pre-flight audit: catch the failures that happen before training starts (seed 001: "most failed SFT runs failed
before training started").

`shipsft audit CONFIG` loads the tokenizer, reads and renders the data exactly as training would, and runs every
check: template (parity, prefix stability, end-of-turn trained, role markers, double BOS, pad == eos, saved template),
masks, lengths, duplicates, contamination against the eval data, content quality, data size vs recipe, provenance.
It prints a summary with the fix for each finding, writes `audit.json` and `audit.html` (plots), and exits 1 on
errors. `shipsft train` calls `audit_for_training` and refuses to start on errors unless `--skip-audit`.

    shipsft audit examples/quickstart/config.yaml            # -> runs/audit-config/audit.{json,html}

    from shipsft.data.audit import run_audit
    result = run_audit(cfg, tokenizer, prepare(cfg, tokenizer))
    result.errors, result.warnings, result.stats["lengths"]["total"]["p99"]
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipsft.data.audit_findings import AuditResult, Finding
from shipsft.data.audit_template import check_template
from shipsft.data.audit_text import Corpus, check_contamination, check_content, check_duplicates, texts_of
from shipsft.data.audit_tokens import check_lengths, check_masks, check_provenance, check_recipe
from shipsft.errors import ShipError

__all__ = ["AuditResult", "Finding", "audit_for_training", "load_eval_sets", "prepare_for_audit", "run_audit",
           "run_audit_cli", "write_audit"]

TEMPLATE_SAMPLE = 64  # examples re-rendered for parity: ~1 ms each; 64 finds any systematic template bug


def model_max_positions(tokenizer) -> int | None:
    """The model's position limit from the config next to the tokenizer, else the tokenizer's own limit."""
    folder = Path(str(tokenizer.name_or_path))
    if (folder / "config.json").exists():  # only ever a local folder: never a hub lookup
        try:
            from transformers import AutoConfig

            conf = AutoConfig.from_pretrained(folder)
            conf = getattr(conf, "text_config", None) or conf
            n = getattr(conf, "max_position_embeddings", None)
            if n:
                return int(n)
        except Exception:  # noqa: BLE001 - an unreadable config: fall back to the tokenizer's limit
            pass
    n = getattr(tokenizer, "model_max_length", None)
    return int(n) if n and n < 10_000_000 else None  # transformers uses 1e30 for "unset"


def load_eval_sets(cfg) -> tuple[dict[str, list], list, list[Finding]]:
    """Eval examples for the contamination check: the eval split and every eval suite (JSONL conversations)."""
    from shipsft.data.formats import load_examples

    sets: dict[str, list] = {}
    files: list = []
    findings: list[Finding] = []
    wanted = []
    if cfg.data.eval:
        wanted.append(("data.eval", list(cfg.data.eval), cfg.data.format))
    for suite in cfg.eval.suites:
        wanted.append((f"suite {suite.name}", [suite.data], suite.format))
    for name, paths, fmt in wanted:
        try:
            loaded = load_examples(paths, fmt=fmt)
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


def run_audit(cfg, tokenizer, prepared, *, eval_sets: dict[str, list] | None = None,
              eval_files: list | None = None, max_positions: int | None = None,
              extra_findings: list[Finding] | None = None) -> AuditResult:
    """Every check over one prepared training split. `eval_sets` (name -> Examples) default to cfg's eval data."""
    timings: dict[str, float] = {}
    findings: list[Finding] = list(extra_findings or [])
    stats: dict[str, Any] = {"timings": timings}
    t_start = time.perf_counter()
    examples, rendered = prepared.examples, prepared.rendered
    d = cfg.data

    texts = _timed(timings, "text.extract", lambda: texts_of(examples, d.mask))
    renderer = getattr(prepared, "renderer", None)
    tmpl = getattr(renderer, "template", None)
    if rendered:
        source = None if tmpl is None or tmpl.origin == "tokenizer" else tmpl.source
        f, stats["template"] = check_template(
            tokenizer, examples, rendered, template_source=source, template_kwargs=d.template_kwargs,
            system_message=d.system_message, mode=d.mask, train_eot=d.train_eot, sample=TEMPLATE_SAMPLE,
            seed=cfg.train.seed, timings=timings)
        findings += f
        f, stats["masks"] = _timed(timings, "masks", lambda: check_masks(rendered, d.max_length))
        findings += f
        model_max = max_positions if max_positions is not None else model_max_positions(tokenizer)
        eff = prepared.efficiency if (d.packing and getattr(prepared, "rows", None)) else None
        f, stats["lengths"] = _timed(timings, "lengths", lambda: check_lengths(
            rendered, d.max_length, cfg.train.batch_rows, d.packing, cfg.train.seed, model_max, eff, d.overlong))
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
    f, stats["content"] = _timed(timings, "content", lambda: check_content(texts))
    findings += f

    rows = getattr(prepared, "rows", None)
    n_rows = len(rows) if rows else stats.get("lengths", {}).get("rows", len(rendered))
    trained = sum(r.n_trained for r in rendered)
    f, stats["recipe"] = _timed(timings, "recipe", lambda: check_recipe(
        len(examples), trained, cfg.method.name, cfg.train.epochs, cfg.train.max_steps, cfg.train.batch_rows,
        cfg.train.grad_accum, n_rows))
    findings += f

    paths = {"train": list(d.train), "eval": list(d.eval)}
    for suite in cfg.eval.suites:
        paths[f"suite:{suite.name}"] = [suite.data]
    all_examples = {"train": examples, **eval_sets}
    files = list(getattr(prepared, "files", None) or []) + list(eval_files or [])
    f, stats["provenance"] = _timed(timings, "provenance", lambda: check_provenance(paths, all_examples, files))
    findings += f

    n_rejected = getattr(prepared, "n_rejected", 0) or 0
    if n_rejected:
        findings.append(Finding(
            "data.rejected", "warning",
            f"{n_rejected} record(s) were invalid and skipped (data.on_invalid: skip); they are in the rejects file.",
            fix="fix them at the source, or accept the loss knowingly"))
    timings["total"] = round(time.perf_counter() - t_start, 3)
    stats["overview"] = {
        "examples": len(examples), "sequences": len(rendered), "tokens": sum(len(r.ids) for r in rendered),
        "trained_tokens": trained, "format": getattr(prepared, "format", ""),
        "eval_sets": {k: len(v) for k, v in eval_sets.items()},
    }
    meta = {
        "model": cfg.model.path, "config_hash": cfg.config_hash(), "fingerprint": getattr(prepared, "fingerprint", ""),
        "template": getattr(tmpl, "origin", None), "mask": d.mask, "max_length": d.max_length,
        "method": cfg.method.name, "notes": list(getattr(prepared, "notes", []) or []),
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    return AuditResult(findings, stats, meta)


def prepare_for_audit(cfg, tokenizer) -> tuple[Any, list[Finding]]:
    """The training split as `prepare` builds it, but without stopping at the first problem.

    `prepare` refuses overlong and zero-trained examples (right for training); the audit wants to *see* them, with
    their full lengths, so it renders with the same functions (and the same rendered-data cache, so the training
    run that follows does not tokenise again) and keeps the untruncated sequences. It builds no rows: the lengths
    check measures packing with the packer's own best-fit-decreasing on the lengths (building rows would compute
    labels for every token, ~3 s per 100k conversations). A template that raises becomes an error finding and
    the text-level checks still run.
    """
    from shipsft.data.pack import Prepared, _render_cached, load_split, renderer_for

    loaded = load_split(cfg, "train", rejects_tag="audit")
    findings: list[Finding] = []
    renderer, rendered = None, []
    try:
        renderer = renderer_for(cfg, tokenizer, loaded.examples)
        rendered = _render_cached(renderer, loaded, cfg.data)  # the same fingerprint cache `prepare` uses
    except ShipError as e:
        findings.append(Finding("template.render", "error", "rendering the training data failed: " + e.lines[0],
                                fix=" ".join(e.lines[1:])[:400] or "see the message", data={"lines": e.lines[:20]}))
    prepared = Prepared("train", loaded.examples, rendered, [], 0.0, loaded.format, renderer,
                        list(loaded.notes), list(loaded.files), loaded.n_rejected)
    return prepared, findings


def write_audit(result: AuditResult, out_dir: str | Path) -> tuple[Path, Path]:
    from shipsft.audit_report import render_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, h = out / "audit.json", out / "audit.html"
    j.write_text(result.to_json())
    h.write_text(render_html(result), encoding="utf-8")
    return j, h


def audit_for_training(cfg, tokenizer, prepared, run_dir: str | Path) -> AuditResult:
    """Audit the split `shipsft train` is about to train on; writes audit.json + audit.html into the run folder.

    The caller refuses to start when `result.errors` is non-empty (raise `result.as_error()`), unless --skip-audit.
    """
    result = run_audit(cfg, tokenizer, prepared)
    write_audit(result, run_dir)
    return result


_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def print_summary(result: AuditResult, console, paths: tuple[Path, Path] | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    ov = result.stats.get("overview", {})
    console.print(f"[bold]shipsft audit[/bold]  {ov.get('examples', 0):,} examples -> {ov.get('sequences', 0):,} "
                  f"sequences, {ov.get('tokens', 0):,} tokens ({ov.get('trained_tokens', 0):,} trained)")
    table = Table(show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding and fix", ratio=1)
    for f in result.sorted_findings():
        body = Text(f.message)
        if f.fix:
            body.append("\nfix: ", style="bold green")
            body.append(f.fix)
        if f.examples:
            more = f.data.get("count", len(f.examples)) - min(3, len(f.examples))
            body.append("\ne.g. " + ", ".join(f.examples[:3]) + (f" (+{more} more)" if more > 0 else ""), style="dim")
        table.add_row(Text(f.severity, style=_STYLE[f.severity]), f.check, body)
    console.print(table)
    n_e, n_w, n_i = len(result.errors), len(result.warnings), len(result.infos)
    verdict = ("[bold red]training would refuse to start[/bold red]" if n_e
               else "[bold green]ready to train[/bold green]")
    console.print(f"{n_e} error(s), {n_w} warning(s), {n_i} info — {verdict}")
    if paths:
        console.print(Text(f"wrote {paths[0]} and {paths[1]}"))  # Text: a path is never read as rich markup


def run_audit_cli(cfg, out_dir: str | Path | None = None, console=None, config_path: str | Path | None = None) -> int:
    """`shipsft audit CONFIG`: returns the exit code (1 when there are errors)."""
    from rich.console import Console

    from shipsft.source import load_tokenizer

    console = console or Console()
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.gguf_file, cfg.model.trust_remote_code)
    prepared, findings = prepare_for_audit(cfg, tokenizer)
    result = run_audit(cfg, tokenizer, prepared, extra_findings=findings)
    if out_dir is None:
        stem = Path(config_path).stem if config_path else "config"
        out_dir = Path(cfg.output.dir) / f"audit-{stem}"
    paths = write_audit(result, out_dir)
    print_summary(result, console, paths)
    return 1 if result.errors else 0
