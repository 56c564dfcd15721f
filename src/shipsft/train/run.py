"""`shipsft train CONFIG`: setup -> fit -> finish.

setup   load the tokenizer, prepare the data once (strict=False, so the audit sees every problem), audit it and
        refuse on errors, load and adapt the model, build the optimizer, the eval session and the run folder;
fit     the loop (`train/loop.py`);
finish  choose the checkpoint to ship (`eval.gates.choose`), copy it to final/ (`runs.checkpoint.copy_weights`),
        write promotion.json and report.html.

    code = run_train(load_config("examples/quickstart/config.yaml"), config_path=..., progress=Silent())
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from shipsft.audit.findings import AuditResult
from shipsft.audit.run import run_audit
from shipsft.config import RunConfig
from shipsft.data.pipeline import Prepared, prepare
from shipsft.errors import DataError
from shipsft.eval import gates, session
from shipsft.eval.suites import before_after, before_after_text
from shipsft.model.load import load_for_training, quantization_config
from shipsft.model.locate import load_tokenizer
from shipsft.model.precision import autocast_dtype, pick_device
from shipsft.report.audit import render_html as render_audit_html
from shipsft.report.run import render_report
from shipsft.runs.checkpoint import copy_weights
from shipsft.runs.jsonio import read_json, write_json, write_text_atomic
from shipsft.runs.layout import RunFolder, run_folder_for
from shipsft.runs.manifest import read_manifest, update_manifest, write_manifest
from shipsft.runs.sinks import MetricsSink, read_evals, read_metrics
from shipsft.train.loop import FitResult, Progress, Setup, Silent, fit
from shipsft.train.loss import decoder_and_head
from shipsft.train.optim import build_optimizers
from shipsft.train.schedule import plan_steps


def write_audit(result: AuditResult, folder: Path) -> tuple[Path, Path]:
    """audit.json + audit.html into `folder` (a run folder, or `shipsft audit --out`)."""
    f = RunFolder(Path(folder))
    write_json(f.audit_json, result.to_dict(), indent=1)
    write_text_atomic(f.audit_html, render_audit_html(result.to_dict()))
    return f.audit_json, f.audit_html


def audit_gate(cfg: RunConfig, tokenizer, prep: Prepared, folder: RunFolder, skip_audit: bool,
               progress: Progress) -> None:
    """Audit the split about to be trained (into the run folder); refuse on errors unless --skip-audit. Problems
    that make training itself wrong (overlong under data.overlong: error, examples with nothing to train) are
    refused even then."""
    result = run_audit(cfg, tokenizer, prep)
    write_audit(result, folder.root)
    if result.errors and not skip_audit:
        raise result.as_error()
    if prep.problems:
        raise DataError([line for p in prep.problems for line in p.lines])
    if result.errors:
        progress.note(f"--skip-audit: training despite {len(result.errors)} audit error(s) (see "
                      f"{folder.audit_json}; recorded in manifest.json)")
    elif result.warnings:
        progress.note(f"audit: {len(result.warnings)} warning(s), see {folder.audit_json}")


def setup(cfg: RunConfig, config_path: str | Path | None, skip_audit: bool, argv: list[str] | None,
          progress: Progress) -> Setup:
    torch.manual_seed(cfg.train.seed)
    device = pick_device()
    if cfg.method.name == "qlora":
        quantization_config(cfg.method, device)  # no CUDA / no bitsandbytes: fail before any data work
    amp = autocast_dtype(cfg.train.precision, device)
    tokenizer = load_tokenizer(cfg.model)
    folder = run_folder_for(cfg.output, config_path)
    train_prep = prepare(cfg.data, tokenizer, "train", strict=False, rejects_path=folder.rejects("train"))
    eval_prep = (prepare(cfg.data, tokenizer, "eval", strict=True, rejects_path=folder.rejects("eval"),
                         renderer=train_prep.renderer) if cfg.data.eval else None)
    progress.note(f"data: {len(train_prep.rendered)} train examples ({train_prep.format}) -> {len(train_prep.rows)} "
                  f"rows of <= {cfg.data.max_length} tokens, {train_prep.n_trained:,} trained tokens, "
                  f"packing efficiency {train_prep.efficiency:.1%}")
    for note in train_prep.notes:
        progress.note(f"note: {note}")
    folder.root.mkdir(parents=True, exist_ok=True)
    audit_gate(cfg, tokenizer, train_prep, folder, skip_audit, progress)
    model, info = load_for_training(cfg.model, cfg.method, cfg.train.gradient_checkpointing, device)
    progress.note(f"model: {info.model_dir} on {device}; {info.summary()}; precision {amp or torch.float32}; "
                  f"lr {cfg.optim.lr:g}")
    if cfg.train.compile:  # packing is off here (a config rule): compile the decoder stack in place
        decoder_and_head(model)[0].compile()
    fingerprints = {"train": train_prep.fingerprint, **({"eval": eval_prep.fingerprint} if eval_prep else {})}
    if argv and os.environ.get("SHIPSFT_ARGV0"):  # re-executed under tcmalloc (cli/allocator.py)
        argv = [os.environ["SHIPSFT_ARGV0"], *argv[1:]]
    write_manifest(folder, cfg, argv=argv, fingerprints=fingerprints, extra={
        "skip_audit": skip_audit, "model_dir": str(info.model_dir), "trainable_params": info.trainable,
        "total_params": info.total, "allocator": os.environ.get("SHIPSFT_ALLOCATOR", "system"),
        "precision": str(amp or torch.float32)})
    if train_prep.renderer.template is not None:  # checkpoints ship the template training rendered with
        tokenizer.chat_template = train_prep.renderer.template.source
    return assemble(cfg, model, tokenizer, train_prep.rows, eval_prep.rows if eval_prep else None, folder)


def assemble(cfg: RunConfig, model, tokenizer, rows: list, eval_rows: list | None, folder: RunFolder) -> Setup:
    """The loop's Setup for a loaded model and prepared rows: optimizer, eval session, metric sink, step plan."""
    device = next(model.parameters()).device
    amp = autocast_dtype(cfg.train.precision, device)
    sess = session.build_session(cfg.eval, cfg.data, tokenizer, model, amp) if cfg.eval.suites else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Setup(cfg.train, cfg.optim, cfg.eval, cfg.method.name, model, tokenizer,
                 build_optimizers(cfg.optim, model), rows, eval_rows, sess, folder, MetricsSink(folder),
                 plan_steps(len(rows), cfg.train), amp, device, pad_id)


def finish(s: Setup, result: FitResult, progress: Progress) -> int:
    """Promotion (when eval suites ran), promotion.json and report.html. Returns the exit code (0, or 3 when no
    checkpoint passed the gates)."""
    code = 0
    if s.session is not None:
        evals = [{"step": e.step, "metrics": e.metrics} for e in result.evals]
        promo = gates.choose(s.eval, evals, result.checkpoints, s.folder.final)
        if promo.promoted:
            copy_weights(result.checkpoints[promo.step], s.folder.final)
        chosen = next((e for e in result.evals if e.step == promo.step), None)
        if chosen is not None and result.baseline is not None:
            promo.before_after = [row for suite in s.session.suites
                                  for row in before_after(suite.name, result.baseline.scores[suite.name],
                                                          chosen.scores[suite.name])]
            promo.message += "\n" + before_after_text(promo.before_after, promo.step)
        write_json(s.folder.promotion, promo.to_json())
        progress.note(promo.message)
        code = promo.exit_code
    write_report(s.folder)
    return code


def write_report(folder: RunFolder) -> Path:
    promotion = read_json(folder.promotion) if folder.promotion.exists() else None
    html = render_report(folder.root.name, read_metrics(folder), read_evals(folder), promotion, read_manifest(folder))
    return write_text_atomic(folder.report, html)


def run_train(cfg: RunConfig, config_path: str | Path | None = None, skip_audit: bool = False,
              argv: list[str] | None = None, progress: Progress | None = None) -> int:
    """Set up everything, run `fit`, finish. Returns the process exit code."""
    progress = progress or Silent()
    started = time.perf_counter()
    s = setup(cfg, config_path, skip_audit, argv, progress)
    try:
        result = fit(s, progress)
    finally:
        s.sink.close()
    code = finish(s, result, progress)
    update_manifest(s.folder, steps=result.steps, skipped_nonfinite_steps=result.n_skipped,
                    trained_tok_s=round(result.trained_tok_s, 1), wall_s=round(time.perf_counter() - started, 1))
    if result.eval_loss_before is not None:
        progress.note(f"eval loss: base {result.eval_loss_before:.4f} -> tuned {result.eval_loss_after:.4f}")
    progress.note(f"saved {s.folder.trained(s.method)} ({result.steps} steps, {result.trained_tok_s:.0f} trained "
                  f"tok/s, {result.n_skipped} skipped, {time.perf_counter() - started:.0f} s total)")
    return code
