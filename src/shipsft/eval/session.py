"""Evals during training: task metrics on generations, eval loss, drift from the base model. Returns numbers and
writes no files; the training loop decides when to call each function and what to do with the result.

    sess = build_session(cfg.eval, cfg.data, tokenizer, model, amp, train_examples)  # suites + probe, names checked
    rec = baseline(sess)           # before step 1: base model on every suite + probe (full FT: caches base top-k)
    rec = smoke(sess, step)        # the first eval.smoke_size examples of the first suite
    rec = full(sess, step)         # every suite + eval loss + KL to base + forgetting probe

Each returns an `EvalRecord` (kind, step, flat metrics, per-example scores, sample generations, and every
prediction: source, prompt, reference, output, scores, plus the base model's output and scores in a full eval).
Metric names:
`<suite>/<metric>` per suite (plus `<suite>/eval_loss`; a suite holding both examples whose sentence pattern is in
the training data and examples whose is not also gets `<suite>.seen/<metric>` and `<suite>.unseen/<metric>`, and
`sess.gates` reads the unseen slice: eval/gates.py for_slices), and run-wide `eval_loss`, `kl_to_base`, `probe_loss`,
`probe_kl`, `general_loss_increase` (see `eval/gates.py` for how gates and early stopping name them).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shipsft.config import DataConfig, EvalConfig
from shipsft.data.pack import padding_id
from shipsft.errors import ConfigError
from shipsft.eval.drift import TOPK, SeqStats, TopK, mean_kl, mean_loss, teacher_forced
from shipsft.eval.gates import check_names, for_slices
from shipsft.eval.items import PROBE_SLICES, EvalItem, build_items, eval_renderer, load_probe, stop_ids
from shipsft.eval.judge import with_pairwise
from shipsft.eval.suites import (Suite, SuiteRun, build_suite, mark_patterns, metric_names, predictions, run_suite,
                                 samples, suite_metrics)


@dataclass
class EvalRecord:
    kind: str  # baseline | smoke | full
    step: int
    metrics: dict[str, float]
    scores: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # suite -> per-example scores
    samples: list[dict] = field(default_factory=list)
    time_s: float = 0.0
    # every example of every suite (eval/suites.py: predictions); written to predictions.jsonl, not eval.jsonl
    predictions: list[dict] = field(default_factory=list)

    def to_json(self, kl_method: str, **extra) -> dict:
        """The eval.jsonl line (per-example scores and predictions stay out of it: the before/after table uses the
        scores, runs/predictions.py writes the predictions)."""
        return {"kind": self.kind, "step": self.step, **extra, "metrics": self.metrics, "samples": self.samples,
                "kl_method": kl_method, "time_s": self.time_s}


@dataclass
class EvalSession:
    cfg: EvalConfig
    tokenizer: object
    model: object
    suites: list[Suite]
    probe: list[EvalItem]
    kl_items: list[EvalItem]  # the first kl_max_examples of each suite + the probe: KL is measured on these
    rest_items: list[EvalItem]  # the remaining suite items (eval loss only)
    suite_index: dict[str, tuple[list[int], list[int]]]  # suite -> (kl_items indices, rest_items indices)
    stop: list[int]
    pad_id: int
    amp: object  # the run's autocast dtype for generation; loss and KL stay fp32
    kl_ref: object = None  # "adapter" (LoRA: the same model with the adapter off) or the base top-k (full FT)
    kl_method: str = ""
    base_probe_loss: float | None = None
    base_scores: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    base_outputs: dict[str, list[str]] = field(default_factory=dict)  # suite -> the base model's generations
    base_slice_loss: dict[str, float] = field(default_factory=dict)  # probe slice -> the baseline's probe loss
    progress: Any = None  # told of each eval's generations: eval_start(label, total), eval_step(n), eval_stop()
    gates: EvalConfig | None = None  # cfg with gates / select / early stopping on the unseen slices (for_slices)


def build_session(ecfg: EvalConfig, data: DataConfig, tokenizer, model, amp, train_examples: list | None = None
                  ) -> EvalSession:
    """Load every suite and the probe, tokenised with the run's template; mark each suite's items seen / unseen
    against `train_examples` (the examples trained on); check metric names (start-up errors)."""
    renderer = eval_renderer(tokenizer, data)
    suites = [build_suite(sc, renderer, ecfg, data.allow_any_role_order) for sc in ecfg.suites]
    mark_patterns(suites, train_examples or [])
    problems = check_names(ecfg, {k: v for s in suites for k, v in metric_names(s).items()})
    if problems:
        raise ConfigError(problems)
    probe = build_items(renderer, load_probe()) if ecfg.forgetting_probe else []
    # KL on a fixed set (comparable over steps); eval loss on every suite item; one teacher-forced pass per item
    k = ecfg.kl_max_examples
    kl_items = [it for s in suites for it in s.items[:k]] + probe
    rest_items = [it for s in suites for it in s.items[k:]]
    index, a, b = {}, 0, 0
    for s in suites:
        head, tail = len(s.items[:k]), len(s.items[k:])
        index[s.name] = (list(range(a, a + head)), list(range(b, b + tail)))
        a, b = a + head, b + tail
    stop = stop_ids(tokenizer, model, renderer)
    lora = hasattr(model, "disable_adapter")
    kl_method = "exact (adapter disabled)" if lora else f"top-{TOPK} + rest (lower bound)"
    return EvalSession(ecfg, tokenizer, model, suites, probe, kl_items, rest_items, index, stop,
                       padding_id(tokenizer, stop), amp,
                       "adapter" if lora else None, kl_method,
                       gates=for_slices(ecfg, [s.name for s in suites if s.sliced]))


def baseline(sess: EvalSession) -> EvalRecord:
    """Base model on every suite + probe, before step 1."""
    t0 = time.perf_counter()
    metrics, kept, scores, preds = _generate_all(sess, "base model")
    sess.base_scores = scores
    sess.base_outputs = {s.name: [p["output"] for p in preds if p["suite"] == s.name] for s in sess.suites}
    full_ft = sess.kl_ref is None and sess.cfg.kl_to_base
    forced, stats = _forced(sess, None, cache_topk=TOPK if full_ft else 0, kl_zero=True)
    if full_ft:
        sess.kl_ref = [s.topk for s in stats]
    metrics.update(forced)
    return EvalRecord("baseline", 0, metrics, scores, kept, round(time.perf_counter() - t0, 2), preds)


def smoke(sess: EvalSession, step: int) -> EvalRecord:
    """The first eval.smoke_size examples of the first suite."""
    t0 = time.perf_counter()
    s = sess.suites[0]
    with _bar(sess, f"smoke, step {step}", len(s.items[: sess.cfg.smoke_size])) as advance:
        run = run_suite(sess.model, sess.tokenizer, s, s.items[: sess.cfg.smoke_size], sess.stop, sess.cfg.batch_size,
                        sess.amp, advance)
    return EvalRecord("smoke", step, suite_metrics(s, run), time_s=round(time.perf_counter() - t0, 2))


def full(sess: EvalSession, step: int) -> EvalRecord:
    """Every suite + eval loss + KL to base + forgetting probe."""
    if (sess.base_probe_loss is None and sess.probe) or (sess.cfg.kl_to_base and sess.kl_ref is None):
        raise RuntimeError("baseline(session) must run before the first optimizer step: KL, the forgetting probe "
                           "and the before/after table compare against it")
    t0 = time.perf_counter()
    metrics, kept, scores, preds = _generate_all(sess, f"step {step}", with_base=True)
    metrics.update(_forced(sess, sess.kl_ref if sess.cfg.kl_to_base else None)[0])
    return EvalRecord("full", step, metrics, scores, kept, round(time.perf_counter() - t0, 2), preds)


@contextmanager
def _bar(sess: EvalSession, label: str, total: int):
    """The session's progress told of one eval of `total` generations; yields what each batch advances it by."""
    if sess.progress is None:
        yield None
        return
    sess.progress.eval_start(label, total)
    try:
        yield sess.progress.eval_step
    finally:
        sess.progress.eval_stop()


def _generate_all(sess: EvalSession, label: str, with_base: bool = False):
    """Generate on every suite: (flat metrics, samples for the report, per-example scores per suite, predictions;
    `with_base`: each prediction also carries the baseline's output and scores for that example)."""
    with _bar(sess, label, sum(len(s.items) for s in sess.suites)) as advance:
        return _generate_suites(sess, with_base, advance)


def _generate_suites(sess: EvalSession, with_base: bool, advance):
    metrics: dict[str, float] = {}
    scores: dict[str, list[dict[str, float]]] = {}
    kept: list[dict] = []
    preds: list[dict] = []
    for s in sess.suites:
        run = run_suite(sess.model, sess.tokenizer, s, s.items, sess.stop, sess.cfg.batch_size, sess.amp, advance)
        base = None
        if with_base and s.name in sess.base_outputs and s.name in sess.base_scores:
            base = SuiteRun(sess.base_outputs[s.name], sess.base_scores[s.name], {})
        if base is not None or not with_base:  # win_rate: against the baseline's answers; the baseline itself ties
            run = with_pairwise(s.metrics, s.items, run, base.outputs if base is not None else run.outputs)
        metrics.update(suite_metrics(s, run))
        scores[s.name] = run.scores
        kept += [{"suite": s.name, **x} for x in samples(s.items, run.outputs, sess.cfg.samples)]
        preds += predictions(s.name, s.items, run, base, s.patterns, s.clusters)
    return metrics, kept, scores, preds


def _forced(sess: EvalSession, ref, cache_topk: int = 0, kl_zero: bool = False
            ) -> tuple[dict[str, float], list[SeqStats]]:
    """Eval loss per suite, KL to base and the probe's loss, from one teacher-forced pass over each item."""
    kw = dict(pad_id=sess.pad_id, batch_size=sess.cfg.batch_size)
    kl_stats = teacher_forced(sess.model, sess.kl_items, ref=ref, cache_topk=cache_topk, **kw)
    rest = teacher_forced(sess.model, sess.rest_items, cache_topk=0, **kw)
    metrics: dict[str, float] = {}
    every: list[SeqStats] = []
    for s in sess.suites:
        head, tail = sess.suite_index[s.name]
        stats = [kl_stats[i] for i in head] + [rest[i] for i in tail]
        metrics[f"{s.name}/eval_loss"] = mean_loss(stats)
        every += stats
    if every:
        metrics["eval_loss"] = mean_loss(every)
    metrics.update(_probe_metrics(sess, kl_stats, kl_zero))
    return metrics, kl_stats


def _probe_metrics(sess: EvalSession, stats: list[SeqStats], kl_zero: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    if sess.cfg.kl_to_base and stats:
        kl = 0.0 if kl_zero else mean_kl(stats)
        if kl is not None:
            out["kl_to_base"] = kl
    probe = stats[len(stats) - len(sess.probe):] if sess.probe else []
    if probe:
        out["probe_loss"] = mean_loss(probe)
        if sess.base_probe_loss is None:
            sess.base_probe_loss = out["probe_loss"]
        out["general_loss_increase"] = out["probe_loss"] - sess.base_probe_loss
        if sess.cfg.kl_to_base:
            out["probe_kl"] = 0.0 if kl_zero else (mean_kl(probe) or 0.0)
        out.update(_slice_metrics(sess, probe, kl_zero))
    return out


def _slice_metrics(sess: EvalSession, probe: list[SeqStats], kl_zero: bool) -> dict[str, float]:
    """probe_loss/<slice>, probe_loss_increase/<slice> (over the baseline's) and probe_kl/<slice> for each slice
    of the probe (general, safety, calibration: assets/forgetting_probe.README.md)."""
    out: dict[str, float] = {}
    for name in PROBE_SLICES:
        mine = [s for it, s in zip(sess.probe, probe) if it.example is not None and it.example.meta["slice"] == name]
        if not mine:
            continue
        out[f"probe_loss/{name}"] = loss = mean_loss(mine)
        out[f"probe_loss_increase/{name}"] = loss - sess.base_slice_loss.setdefault(name, loss)
        if sess.cfg.kl_to_base:
            out[f"probe_kl/{name}"] = 0.0 if kl_zero else (mean_kl(mine) or 0.0)
    return out


def restore(sess: EvalSession, baseline_record: dict | None, kl_ref: list[dict] | None) -> None:
    """After a resume: the baseline's numbers (probe loss, per-example scores for the before/after table) and, for
    full fine-tuning, the base model's cached top-k distributions, which no later step could measure again."""
    if baseline_record is not None:
        sess.base_scores = baseline_record["scores"]
        sess.base_probe_loss = baseline_record["metrics"].get("probe_loss")
        sess.base_slice_loss = {k.split("/", 1)[1]: v for k, v in baseline_record["metrics"].items()
                                if k.startswith("probe_loss/")}
        preds = baseline_record.get("predictions") or []  # absent in checkpoints written before predictions
        sess.base_outputs = {s.name: [p["output"] for p in preds if p["suite"] == s.name] for s in sess.suites
                             if any(p["suite"] == s.name for p in preds)}
    if kl_ref is not None:
        sess.kl_ref = [TopK(**t) for t in kl_ref]


def kl_reference_state(sess: EvalSession) -> list[dict] | None:
    """The full fine-tune KL reference as plain tensors for a checkpoint (None for LoRA: the adapter is the base)."""
    if not isinstance(sess.kl_ref, list):
        return None
    return [{"idx": t.idx, "logp": t.logp, "rest": t.rest} for t in sess.kl_ref]
