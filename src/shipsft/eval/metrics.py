"""Task metrics for eval suites: pure functions of (prediction, reference, example) -> score, plus the statistics
the eval reports (paired bootstrap CI for a before/after delta, Spearman correlation over checkpoints).

Metric names as they appear in `eval.suites[].metrics` / `shipsft eval --metric`:

    exact_match          normalised equality (lowercase, strip, collapse whitespace, strip punctuation at the ends)
    exact_match_raw      byte-for-byte equality
    contains             normalised reference occurs in the normalised prediction
    regex:<pattern>      re.search(pattern, prediction) finds a match
    json_valid           the prediction parses as JSON (a surrounding ``` / ```json fence is allowed)
    json_field_match     per top-level field of the reference JSON object: equal in the prediction; reported as the
                         mean over fields and per field (`json_field_match/<field>`)
    tool_call_match      tool calls read from both texts (data/toolcalls.py: any template's wrapper): per reference
                         call, the name right and each argument equal, over the name + the union of argument
                         names (an invented argument counts against); calls missing or extra score 0; a reference
                         with no call (the answer after a tool result) is scored by exact_match
    token_f1             SQuAD-style token F1 (lowercase, no punctuation, no articles)
    rouge_l              LCS-based F1 over lowercase alphanumeric tokens
    judge                an OpenAI-compatible chat endpoint (`eval.judge_url`) scores the answer in [0, 1]
    win_rate             the judge compares the tuned and the base answer, in both orders (eval/judge.py): 1 tuned
                         better, 0.5 tie, 0 base better; scored once both models answered, not by score_all
    pkg.module:function  your own `function(prediction, reference, example) -> float`

    from shipsft.eval.metrics import resolve_metrics, score_all
    metrics = resolve_metrics(["exact_match", "token_f1"])
    scores = score_all(metrics, "Paris.", "paris", example)   # {"exact_match": 1.0, "token_f1": 1.0}
"""
from __future__ import annotations

import importlib
import json
import math
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from shipsft.data.toolcalls import ToolCall, parse_tool_calls
from shipsft.errors import ConfigError
from shipsft.eval.judge import Judge, ask

# ------------------------------------------------------------------------------------------------------------------
# Normalisation


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in string.punctuation


def normalize(text: str) -> str:
    """Lowercase, collapse whitespace, strip whitespace and punctuation at both ends ("  Paris. " -> "paris")."""
    text = " ".join(text.lower().split())
    start, end = 0, len(text)
    while start < end and (_is_punct(text[start]) or text[start].isspace()):
        start += 1
    while end > start and (_is_punct(text[end - 1]) or text[end - 1].isspace()):
        end -= 1
    return text[start:end]


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_tokens(text: str) -> list[str]:
    """SQuAD v1.1 answer normalisation: lowercase, drop punctuation, drop articles, split on whitespace."""
    text = "".join(ch for ch in text.lower() if not _is_punct(ch))
    return _ARTICLES.sub(" ", text).split()


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokeniser: lowercase, every non-alphanumeric character is a separator."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


# ------------------------------------------------------------------------------------------------------------------
# The metrics (each returns a float in [0, 1])


def exact_match(prediction: str, reference: str, example: Any = None) -> float:
    return float(normalize(prediction) == normalize(reference))


def exact_match_raw(prediction: str, reference: str, example: Any = None) -> float:
    return float(prediction == reference)


def contains(prediction: str, reference: str, example: Any = None) -> float:
    return float(normalize(reference) in normalize(prediction))


def parse_json(text: str) -> tuple[bool, Any]:
    """(ok, value). Whitespace and one surrounding markdown fence (``` or ```json) are allowed around the JSON."""
    text = text.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        text = text[3:-3]
        if text.startswith("json"):
            text = text[4:]
        text = text.strip()
    try:
        return True, json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return False, None


def json_valid(prediction: str, reference: str, example: Any = None) -> float:
    return float(parse_json(prediction)[0])


def json_field_scores(prediction: str, reference: str, example: Any = None) -> dict[str, float]:
    """1.0 per top-level field of the reference object that the prediction has with an equal value, else 0.0."""
    ok, ref = parse_json(reference)
    if not ok or not isinstance(ref, dict) or not ref:
        where = f"{getattr(example, 'source', '?')}: " if example is not None else ""
        raise ConfigError([f"{where}json_field_match needs a reference that is a non-empty JSON object, got "
                           f"{reference[:80]!r}. Fix: use json_valid / exact_match for this suite instead."])
    ok, pred = parse_json(prediction)
    if not ok or not isinstance(pred, dict):
        return {k: 0.0 for k in ref}
    return {k: float(k in pred and pred[k] == v) for k, v in ref.items()}


def same_value(a: Any, b: Any) -> bool:
    """JSON equality where 8 == 8.0 but True != 1 and "8" != 8 (a string where the schema wants a number is wrong)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def call_score(reference: ToolCall, prediction: ToolCall) -> float:
    """0 for another function; else (1 for the name + each reference argument with an equal value) over (1 + every
    argument name either side has): a missing argument and an invented one both cost one part."""
    if reference.name != prediction.name:
        return 0.0
    names = reference.arguments.keys() | prediction.arguments.keys()
    right = sum(k in prediction.arguments and same_value(prediction.arguments[k], v)
                for k, v in reference.arguments.items())
    return (1 + right) / (1 + len(names))


def tool_call_match(prediction: str, reference: str, example: Any = None) -> float:
    """Tool calls scored call by call (module docstring). Calls pair by name, best match first, so parallel calls
    may come in any order; the sum is over max(reference calls, predicted calls)."""
    ref = parse_tool_calls(reference)
    if not ref:
        return exact_match(prediction, reference)
    left = parse_tool_calls(prediction)
    n_pred = len(left)
    total = 0.0
    for r in ref:
        scores = [call_score(r, p) for p in left]
        if scores and max(scores) > 0:
            best = scores.index(max(scores))
            total += scores[best]
            left.pop(best)
    return total / max(len(ref), n_pred)


def token_f1(prediction: str, reference: str, example: Any = None) -> float:
    pred, ref = squad_tokens(prediction), squad_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)  # both empty: a correct "no answer"; one empty: 0
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence, O(len(a) * len(b)) time and O(len(b)) memory."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str, example: Any = None) -> float:
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return float(not pred and not ref)
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------------------------------------------
# The judge: one request per example to an OpenAI-compatible endpoint (eval/judge.py: ask)

JUDGE_PROMPT = (
    "You grade answers. Compare the candidate answer with the reference answer for the question below and reply "
    "with one number between 0 and 1 (1 = fully correct and complete, 0 = wrong), nothing else.\n\n"
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nCandidate answer:\n{prediction}"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def make_judge(judge: Judge) -> Callable:
    """A metric function that asks the endpoint for a score. The reply's first number, clamped to [0, 1]."""

    def score(prediction: str, reference: str, example: Any = None) -> float:
        question = ""
        if example is not None and getattr(example, "messages", None):
            users = [m.get("content", "") for m in example.messages if m.get("role") == "user"]
            question = users[-1] if users else ""
        content = ask(judge, JUDGE_PROMPT.format(question=question, reference=reference, prediction=prediction))
        m = _NUMBER.search(content)
        if m is None:
            raise ConfigError([f"eval.judge_url: the judge's reply has no score: {content[:200]!r}"])
        return min(1.0, max(0.0, float(m.group())))

    return score


# ------------------------------------------------------------------------------------------------------------------
# Resolving metric names once (errors at start-up, not after an hour of training)

BUILTIN: dict[str, Callable[[str, str, Any], float]] = {
    "exact_match": exact_match,
    "exact_match_raw": exact_match_raw,
    "contains": contains,
    "json_valid": json_valid,
    "tool_call_match": tool_call_match,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
}
KNOWN = [*BUILTIN, "json_field_match", "regex:<pattern>", "judge", "win_rate", "module:function"]


@dataclass(frozen=True)
class Metric:
    name: str  # as written by the user; the key in every result dict
    fn: Callable[..., Any]
    per_field: bool = False  # json_field_match: fn returns {field: score}
    pairwise: bool = False  # win_rate: fn is the Judge; scored on the tuned and base answers (eval/judge.py)


def _custom(spec: str) -> Callable:
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's to fix
        raise ConfigError([f"metric {spec!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}). "
                           "Fix: make it importable (on PYTHONPATH or installed) or correct the name."]) from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError([f"metric {spec!r}: module {module_name!r} has no function {func_name!r}. "
                           "Fix: define `def " + func_name + "(prediction, reference, example) -> float`."])
    return fn


def resolve_metric(spec: str, judge: Judge | None = None) -> Metric:
    if spec in BUILTIN:
        return Metric(spec, BUILTIN[spec])
    if spec == "json_field_match":
        return Metric(spec, json_field_scores, per_field=True)
    if spec.startswith("regex:"):
        try:
            pattern = re.compile(spec[len("regex:"):], re.DOTALL)
        except re.error as e:
            raise ConfigError([f"metric {spec!r}: invalid regular expression: {e}"]) from None
        return Metric(spec, lambda prediction, reference, example=None: float(pattern.search(prediction) is not None))
    if spec in ("judge", "win_rate"):
        if judge is None:
            raise ConfigError([f"metric {spec!r} needs eval.judge_url (an OpenAI-compatible endpoint, e.g. "
                               "http://127.0.0.1:8000/v1). Fix: set eval.judge_url (shipsft eval: --judge-url) or "
                               "drop the metric."])
        return Metric(spec, judge, pairwise=True) if spec == "win_rate" else Metric(spec, make_judge(judge))
    if ":" in spec and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec):
        return Metric(spec, _custom(spec))
    import difflib

    hint = difflib.get_close_matches(spec, KNOWN, n=1, cutoff=0.5)
    raise ConfigError([f"unknown metric {spec!r}" + (f" — did you mean {hint[0]!r}?" if hint else "")
                       + f" (known: {', '.join(KNOWN)})"])


def resolve_metrics(specs: list[str], judge: Judge | None = None) -> list[Metric]:
    """Every metric resolved at once; all problems raised together."""
    out, problems = [], []
    for spec in specs:
        try:
            out.append(resolve_metric(spec, judge))
        except ConfigError as e:
            problems.extend(e.lines)
    if problems:
        raise ConfigError(problems)
    return out


def score_all(metrics: list[Metric], prediction: str, reference: str, example: Any = None) -> dict[str, float]:
    """Scores of one example: {metric name: score}, plus `json_field_match/<field>` entries."""
    out: dict[str, float] = {}
    for m in metrics:
        if m.pairwise:  # needs the base model's answer too: eval/judge.py with_pairwise
            continue
        if m.per_field:
            fields = m.fn(prediction, reference, example)
            out[m.name] = sum(fields.values()) / len(fields)
            out.update({f"{m.name}/{k}": v for k, v in fields.items()})
        else:
            value = float(m.fn(prediction, reference, example))
            if not math.isfinite(value):
                raise ConfigError([f"metric {m.name!r} returned {value} for {getattr(example, 'source', '?')}"])
            out[m.name] = value
    return out


def aggregate(per_example: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each key over the examples that have it (a per-field key only counts examples with that field)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for scores in per_example:
        for k, v in scores.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


# ------------------------------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class Delta:
    base: float
    tuned: float
    delta: float
    lo: float  # 95% CI of the delta (2.5th percentile of the paired bootstrap)
    hi: float


def resampled_means(values: np.ndarray, clusters: list | None, n_resamples: int, seed: int) -> np.ndarray:
    """The means of `n_resamples` bootstrap resamples of `values`. With `clusters` (one id per value: the eval's
    sentence patterns, data/skeleton.py), whole clusters are resampled and each resample's mean is over the examples
    of the clusters it drew: examples of one phrasing succeed or fail together (on the recipe bench's rewrite_format,
    three held-out phrasings scored 0.33, 0.98 and 0.98), so resampling examples one by one would give an interval as
    narrow as if every example were a new phrasing. One cluster per example is the plain bootstrap, draw for draw."""
    if clusters is None:
        idx = np.random.default_rng(seed).integers(0, len(values), size=(n_resamples, len(values)))
        return values[idx].mean(axis=1)
    ids = {c: k for k, c in enumerate(dict.fromkeys(clusters))}  # in order of first appearance
    of = np.fromiter((ids[c] for c in clusters), dtype=np.int64, count=len(clusters))
    sums, sizes = np.bincount(of, weights=values), np.bincount(of).astype(np.float64)
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_resamples, len(ids)))
    return sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)


def bootstrap_mean(values: list[float], n_resamples: int = 1000, seed: int = 0, clusters: list | None = None
                   ) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean and the 2.5th / 97.5th percentiles of the means of resampled examples (whole
    `clusters` resampled when given: `resampled_means`)."""
    if not values:
        raise ValueError("a bootstrap CI needs at least one score")
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(resampled_means(v, clusters, n_resamples, seed), [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def paired_bootstrap(base: list[float], tuned: list[float], n_resamples: int = 1000, seed: int = 0,
                     clusters: list | None = None) -> Delta:
    """Mean(tuned) - mean(base) with a 95% CI from resampling examples (the same indices for both: paired; whole
    `clusters` resampled when given)."""
    if len(base) != len(tuned) or not base:
        raise ValueError(f"paired bootstrap needs two equal, non-empty score lists (got {len(base)}, {len(tuned)})")
    b, t = np.asarray(base, dtype=np.float64), np.asarray(tuned, dtype=np.float64)
    diff = t - b
    lo, hi = np.percentile(resampled_means(diff, clusters, n_resamples, seed), [2.5, 97.5])
    return Delta(float(b.mean()), float(t.mean()), float(diff.mean()), float(lo), float(hi))


def _ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties get their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks); None with fewer than 3 points or a constant series."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = np.asarray(_ranks(x)), np.asarray(_ranks(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    if denom == 0:
        return None
    return float((rx * ry).sum() / denom)
