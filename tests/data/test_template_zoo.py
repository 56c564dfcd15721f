"""Exactness over a zoo of public chat templates: every trained span is the assistant's answer plus exactly the
tokens the model must emit at inference to end its turn, and nothing else; a template where nothing ends a turn is a
clear error naming it.

24 families: the 17 templates of tests/assets/templates/ (sources in SOURCES.md there), the 6 fixture families of
../shared/fixtures/models (real tokenizers where the fixture has one) and the embedded SmolLM2. The zoo files carry
templates and special-token strings but no vocabularies, so those families are tokenised by a small byte-level BPE
trained here, with the family's special tokens registered as special tokens: the template's own role and turn
markers (`<|...|>`, `</s>`-like tags), as the real tokenizers register them.

The expected closers below are written out by hand from each template (the `after_assistant_*` strings in the zoo
files show what each one writes after an answer), not computed by the code under test.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import FIXTURES, TOKENIZER_FIXTURES, fixture_tokenizer, require_fixture
from shipsft.config import DataConfig
from shipsft.data.render import load_renderer, no_stop_problem, render_examples
from shipsft.data.types import Example
from shipsft.errors import TemplateError

ZOO = Path(__file__).resolve().parents[1] / "assets" / "templates"

# what the model must emit to end its turn (None: nothing in the template can; training must refuse)
CLOSE = {
    "chatglm3-6b": None,
    "command-r7b-12-2024": "<|END_RESPONSE|><|END_OF_TURN_TOKEN|>",
    "deepseek-r1-distill-qwen-32b": "<｜end▁of▁sentence｜>",
    "gpt-oss-120b": "<|return|>",  # <|end|> closes earlier turns: each turn is trained as the last of its sequence
    "granite-3.3-2b-instruct": "<|end_of_text|>",
    "hermes-3-llama-3.1-8b-tool-use": "<|im_end|>",
    "internlm2-chat-7b": "<|im_end|>",
    "llama-2-chat": " </s>",
    "mistral-nemo-instruct-2407": "</s>",
    "mixtral-8x7b-instruct-v0.1": "</s>",
    "olmo-7b-instruct": "<|endoftext|>",
    "phi-3-mini-128k-instruct": "<|end|>",
    "phi-3.5-mini-instruct": "<|end|>",  # '<|endoftext|>' only after the last turn: never trained
    "tinyllama-chat": "</s>",
    "wizardlm-2-8x22b": "</s>",
    "yi-1.5-34b-chat": "<|im_end|>",
    "zephyr-7b-gemma-sft": "<|im_end|>",  # '<eos>' only after the last turn: never trained
    "llama-3.2-instruct": "<|eot_id|>",
    "qwen2.5-instruct": "<|im_end|>",
    "qwen3": "<|im_end|>",
    "mistral-7b-instruct-v0.3": "</s>",
    "gemma-it": "<end_of_turn>",
    "gemma-3-it": "<end_of_turn>",
    "smollm2": "<|im_end|>",
}
# what a template writes inside the answer turn before the content (the model emits it too)
ANSWER_PREFIX = {"gpt-oss-120b": "<|channel|>final<|message|>", "qwen3": "<think>\n\n</think>\n\n",
                 "llama-2-chat": " ", "wizardlm-2-8x22b": " "}  # ' ' + content after '[/INST]' / 'ASSISTANT:'
# templates without a system role (they raise, or drop it): trained with data.system_message: merge
NO_SYSTEM = {"mixtral-8x7b-instruct-v0.1", "olmo-7b-instruct", "phi-3-mini-128k-instruct", "gemma-it",
             "mistral-7b-instruct-v0.3", "mistral-nemo-instruct-2407"}  # (gemma-3 folds it into the first user turn)
MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜]{1,40}｜>|</?[a-z_][a-z0-9_]{0,30}>")

CONVS = {
    "single": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Teal, a blue-green."}],
    "multi": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
              {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}],
    "system": [{"role": "system", "content": "Answer in one short line."}, {"role": "user", "content": "Why blue?"},
               {"role": "assistant", "content": "Rayleigh scattering."}],
}


def zoo_family(name: str) -> dict:
    return json.loads((ZOO / f"{name}.json").read_text())


def synthetic_tokenizer(template: str, special: dict, extra: list[str], kwargs: dict | None = None):
    """A byte-level BPE with the family's special tokens as single special tokens, and its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from shipsft.data.template import ChatTemplate

    tmpl = ChatTemplate(template, special, kwargs or {})
    scaffold = "".join(tmpl.render(c) for k, c in CONVS.items() if k != "system")
    specials = sorted(set(MARKER.findall(scaffold)) | set(extra) | {v for v in special.values() if v})
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [m["content"] for c in CONVS.values() for m in c] + [scaffold]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, **{k: v for k, v in special.items() if v})
    tok.chat_template = template
    return tok


def family(name: str):
    """(tokenizer, template kwargs) for a zoo family, a fixture family or the embedded SmolLM2."""
    if name == "smollm2":
        from shipsft.config import ModelConfig
        from shipsft.model.locate import load_tokenizer

        return load_tokenizer(ModelConfig()), {}
    if name in TOKENIZER_FIXTURES:
        return fixture_tokenizer(name), TOKENIZER_FIXTURES[name]
    if name in ("gemma-it", "gemma-3-it"):
        cfg = json.loads((require_fixture(name) / "tokenizer_config.json").read_text())
        special = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if isinstance(cfg.get(k), str)}
        return synthetic_tokenizer(cfg["chat_template"], special, ["<start_of_turn>", "<end_of_turn>"]), {}
    z = zoo_family(name)
    special = {k: v for k, v in z["special_tokens"].items() if v}
    extra = list(z["added_special_tokens"]) + list(z["stop_tokens"])
    kwargs = dict(z.get("template_kwargs") or {})
    return synthetic_tokenizer(z["chat_template"], special, extra, kwargs), kwargs


def trained_runs(tok, seq) -> list[str]:
    runs, cur = [], []
    for t, m in zip(seq.ids, seq.mask):
        if m:
            cur.append(t)
        elif cur:
            runs.append(tok.decode(cur, skip_special_tokens=False))
            cur = []
    if cur:
        runs.append(tok.decode(cur, skip_special_tokens=False))
    return runs


@pytest.mark.parametrize("name", sorted(CLOSE))
@pytest.mark.parametrize("case", ["single", "multi", "system"])
def test_every_trained_span_is_the_answer_and_the_closer_the_model_must_emit(name, case):
    tok, kwargs = family(name)
    conv = CONVS[case]
    data = DataConfig(template_kwargs=kwargs, system_message="merge" if case == "system" and name in NO_SYSTEM
                      else "keep")
    r = load_renderer(tok, data)
    if CLOSE[name] is None:
        problem = no_stop_problem(r)
        assert problem is not None and "closes an assistant turn with no special token" in problem.lines[0]
        assert "data.train_eot: false" in problem.lines[0]
        return
    assert no_stop_problem(r) is None and r.turn_end.close_final == CLOSE[name]
    seqs = render_examples(r, [Example(source=f"{name}.jsonl:1", messages=conv)])
    answers = [m["content"] for m in conv if m["role"] == "assistant"]
    got = [run for s in seqs for run in trained_runs(tok, s)]
    prefix = ANSWER_PREFIX.get(name, "")
    assert got == [prefix + a + CLOSE[name] for a in answers], (name, case, r.turn_end, got)
    # with data.train_eot off, the answers alone: no closer, and nothing the template writes after it
    r_off = load_renderer(tok, data.model_copy(update={"train_eot": False}))
    off = [run for s in render_examples(r_off, [Example(source="x:1", messages=conv)]) for run in trained_runs(tok, s)]
    assert off == [prefix + a for a in answers]


def test_a_template_that_appends_an_end_of_document_token_trains_it_nowhere(smollm2_tokenizer):
    """`<|im_end|>` closes every turn and `<|endoftext|>` follows the last one only: the last is never trained,
    the conversation stays one sequence (the template is prefix-stable), and train_eot: false trains neither."""
    chatml_eod = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                  "{% else %}{{ '<|endoftext|>' }}{% endif %}")
    tok = smollm2_tokenizer
    r = load_renderer(tok, DataConfig(template=chatml_eod))
    assert (r.turn_end.close_final, r.turn_end.after_final) == ("<|im_end|>", "\n<|endoftext|>")
    [seq] = render_examples(r, [Example(source="t:1", messages=CONVS["multi"])])
    assert seq.turn is None and seq.text.endswith("<|im_end|>\n<|endoftext|>")
    assert trained_runs(tok, seq) == ["Hello! How can I help?<|im_end|>", "It is 4.<|im_end|>"]
    r_off = load_renderer(tok, DataConfig(template=chatml_eod, train_eot=False))
    [seq] = render_examples(r_off, [Example(source="t:1", messages=CONVS["multi"])])
    assert trained_runs(tok, seq) == ["Hello! How can I help?", "It is 4."]


def test_the_zoo_is_at_least_sixteen_families_with_sources():
    files = sorted(p.stem for p in ZOO.glob("*.json"))
    assert len(set(CLOSE)) >= 16 and set(files) <= set(CLOSE)
    sources = (ZOO / "SOURCES.md").read_text()
    assert all(f"| {name} |" in sources for name in files)
    assert all(zoo_family(name)["source"]["repo"] for name in files)


def test_the_fixture_families_are_covered():
    assert {"llama-3.2-instruct", "qwen2.5-instruct", "qwen3", "mistral-7b-instruct-v0.3"} <= set(CLOSE)
    assert (FIXTURES / "gemma-it").exists() or pytest.skip("fixtures not present")


def test_a_template_raising_on_a_plain_conversation_is_named():
    tok = fixture_tokenizer("qwen2.5-instruct")
    with pytest.raises(TemplateError, match=r"cannot render a plain user/assistant conversation \(boom\)"):
        load_renderer(tok, DataConfig(template="{{ raise_exception('boom') }}"))


@pytest.mark.parametrize("name", sorted(NO_SYSTEM))
def test_a_system_message_the_template_cannot_carry_is_an_error_with_the_fix(name):
    """Templates without a system role either raise or silently drop it (Phi-3-mini, OLMo, Mistral v0.3 in
    training data): both are one error naming the example, the message and data.system_message: merge."""
    tok, kwargs = family(name)
    r = load_renderer(tok, DataConfig(template_kwargs=kwargs))
    with pytest.raises(TemplateError) as e:
        render_examples(r, [Example(source=f"{name}.jsonl:3", messages=CONVS["system"])])
    line = e.value.lines[0]
    assert line.startswith(f"{name}.jsonl:3: ") and "data.system_message: merge" in line, line
