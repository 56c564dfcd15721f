"""Eval-gated training: task metrics on generations, drift from the base model, and the calls the loop makes.

`TrainingEval` is built once before training and called by the loop in `shipsft.train.fit`:

    ev = TrainingEval(cfg, tokenizer, model, run_dir)   # loads suites + forgetting probe, checks metric names
    ev.baseline()                  # before step 1: base model on every suite + probe (and, for full FT, the base
                                   # top-k cache used for KL later)
    for step in ...:               # after each optimizer step (1-based `step`):
        ev.smoke(step)             #   first `eval.smoke_size` examples of the first suite, every `smoke_every` steps
        if epoch_end or last or ev.should_stop:
            save checkpoint step   #   then
            ev.full(step, epoch_end)   # every suite + eval loss + KL to base + forgetting probe
        if ev.should_stop: break   #   early stopping (patience over full evals)
    promotion = ev.finalize({step: checkpoint_dir})   # best passing checkpoint -> <run>/final/, promotion.json,
                                                      # report.html; promotion.exit_code is 0 or 3

Every eval is appended to `<run>/eval.jsonl` ({"kind": baseline|smoke|full, "step", "metrics", "samples"}).
Metric names: `<suite>/<metric>` per suite (plus `<suite>/eval_loss`), and run-wide `eval_loss`, `kl_to_base`,
`probe_loss`, `probe_kl`, `general_loss_increase` (see shipsft.promote for how gates name them).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from shipsft.config import RunConfig, SuiteConfig
from shipsft.data.types import Example
from shipsft.drift import TOPK, SeqStats, mean_kl, mean_loss, teacher_forced
from shipsft.errors import ConfigError
from shipsft.eval_metrics import Metric, aggregate, paired_bootstrap, resolve_metrics, score_all
from shipsft.generate import EvalItem, build_items, eot_ids, eval_renderer, generate
from shipsft.promote import EarlyStop, Promotion, check_names, full_name, promote, write_promotion


# ------------------------------------------------------------------------------------------------------------------
# Suites


@dataclass
class Suite:
    name: str
    items: list[EvalItem]
    metrics: list[Metric]
    max_new_tokens: int


def load_suite_examples(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[Example]:
    from shipsft.data.formats import load_examples

    examples = load_examples([path], fmt=fmt, on_invalid="error").examples
    return examples[:limit] if limit else examples


def load_probe() -> list[Example]:
    """The shipped forgetting probe: 40 general-knowledge / instruction conversations (Apache-2.0, by shipsft)."""
    text = resources.files("shipsft").joinpath("assets/forgetting_probe.jsonl").read_text(encoding="utf-8")
    return [Example(source=f"forgetting_probe.jsonl:{n}", messages=json.loads(line)["messages"])
            for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def build_suite(sc: SuiteConfig, renderer, judge_url: str | None = None, judge_model: str = "judge") -> Suite:
    metrics = resolve_metrics(sc.metrics, judge_url, judge_model)
    items = build_items(renderer, load_suite_examples(sc.data, sc.format, sc.limit))
    if not items:
        raise ConfigError([f"eval suite {sc.name!r}: {sc.data} has no examples"])
    return Suite(sc.name, items, metrics, sc.max_new_tokens)


@dataclass
class SuiteRun:
    outputs: list[str]
    scores: list[dict[str, float]]  # per example
    metrics: dict[str, float]  # aggregated


def run_suite(model, tokenizer, suite: Suite, items: list[EvalItem], stop_ids: list[int], batch_size: int,
              amp=None) -> SuiteRun:
    raw = generate(model, tokenizer, [it.prompt_ids for it in items], stop_ids=stop_ids,
                   max_new_tokens=suite.max_new_tokens, batch_size=batch_size, amp=amp)
    outputs = [it.clean(o) for it, o in zip(items, raw)]
    scores = [score_all(suite.metrics, out, it.reference, it.example) for out, it in zip(outputs, items)]
    return SuiteRun(outputs, scores, aggregate(scores))


def samples(items: list[EvalItem], outputs: list[str], n: int) -> list[dict]:
    out = []
    for it, o in list(zip(items, outputs))[:n]:
        msgs = (it.example.messages or []) if it.example is not None else []
        users = [m["content"] for m in msgs if m.get("role") == "user" and isinstance(m.get("content"), str)]
        out.append({"source": it.source, "prompt": users[-1] if users else it.prompt_text,
                    "reference": it.reference, "output": o})
    return out


def before_after(suite: str, base: list[dict[str, float]], tuned: list[dict[str, float]]) -> list[dict]:
    """Per metric: base, tuned, delta and the paired-bootstrap 95% CI (examples that have the metric in both)."""
    rows = []
    for key in tuned[0] if tuned else []:
        pairs = [(b[key], t[key]) for b, t in zip(base, tuned) if key in b and key in t]
        if not pairs:
            continue
        d = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs])
        rows.append({"suite": suite, "metric": key, "n": len(pairs), "base": d.base, "tuned": d.tuned,
                     "delta": d.delta, "lo": d.lo, "hi": d.hi})
    return rows


# ------------------------------------------------------------------------------------------------------------------
# During training


class TrainingEval:
    """Eval gates for one run. The loop calls baseline / smoke / full / should_stop / finalize (module docstring)."""

    def __init__(self, cfg: RunConfig, tokenizer, model, run_dir: str | Path):
        self.cfg, self.ecfg, self.tok, self.model = cfg, cfg.eval, tokenizer, model
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        renderer = eval_renderer(tokenizer, cfg.data)
        self.suites = [build_suite(sc, renderer, self.ecfg.judge_url, self.ecfg.judge_model)
                       for sc in self.ecfg.suites]
        problems = check_names(self.ecfg, {s.name: [m.name for m in s.metrics] for s in self.suites})
        if problems:
            raise ConfigError(problems)
        self.probe = build_items(renderer, load_probe()) if self.ecfg.forgetting_probe else []
        # KL is measured on the first kl_max_examples of each suite plus the probe (a fixed set, comparable over
        # steps); eval loss on every suite item. One teacher-forced pass over each item: the KL set with the base
        # reference, the rest of the suites without.
        k = self.ecfg.kl_max_examples
        self.kl_items = [it for s in self.suites for it in s.items[:k]] + self.probe
        self.rest_items = [it for s in self.suites for it in s.items[k:]]
        self.suite_index: dict[str, tuple[list[int], list[int]]] = {}  # suite -> (kl_items idx, rest_items idx)
        a = b = 0
        for s in self.suites:
            head, tail = len(s.items[:k]), len(s.items[k:])
            self.suite_index[s.name] = (list(range(a, a + head)), list(range(b, b + tail)))
            a, b = a + head, b + tail
        self.stop_ids = eot_ids(tokenizer, model, renderer)
        # generation runs under the run's autocast (bf16 on AMX CPUs / GPUs: ~2x faster decoding here); loss and KL
        # stay fp32 so small drifts are not lost in bf16 rounding
        from shipsft.model import autocast_dtype

        self.amp = autocast_dtype(cfg, next(model.parameters()).device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        # LoRA: the base is the same model with the adapter off (exact). Full FT: the base's top-k, cached at baseline.
        self.kl_ref: str | list | None = "adapter" if hasattr(model, "disable_adapter") else None
        self.kl_method = "exact (adapter disabled)" if self.kl_ref == "adapter" else f"top-{TOPK} + rest (lower bound)"
        es = self.ecfg.early_stopping
        first = self.suites[0].name if self.suites else ""
        self.early = EarlyStop(full_name(es.metric, first), es.mode, es.patience, es.min_delta) if es else None
        self.base_scores: dict[str, list[dict[str, float]]] = {}
        self.base_probe_loss: float | None = None
        self.evals: list[dict] = []  # full evals: {"step", "metrics", "scores"}
        self._log = self.run_dir / "eval.jsonl"

    # -- the calls the loop makes ---------------------------------------------------------------------------------

    def baseline(self) -> dict[str, float]:
        """Base model on every suite + probe, before step 1. Returns flat metrics."""
        t0 = time.perf_counter()
        metrics, samples_out, scores = self._generate_all()
        self.base_scores = scores
        full_ft = self.kl_ref is None and self.ecfg.kl_to_base
        forced, stats = self._forced(None, cache_topk=TOPK if full_ft else 0, kl_zero=True)
        if full_ft:
            self.kl_ref = [s.topk for s in stats]
        metrics.update(forced)
        self._write("baseline", 0, metrics, samples_out, t0)
        return metrics

    def smoke(self, step: int) -> dict[str, float] | None:
        """Every `eval.smoke_every` steps: the first `eval.smoke_size` examples of the first suite; else None."""
        if not self.suites or not self.ecfg.smoke_every or step % self.ecfg.smoke_every:
            return None
        t0 = time.perf_counter()
        s = self.suites[0]
        run = run_suite(self.model, self.tok, s, s.items[: self.ecfg.smoke_size], self.stop_ids, self.ecfg.batch_size,
                        self.amp)
        metrics = {f"{s.name}/{k}": v for k, v in run.metrics.items()}
        self._write("smoke", step, metrics, [], t0)
        return metrics

    def full(self, step: int, epoch_end: bool = False) -> dict[str, float]:
        """Every suite + eval loss + KL to base + forgetting probe. Updates early stopping. Returns flat metrics."""
        if self.base_probe_loss is None and self.probe or (self.ecfg.kl_to_base and self.kl_ref is None):
            raise RuntimeError("TrainingEval.baseline() must run before the first optimizer step: KL, the forgetting "
                               "probe and the before/after table compare against it")
        t0 = time.perf_counter()
        metrics, samples_out, scores = self._generate_all()
        metrics.update(self._forced(self.kl_ref if self.ecfg.kl_to_base else None)[0])
        self.evals.append({"step": step, "metrics": metrics, "scores": scores})
        if self.early is not None:
            self.early.update(metrics)
        self._write("full", step, metrics, samples_out, t0, epoch_end=epoch_end)
        return metrics

    @property
    def should_stop(self) -> bool:
        return self.early is not None and self.early.should_stop

    def finalize(self, checkpoints: dict[int, Path]) -> Promotion:
        """Promote the best checkpoint that passes every gate to <run>/final/; write promotion.json + report.html."""
        promo = promote(self.ecfg, self.evals, checkpoints, self.run_dir)
        chosen = next((e for e in self.evals if e["step"] == promo.step), None)
        if chosen is not None and self.base_scores:
            promo.before_after = [row for s in self.suites
                                  for row in before_after(s.name, self.base_scores[s.name], chosen["scores"][s.name])]
            promo.message += "\n" + before_after_text(promo.before_after, promo.step)
        write_promotion(self.run_dir, promo)
        from shipsft.report import write_report

        write_report(self.run_dir)
        return promo

    # -- helpers --------------------------------------------------------------------------------------------------

    def _generate_all(self):
        """Generate on every suite: (flat metrics, samples for the report, per-example scores per suite)."""
        metrics: dict[str, float] = {}
        scores: dict[str, list[dict[str, float]]] = {}
        kept: list[dict] = []
        for s in self.suites:
            run = run_suite(self.model, self.tok, s, s.items, self.stop_ids, self.ecfg.batch_size, self.amp)
            metrics.update({f"{s.name}/{k}": v for k, v in run.metrics.items()})
            scores[s.name] = run.scores
            kept += [{"suite": s.name, **x} for x in samples(s.items, run.outputs, self.ecfg.samples)]
        return metrics, kept, scores

    def _forced(self, ref, cache_topk: int = 0, kl_zero: bool = False) -> tuple[dict[str, float], list[SeqStats]]:
        """Eval loss per suite, KL to base and the probe's loss, from one teacher-forced pass over each item."""
        kw = dict(pad_id=self.pad_id, batch_size=self.ecfg.batch_size)
        kl_stats = teacher_forced(self.model, self.kl_items, ref=ref, cache_topk=cache_topk, **kw)
        rest = teacher_forced(self.model, self.rest_items, **kw)
        metrics: dict[str, float] = {}
        every: list[SeqStats] = []
        for s in self.suites:
            head, tail = self.suite_index[s.name]
            stats = [kl_stats[i] for i in head] + [rest[i] for i in tail]
            metrics[f"{s.name}/eval_loss"] = mean_loss(stats)
            every += stats
        if every:
            metrics["eval_loss"] = mean_loss(every)
        metrics.update(self._probe_metrics(kl_stats, kl_zero))
        return metrics, kl_stats

    def _probe_metrics(self, stats: list[SeqStats], kl_zero: bool = False) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.ecfg.kl_to_base and stats:
            kl = 0.0 if kl_zero else mean_kl(stats)
            if kl is not None:
                out["kl_to_base"] = kl
        probe = stats[len(stats) - len(self.probe):] if self.probe else []
        if probe:
            out["probe_loss"] = mean_loss(probe)
            if self.base_probe_loss is None:
                self.base_probe_loss = out["probe_loss"]
            out["general_loss_increase"] = out["probe_loss"] - self.base_probe_loss
            if self.ecfg.kl_to_base:
                out["probe_kl"] = 0.0 if kl_zero else (mean_kl(probe) or 0.0)
        return out

    def _write(self, kind: str, step: int, metrics: dict, samples_out: list[dict], t0: float, **extra) -> None:
        record = {"kind": kind, "step": step, **extra, "metrics": metrics, "samples": samples_out,
                  "kl_method": self.kl_method, "time_s": round(time.perf_counter() - t0, 2)}
        with self._log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def before_after_text(rows: list[dict], step: int | None) -> str:
    """A plain-text before/after table (the loop prints promotion.message)."""
    if not rows:
        return ""
    w = max(len(f"{r['suite']}/{r['metric']}") for r in rows)
    lines = [f"  {'metric':<{w}}  {'base':>7}  {'step ' + str(step):>9}  {'delta':>7}  95% CI"]
    for r in rows:
        lines.append(f"  {r['suite'] + '/' + r['metric']:<{w}}  {r['base']:7.3f}  {r['tuned']:9.3f}  "
                     f"{r['delta']:+7.3f}  [{r['lo']:+.3f}, {r['hi']:+.3f}]")
    return "\n".join(lines)
