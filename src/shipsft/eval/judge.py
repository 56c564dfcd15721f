"""A judge model behind an OpenAI-compatible chat endpoint, and the `win_rate` metric it serves.

`ask` is the one request: POST {url}/v1/chat/completions with the prompt as one user message, temperature 0, and the
reply's text back (urllib, no extra dependency). The `judge` metric (eval/metrics.py) scores one answer against the
reference through it; `win_rate` compares the tuned model's answer with the base model's on the same prompt:

    judge = Judge.of(cfg.eval)                            # None when eval.judge_url is not set
    run = with_pairwise(suite.metrics, suite.items, tuned_run, base_run.outputs)
    run.scores[0]["win_rate"]   # 1.0 tuned better in both orders, 0.5 a tie, 0.0 base better (see `order_score`)

Both orders are asked (tuned as answer A, then as answer B) and scored from the tuned answer's side, so a judge
that always prefers one position scores every example 0.5, a tie: position bias cancels instead of deciding.
Identical answers are a tie without a request. An example counts only when both verdicts parse; the share that did
not is in each example's `details`. The suite's win rate is the mean example score; against the baseline (every
example 0.5: the base against itself) the before/after table gives its paired-bootstrap 95% CI like any metric.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from shipsft.config import WIN_RATE_FIELDS, EvalConfig
from shipsft.errors import ConfigError
from shipsft.eval.items import split_reference

VERDICTS = ("A", "B", "tie")
# Structured output (OpenAI's response_format; vLLM and llama.cpp's server enforce it with a grammar), so even a small
# judge answers with a verdict; replies from endpoints that ignore it are parsed from text (`parse_verdict`).
VERDICT_FORMAT = {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True, "schema": {
    "type": "object", "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)}},
    "required": ["verdict"], "additionalProperties": False}}}
TIMEOUT_S = 300.0  # one request, queueing on the server included: a 7B judge on a busy CPU server takes minutes


@dataclass(frozen=True)
class Judge:
    url: str  # the chat-completions endpoint (`endpoint`)
    model: str
    max_tokens: int
    concurrency: int
    win_rate_prompt: str

    @classmethod
    def of(cls, ecfg: EvalConfig) -> Judge | None:
        if not ecfg.judge_url:
            return None
        return cls(endpoint(ecfg.judge_url), ecfg.judge_model, ecfg.judge_max_tokens, ecfg.judge_concurrency,
                   ecfg.win_rate_prompt)


def endpoint(url: str) -> str:
    """.../v1/chat/completions from a base URL given with or without /v1 or the full path."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def ask(judge: Judge, prompt: str, response_format: dict | None = None) -> str:
    """The judge's reply to one user message (temperature 0). A dead or malformed endpoint is a ConfigError."""
    body: dict[str, Any] = {"model": judge.model, "temperature": 0, "max_tokens": judge.max_tokens,
                            "messages": [{"role": "user", "content": prompt}]}
    if response_format is not None:
        body["response_format"] = response_format
    req = urllib.request.Request(judge.url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            reply = json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:200]
        raise ConfigError([f"eval.judge_url: the judge at {judge.url} answered HTTP {e.code}: {detail}. Fix: check "
                           "eval.judge_model and that the server speaks the OpenAI chat-completions API"]) from None
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
        raise ConfigError([f"eval.judge_url: the judge at {judge.url} failed: {e}. Fix: check the server is up and "
                           "speaks the OpenAI chat-completions API, or remove the judged metrics"]) from None
    try:
        return reply["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise ConfigError([f"eval.judge_url: {judge.url} replied without choices[0].message.content: "
                           f"{json.dumps(reply)[:200]}"]) from None


_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)  # MT-Bench's "[[A]]", "[[B]]", "[[C]]" (tie)
_TIE_WORDS = {"tie", "c", "draw", "equal", "neither", "both"}


def _verdict_word(word: str) -> str | None:
    w = word.strip().strip(".!\"'`*").strip().lower()
    if w in ("a", "answer a"):
        return "A"
    if w in ("b", "answer b"):
        return "B"
    return "tie" if w in _TIE_WORDS else None


def parse_verdict(reply: str) -> str | None:
    """'A', 'B' or 'tie' from a judge's reply, or None: the JSON verdict ({"verdict": "A"}, a ``` fence allowed),
    else MT-Bench's [[A]] / [[B]] / [[C]], else a reply that is only the verdict word ("B.", "tie")."""
    text = reply.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", text)
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("verdict"), str):
        return _verdict_word(obj["verdict"])
    m = _BRACKETED.search(reply)
    if m:
        return _verdict_word(m.group(1))
    return _verdict_word(text) if len(text) <= 12 else None


def order_score(verdict: str | None, tuned_is: str) -> float | None:
    """The tuned answer's score from one verdict: 1 when the judge picked it, 0 when it picked the other, 0.5 for a
    tie; None when the reply held no verdict."""
    if verdict is None:
        return None
    return 0.5 if verdict == "tie" else float(verdict == tuned_is)


def fill(template: str, **values: str) -> str:
    """The prompt with {question}, {reference}, {answer_a} and {answer_b} replaced (str.replace, not str.format:
    a prompt may show JSON braces)."""
    for key in WIN_RATE_FIELDS:
        template = template.replace("{" + key + "}", values.get(key, ""))
    return template


@dataclass
class Comparison:
    """One example judged both ways: the verdict with the tuned answer as A, then as B, and the raw replies."""

    tuned_as_a: str | None
    tuned_as_b: str | None
    replies: tuple[str, str] = ("", "")
    same: bool = False  # identical answers: a tie, no request made

    @property
    def score(self) -> float | None:
        """Mean of the two order scores (None unless both verdicts parsed)."""
        a, b = order_score(self.tuned_as_a, "A"), order_score(self.tuned_as_b, "B")
        return None if a is None or b is None else (a + b) / 2

    def record(self) -> dict:
        out: dict[str, Any] = {"tuned_as_a": self.tuned_as_a, "tuned_as_b": self.tuned_as_b, "score": self.score}
        if self.same:
            out["same_answer"] = True
        elif self.score is None:
            out["replies"] = list(self.replies)
        return out


def compare_all(judge: Judge, questions: list[str], references: list[str], tuned: list[str], base: list[str]
                ) -> list[Comparison]:
    """Every example judged in both orders (eval.judge_concurrency requests at a time, results in example order)."""
    jobs: list[tuple[int, str]] = []  # (example, prompt): tuned as A, then tuned as B
    for i, (q, r, t, b) in enumerate(zip(questions, references, tuned, base)):
        if t.strip() != b.strip():
            jobs.append((i, fill(judge.win_rate_prompt, question=q, reference=r, answer_a=t, answer_b=b)))
            jobs.append((i, fill(judge.win_rate_prompt, question=q, reference=r, answer_a=b, answer_b=t)))
    with ThreadPoolExecutor(max_workers=judge.concurrency) as pool:
        replies = list(pool.map(lambda job: ask(judge, job[1], VERDICT_FORMAT), jobs))
    out = [Comparison("tie", "tie", same=True) for _ in tuned]
    for k in range(0, len(jobs), 2):
        first, second = replies[k], replies[k + 1]
        out[jobs[k][0]] = Comparison(parse_verdict(first), parse_verdict(second), (first, second))
    return out


def question_text(item) -> str:
    """What the judge reads as the request: the conversation before the reference answer (the user message alone when
    it is the only turn; else every turn, role-tagged, system prompt included), or a plain prompt."""
    ex = item.example
    if ex is None or ex.kind != "chat":
        return item.prompt_text
    msgs = split_reference(ex)[0]
    if len(msgs) == 1 and msgs[0].get("role") == "user":
        return str(msgs[0].get("content") or "")
    return "\n\n".join(f"{m.get('role')}: {m.get('content') or ''}" for m in msgs)


def with_pairwise(metrics: list, items: list, run, base_outputs: list[str]):
    """`run` (a SuiteRun) with every pairwise metric of the suite scored against `base_outputs` (the base model's
    answers to the same items; the run's own outputs for the baseline, which makes every example a tie). Unchanged
    when the suite has no pairwise metric. Raises when the judge gave no verdict at all: a number from nothing."""
    pairwise = [m for m in metrics if m.pairwise]
    if not pairwise:
        return run
    from shipsft.eval.metrics import aggregate  # here, not at the top: metrics.py imports Judge and ask from here

    if len(base_outputs) != len(run.outputs):
        raise ValueError(f"win_rate: {len(run.outputs)} tuned answers but {len(base_outputs)} base answers")
    scores = [dict(s) for s in run.scores]
    details = [dict(d) for d in run.details] if run.details else [{} for _ in items]
    for m in pairwise:
        judge: Judge = m.fn
        comps = compare_all(judge, [question_text(it) for it in items], [it.reference for it in items],
                            run.outputs, base_outputs)
        judged = [c for c in comps if not c.same]
        if judged and all(c.score is None for c in judged):
            raise ConfigError([f"{m.name}: the judge at {judge.url} gave no verdict in any of {len(judged)} "
                               f"comparisons (e.g. {judged[0].replies[0][:120]!r}). Fix: a judge that follows the "
                               "JSON verdict format (an endpoint with response_format support, or a larger model), "
                               "or an eval.win_rate_prompt it follows"])
        for s, d, c in zip(scores, details, comps):
            if c.score is not None:
                s[m.name] = c.score
            d[m.name] = c.record()
    return replace(run, scores=scores, metrics=aggregate(scores), details=details)
