"""Task suites: eval items + metrics, scored by generation; before/after tables with paired-bootstrap CIs.

    suite = build_suite(suite_cfg, renderer, eval_cfg, allow_any_role_order=False)
    mark_patterns([suite], train_examples)   # which items' sentence pattern is in training (data/skeleton.py)
    run = run_suite(model, tokenizer, suite, suite.items, stop, batch_size=8, amp=None)
    run.metrics                   # {"exact_match": 0.93, ...}
    suite_metrics(suite, run)     # {"heldout/exact_match": 0.93, "heldout.seen/exact_match": 1.0,
                                  #  "heldout.unseen/exact_match": 0.69, ...}

Seen and unseen patterns: a suite that holds both examples whose prompt skeleton clusters with a training example's
("seen") and examples whose does not ("unseen") is also scored on each slice, as `<suite>.seen/<metric>` and
`<suite>.unseen/<metric>`; `pattern_rows` gives each slice's mean with a bootstrap 95% CI (and, with a baseline, the
paired delta's). Gates, early stopping and checkpoint selection read the unseen slice (eval/gates.py: for_slices).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from shipsft.config import DataConfig, EvalConfig, SuiteConfig
from shipsft.data.skeleton import pattern_marks, prompt_and_answers
from shipsft.errors import ConfigError
from shipsft.eval.generate import generate
from shipsft.eval.items import EvalItem, build_items, eval_renderer, load_suite_examples, stop_ids
from shipsft.eval.judge import Judge
from shipsft.eval.metrics import Metric, aggregate, bootstrap_mean, paired_bootstrap, resolve_metrics, score_all

SLICES = ("seen", "unseen")  # sentence pattern in the training data, or not


@dataclass
class Suite:
    name: str
    items: list[EvalItem]
    metrics: list[Metric]
    max_new_tokens: int
    patterns: list[str] | None = None  # per item: "seen" | "unseen" (mark_patterns); None = not compared
    clusters: list[int] | None = None  # per item: its sentence-pattern cluster (mark_patterns): CIs resample them

    @property
    def sliced(self) -> bool:
        """Both kinds present: the suite is also scored on each slice."""
        return self.patterns is not None and len(set(self.patterns)) == 2


def slice_name(suite: str, part: str) -> str:
    """`heldout`, `unseen` -> `heldout.unseen`: the suite name the slice's metrics carry."""
    return f"{suite}.{part}"


def mark_patterns(suites: list[Suite], train_examples: list) -> None:
    """Set each suite's `patterns` from its examples' sentence patterns against the training examples' and its
    `clusters` (the patterns among its own examples: without training examples, found over the suite alone)."""
    train = [prompt_and_answers(ex) for ex in train_examples]
    for s in suites:
        if s.items and all(it.example is not None for it in s.items):
            seen, s.clusters = pattern_marks(train, [prompt_and_answers(it.example) for it in s.items])
            if train:
                s.patterns = ["seen" if x else "unseen" for x in seen]


def suite_metrics(suite: Suite, run: SuiteRun) -> dict[str, float]:
    """The flat metrics of a run over the suite's first items (all of them, or a smoke eval's): `<suite>/<metric>`,
    and for a sliced suite `<suite>.seen/<metric>` and `<suite>.unseen/<metric>` (a slice with no example among
    them is left out)."""
    out = {f"{suite.name}/{k}": v for k, v in run.metrics.items()}
    if suite.sliced:
        for part in SLICES:
            mine = [sc for sc, p in zip(run.scores, suite.patterns) if p == part]
            if mine:
                out.update({f"{slice_name(suite.name, part)}/{k}": v for k, v in aggregate(mine).items()})
    return out


def metric_names(suite: Suite) -> dict[str, list[str]]:
    """{suite (and slice) name: metric names} for eval/gates.py: check_names."""
    names = [m.name for m in suite.metrics]
    parts = [suite.name, *(slice_name(suite.name, p) for p in SLICES)] if suite.sliced else [suite.name]
    return {p: names for p in parts}


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


def predictions(suite: str, items: list[EvalItem], run: SuiteRun, base: SuiteRun | None = None,
                patterns: list[str] | None = None, clusters: list[int] | None = None) -> list[dict]:
    """One record per example, in suite order: suite, source (file:line), prompt, reference, output, every metric's
    score, (`patterns`) whether its sentence pattern was seen in training and (`clusters`) which of the suite's
    patterns it is written in; with a baseline run over the same items, its output and scores too
    (`runs/predictions.py` writes them)."""
    out = []
    for i, it in enumerate(items):
        rec = {"suite": suite, "source": it.source, "prompt": shown_prompt(it), "reference": it.reference,
               "output": run.outputs[i], "scores": run.scores[i]}
        if patterns is not None:
            rec["pattern"] = patterns[i]
        if clusters is not None:
            rec["pattern_cluster"] = clusters[i]
        if base is not None:
            rec["base_output"], rec["base_scores"] = base.outputs[i], base.scores[i]
        if run.details:
            rec["judge"] = run.details[i]
        out.append(rec)
    return out


def before_after(suite: str, base: list[dict[str, float]], tuned: list[dict[str, float]],
                 clusters: list[int] | None = None) -> list[dict]:
    """Per metric: base, tuned, delta and the paired-bootstrap 95% CI (examples that have the metric in both;
    whole sentence-pattern `clusters` resampled when given: eval/metrics.py)."""
    rows = []
    for key in tuned[0] if tuned else []:
        have = [i for i, (b, t) in enumerate(zip(base, tuned)) if key in b and key in t]
        if not have:
            continue
        d = paired_bootstrap([base[i][key] for i in have], [tuned[i][key] for i in have],
                             clusters=[clusters[i] for i in have] if clusters is not None else None)
        rows.append({"suite": suite, "metric": key, "n": len(have), "base": d.base, "tuned": d.tuned,
                     "delta": d.delta, "lo": d.lo, "hi": d.hi})
    return rows


def pattern_rows(suite: Suite, tuned: list[dict[str, float]], base: list[dict[str, float]] | None = None
                 ) -> list[dict]:
    """Per slice of a sliced suite and top-level metric: n, the tuned mean and its bootstrap 95% CI (`tuned_lo`,
    `tuned_hi`); with the baseline's scores, its mean, the delta and the paired-bootstrap CI (`lo`, `hi`)."""
    if not suite.sliced:
        return []
    rows = []
    for part in SLICES:
        idx = [i for i, p in enumerate(suite.patterns) if p == part]
        for key in (k for k in (tuned[0] if tuned else {}) if "/" not in k):
            have = [i for i in idx if key in tuned[i] and (base is None or key in base[i])]
            if not have:
                continue
            clusters = [suite.clusters[i] for i in have] if suite.clusters is not None else None
            mean, lo, hi = bootstrap_mean([tuned[i][key] for i in have], clusters=clusters)
            row = {"suite": suite.name, "slice": part, "metric": key, "n": len(have), "tuned": mean,
                   "tuned_lo": lo, "tuned_hi": hi}
            if base is not None:
                d = paired_bootstrap([base[i][key] for i in have], [tuned[i][key] for i in have], clusters=clusters)
                row.update(base=d.base, delta=d.delta, lo=d.lo, hi=d.hi)
            rows.append(row)
    return rows


def pattern_text(rows: list[dict]) -> str:
    """Plain-text lines of `pattern_rows` (the training run prints them under the before/after table)."""
    if not rows:
        return ""
    lines = ["  sentence patterns seen in training vs unseen (95% CI):"]
    for r in rows:
        name = f"{slice_name(r['suite'], r['slice'])}/{r['metric']}"
        delta = f"  delta {r['delta']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]" if "delta" in r else ""
        lines.append(f"  {name}  n={r['n']}  {r['tuned']:.3f} [{r['tuned_lo']:.3f}, {r['tuned_hi']:.3f}]{delta}")
    return "\n".join(lines)


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


def score_suites(model, tokenizer, data: DataConfig, ecfg: EvalConfig, amp, train_examples: list | None = None
                 ) -> dict[str, tuple[Suite, SuiteRun]]:
    """Every suite of `ecfg` scored by generation with the run's template: {name: (suite, run)}; with the training
    examples, each suite's items marked seen / unseen (mark_patterns)."""
    renderer = eval_renderer(tokenizer, data)
    stop = stop_ids(tokenizer, model, renderer)
    suites = [build_suite(sc, renderer, ecfg, data.allow_any_role_order) for sc in ecfg.suites]
    mark_patterns(suites, train_examples or [])
    return {s.name: (s, run_suite(model, tokenizer, s, s.items, stop, ecfg.batch_size, amp)) for s in suites}
