"""A chat session on a run (its adapter on the base, unmerged, as eval runs it) or on a model (an exported HF folder,
a .gguf, `smollm2`): the run's training template and system-message policy, greedy decoding, stopping at the ids
that end an assistant turn (`eval.items.stop_ids`: eos, generation_config's eos, the template's end-of-turn token).

    cm = load_chat_model("runs/quickstart", device)
    text = stream_reply(cm, [{"role": "user", "content": "Hi"}], max_new_tokens=256, out=sys.stdout)

The whole history is rendered by the template every turn (templates may rewrite earlier turns, e.g. Qwen3 drops
old think blocks), so each turn's prompt is exactly what eval and a server would send. Decoding is transformers'
`generate` with the same arguments as eval's (greedy, the model's generation_config otherwise), so a reply equals
the eval output for the same prompt; a `TextSink` streamer writes it as whole characters as tokens arrive.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from shipsft.config import DataConfig, MethodConfig, ModelConfig
from shipsft.data.pack import padding_id
from shipsft.data.render import Renderer, apply_system_policy, end_of_turn_marker, load_renderer
from shipsft.eval.items import stop_ids
from shipsft.export.source import open_run, training_renderer
from shipsft.model.load import load_base, load_trained
from shipsft.model.locate import tokenizer_from
from shipsft.runs.layout import is_run_folder


@dataclass
class ChatModel:
    model: torch.nn.Module
    renderer: Renderer  # tokenizer + template + system-message policy
    stop: list[int]
    label: str
    note: str = ""

    @property
    def tokenizer(self):
        return self.renderer.tokenizer

    def describe(self) -> str:
        marker = end_of_turn_marker(self.renderer) if self.renderer.template is not None else None
        stops = ", ".join(repr(self.tokenizer.convert_ids_to_tokens(i)) for i in self.stop)
        return (f"{self.label}: template {self.renderer.template.origin}"
                + (f", end of turn {marker!r}" if marker else "") + f"; stops at {stops}")


def load_chat_model(spec: str, device: torch.device) -> ChatModel:
    p = Path(spec)
    if p.is_dir() and is_run_folder(p):
        src = open_run(p)
        renderer = training_renderer(src)
        model = load_trained(src.cfg.model, src.cfg.method, src.weights, device)
        return ChatModel(model, renderer, stop_ids(renderer.tokenizer, model, renderer),
                         f"{src.name}/{src.weights.name}", src.note)
    model_cfg = ModelConfig(path=spec)
    model, model_dir = load_base(model_cfg, MethodConfig(name="full"), device)
    model.eval()
    renderer = load_renderer(tokenizer_from(model_dir), DataConfig())
    return ChatModel(model, renderer, stop_ids(renderer.tokenizer, model, renderer), p.name or spec)


def prompt_ids(cm: ChatModel, messages: list[dict]) -> list[int]:
    """The conversation rendered as training/eval render a prompt (with the generation prompt), tokenised."""
    r = cm.renderer
    text = r.template.render(apply_system_policy(messages, r.system_message), add_generation_prompt=True)
    return cm.tokenizer(text, add_special_tokens=False)["input_ids"]


class TextSink:
    """A transformers generation streamer (`generate(..., streamer=)`) that writes the reply to a text stream as
    tokens arrive: the prompt is skipped, tokens after a stop id are not shown, and a token that ends inside a UTF-8
    character is held back until the next one completes it."""

    def __init__(self, tokenizer, stop: list[int], out: TextIO):
        self.tokenizer, self.stop, self.out = tokenizer, set(stop), out
        self.ids: list[int] = []
        self.text = ""
        self.prompt_seen = self.stopped = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate hands over the prompt first
            self.prompt_seen = True
            return
        for t in value.reshape(-1).tolist():
            if self.stopped or t in self.stop:
                self.stopped = True
                return
            self.ids.append(t)
        self.flush(final=False)

    def flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if (final or not text.endswith("\ufffd")) and text.startswith(self.text) and text != self.text:
            self.out.write(text[len(self.text):])
            self.out.flush()
            self.text = text

    def end(self) -> None:
        self.flush(final=True)


@torch.no_grad()
def stream_reply(cm: ChatModel, messages: list[dict], max_new_tokens: int, out: TextIO) -> str:
    """Greedy reply to `messages` written to `out` as it is generated (transformers' generate, as eval runs it);
    returns the reply's text. Ctrl-C (KeyboardInterrupt) stops it; what was written stays written."""
    model, tok = cm.model, cm.tokenizer
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids(cm, messages)], device=device)
    sink = TextSink(tok, cm.stop, out)
    pad = padding_id(tok, cm.stop)
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                   do_sample=False, eos_token_id=cm.stop, pad_token_id=pad, use_cache=True, temperature=None,
                   top_p=None, top_k=None, streamer=sink)
    return sink.text
