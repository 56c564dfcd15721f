"""Eval items: an eval example is a conversation whose last assistant turn is the reference answer.

The prompt is the conversation up to (not including) that turn, rendered with the run's chat template and
`add_generation_prompt=True`, so the model sees exactly what it sees when served. The item also carries the whole
conversation rendered as training renders it, with the mask on the reference answer + its end-of-turn token: the
tokens eval loss and KL are measured on.

    items = build_items(eval_renderer(tokenizer, cfg.data), load_suite_examples(suite, cfg.data.allow_any_role_order))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from shipsft.config import DataConfig, SuiteConfig
from shipsft.data.render import (Renderer, apply_system_policy, end_of_turn_marker, load_renderer, render_examples,
                                 trained_turns)
from shipsft.data.types import Example
from shipsft.errors import DataError


@dataclass
class EvalItem:
    """One eval example, tokenised: prompt (with generation prompt) and the reference answer's tokens."""

    source: str
    prompt_ids: list[int]  # the conversation before the reference turn + the generation prompt
    ids: list[int]  # the whole conversation up to and including the reference turn, as training renders it
    mask: list[bool]  # True on the reference answer + its end-of-turn token (where eval loss and KL are measured)
    reference: str  # the reference content (what metrics compare against)
    prompt_text: str
    example: Example | None = None
    # what the template writes in the answer turn before the content (Qwen3: an empty "<think>\n\n</think>\n\n"):
    # a prediction that starts with it is scored without it
    answer_prefix: str = ""

    def clean(self, prediction: str) -> str:
        if self.answer_prefix and prediction.startswith(self.answer_prefix):
            return prediction[len(self.answer_prefix):]
        return prediction


def reference_turn(ex: Example) -> int | None:
    """Index of the reference turn: the turn `last_assistant` masking trains (the one turn-selection rule)."""
    turns = trained_turns(ex.messages or [], "last_assistant", ex.n_prompt)
    return turns[-1] if turns else None


def split_reference(ex: Example) -> tuple[list[dict[str, Any]] | str, str]:
    """(prompt messages or plain prompt, reference). The reference is the last assistant turn."""
    if ex.kind == "completion_text":
        return ex.prompt or "", ex.completion or ""
    if ex.kind != "chat" or not ex.messages:
        raise DataError([f"{ex.source}: eval examples must be conversations (or prompt/completion pairs); "
                         "raw text has no reference answer. Fix: give the suite a final assistant turn."])
    last = reference_turn(ex)
    if last is None or not isinstance(ex.messages[last].get("content"), str):
        raise DataError([f"{ex.source}: no assistant turn with text content to use as the reference. Fix: end "
                         "each eval conversation with the expected assistant answer."])
    return ex.messages[:last], ex.messages[last]["content"]


def _encode(tokenizer, text: str) -> list[int]:
    # The template text already holds every special token (bos included where the template writes it).
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_ids(tokenizer, model, renderer: Renderer) -> list[int]:
    """Every id that ends an assistant turn: eos, generation_config eos, and the end-of-turn marker of the template
    the renderer uses, found by the same rule as the training masks (so generation stops where training taught the
    model to stop)."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    gen_cfg = getattr(model, "generation_config", None) if model is not None else None
    gen_eos = getattr(gen_cfg, "eos_token_id", None)
    ids.extend(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    marker = end_of_turn_marker(renderer) if renderer.template is not None else None
    if marker is not None:
        ids.append(tokenizer.convert_tokens_to_ids(marker))
    return list(dict.fromkeys(i for i in ids if i is not None))


def eval_renderer(tokenizer, data: DataConfig) -> Renderer:
    """The training renderer's settings (template, kwargs, system policy), trained on the last assistant turn only:
    its mask marks exactly the reference answer + end-of-turn, the tokens eval loss and KL are measured on."""
    return load_renderer(tokenizer, data.model_copy(update={"mask": "last_assistant"}))


def build_items(renderer: Renderer, examples: list[Example]) -> list[EvalItem]:
    """Tokenise eval examples. Raises DataError naming every example that has no reference answer."""
    tok = renderer.tokenizer
    items, problems = [], []
    for ex in examples:
        try:
            prompt, reference = split_reference(ex)
        except DataError as e:
            problems.extend(e.lines)
            continue
        # the reference turn as training renders it (mask = reference + end-of-turn); one sequence, or the last
        # turn's own sequence when the template is not prefix-stable
        seq = render_examples(renderer, [_last_turn_example(ex)])[-1]
        if isinstance(prompt, str):  # plain prompt/completion: tokenised exactly as training does
            prompt_text, prompt_ids = prompt, seq.ids[: seq.n_prompt_tokens]
        else:
            msgs = apply_system_policy(prompt, renderer.system_message)
            prompt_text = renderer.template.render(msgs, add_generation_prompt=True, tools=ex.tools)
            prompt_ids = _encode(tok, prompt_text)
        scored = tok.decode([t for t, m in zip(seq.ids, seq.mask) if m], skip_special_tokens=True)
        if ex.kind == "chat" and ex.messages[reference_turn(ex)].get("tool_calls"):
            # structured tool calls have no text content: the reference is the turn as the template writes it,
            # which is what the model learns to generate (and what tool_call_match reads the calls back from)
            reference = scored.strip()
        prefix = scored[: scored.find(reference)] if reference and scored.find(reference) > 0 else ""
        items.append(EvalItem(ex.source, prompt_ids, seq.ids, seq.mask, reference, prompt_text, ex, prefix))
    if problems:
        raise DataError(problems)
    return items


def _last_turn_example(ex: Example) -> Example:
    """The example cut right after its reference turn (anything after the last assistant turn is not scored)."""
    if ex.kind != "chat":
        return ex
    last = reference_turn(ex)
    return Example(source=ex.source, kind="chat", messages=ex.messages[: last + 1], tools=ex.tools, meta=ex.meta,
                   n_prompt=ex.n_prompt)


def load_suite_examples(suite: SuiteConfig, allow_any_role_order: bool) -> list[Example]:
    """A suite's conversations: every record must be valid (an eval set is never silently thinned)."""
    from shipsft.data.formats import load_examples

    examples = load_examples([suite.data], suite.format, "error", None, allow_any_role_order).examples
    return examples[: suite.limit] if suite.limit else examples


PROBE_SLICES = ("general", "safety", "calibration")


def load_probe() -> list[Example]:
    """The shipped forgetting probe (Apache-2.0, by shipsft): 40 general-knowledge / instruction conversations, 12
    safety ones (refusals and benign look-alikes) and 10 calibration ones ("I don't know"); `meta["slice"]` says
    which (assets/forgetting_probe.README.md)."""
    text = resources.files("shipsft").joinpath("assets/forgetting_probe.jsonl").read_text(encoding="utf-8")
    records = [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return [Example(source=f"forgetting_probe.jsonl:{n}", messages=r["messages"],
                    meta={"slice": r.get("slice", "general"), "expect": r.get("expect")}) for n, r in records]


