"""The training loop, read top to bottom. It owns its cadence: when to log, measure eval loss, run smoke and full
task evals, save checkpoints, stop early or stop on a signal are all decided here, in plain sight.

    for step:  micro-batches fwd/bwd -> clip -> optimizer step -> log -> eval loss -> smoke eval
               -> full eval + early stopping (epoch ends, last step) -> checkpoint -> stop if asked

Everything it needs is built before it starts (`train/run.py: setup`), so a bad config or bad data fails in
seconds, not after an hour. Where the run is lives in one `LoopState`, saved whole in every checkpoint, so a run
killed at any point continues from its last checkpoint exactly as if it had never stopped. To change the loop,
edit the loop: there are no callbacks.
"""
from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from shipsft.config import EvalConfig, OptimConfig, TrainConfig
from shipsft.data.labels import IGNORE_INDEX, count_trained
from shipsft.data.pack import Batching, Row, collate, group_rows, micro_batches
from shipsft.data.store import token_lengths, trained_counts
from shipsft.data.types import Rendered
from shipsft.errors import TrainingDiverged
from shipsft.eval import gates, session
from shipsft.model.save import save_weights
from shipsft.runs.run import Run
from shipsft.runs.state import TrainingState
from shipsft.steps.batches import Cursor, next_examples
from shipsft.steps.schedule import StepPlan, lr_at, warmup_steps
from shipsft.train import dist, optim, parallel, rng
from shipsft.train.loss import add_neftune, batch_ce_sum
from shipsft.train.objective import micro_loss
from shipsft.train.preempt import Preempted, StopRequest
from shipsft.train.sources import Tally, token_sources


class Progress(Protocol):
    """What a run tells the outside world (the CLI draws a progress bar for training and one for each eval, and
    closes with a summary of the run folder; a library caller may ignore it all)."""

    def start(self, total: int) -> None: ...

    def step(self, record: dict) -> None: ...

    def note(self, text: str) -> None: ...

    def stop(self) -> None: ...

    def eval_start(self, label: str, total: int) -> None: ...  # an eval of `total` generations (eval/session.py)

    def eval_step(self, n: int) -> None: ...

    def eval_stop(self) -> None: ...

    def summary(self, folder: Path, lines: list[str]) -> None: ...  # the run is over: its folder, its closing lines


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

    def eval_start(self, label: str, total: int) -> None:
        pass

    def eval_step(self, n: int) -> None:
        pass

    def eval_stop(self) -> None:
        pass

    def summary(self, folder: Path, lines: list[str]) -> None:
        pass


@dataclass
class LoopState:
    """Where a run is. Saved whole in every checkpoint (`to_json`) and restored by a resume."""

    step: int = 0  # optimizer steps done
    cursor: Cursor = field(default_factory=Cursor)  # the data position (steps/batches.py)
    examples_seen: int = 0
    trained_total: int = 0  # trained tokens of every step (all ranks)
    train_time: float = 0.0
    consecutive_bad: int = 0
    n_skipped: int = 0
    recent: list[float] = field(default_factory=list)  # the last 10 finite step losses
    eval_loss_before: float | None = None
    early_best: float | None = None
    early_bad: int = 0
    baseline: dict | None = None  # the baseline EvalRecord (with per-example scores for the before/after table)
    evals: list[dict] = field(default_factory=list)  # every full EvalRecord so far
    checkpoints: list[int] = field(default_factory=list)  # steps whose checkpoint is kept
    offsets: tuple[int, int] = (0, 0)  # bytes of metrics.jsonl / eval.jsonl that belong to the steps done
    # the batch the steps done followed, [examples, tokens] per step (a resume with another re-plans from the cursor)
    batch: list = field(default_factory=list)
    total_steps: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "LoopState":
        return cls(**{**d, "cursor": Cursor(**d["cursor"]), "offsets": tuple(d["offsets"])})


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
    # the trainable parameters, listed before any forward pass: under FSDP2 the root module registers its unsharded
    # tensors after a forward (it does not reshard after forward), and clipping those instead of the sharded ones
    # the optimizers step gave another update (tests/train/test_parallel.py caught it when the baselines moved)
    params: list[torch.nn.Parameter]
    examples: Sequence[Rendered]  # the training sequences (a store on disk, data/store.py); each step packs its own
    batching: Batching  # how a step's examples become micro-batches (data/pack.py)
    eval_rows: list[Row] | None
    session: session.EvalSession | None  # task evals (eval.suites), or None
    run: Run  # the run folder, its sink, checkpoints and end weights (runs/run.py)
    plan: StepPlan
    amp: torch.dtype | None
    device: torch.device
    pad_id: int
    config_yaml: str  # the resolved config, saved in every checkpoint
    state: LoopState = field(default_factory=LoopState)  # fresh, or restored from a checkpoint
    rng: dict | None = None  # random states to restore before the next step (a resume)
    strategy: str = "single"  # single | ddp | fsdp2 (train/parallel.py)
    train_model: torch.nn.Module | None = None  # what the training forward goes through (DDP's wrapper), or model
    kl_ref: Any = None  # train.kl_coef > 0: the base the KL term compares against (train/kl.py: reference_for)
    # a mixture of 2+ sources: their names and each training example's source, so each step logs the loss per source
    sources: list[str] = field(default_factory=list)
    source_of: list[int] = field(default_factory=list)

    @property
    def lengths(self) -> Sequence[int]:
        return token_lengths(self.examples)


@dataclass
class FitResult:
    steps: int
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    train_loss: float | None = None  # mean over the last 10 finite steps
    n_skipped: int = 0  # optimizer steps skipped for a non-finite loss or gradient
    trained_tok_s: float = 0.0
    history: list[dict] = field(default_factory=list)  # this process's step records
    checkpoints: dict[int, Any] = field(default_factory=dict)  # step -> checkpoint folder
    evals: list[session.EvalRecord] = field(default_factory=list)  # full evals, in order
    baseline: session.EvalRecord | None = None
    stopped_early: bool = False

    @classmethod
    def of(cls, st: LoopState, run: Run, history: list[dict], stopped_early: bool) -> "FitResult":
        return cls(st.step, st.eval_loss_before, None, sum(st.recent) / len(st.recent) if st.recent else None,
                   st.n_skipped, st.trained_total / st.train_time if st.train_time else 0.0, history,
                   {k: run.checkpoint(k) for k in st.checkpoints}, [session.EvalRecord(**e) for e in st.evals],
                   session.EvalRecord(**st.baseline) if st.baseline else None, stopped_early)


def idle_batch(pad_id: int) -> dict:
    """A one-token micro-batch with nothing trained: what a rank runs when it has fewer micro-batches than another
    in the same step. Every forward of a sharded model gathers weights from every rank, so all ranks run the same
    number; its loss is 0 and its gradients are zeros, so it changes nothing."""
    return collate([Row([pad_id], [IGNORE_INDEX], [0], [1], [])], pad_id)


@torch.no_grad()
def eval_loss(model, rows: list[Row], pad_id: int, micro_tokens: int, amp: torch.dtype | None) -> float:
    """Mean CE per trained token over the eval rows (summed, divided once: the same normalisation as training).
    Several ranks each take every world_size-th row and the sums are added up."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    device = next(model.parameters()).device
    groups = [collate(g, pad_id) for g in group_rows(rows[dist.rank()::dist.world_size()], micro_tokens)]
    groups += [idle_batch(pad_id)] * (dist.max_over_ranks(len(groups)) - len(groups))
    for mb in groups:
        batch = {k: v.to(device) for k, v in mb.items() if torch.is_tensor(v)}
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            total += float(batch_ce_sum(model, batch))
        n += count_trained(batch["labels"])
    model.train(was_training)
    return dist.sum_over_ranks(total) / max(dist.sum_over_ranks(n), 1)


def on_ranks(s: "Setup", evaluate):
    """A task eval's record on every rank. DDP: rank 0 evaluates while the others wait (every rank holds the whole
    model; generation needs no other rank). FSDP2: every rank runs it in lock-step, since each forward gathers the
    weights from all ranks. Either way every rank continues with rank 0's record, so early stopping and promotion
    decide the same on all of them."""
    rec = evaluate() if s.strategy == "fsdp2" or dist.is_main() else None
    return dist.broadcast(rec)


def measure_baselines(s: Setup, progress: "Progress") -> None:
    """Before the first step of a fresh run: the base model's eval loss and task evals, once (a resumed run kept
    these numbers in its state)."""
    st = s.state
    if s.eval_rows:
        st.eval_loss_before = eval_loss(s.model, s.eval_rows, s.pad_id, s.train.micro_batch_tokens, s.amp)
        s.run.sink.write({"step": 0, "eval_loss": st.eval_loss_before})
        progress.note(f"eval loss before training: {st.eval_loss_before:.4f}")
    if s.session is not None:
        base = on_ranks(s, lambda: session.baseline(s.session))
        st.baseline = asdict(base)
        s.run.sink.write({"step": 0, **{f"baseline/{k}": v for k, v in base.metrics.items()}})
        s.run.sink.write_eval(base.to_json(s.session.kl_method))
        s.run.keep_predictions(base.predictions, base.kind, base.step)


def full_eval(s: Setup, st: LoopState, early, epoch_end: bool) -> None:
    """A full task eval at st.step: recorded, its predictions kept, and early stopping told."""
    rec = on_ranks(s, lambda: session.full(s.session, st.step))
    st.evals.append({**asdict(rec), "predictions": []})  # kept in predictions.jsonl, not in each checkpoint
    s.run.keep_predictions(rec.predictions, rec.kind, rec.step)
    s.run.sink.write({"step": st.step, **{f"eval/{k}": v for k, v in rec.metrics.items()}})
    s.run.sink.write_eval(rec.to_json(s.session.kl_method, epoch_end=epoch_end))
    if early is not None:
        early.update(rec.metrics)
        st.early_best, st.early_bad = early.best, early.bad


def save_step(s: Setup, st: LoopState) -> None:
    """A checkpoint at st.step (runs/run.py: Run.save_step): the weights (consolidated from every rank under FSDP2),
    the tokenizer and the whole training state; then prune, keeping what promotion may still choose."""
    full = parallel.full_state_dict(s.model, s.strategy)
    st.offsets = s.run.sink.offsets()
    st.checkpoints = sorted(set(st.checkpoints) | {st.step})
    removed = s.run.save_step(
        st.step, lambda: TrainingState(st.to_json(), s.config_yaml, [o.state_dict() for o in s.optimizers]
                                       if s.strategy != "fsdp2" else None, rng.capture(),
                                       session.kl_reference_state(s.session) if s.session is not None else None),
        lambda d: save_weights(s.model, s.tokenizer, d, full),
        (lambda d: parallel.save_sharded_optimizer(s.model, s.optimizers, d)) if s.strategy == "fsdp2" else None,
        gates.keep_steps(s.eval, st.evals), s.train.keep_checkpoints)
    st.checkpoints = [k for k in st.checkpoints if k not in removed]


def step_record(st: LoopState, epoch: int, loss: float, kl_coef: float, kl: float, lr: float, grad_norm: float,
                n_step: int, n_examples: int, micro: list[dict], n_micro: int, finite: bool) -> dict:
    """The metrics line of one optimizer step (every rank's share added up)."""
    real = dist.sum_over_ranks(sum(mb["n_real"] for mb in micro[:n_micro]))
    slots = dist.sum_over_ranks(sum(mb["input_ids"].numel() for mb in micro[:n_micro]))
    record = {"step": st.step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
              "trained_tokens": n_step, "tokens": int(real), "examples": n_examples,
              "micro_batches": int(dist.sum_over_ranks(n_micro)), "padding_share": 1 - real / slots,
              "cursor": [st.cursor.epoch, st.cursor.position], "trained_tok_s": st.trained_total / st.train_time,
              "skipped": not finite}
    if kl_coef:  # the two terms of "loss" = loss_ce + kl_coef * loss_kl, each per trained token
        record["loss_kl"] = dist.sum_over_ranks(kl) / dist.world_size()
        record["loss_ce"] = loss - kl_coef * record["loss_kl"]
    return record


def fit(s: Setup, progress: Progress | None = None, stop: StopRequest | None = None,
        limit_steps: int | None = None) -> FitResult:
    """Train from s.state to s.plan.total_steps optimizer steps (or until early stopping, a stop request, or
    `limit_steps` steps of this call). Writes metrics, eval records and checkpoints into the run folder; promotion
    is the caller's (`train/run.py: finish`)."""
    t, st, progress = s.train, s.state, progress or Silent()
    total, warmup = s.plan.total_steps, warmup_steps(s.optim, s.plan.total_steps)
    st.batch, st.total_steps = [s.plan.rule.examples, s.plan.rule.tokens], total
    lengths, trained = s.lengths, trained_counts(s.examples)
    train_model, history, stopped_early = s.train_model or s.model, [], False
    noise = add_neftune(s.model, t.neftune_alpha)
    early = gates.early_stop_for(s.eval, st.early_best, st.early_bad)
    if s.rng is not None:
        rng.restore(s.rng)  # the next step draws the noise the uninterrupted run drew
    optim.train_mode(s.optimizers)
    progress.start(total)
    end = total if limit_steps is None else min(total, st.step + limit_steps)
    for step in range(st.step, end):
        t0 = time.perf_counter()
        epoch, epoch_end, idx = next_examples(st.cursor, lengths, s.plan.rule, t.seed)
        mine = dist.shard(idx, lengths, trained, dist.world_size(), dist.rank())  # this rank's share of the step
        groups = micro_batches([s.examples[i] for i in mine], s.batching)
        micro = [collate(g, s.pad_id) for g in groups]
        micro += [idle_batch(s.pad_id)] * (dist.max_over_ranks(len(groups)) - len(groups))  # ranks in lock-step
        lr = lr_at(step, total, warmup, s.optim)
        optim.set_lr(s.optimizers, lr)
        # one denominator for the whole step: every micro-batch (and every rank) divides by the same count
        n_step = dist.global_trained_tokens(sum(count_trained(mb["labels"]) for mb in micro))
        tally = Tally(len(s.sources)) if len(s.sources) > 1 else None
        loss_sum = kl_sum = 0.0
        for k, mb in enumerate(micro):
            batch = {k: v.to(s.device) for k, v in mb.items() if torch.is_tensor(v)}
            sources = token_sources(groups[k], mine, s.source_of) if tally is not None and k < len(groups) else None
            with parallel.grad_sync(train_model, s.strategy, sync=k == len(micro) - 1):
                loss, kl = micro_loss(train_model, batch, n_step, s.amp, t.kl_coef, s.kl_ref, sources, tally)
                loss.backward()
            loss_sum, kl_sum = loss_sum + float(loss.detach()), kl_sum + kl
        loss_sum = dist.sum_over_ranks(loss_sum) / dist.world_size()  # each rank's part is scaled by world_size
        grad_norm = parallel.total_norm(torch.nn.utils.clip_grad_norm_(s.params, s.optim.max_grad_norm or float("inf")))
        finite = math.isfinite(loss_sum) and math.isfinite(grad_norm)
        if finite:  # else skip the update entirely: one NaN would poison every weight and Adam moment it touches
            for opt in s.optimizers:
                opt.step()
        st.n_skipped, st.consecutive_bad = st.n_skipped + (not finite), 0 if finite else st.consecutive_bad + 1
        for opt in s.optimizers:
            opt.zero_grad(set_to_none=True)
        if st.consecutive_bad >= t.max_nonfinite_steps:
            progress.stop()
            raise TrainingDiverged([
                f"step {step + 1}: the loss or gradient was non-finite for {st.consecutive_bad} optimizer steps in "
                f"a row (loss {loss_sum}, grad norm {grad_norm}); stopped. Fix: lower optim.lr (now "
                f"{s.optim.lr:g}), keep optim.max_grad_norm set, or use train.precision=fp32."])
        st.step, st.train_time = step + 1, st.train_time + time.perf_counter() - t0
        st.trained_total, st.examples_seen = st.trained_total + n_step, st.examples_seen + len(idx)
        record = step_record(st, epoch, loss_sum, t.kl_coef, kl_sum, lr, grad_norm, n_step, len(idx), micro,
                             len(groups), finite)
        record.update(tally.losses(s.sources) if tally else {})  # CE per trained token of each mixture source
        history.append(record)
        st.recent = (st.recent + [loss_sum])[-10:] if finite else st.recent
        last = st.step == total
        if st.step % t.log_every == 0 or last:
            s.run.sink.write(record)
        progress.step(record)
        for line in s.run.sink.news():  # a tracker that stopped answering, or answers again
            progress.note(line)

        # -- cadence: eval loss, smoke eval, full eval + early stopping, checkpoint, stop request ---------------
        evaluate_now = s.session is not None and bool(
            epoch_end or last or (s.eval.full_every and st.step % s.eval.full_every == 0))
        smoke_now = s.session is not None and s.eval.smoke_every and st.step % s.eval.smoke_every == 0
        loss_now = s.eval_rows and t.eval_every and st.step % t.eval_every == 0 and not last
        # every full eval gets its checkpoint: promotion chooses among the steps it measured
        save_now = evaluate_now or epoch_end or last or (t.save_every and st.step % t.save_every == 0)
        # a signal may reach the ranks at different steps: all stop at the first step any of them saw it
        signal = dist.max_over_ranks((stop.signal or 0) if stop is not None else 0)
        if save_now or smoke_now or loss_now or signal:
            optim.eval_mode(s.optimizers)  # schedule-free: evaluate and save the averaged weights
            if loss_now:
                s.run.sink.write({"step": st.step, "eval_loss": eval_loss(s.model, s.eval_rows, s.pad_id,
                                                                          t.micro_batch_tokens, s.amp)})
            if smoke_now:
                rec = on_ranks(s, lambda: session.smoke(s.session, st.step))
                s.run.sink.write({"step": st.step, **{f"smoke/{k}": v for k, v in rec.metrics.items()}})
                s.run.sink.write_eval(rec.to_json(s.session.kl_method))
            if evaluate_now:  # before the checkpoint: pruning keeps the ones promotion may choose
                full_eval(s, st, early, epoch_end)
            if save_now or signal:
                save_step(s, st)
            optim.train_mode(s.optimizers)
        if signal:
            progress.stop()
            raise Preempted(signal, st.step, s.run.checkpoint(st.step))
        if early is not None and early.should_stop:
            progress.note(f"early stopping at step {st.step}")
            stopped_early = True
            break
    progress.stop()
    if noise is not None:
        noise.remove()  # the saved model never carries training noise
    optim.eval_mode(s.optimizers)
    result = FitResult.of(st, s.run, history, stopped_early)
    if st.step < total and not stopped_early:
        return result  # limit_steps: a partial run (shipsft reproduce --check-steps) saves no end weights
    if s.eval_rows:
        result.eval_loss_after = eval_loss(s.model, s.eval_rows, s.pad_id, t.micro_batch_tokens, s.amp)
        s.run.sink.write({"step": result.steps, "eval_loss": result.eval_loss_after})
    full = parallel.full_state_dict(s.model, s.strategy)
    s.run.save_final(s.method, lambda d: save_weights(s.model, s.tokenizer, d, full))
    return result
