"""Eval prompts and batched greedy generation with the model's own chat template.

An eval example is a conversation whose last assistant turn is the reference. The prompt is the conversation up
to (not including) that turn, rendered with the tokenizer's chat template and `add_generation_prompt=True`, so the
model sees exactly what it would see when served. Generation is batched and LEFT-padded (the new tokens of every
row start at the same column), greedy by default, and stops at the end-of-turn token: the token the template puts
after an assistant message, plus every id in `generation_config.eos_token_id` and the tokenizer's eos.

Works unchanged for a peft LoRA model (no merge; `PeftModel.generate`) and for a full model. Memory stays flat:
`generate` keeps only the KV cache and the next-token logits of one batch, never [N, seq, vocab] (failure mode 16).

    items = build_items(eval_renderer(tokenizer, cfg.data), examples)
    outputs = generate(model, tokenizer, [it.prompt_ids for it in items], stop_ids=eot_ids(tokenizer, model))
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from shipsft.data.render import Renderer, _apply_system_policy, end_of_turn_marker, load_renderer, render_examples
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


def split_reference(ex: Example) -> tuple[list[dict[str, Any]] | str, str]:
    """(prompt messages or plain prompt, reference). The reference is the last assistant turn."""
    if ex.kind == "completion_text":
        return ex.prompt or "", ex.completion or ""
    if ex.kind != "chat" or not ex.messages:
        raise DataError([f"{ex.source}: eval examples must be conversations (or prompt/completion pairs); "
                         "raw text has no reference answer. Fix: give the suite a final assistant turn."])
    last = max((i for i, m in enumerate(ex.messages) if m.get("role") == "assistant"), default=None)
    if last is None or not isinstance(ex.messages[last].get("content"), str):
        raise DataError([f"{ex.source}: no assistant turn with text content to use as the reference. Fix: end "
                         "each eval conversation with the expected assistant answer."])
    return ex.messages[:last], ex.messages[last]["content"]


def _encode(tokenizer, text: str) -> list[int]:
    # The template text already holds every special token (bos included where the template writes it).
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def eot_ids(tokenizer, model=None, renderer: Renderer | None = None) -> list[int]:
    """Every id that ends an assistant turn: eos, generation_config eos, and the end-of-turn marker of the template
    the renderer uses (default: the tokenizer's own), found by the same rule as the training masks."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    gen_cfg = getattr(model, "generation_config", None) if model is not None else None
    gen_eos = getattr(gen_cfg, "eos_token_id", None)
    ids.extend(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    if renderer is None and getattr(tokenizer, "chat_template", None):
        renderer = load_renderer(tokenizer)
    marker = end_of_turn_marker(renderer) if renderer is not None and renderer.template is not None else None
    if marker is not None:
        ids.append(tokenizer.convert_tokens_to_ids(marker))
    return list(dict.fromkeys(i for i in ids if i is not None))


def eval_renderer(tokenizer, data_cfg=None) -> Renderer:
    """The training renderer's settings (template, kwargs, system policy), trained on the last assistant turn only:
    its mask marks exactly the reference answer + end-of-turn, the tokens eval loss and KL are measured on."""
    kw = {}
    if data_cfg is not None:
        kw = dict(template=data_cfg.template, template_kwargs=data_cfg.template_kwargs,
                  system_message=data_cfg.system_message, train_eot=data_cfg.train_eot)
    return load_renderer(tokenizer, mode="last_assistant", **kw)


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
            msgs = _apply_system_policy(prompt, renderer.system_message)
            prompt_text = renderer.template.render(msgs, add_generation_prompt=True, tools=ex.tools)
            prompt_ids = _encode(tok, prompt_text)
        scored = tok.decode([t for t, m in zip(seq.ids, seq.mask) if m], skip_special_tokens=True)
        prefix = scored[: scored.find(reference)] if reference and scored.find(reference) > 0 else ""
        items.append(EvalItem(ex.source, prompt_ids, seq.ids, seq.mask, reference, prompt_text, ex, prefix))
    if problems:
        raise DataError(problems)
    return items


def _last_turn_example(ex: Example) -> Example:
    """The example cut right after its reference turn (anything after the last assistant turn is not scored)."""
    if ex.kind != "chat":
        return ex
    last = max(i for i, m in enumerate(ex.messages) if m.get("role") == "assistant")
    return Example(source=ex.source, kind="chat", messages=ex.messages[: last + 1], tools=ex.tools, meta=ex.meta)


def left_pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask, padded on the left so every row ends at the last column."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[row, width - len(s):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], *, stop_ids: list[int], max_new_tokens: int = 128,
             batch_size: int = 8, do_sample: bool = False, amp: torch.dtype | None = None) -> list[str]:
    """Greedy continuations of tokenised prompts, decoded up to (not including) the first stop token.

    Prompts are sorted by length so each batch pads little; the outputs come back in the input order.
    `amp` (the run's autocast dtype, bf16 on AMX CPUs) runs the decode under autocast, as training does: on this
    project's 2-core CPU, 8 quickstart prompts x 24 tokens took 19 s in fp32 and 10 s under bf16 autocast (machine
    shared, so absolute times are high; the ratio held in two repeats).
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            ids, mask = left_pad([prompts[i] for i in chunk], pad_id, device)
            with torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                     do_sample=do_sample, eos_token_id=stop_ids, pad_token_id=pad_id,
                                     use_cache=True, temperature=None, top_p=None, top_k=None)
            for row, i in enumerate(chunk):
                new = out[row, ids.shape[1]:].tolist()
                cut = next((k for k, t in enumerate(new) if t in stop_ids), len(new))
                outputs[i] = tokenizer.decode(new[:cut], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return outputs
