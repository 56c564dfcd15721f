"""`shipsft train CONFIG`: the recipe. Setup in `run_train`, then one loop you can read top to bottom in `fit`.

    for step:  micro-batches fwd/bwd -> clip -> optimizer step -> LR for the next step -> log -> eval -> save

Everything the loop needs is built before it starts (model, data rows, optimizer, run folder, audit), so a bad
config or bad data fails in seconds, not after an hour. To change the loop, edit the loop: there are no callbacks.

    shipsft train examples/quickstart/config.yaml --set train.max_steps=20
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from shipsft.checkpoint import run_dir_for, save_atomic, update_manifest, write_run_files
from shipsft.config import RunConfig
from shipsft.errors import ConfigError, TrainingDiverged
from shipsft.loss import (batch_ce_sum, decoder_and_head, global_trained_tokens, loss_scale, neftune_hook,
                          trained_token_count)
from shipsft.model import autocast_dtype, load_for_training, pick_device, quantization_config, save_trained
from shipsft.optim import build_optimizers, lr_at, set_lr, warmup_steps
from shipsft.track import MetricsLog


@dataclass
class FitResult:
    steps: int
    out_dir: Path
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    train_loss: float | None = None  # mean over the last logged steps
    n_skipped: int = 0  # optimizer steps skipped for a non-finite loss or gradient
    trained_tok_s: float = 0.0
    exit_code: int = 0
    history: list[dict] = field(default_factory=list)


def step_batches(rows: list, cfg: RunConfig, pad_id: int, total_steps: int):
    """Yield (epoch, epoch_end, [micro-batch dicts]) for `total_steps` optimizer steps; rows reshuffled per epoch
    with the run seed, so a run is reproducible from its config."""
    from shipsft.data.pack import collate

    per_step = cfg.train.batch_rows * cfg.train.grad_accum
    step, epoch = 0, 0
    while step < total_steps:
        order = list(range(len(rows)))
        random.Random(cfg.train.seed + epoch).shuffle(order)
        groups = [order[i:i + per_step] for i in range(0, len(order), per_step)]
        for k, group in enumerate(groups):
            micro = [collate([rows[i] for i in group[j:j + cfg.train.batch_rows]], pad_id)
                     for j in range(0, len(group), cfg.train.batch_rows)]
            yield epoch, k == len(groups) - 1, micro
            step += 1
            if step == total_steps:
                return
        epoch += 1


@torch.no_grad()
def eval_loss(model, rows: list, pad_id: int, batch_rows: int, amp: torch.dtype | None) -> float:
    """Mean CE per trained token over the eval rows (summed, divided once: the same normalisation as training)."""
    from shipsft.data.pack import collate

    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(rows), batch_rows):
        batch = {k: v.to(device) for k, v in collate(rows[i:i + batch_rows], pad_id).items() if torch.is_tensor(v)}
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            total += float(batch_ce_sum(model, batch))
        n += trained_token_count(batch["labels"])
    model.train(was_training)
    return total / max(n, 1)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  "
                               "{task.fields[tps]:.0f} trained tok/s"),
                    TimeRemainingColumn(), console=console, transient=False)


def fit(cfg: RunConfig, model, tokenizer, train_rows: list, eval_rows: list | None, run_dir: Path,
        console: Console, evaluator=None) -> FitResult:
    """The training loop. `evaluator` is a shipsft.evaluate.TrainingEval (eval gates), or None."""
    t = cfg.train
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    steps_per_epoch = math.ceil(len(train_rows) / (t.batch_rows * t.grad_accum))
    total = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    warmup, peak = warmup_steps(cfg, total), cfg.resolved_lr()
    optimizers = build_optimizers(cfg, model)
    params = [p for p in model.parameters() if p.requires_grad]
    amp = autocast_dtype(cfg, device)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hook = base.get_input_embeddings().register_forward_hook(neftune_hook(t.neftune_alpha)) if t.neftune_alpha else None
    log = MetricsLog(run_dir / "metrics.jsonl")
    result = FitResult(steps=0, out_dir=run_dir / ("model" if cfg.method.name == "full" else "adapter"))
    if eval_rows:
        result.eval_loss_before = eval_loss(model, eval_rows, pad_id, t.batch_rows, amp)
        log.write({"step": 0, "eval_loss": result.eval_loss_before})
        console.print(f"eval loss before training: {result.eval_loss_before:.4f}")
    if evaluator is not None:
        log.write({"step": 0, **{f"baseline/{k}": v for k, v in evaluator.baseline().items()}})
    checkpoints: dict[int, Path] = {}
    consecutive_bad, trained_total, train_time, recent = 0, 0, 0.0, []
    with _progress(console) as bar:
        task = bar.add_task("train", total=total, loss=float("nan"), lr=peak, tps=0.0)
        for step, (epoch, epoch_end, micro) in enumerate(step_batches(train_rows, cfg, pad_id, total)):
            t0 = time.perf_counter()
            lr = lr_at(step, total, warmup, peak, cfg.optim.schedule, cfg.optim.min_lr_ratio)
            set_lr(optimizers, lr)
            # one denominator for the whole step: every micro-batch (and every rank) divides by the same count
            n_step = global_trained_tokens(sum(trained_token_count(mb["labels"]) for mb in micro))
            loss_sum = 0.0
            for mb in micro:
                batch = {k: v.to(device) for k, v in mb.items() if torch.is_tensor(v)}
                with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = batch_ce_sum(model, batch) * loss_scale(n_step)
                loss.backward()
                loss_sum += float(loss.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.max_grad_norm or float("inf")))
            finite = math.isfinite(loss_sum) and math.isfinite(grad_norm)
            if finite:
                for opt in optimizers:
                    opt.step()
                consecutive_bad = 0
            else:  # skip the update entirely: one NaN would poison every weight and Adam moment it touches
                result.n_skipped += 1
                consecutive_bad += 1
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            if consecutive_bad >= t.max_nonfinite_steps:
                raise TrainingDiverged([
                    f"step {step + 1}: the loss or gradient was non-finite for {consecutive_bad} optimizer steps in a "
                    f"row (loss {loss_sum}, grad norm {grad_norm}); stopped. Fix: lower optim.lr (now {peak:g}), keep "
                    "optim.max_grad_norm set, or use train.precision=fp32."])
            train_time += time.perf_counter() - t0
            trained_total += n_step
            real = sum(mb["n_real"] for mb in micro)
            slots = sum(mb["input_ids"].numel() for mb in micro)
            record = {"step": step + 1, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm,
                      "trained_tokens": n_step, "tokens": real, "padding_share": 1 - real / slots,
                      "trained_tok_s": trained_total / train_time, "skipped": not finite}
            result.history.append(record)
            if finite:
                recent = (recent + [loss_sum])[-10:]
            if (step + 1) % t.log_every == 0 or step + 1 == total:
                log.write(record)
            bar.update(task, completed=step + 1, loss=loss_sum, lr=lr, tps=record["trained_tok_s"])
            result.steps = step + 1
            if eval_rows and t.eval_every and (step + 1) % t.eval_every == 0 and step + 1 != total:
                log.write({"step": step + 1, "eval_loss": eval_loss(model, eval_rows, pad_id, t.batch_rows, amp)})
            if evaluator is not None:
                smoke = evaluator.smoke(step + 1)
                if smoke:
                    log.write({"step": step + 1, **{f"smoke/{k}": v for k, v in smoke.items()}})
                if epoch_end or step + 1 == total or evaluator.should_stop:
                    ckpt = save_atomic(lambda d: save_trained(model, tokenizer, d),
                                       run_dir / "checkpoints" / f"step-{step + 1}")
                    checkpoints[step + 1] = ckpt
                    full = evaluator.full(step + 1, epoch_end=epoch_end)
                    log.write({"step": step + 1, **{f"eval/{k}": v for k, v in full.items()}})
                if evaluator.should_stop:
                    console.print(f"early stopping at step {step + 1}")
                    break
    if hook is not None:
        hook.remove()  # the saved model never carries training noise
    result.train_loss = sum(recent) / len(recent) if recent else None
    result.trained_tok_s = trained_total / train_time if train_time else 0.0
    if eval_rows:
        result.eval_loss_after = eval_loss(model, eval_rows, pad_id, t.batch_rows, amp)
        log.write({"step": result.steps, "eval_loss": result.eval_loss_after})
    save_atomic(lambda d: save_trained(model, tokenizer, d), result.out_dir)
    log.close()
    if evaluator is not None:
        promotion = evaluator.finalize(checkpoints)  # also writes report.html
        console.print(promotion.message)
        result.exit_code = promotion.exit_code
    else:
        from shipsft.report import write_report

        write_report(run_dir)  # loss / lr / grad-norm curves even without eval suites
    return result


def _audit(cfg: RunConfig, tokenizer, prepared, run_dir: Path, skip_audit: bool, console: Console) -> None:
    """Pre-flight audit (shipsft.data.audit): refuse to train on errors unless --skip-audit (recorded)."""
    from shipsft.data.audit import audit_for_training

    report = audit_for_training(cfg, tokenizer, prepared, run_dir)
    if report.errors and not skip_audit:
        raise report.as_error()
    if report.errors:
        console.print(f"[yellow]--skip-audit:[/] training despite {len(report.errors)} audit error(s) "
                      f"(see {run_dir / 'audit.json'}; recorded in manifest.json)")
    elif report.warnings:
        console.print(f"audit: {len(report.warnings)} warning(s), see {run_dir / 'audit.json'}")


def _training_eval(cfg: RunConfig, tokenizer, model, run_dir: Path):
    if not cfg.eval.suites:
        return None
    from shipsft.evaluate import TrainingEval

    return TrainingEval(cfg, tokenizer, model, run_dir)


def run_train(cfg: RunConfig, config_path: str | Path | None = None, skip_audit: bool = False,
              argv: list[str] | None = None, console: Console | None = None) -> int:
    """Set up everything, run `fit`, print base vs tuned. Returns the process exit code."""
    from shipsft.data.pack import prepare
    from shipsft.source import load_tokenizer

    console = console or Console()
    started = time.perf_counter()
    if argv and os.environ.get("SHIPSFT_ARGV0"):  # re-executed under tcmalloc (shipsft.allocator)
        argv = [os.environ["SHIPSFT_ARGV0"], *argv[1:]]
    torch.manual_seed(cfg.train.seed)
    if cfg.train.compile and cfg.data.packing:
        raise ConfigError(["train.compile with data.packing: under torch.compile transformers skips detecting "
                           "packed documents from position_ids, so examples would attend to each other. "
                           "Fix: train.compile=false (or data.packing=false)."])
    device = pick_device()
    if cfg.method.name == "qlora":
        quantization_config(cfg, device)  # no CUDA / no bitsandbytes: fail before any data work
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.gguf_file, cfg.model.trust_remote_code)
    run_dir = run_dir_for(cfg, config_path)
    train_prep = prepare(cfg, tokenizer, "train")
    eval_prep = prepare(cfg, tokenizer, "eval", renderer=train_prep.renderer) if cfg.data.eval else None
    console.print(f"data: {len(train_prep.rendered)} train examples ({train_prep.format}) -> {len(train_prep.rows)} "
                  f"rows of <= {cfg.data.max_length} tokens, {train_prep.n_trained:,} trained tokens, "
                  f"packing efficiency {train_prep.efficiency:.1%}")
    for note in train_prep.notes:
        console.print(f"note: {note}")
    run_dir.mkdir(parents=True, exist_ok=True)
    _audit(cfg, tokenizer, train_prep, run_dir, skip_audit, console)
    model, info = load_for_training(cfg, device)
    console.print(f"model: {info.model_dir} on {device}; {info.summary()}; precision "
                  f"{autocast_dtype(cfg, device) or torch.float32}; lr {cfg.resolved_lr():g}")
    if cfg.train.compile:  # packing is off here (checked above): compile the decoder stack in place
        decoder_and_head(model)[0].compile()
    fingerprints = {"train": train_prep.fingerprint, **({"eval": eval_prep.fingerprint} if eval_prep else {})}
    write_run_files(run_dir, cfg, argv=argv, fingerprints=fingerprints, skip_audit=skip_audit,
                    model_dir=info.model_dir, extra={"trainable_params": info.trainable, "total_params": info.total,
                           "allocator": os.environ.get("SHIPSFT_ALLOCATOR", "system"),
                           "precision": str(autocast_dtype(cfg, device) or torch.float32)})
    evaluator = _training_eval(cfg, tokenizer, model, run_dir)
    result = fit(cfg, model, tokenizer, train_prep.rows, eval_prep.rows if eval_prep else None, run_dir, console,
                 evaluator)
    update_manifest(run_dir, steps=result.steps, skipped_nonfinite_steps=result.n_skipped,
                    trained_tok_s=round(result.trained_tok_s, 1), wall_s=round(time.perf_counter() - started, 1))
    if result.eval_loss_before is not None:
        console.print(f"eval loss: base {result.eval_loss_before:.4f} -> tuned {result.eval_loss_after:.4f}")
    console.print(f"saved {result.out_dir} ({result.steps} steps, {result.trained_tok_s:.0f} trained tok/s, "
                  f"{result.n_skipped} skipped, {time.perf_counter() - started:.0f} s total)")
    return result.exit_code
