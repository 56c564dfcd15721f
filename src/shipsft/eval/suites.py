"""Task suites: eval items + metrics, scored by generation; before/after tables with paired-bootstrap CIs.

    suite = build_suite(suite_cfg, renderer, eval_cfg, allow_any_role_order=False)
    run = run_suite(model, tokenizer, suite, suite.items, stop, batch_size=8, amp=None)
    run.metrics   # {"exact_match": 0.93, ...}
"""
from __future__ import annotations

from dataclasses import dataclass, field

from shipsft.config import DataConfig, EvalConfig, SuiteConfig
from shipsft.errors import ConfigError
from shipsft.eval.generate import generate
from shipsft.eval.items import EvalItem, build_items, eval_renderer, load_suite_examples, stop_ids
from shipsft.eval.judge import Judge
from shipsft.eval.metrics import Metric, aggregate, paired_bootstrap, resolve_metrics, score_all


@dataclass
class Suite:
    name: str
    items: list[EvalItem]
    metrics: list[Metric]
    max_new_tokens: int


def generation_budget(items: list[EvalItem], configured: int | None) -> int:
    """New tokens per example: `configured` (eval.suites.N.max_new_tokens), or when that is null the suite's
    longest reference in tokens (answer + end-of-turn, as training renders it) plus a margin of a quarter of it,
    at least 16 tokens. A correct answer fits with room to spare; a model that rambles past every reference by
    that much is wrong for exact-match metrics anyway, and no longer pays for 128 tokens per row (a 200-example
    suite with a base model that never stops spent most of its 8 minutes there)."""
    if configured is not None:
        return configured
    longest = max(sum(it.mask) for it in items)
    return longest + max(16, longest // 4)


def build_suite(sc: SuiteConfig, renderer, ecfg: EvalConfig, allow_any_role_order: bool) -> Suite:
    metrics = resolve_metrics(sc.metrics, Judge.of(ecfg))
    items = build_items(renderer, load_suite_examples(sc, allow_any_role_order))
    if not items:
        raise ConfigError([f"eval suite {sc.name!r}: {sc.data} has no examples"])
    return Suite(sc.name, items, metrics, generation_budget(items, sc.max_new_tokens))


@dataclass
class SuiteRun:
    outputs: list[str]
    scores: list[dict[str, float]]  # per example
    metrics: dict[str, float]  # aggregated
    details: list[dict] = field(default_factory=list)  # per example: a pairwise metric's verdicts (eval/judge.py)


def run_suite(model, tokenizer, suite: Suite, items: list[EvalItem], stop_ids: list[int], batch_size: int,
              amp, advance=None) -> SuiteRun:
    """Generate on `items` and score them; `advance(n)` is told of every n prompts answered (a progress bar)."""
    raw = generate(model, tokenizer, [it.prompt_ids for it in items], stop_ids=stop_ids,
                   max_new_tokens=suite.max_new_tokens, batch_size=batch_size, amp=amp, advance=advance)
    outputs = [it.clean(o) for it, o in zip(items, raw)]
    scores = [score_all(suite.metrics, out, it.reference, it.example) for out, it in zip(outputs, items)]
    return SuiteRun(outputs, scores, aggregate(scores))


def shown_prompt(it: EvalItem) -> str:
    """What a person reads as the prompt: the last user message (the system prompt is the same on every line)."""
    msgs = (it.example.messages or []) if it.example is not None else []
    users = [m["content"] for m in msgs if m.get("role") == "user" and isinstance(m.get("content"), str)]
    return users[-1] if users else it.prompt_text


def samples(items: list[EvalItem], outputs: list[str], n: int) -> list[dict]:
    return [{"source": it.source, "prompt": shown_prompt(it), "reference": it.reference, "output": o}
            for it, o in list(zip(items, outputs))[:n]]


def predictions(suite: str, items: list[EvalItem], run: SuiteRun, base: SuiteRun | None = None) -> list[dict]:
    """One record per example, in suite order: suite, source (file:line), prompt, reference, output, every metric's
    score; with a baseline run over the same items, its output and scores too (`runs/predictions.py` writes them)."""
    out = []
    for i, it in enumerate(items):
        rec = {"suite": suite, "source": it.source, "prompt": shown_prompt(it), "reference": it.reference,
               "output": run.outputs[i], "scores": run.scores[i]}
        if base is not None:
            rec["base_output"], rec["base_scores"] = base.outputs[i], base.scores[i]
        if run.details:
            rec["judge"] = run.details[i]
        out.append(rec)
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


def before_after_text(rows: list[dict], step: int | None) -> str:
    """A plain-text before/after table (the training run prints it with the promotion decision)."""
    if not rows:
        return ""
    w = max(len(f"{r['suite']}/{r['metric']}") for r in rows)
    lines = [f"  {'metric':<{w}}  {'base':>7}  {'step ' + str(step):>9}  {'delta':>7}  95% CI"]
    for r in rows:
        lines.append(f"  {r['suite'] + '/' + r['metric']:<{w}}  {r['base']:7.3f}  {r['tuned']:9.3f}  "
                     f"{r['delta']:+7.3f}  [{r['lo']:+.3f}, {r['hi']:+.3f}]")
    return "\n".join(lines)


def score_suites(model, tokenizer, data: DataConfig, ecfg: EvalConfig, amp) -> dict[str, tuple[Suite, SuiteRun]]:
    """Every suite of `ecfg` scored by generation with the run's template: {name: (suite, run)}."""
    renderer = eval_renderer(tokenizer, data)
    stop = stop_ids(tokenizer, model, renderer)
    out = {}
    for sc in ecfg.suites:
        suite = build_suite(sc, renderer, ecfg, data.allow_any_role_order)
        out[suite.name] = (suite, run_suite(model, tokenizer, suite, suite.items, stop, ecfg.batch_size, amp))
    return out
