"""The training loop, read top to bottom. It owns its cadence: when to log, measure eval loss, run smoke and full
task evals, save checkpoints and stop early are all decided here, in plain sight; nothing outside drives it.

    for step:  micro-batches fwd/bwd -> clip -> optimizer step -> log -> eval loss -> smoke eval -> checkpoint
               -> full eval + early stopping (epoch ends and the last step)

Everything it needs is built before it starts (`train/run.py: setup`), so a bad config or bad data fails in
seconds, not after an hour. To change the loop, edit the loop: there are no callbacks.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from shipsft.config import EvalConfig, OptimConfig, TrainConfig
from shipsft.data.labels import count_trained
from shipsft.data.pack import Row, collate
from shipsft.errors import TrainingDiverged
from shipsft.eval import gates, session
from shipsft.model.load import base_model
from shipsft.model.save import save_weights
from shipsft.runs.checkpoint import prune_checkpoints, save_atomic, save_checkpoint
from shipsft.runs.layout import RunFolder
from shipsft.runs.sinks import MetricsSink
from shipsft.train import dist, optim
from shipsft.train.batches import Cursor, micro_batches, next_rows
from shipsft.train.loss import batch_ce_sum, neftune_hook
from shipsft.train.schedule import StepPlan, lr_at, warmup_steps


class Progress(Protocol):
    """What the loop tells the outside world (the CLI draws a progress bar; a library caller may ignore it)."""

    def start(self, total: int) -> None: ...

    def step(self, record: dict) -> None: ...

    def note(self, text: str) -> None: ...

    def stop(self) -> None: ...


class Silent:
    """A Progress that shows nothing."""

    def start(self, total: int) -> None:
        pass

    def step(self, record: dict) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class Setup:
    """Everything one training run needs, built before the loop starts (`train/run.py: setup`)."""

    train: TrainConfig
    optim: OptimConfig
    eval: EvalConfig
    method: str  # lora | qlora | full: where the end weights go (adapter/ or model/)
    model: torch.nn.Module
    tokenizer: Any  # carries the chat template training renders with: every checkpoint saves it
    optimizers: list[torch.optim.Optimizer]
    rows: list[Row]
    eval_rows: list[Row] | None
    session: session.EvalSession | None  # task evals (eval.suites), or None
    folder: RunFolder
    sink: MetricsSink
    plan: StepPlan
    amp: torch.dtype | None
    device: torch.device
    pad_id: int


@dataclass
class FitResult:
    steps: int
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    train_loss: float | None = None  # mean over the last 10 finite steps
    n_skipped: int = 0  # optimizer steps skipped for a non-finite loss or gradient
    trained_tok_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    checkpoints: dict[int, Any] = field(default_factory=dict)  # step -> checkpoint folder
    evals: list[session.EvalRecord] = field(default_factory=list)  # full evals, in order
    baseline: session.EvalRecord | None = None
    stopped_early: bool = False


@torch.no_grad()
def eval_loss(model, rows: list[Row], pad_id: int, batch_rows: int, amp: torch.dtype | None) -> float:
    """Mean CE per trained token over the eval rows (summed, divided once: the same normalisation as training)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    device = next(model.parameters()).device
    for i in range(0, len(rows), batch_rows):
        batch = {k: v.to(device) for k, v in collate(rows[i:i + batch_rows], pad_id).items() if torch.is_tensor(v)}
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            total += float(batch_ce_sum(model, batch))
        n += count_trained(batch["labels"])
    model.train(was_training)
    return total / max(n, 1)


def _save(s: Setup, step: int, result: FitResult) -> None:
    """A checkpoint at `step` (loadable weights + tokenizer, COMPLETE written last); then keep the last
    train.keep_checkpoints and the best ones by the task metric."""
    path = save_checkpoint(s.folder.checkpoint(step),
                           lambda d: save_weights(s.model, s.tokenizer, d))
    result.checkpoints[step] = path
    evals = [{"step": e.step, "metrics": e.metrics} for e in result.evals]
    keep = gates.keep_steps(s.eval, evals) | {step}
    for gone in prune_checkpoints(s.folder, s.train.keep_checkpoints, keep):
        result.checkpoints.pop(gone, None)


def fit(s: Setup, progress: Progress | None = None) -> FitResult:
    """Train for s.plan.total_steps optimizer steps (or until early stopping). Writes metrics, eval records and
    checkpoints into the run folder; promotion is the caller's (`train/run.py: finish`)."""
    t, progress = s.train, progress or Silent()
    total, warmup = s.plan.total_steps, warmup_steps(s.optim, s.plan.total_steps)
    params = [p for p in s.model.parameters() if p.requires_grad]
    embed = base_model(s.model).get_input_embeddings()
    hook = embed.register_forward_hook(neftune_hook(t.neftune_alpha)) if t.neftune_alpha else None
    early = gates.early_stop_for(s.eval)
    result = FitResult(steps=0)
    if s.eval_rows:
        result.eval_loss_before = eval_loss(s.model, s.eval_rows, s.pad_id, t.batch_rows, s.amp)
        s.sink.write({"step": 0, "eval_loss": result.eval_loss_before})
        progress.note(f"eval loss before training: {result.eval_loss_before:.4f}")
    if s.session is not None:
        result.baseline = session.baseline(s.session)
        s.sink.write({"step": 0, **{f"baseline/{k}": v for k, v in result.baseline.metrics.items()}})
        s.sink.write_eval(result.baseline.to_json(s.session.kl_method))
    cursor = Cursor()
    consecutive_bad, trained_total, train_time, recent = 0, 0, 0.0, []
    optim.train_mode(s.optimizers)
    progress.start(total)
    for step in range(total):
        t0 = time.perf_counter()
        epoch, epoch_end, idx = next_rows(cursor, len(s.rows), s.plan.rows_per_step, t.seed)
        micro = [collate([s.rows[i] for i in mb], s.pad_id) for mb in micro_batches(idx, t.batch_rows)]
        lr = lr_at(step, total, warmup, s.optim)
        optim.set_lr(s.optimizers, lr)
        # one denominator for the whole step: every micro-batch (and every rank) divides by the same count
        n_step = dist.global_trained_tokens(sum(count_trained(mb["labels"]) for mb in micro))
        loss_sum = 0.0
        for mb in micro:
            batch = {k: v.to(s.device) for k, v in mb.items() if torch.is_tensor(v)}
            with torch.autocast(s.device.type, dtype=s.amp or torch.float32, enabled=s.amp is not None):
                loss = batch_ce_sum(s.model, batch) * dist.loss_scale(n_step)
            loss.backward()
            loss_sum += float(loss.detach())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, s.optim.max_grad_norm or float("inf")))
        finite = math.isfinite(loss_sum) and math.isfinite(grad_norm)
        if finite:
            for opt in s.optimizers:
                opt.step()
            consecutive_bad = 0
        else:  # skip the update entirely: one NaN would poison every weight and Adam moment it touches
            result.n_skipped += 1
            consecutive_bad += 1
        for opt in s.optimizers:
            opt.zero_grad(set_to_none=True)
        if consecutive_bad >= t.max_nonfinite_steps:
            progress.stop()
            raise TrainingDiverged([
                f"step {step + 1}: the loss or gradient was non-finite for {consecutive_bad} optimizer steps in a "
                f"row (loss {loss_sum}, grad norm {grad_norm}); stopped. Fix: lower optim.lr (now {s.optim.lr:g}), "
                "keep optim.max_grad_norm set, or use train.precision=fp32."])
        train_time += time.perf_counter() - t0
        trained_total += n_step
        real = sum(mb["n_real"] for mb in micro)
        slots = sum(mb["input_ids"].numel() for mb in micro)
        record = {"step": step + 1, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": grad_norm,
                  "trained_tokens": n_step, "tokens": real, "padding_share": 1 - real / slots,
                  "trained_tok_s": trained_total / train_time, "skipped": not finite}
        result.history.append(record)
        result.steps = step + 1
        if finite:
            recent = (recent + [loss_sum])[-10:]
        last = step + 1 == total
        if (step + 1) % t.log_every == 0 or last:
            s.sink.write(record)
        progress.step(record)

        # -- cadence: eval loss, smoke eval, checkpoint, full eval + early stopping ----------------------------
        evaluate_now = s.session is not None and (epoch_end or last)
        smoke_now = (s.session is not None and s.eval.smoke_every and (step + 1) % s.eval.smoke_every == 0)
        save_now = epoch_end or last or (t.save_every and (step + 1) % t.save_every == 0)
        if not (save_now or smoke_now or (s.eval_rows and t.eval_every and (step + 1) % t.eval_every == 0)):
            continue
        optim.eval_mode(s.optimizers)  # schedule-free: evaluate and save the averaged weights
        if s.eval_rows and t.eval_every and (step + 1) % t.eval_every == 0 and not last:
            s.sink.write({"step": step + 1, "eval_loss": eval_loss(s.model, s.eval_rows, s.pad_id, t.batch_rows,
                                                                   s.amp)})
        if smoke_now:
            rec = session.smoke(s.session, step + 1)
            s.sink.write({"step": step + 1, **{f"smoke/{k}": v for k, v in rec.metrics.items()}})
            s.sink.write_eval(rec.to_json(s.session.kl_method))
        if evaluate_now:  # the full eval comes first so that pruning the checkpoints can keep the best one
            rec = session.full(s.session, step + 1)
            result.evals.append(rec)
            s.sink.write({"step": step + 1, **{f"eval/{k}": v for k, v in rec.metrics.items()}})
            s.sink.write_eval(rec.to_json(s.session.kl_method, epoch_end=epoch_end))
            if early is not None:
                early.update(rec.metrics)
        if save_now:
            _save(s, step + 1, result)
        optim.train_mode(s.optimizers)
        if early is not None and early.should_stop:
            progress.note(f"early stopping at step {step + 1}")
            result.stopped_early = True
            break
    progress.stop()
    if hook is not None:
        hook.remove()  # the saved model never carries training noise
    optim.eval_mode(s.optimizers)
    result.train_loss = sum(recent) / len(recent) if recent else None
    result.trained_tok_s = trained_total / train_time if train_time else 0.0
    if s.eval_rows:
        result.eval_loss_after = eval_loss(s.model, s.eval_rows, s.pad_id, t.batch_rows, s.amp)
        s.sink.write({"step": result.steps, "eval_loss": result.eval_loss_after})
    save_atomic(s.folder.trained(s.method), lambda d: save_weights(s.model, s.tokenizer, d))
    return result
