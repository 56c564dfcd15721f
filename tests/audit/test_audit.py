"""The pre-flight audit: every check fires on a planted defect and stays quiet on clean data.

Pure checks are tested on hand-built inputs; template checks use the real tokenizers in ../shared/fixtures/models
(and the embedded SmolLM2 for pad == eos); the CLI tests run `shipsft audit` end to end on small files.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from helpers import fixture_tokenizer

from shipsft.audit.findings import AuditResult, Finding
from shipsft.audit.run import model_max_positions, run_audit
from shipsft.audit.template import (check_double_bos, check_eot, check_pad_eos, check_parity,
                                    check_prefix_stability, check_role_markers, check_saved_template,
                                    check_template)
from shipsft.audit.text import check_contamination, check_content, check_duplicates, normalise
from shipsft.audit.text import texts_of as _texts_of
from shipsft.audit.tokens import (batch_figures, check_lengths, check_masks, check_provenance, check_recipe,
                                  recommend_max_length)
from shipsft.config import DataConfig, RunConfig, TrainConfig, load_config
from shipsft.data.inspect import CANNED_ANSWER
from shipsft.data.pipeline import prepare
from shipsft.data.render import load_renderer, render_examples, resolve_template
from shipsft.data.types import Example, Rendered
from shipsft.errors import AuditFailed
from shipsft.data.pack import Batching
from shipsft.steps.resolve import TokenLengths, resolve
from shipsft.steps.schedule import plan_steps

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
         "phi chi psi omega red green blue cyan magenta yellow black white river mountain forest desert ocean lake "
         "valley canyon island harbor").split()


def chat(source: str, *turns: str, system: str | None = None, **meta) -> Example:
    msgs = [{"role": "system", "content": system}] if system else []
    for k, t in enumerate(turns):
        msgs.append({"role": "user" if k % 2 == 0 else "assistant", "content": t})
    return Example(source=source, messages=msgs, meta=meta)


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def clean_examples(n: int = 40, seed: int = 0, answer_words: int = 25) -> list[Example]:
    rng = random.Random(seed)
    return [chat(f"train.jsonl:{i + 1}", f"Question {i}: {sentence(rng, 12)}?",
                 f"Answer {i}: {sentence(rng, answer_words)}.") for i in range(n)]


def checks(findings: list[Finding]) -> dict[str, str]:
    return {f.check: f.severity for f in findings}


@pytest.fixture(scope="module")
def qwen():
    return fixture_tokenizer("qwen2.5-instruct")


def render(tok, examples, **kw):
    return render_examples(load_renderer(tok, DataConfig(**kw)), examples)


def texts_of(examples, mask="all_assistant"):
    return _texts_of(examples, mask)


def run_cli(*args) -> tuple[int, str]:
    """`shipsft ARGS` in-process (typer's runner); returns (exit code, everything printed)."""
    from typer.testing import CliRunner

    from shipsft.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args], env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "160"})
    return res.exit_code, res.output  # click >= 8.2: output holds stdout and stderr


def figures(rs, batch_size, max_length, packing, joined=False, micro_tokens=4096):
    """batch_figures over one epoch of the loop's own batching, `batch_size` examples a step."""
    plan = plan_steps([len(r.ids) for r in rs], TrainConfig(batch_size=batch_size, epochs=1))
    return batch_figures(rs, plan, 42, Batching(max_length, packing, micro_tokens, joined))


def lengths_check(rs, max_length, batch_size, packing, model_max=None, overlong="error"):
    """check_lengths as run_audit feeds it: full lengths, and the figures of the loop's micro-batches."""
    return check_lengths(rs, [len(r.ids) for r in rs], max_length, model_max, overlong,
                         figures(rs, batch_size, max_length, packing),
                         None if packing else figures(rs, batch_size, max_length, True))


def recipe(n, trained, method, epochs, max_steps, batch_size):
    """check_recipe with the loop's own step plan for n examples of 100 tokens."""
    train = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    return check_recipe(n, trained, method, plan_steps([100] * n, train))


# ------------------------------------------------------------------------------------------------------------
# Template


def test_parity_clean(qwen):
    exs = clean_examples(5)
    f, s = check_parity(qwen, exs, render(qwen, exs))
    assert f == [] and s == {"sampled": 5, "text_mismatch": 0, "ids_mismatch": 0}


def test_parity_planted_handwritten_chatml(qwen):
    exs = clean_examples(3)
    rendered = render(qwen, exs)
    # the classic hand-rolled template: ChatML without Qwen's default system prompt
    bad = rendered[1]
    m = exs[1].messages
    bad.text = "".join(f"<|im_start|>{x['role']}\n{x['content']}<|im_end|>\n" for x in m)
    bad.ids = qwen(bad.text, add_special_tokens=False)["input_ids"]
    f, s = check_parity(qwen, exs, rendered)
    assert checks(f) == {"template.parity": "error"}
    assert f[0].examples == ["train.jsonl:2"] and s["text_mismatch"] == 1
    # Qwen's template starts with its default system turn: "<|im_start|>" (12 chars) then "system" vs "user"
    assert f[0].data["first"]["at"] == 12 and f[0].data["first"]["template_gives"].startswith("<|im_start|>system")


def test_token_parity_planted_extra_bos(qwen):
    exs = clean_examples(2)
    rendered = render(qwen, exs)
    rendered[0].ids = [qwen.convert_tokens_to_ids("<|endoftext|>")] + rendered[0].ids
    f, _ = check_parity(qwen, exs, rendered)
    assert checks(f) == {"template.token_parity": "error"} and f[0].examples == ["train.jsonl:1"]


def test_prefix_stability_qwen3_splits_per_turn():
    tok = fixture_tokenizer("qwen3")
    exs = [chat("t.jsonl:1", "Hi", "Hello!", "2+2?", "4")]
    rendered = render(tok, exs)
    f, s = check_prefix_stability(rendered)
    assert s == {"split_sequences": 2, "split_examples": 1}
    assert checks(f) == {"template.prefix_unstable": "info"}
    assert check_prefix_stability(render(fixture_tokenizer("qwen2.5-instruct"), exs))[0] == []


def test_eot_trained_clean_and_planted(qwen):
    exs = clean_examples(4)
    rendered = render(qwen, exs)
    f, s = check_eot(qwen, rendered)
    assert f == [] and s["spans"] == 4 and s["eot_tokens"] == {"<|im_end|>": 4}
    planted = copy.deepcopy(rendered)
    last = max(i for i, m in enumerate(planted[2].mask) if m)
    planted[2].mask[last] = False  # the <|im_end|> after the answer is no longer trained
    f, s = check_eot(qwen, planted)
    assert checks(f) == {"template.eot_not_trained": "error"} and f[0].examples == ["train.jsonl:3"]
    assert s["spans_without_eot"] == 1


def test_eot_not_trained_by_config_is_a_warning(qwen):
    exs = clean_examples(2)
    rendered = render(qwen, exs, train_eot=False)
    f, _ = check_eot(qwen, rendered, train_eot=False)
    assert checks(f) == {"template.eot_not_trained": "warning"}


@pytest.mark.parametrize("name", ["qwen2.5-instruct", "llama-3.2-instruct", "mistral-7b-instruct-v0.3", "qwen3"])
def test_role_markers_single_tokens_clean(name):
    tok = fixture_tokenizer(name)
    kw = {"date_string": "26 Jul 2024"} if name.startswith("llama") else {}
    f, s = check_role_markers(tok, None, kw)
    assert f == [] and s["markers"] and all(len(ids) == 1 for ids in s["markers"].values())


def test_role_markers_chatml_on_llama_vocab_is_an_error():
    tok = fixture_tokenizer("llama-3.2-instruct")
    chatml = resolve_template(tok, "chatml", {}).source
    f, _ = check_role_markers(tok, chatml)
    assert checks(f) == {"template.role_markers": "error"}
    assert set(f[0].data["split"]) == {"<|im_start|>", "<|im_end|>"}
    assert f[0].data["split"]["<|im_start|>"] == ["<", "|", "im", "_start", "|", ">"]


def test_double_bos():
    tok = fixture_tokenizer("llama-3.2-instruct")
    bos = tok.bos_token_id
    ok = Rendered("a:1", [bos, 5, 6], [False, True, True])
    bad = Rendered("a:2", [bos, bos, 5], [False, False, True])
    assert check_double_bos(tok, [ok]) == ([], {"double_bos": 0})
    f, s = check_double_bos(tok, [ok, bad])
    assert checks(f) == {"template.double_bos": "error"} and f[0].examples == ["a:2"] and s["double_bos"] == 1


def test_pad_eos_smollm2(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # SmolLM2 ships pad == eos (cpu-facts)
    exs = clean_examples(3)
    rendered = render(tok, exs)
    f, s = check_pad_eos(tok, rendered)
    assert checks(f) == {"template.pad_eos": "info"} and s["trained_eos"] == 3
    # the classic bug: labels masked by id (ids == pad) erases every EOS
    planted = copy.deepcopy(rendered)
    for r in planted:
        r.mask = [m and t != tok.pad_token_id for t, m in zip(r.ids, r.mask)]
    f, s = check_pad_eos(tok, planted)
    assert checks(f) == {"template.pad_eos": "error"} and s["trained_eos"] == 0


def test_pad_differs_from_eos_is_silent(qwen):
    exs = clean_examples(2)
    assert qwen.pad_token_id != qwen.eos_token_id
    assert check_pad_eos(qwen, render(qwen, exs))[0] == []


def test_saved_template_clean_and_planted(qwen):
    exs = clean_examples(3)
    rendered = render(qwen, exs)
    f, s = check_saved_template(qwen, exs, rendered)
    assert f == [] and s["mismatch"] == 0
    # trained with chatml, but the tokenizer that would be saved carries Qwen's own template
    chatml_rendered = render(qwen, exs, template="chatml")
    f, s = check_saved_template(qwen, exs, chatml_rendered, template_source=None)
    assert checks(f) == {"template.saved_template": "error"} and s["mismatch"] == 3
    # when the run saves its custom template, the saved tokenizer matches, but serving from the base files won't
    chatml = resolve_template(qwen, "chatml", {}).source
    before = qwen.chat_template
    f, s = check_saved_template(qwen, exs, chatml_rendered, template_source=chatml)
    assert checks(f) == {"template.custom_template": "warning"} and s["mismatch"] == 0
    assert qwen.chat_template == before  # the check restores the tokenizer


# ------------------------------------------------------------------------------------------------------------
# Masks and lengths


def seq(source: str, n: int, trained: int, truncated: bool = False) -> Rendered:
    return Rendered(source, list(range(n)), [False] * (n - trained) + [True] * trained,
                    n_prompt_tokens=n - trained, truncated=truncated)


def test_masks_clean():
    f, s = check_masks([seq("a:1", 10, 4), seq("a:2", 20, 5)], max_length=64)
    assert f == [] and s["trained_tokens"] == 9 and s["tokens"] == 30
    assert sum(s["trained_share"]["hist"]["counts"]) == 2


def test_masks_zero_trained_and_cut_answers():
    rs = [seq("a:1", 10, 4), seq("a:2", 10, 0), seq("a:3", 100, 30), seq("a:4", 64, 10, truncated=True)]
    f, s = check_masks(rs, max_length=64)
    got = {x.check: x for x in f}
    assert got["masks.zero_trained"].severity == "error" and got["masks.zero_trained"].examples == ["a:2"]
    assert got["masks.answer_cut"].examples == ["a:3", "a:4"] and s["answers_cut"] == 2


def test_length_helpers_exact():
    assert recommend_max_length([100] * 99 + [1000]) == 128  # p99 = 109 -> 128
    assert recommend_max_length([5000] * 10, model_max=4096) == 4096


def test_batch_figures_are_the_loops_own_micro_batches():
    # one step of [1, 3] unpacked: two rows padded to 3 -> 4 real of 6 positions; equal lengths pad nothing
    one = figures([seq("a:1", 1, 1), seq("a:2", 3, 1)], batch_size=2, max_length=100, packing=False)
    assert one["padding_share"] == pytest.approx(round(1 - 4 / 6, 4)) and one["rows_per_step"] == 2
    assert figures([seq(f"a:{i}", 7, 1) for i in range(8)], 4, 100, False)["padding_share"] == 0.0
    # joined rows (per-document attention) never pad; packed rows of one step pad only the shorter row
    rs = [seq(f"a:{i}", n, 1) for i, n in enumerate([10, 30, 20, 40])]
    assert figures(rs, 4, 64, False, joined=True) == {"steps_walked": 1, "padding_share": 0.0, "rows_per_step": 1.0,
                                                     "micro_batches_per_step": 1.0, "packing": False, "joined": True}
    packed = figures(rs, 4, 64, True)  # best fit: [40, 20] and [30, 10] -> rows of 60 and 40, padded to 60
    assert packed["padding_share"] == pytest.approx(round(1 - 100 / 120, 4)) and packed["rows_per_step"] == 2
    # a micro-batch budget of 64 padded tokens puts each of the two rows in its own micro-batch
    assert figures(rs, 4, 64, True, micro_tokens=64)["micro_batches_per_step"] == 2


def test_lengths_clean_is_info_only():
    rs = [seq(f"a:{i}", 100 + i, 40) for i in range(50)]
    f, s = lengths_check(rs, max_length=256, batch_size=4, packing=True)
    assert checks(f) == {"lengths.summary": "info"}
    assert s["total"]["max"] == 149 and s["answer"]["p50"] == 40 and s["recommended_max_length"] == 192


def test_lengths_over_max_length_and_padding_waste():
    # one long example in every four: unpacked, each step's rows are padded to its 400-token one; packed, the four
    # fit one row of 512 (the 900-token one is over max_length and in no row)
    rs = [seq(f"a:{i}", 400 if i % 4 == 0 else 20, 5) for i in range(32)] + [seq("long:1", 900, 100)]
    f, s = lengths_check(rs, max_length=512, batch_size=4, packing=False, model_max=8192, overlong="truncate")
    assert checks(f) == {"lengths.over_max_length": "warning", "lengths.padding_waste": "warning"}
    waste = next(x for x in f if x.check == "lengths.padding_waste")
    share, packed = s["batches"]["padding_share"], s["batches_packed"]["padding_share"]
    assert share > 0.5 and packed < share / 2
    assert waste.message.startswith(f"without packing, {share:.0%} of the positions of the training micro-batches")
    assert "lengths.padding_waste" not in checks(lengths_check(rs, 512, 4, packing=True, model_max=8192,
                                                               overlong="truncate")[0])
    f, _ = lengths_check(rs, max_length=512, batch_size=4, packing=False, model_max=8192, overlong="error")
    assert checks(f)["lengths.over_max_length"] == "error"  # training would refuse to start
    over = next(x for x in f if x.check == "lengths.over_max_length")
    assert over.examples == ["long:1"] and over.fix.startswith("--set data.max_length=960 fits every example")
    assert "--set data.max_length=768 (p99, rounded up to 64) data.overlong=truncate, which cuts 1" in over.fix
    assert s["n_over_max_length"] == 1
    f, _ = lengths_check(rs, max_length=9000, batch_size=4, packing=True, model_max=8192)
    assert checks(f)["lengths.beyond_model"] == "error"


# ------------------------------------------------------------------------------------------------------------
# Duplicates


def test_duplicates_exact_and_near():
    exs = clean_examples(50, answer_words=100)  # one changed word in ~115: Jaccard ~0.92 over 5-word shingles
    exs.append(chat("train.jsonl:51", exs[3].messages[0]["content"].upper(), "  " + exs[3].messages[1]["content"]))
    words = exs[7].messages[1]["content"].split()
    words[10] = "changed"
    exs.append(chat("train.jsonl:52", exs[7].messages[0]["content"], " ".join(words)))
    f, s = check_duplicates(texts_of(exs))
    got = {x.check: x for x in f}
    assert got["duplicates.exact"].examples == ["train.jsonl:4", "train.jsonl:51"]
    assert got["duplicates.near"].examples == ["train.jsonl:8", "train.jsonl:52"]
    assert s["exact_extra"] == 1 and s["near_extra"] == 1 and s["cluster_sizes"] == [2, 2]
    assert f"{normalise(exs[3].messages[0]['content'])}"[:20] in s["top_exact"][0]["text"].lower()


def test_duplicates_clean():
    f, s = check_duplicates(texts_of(clean_examples(80)))
    assert f == [] and s["exact_groups"] == 0 and s["near_clusters"] == 0


# ------------------------------------------------------------------------------------------------------------
# Contamination


def test_contamination_exact_ngram_and_clean():
    train = clean_examples(30)
    rng = random.Random(9)
    leaked_prompt = chat("eval.jsonl:1", train[5].messages[0]["content"], "something else entirely", id="q-1")
    long_answer = train[6].messages[1]["content"]
    paraphrase = chat("eval.jsonl:2", "A different question", "Prefix. " + " ".join(long_answer.split()[2:22]))
    thirteen = chat("eval.jsonl:10", "Another question", "Other. " + " ".join(long_answer.split()[2:15]))  # 1 13-gram
    short = chat("eval.jsonl:3", "Sentiment of: great movie", "positive")
    fresh = [chat(f"eval.jsonl:{k}", sentence(rng, 12), sentence(rng, 20)) for k in range(4, 10)]
    train.append(chat("train.jsonl:99", "Sentiment of: awful movie", "positive"))
    evals = texts_of([leaked_prompt, paraphrase, short, thirteen] + fresh)
    f, s = check_contamination(texts_of(train), {"suite qa": evals})
    got = {x.check: x for x in f}
    assert got["contamination.exact"].severity == "error"
    assert got["contamination.exact"].examples == ["eval.jsonl:1 (id q-1) (prompt)"]
    assert got["contamination.ngram"].examples == ["eval.jsonl:2 (answer)"]
    assert s["sets"]["suite qa"]["exact"] == 1 and s["sets"]["suite qa"]["overlap"] == 1
    f, _ = check_contamination(texts_of(train), {"clean": texts_of(fresh)})
    assert f == []


def test_contamination_ignores_shared_system_prompt_and_boilerplate():
    system = "Extract the order as compact JSON with keys name, age, city, item, color, qty, and nothing else."
    header = "Please read the following customer message carefully and answer in the requested format now:"
    rng = random.Random(11)
    train = [chat(f"t:{i}", f"{header} {sentence(rng, 8)}", sentence(rng, 15), system=system) for i in range(30)]
    evals = [chat(f"e:{i}", f"{header} {sentence(rng, 8)}", sentence(rng, 15), system=system) for i in range(5)]
    f, s = check_contamination(texts_of(train), {"qa": texts_of(evals)})
    assert f == [] and s["boilerplate_ngrams"] > 0  # the 13-word header is in all 30 training examples
    leaked = chat("e:9", train[4].messages[1]["content"], "x", system=system)  # same user turn, same system
    f, _ = check_contamination(texts_of(train), {"qa": texts_of(evals + [leaked])})
    assert checks(f) == {"contamination.exact": "error"} and f[0].examples == ["e:9 (prompt)"]


def test_contamination_ignores_a_canned_answer_but_not_a_copied_one():
    # A refusal the data gives to CANNED_ANSWER requests is its template (the split lets it cross: leak_groups);
    # one answer fewer and it is a copied answer again.
    rng = random.Random(12)
    refusal = "I cannot help with that request, sorry."
    train = [chat(f"t:{i}", sentence(rng, 10), refusal if i < CANNED_ANSWER else sentence(rng, 15))
             for i in range(CANNED_ANSWER + 10)]
    evals = [chat("e:0", sentence(rng, 10), refusal), chat("e:1", sentence(rng, 10), train[-1].messages[1]["content"])]
    f, s = check_contamination(texts_of(train), {"qa": texts_of(evals)})
    assert checks(f) == {"contamination.exact": "error"} and f[0].examples == ["e:1 (answer)"]
    f, _ = check_contamination(texts_of(train[1:]), {"qa": texts_of(evals)})
    assert f[0].examples == ["e:0 (answer)", "e:1 (answer)"]


# ------------------------------------------------------------------------------------------------------------
# Content quality


@pytest.mark.parametrize("answer,check,severity", [
    ("   ", "content.empty_answer", "error"),
    ("Lorem ipsum dolor sit amet, consectetur adipiscing elit sed do.", "content.placeholder", "warning"),
    ("Dear [insert customer name], thanks for your order of the blue widget.", "content.placeholder", "warning"),
    ("Here is code:\n```python\nprint('hi')\n", "content.code_fence", "warning"),
    ("ok", "content.short_answer", "warning"),
])
def test_content_planted(answer, check, severity):
    exs = clean_examples(30)
    exs.append(chat("train.jsonl:31", "Write something about rivers please now", answer))
    f, _ = check_content(texts_of(exs))
    assert checks(f) == {check: severity} and f[0].examples == ["train.jsonl:31"]


def test_content_echo_prompt():
    exs = clean_examples(30)
    exs.append(chat("train.jsonl:31", "Tell me about the blue river", "Tell me about the blue river. " + "It flows."))
    f, _ = check_content(texts_of(exs))
    assert checks(f) == {"content.echo_prompt": "warning"}


def test_content_json_consistency():
    exs = [chat(f"t:{i}", f"Extract {i}", json.dumps({"name": f"n{i}", "age": i})) for i in range(20)]
    exs.append(chat("t:21", "Extract x", "The name is x."))
    exs.append(chat("t:22", "Extract y", '{"name": "y", "age": }'))
    f, s = check_content(texts_of(exs))
    assert checks(f) == {"content.json_format": "warning"}
    assert f[0].examples == ["t:22", "t:21"] and s["not_json"] == 1 and s["bad_json"] == 1
    assert check_content(texts_of(exs[:20]))[0] == []


def test_content_refusal_share():
    exs = clean_examples(30)
    for k in range(3):
        exs.append(chat(f"r:{k}", "Help me with the task", "I'm sorry, but I can't help with that request."))
    f, s = check_content(texts_of(exs))
    assert checks(f) == {"content.refusals": "warning"} and s["refusals"] == 3
    exs = clean_examples(100) + exs[-1:]
    assert checks(check_content(texts_of(exs))[0]) == {"content.refusals": "info"}  # 1% is below the 5% warning


def test_content_clean():
    f, s = check_content(texts_of(clean_examples(60)))
    assert f == [] and s["empty"] == 0 and s["refusals"] == 0


# ------------------------------------------------------------------------------------------------------------
# Data size and recipe; provenance


def test_recipe_clean_is_info_only():
    f, s = recipe(2000, 300_000, "lora", 1.0, None, 16)
    assert checks(f) == {"recipe.summary": "info"} and "task specialisation" in s["band"]


@pytest.mark.parametrize("kw,expected", [
    ({"n": 20, "method": "lora", "epochs": 1.0}, "recipe.too_few"),
    ({"n": 800, "method": "full", "epochs": 1.0}, "recipe.full_on_small_data"),
    ({"n": 5000, "method": "lora", "epochs": 3.0}, "recipe.epochs"),
])
def test_recipe_planted(kw, expected):
    f, _ = recipe(kw["n"], 10_000, kw["method"], kw["epochs"], None, 8)
    assert checks(f)[expected] == "warning"


def test_recipe_max_steps_sets_effective_epochs():
    f, s = recipe(4000, 10_000, "lora", 1.0, 750, 32)  # 750 steps * 32 examples / 4000 examples = 6 epochs
    assert s["epochs"] == 6.0 and checks(f)["recipe.epochs"] == "warning"


def test_recipe_too_few_optimizer_steps_is_a_warning_with_the_fix():
    """1,200 examples in steps of 64: 19 updates an epoch (in steps of 8: 150)."""
    f, s = recipe(1200, 100_000, "lora", 1.0, None, 64)
    assert s["optimizer_steps"] == 19 and checks(f)["recipe.too_few_steps"] == "warning"
    warn = next(x for x in f if x.check == "recipe.too_few_steps")
    assert "only 19 optimizer step(s) (64 examples each)" in warn.message
    assert warn.fix.startswith("--set train.batch_size=")
    assert "recipe.too_few_steps" not in checks(recipe(1200, 100_000, "lora", 1.0, None, 8)[0])


def test_too_few_steps_quotes_the_runs_own_numbers():
    """900 examples in steps of 48: the message names this run's 19 updates an epoch and what 9 per step would give,
    never another data set's numbers."""
    f, s = recipe(900, 50_000, "lora", 1.0, None, 48)
    warn = next(x for x in f if x.check == "recipe.too_few_steps")
    assert (s["optimizer_steps"], s["steps_per_epoch"]) == (19, 19)
    assert warn.message == ("the run makes only 19 optimizer step(s) (48 examples each): too few updates to learn a "
                            "task from 900 examples (each step is one update: in steps of 48 examples they make 19 "
                            "updates an epoch; in steps of 9 examples they would make 100).")
    assert warn.fix.startswith("--set train.batch_size=9")


@pytest.mark.parametrize("n", [40, 60, 300, 1200, 5000])
@pytest.mark.parametrize("batch", [4, 8, 10, 32, 64])
@pytest.mark.parametrize("epochs", [1.0, 3.0])
def test_recipe_summary_and_too_few_steps_agree(n, batch, epochs):
    """One rule (judge_updates) writes the summary's verdict and raises the warning: the summary says "too few"
    exactly when the warning is there, and "enough" exactly when it is not (on 50+ examples)."""
    f, s = recipe(n, 10_000, "lora", epochs, None, batch)
    summary = next(x for x in f if x.check == "recipe.summary").message
    warned = "recipe.too_few_steps" in checks(f)
    assert warned == ("updates are too few" in summary)
    assert (not warned and n >= 50) == ("updates are enough" in summary)
    assert warned == (n >= 50 and s["optimizer_steps"] < 50)
    assert summary.endswith(s["verdict"] + ".")


def test_the_quickstart_audits_without_a_warning():
    """The project's own quickstart (examples/quickstart/config.yaml) raises no warning and no error: what a new
    user sees first is a clean audit."""
    from shipsft.config import check_paths
    from shipsft.model.attention import rows_join
    from shipsft.model.load import hf_config
    from shipsft.model.locate import load_tokenizer

    path = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "config.yaml"
    cfg = load_config(path)
    check_paths(cfg, path)
    tok = load_tokenizer(cfg.model)
    prepared = prepare(cfg.data, tok, "train", strict=True, rejects_path=None)
    result = run_audit(cfg, tok, prepared, joined=rows_join(cfg.model, cfg.train, hf_config(cfg.model)))
    loud = [(x.check, x.message) for x in result.findings if x.severity != "info"]
    assert loud == []
    summary = next(x for x in result.findings if x.check == "recipe.summary").message
    assert "in 50 optimizer step(s) of 6 examples" in summary and "50 updates are enough" in summary


def planned(n: int, train: dict) -> tuple[TrainConfig, object]:
    """`train` settings (with --set style overrides applied) resolved as a run resolves them, for n examples of
    100 tokens: (resolved TrainConfig, the loop's step plan)."""
    r = resolve(RunConfig.model_validate({"train": train}), TokenLengths([100] * n, 128))
    return r.config.train, r.plan


def apply_fix(train: dict, fix: str) -> dict:
    """Each `--set` alternative of a finding's fix, applied to the train section as `shipsft train --set` would."""
    from shipsft.config import apply_overrides

    out = []
    for alternative in fix.split("; or "):
        sets = alternative.split("(")[0].removeprefix("--set ").split()
        out.append(apply_overrides({"train": dict(train)}, sets)["train"])
    return out


@pytest.mark.parametrize("train,n,steps,fix", [
    # an explicit batch above the data-sized default: a smaller batch, or the default (8 per step: 150 steps)
    ({"batch_size": 64, "epochs": 1}, 1200, 19,
     "--set train.batch_size=12; or --set train.batch_size=auto (8 examples per step for this data)"),
    # a token batch: the fix clears it, since batch_size and batch_tokens together are a start-up error
    ({"batch_size": None, "batch_tokens": 6400, "epochs": 1}, 1200, 19,
     ("--set train.batch_tokens=null train.batch_size=12; "
      "or --set train.batch_tokens=null train.batch_size=auto (8 examples per step for this data)")),
    # the defaults themselves on 120 examples (8 per step, 3 passes: 45 steps): never "use auto" again
    ({}, 120, 45, "--set train.batch_size=3"),
])
def test_too_few_steps_names_a_fix_that_clears_it(train, n, steps, fix):
    _, plan = planned(n, train)
    f, s = check_recipe(n, 10_000, "lora", plan)
    warn = next(x for x in f if x.check == "recipe.too_few_steps")
    assert (s["optimizer_steps"], warn.severity, warn.fix) == (steps, "warning", fix)
    assert f"only {steps} optimizer step(s)" in warn.message
    for fixed in apply_fix(train, fix):  # every alternative loads and makes at least 50 steps: no warning left
        _, plan = planned(n, fixed)
        assert plan.total_steps >= 50 and "recipe.too_few_steps" not in checks(check_recipe(n, 10_000, "lora", plan)[0])


def test_too_few_steps_boundary_and_tiny_sets():
    # 49 steps warn, 50 do not (MIN_STEPS_TO_LEARN); under 50 examples the data size is the problem, not the steps
    assert "recipe.too_few_steps" in checks(recipe(49 * 8, 10_000, "lora", 1.0, None, 8)[0])
    assert "recipe.too_few_steps" not in checks(recipe(50 * 8, 10_000, "lora", 1.0, None, 8)[0])
    tiny = checks(recipe(40, 10_000, "lora", 1.0, None, 8)[0])
    assert tiny == {"recipe.summary": "info", "recipe.too_few": "warning"}


def test_too_many_epochs_warns_on_a_large_set_and_only_notes_a_small_one():
    f, s = recipe(5000, 10_000, "lora", 3.0, None, 8)
    warn = next(x for x in f if x.check == "recipe.epochs")
    assert (s["epochs"], s["optimizer_steps"], warn.severity) == (3.0, 1875, "warning")
    assert warn.message.startswith("3.0 epochs over 5000 examples: repeating a set this size many times overfits it")
    assert warn.fix == ("--set train.epochs=2 and spend the budget on fresh examples; gate on an eval with early "
                        "stopping")
    assert "recipe.epochs" not in checks(recipe(5000, 10_000, "lora", 2.0, None, 8)[0])  # 2 passes: fine
    assert checks(recipe(500, 10_000, "lora", 3.0, None, 8)[0])["recipe.epochs"] == "warning"  # 500: a large set
    note = next(x for x in recipe(499, 10_000, "lora", 3.0, None, 8)[0] if x.check == "recipe.epochs")
    assert note.severity == "info" and "small set (499 examples)" in note.message


@pytest.mark.parametrize("n,batch,epochs,steps", [
    (150, 8, 3.0, 57), (300, 8, 3.0, 114), (500, 8, 2.0, 126), (1200, 8, 1.0, 150), (3000, 16, 1.0, 188),
    (10_000, 64, 1.0, 157)])
def test_the_data_sized_defaults_trip_neither_recipe_warning(n, batch, epochs, steps):
    """train.batch_size / train.epochs auto (steps/auto.py) on sets of 150 to 10,000 examples: enough steps, and
    more than 2 passes only over sets under 500 examples (an info note, not a warning)."""
    resolved, plan = planned(n, {})
    f, _ = check_recipe(n, 10_000, "lora", plan)
    assert (resolved.batch_size, resolved.epochs, plan.total_steps) == (batch, epochs, steps)
    assert not [x.check for x in f if x.severity == "warning"]


def test_provenance(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"x": 1}\n')
    b.write_text('{"x": 2}\n')
    exs = {"train": [Example(f"{a}:1", meta={"license": "apache-2.0"}), Example(f"{b}:1")]}
    f, s = check_provenance({"train": [str(a), str(b)]}, exs)
    assert checks(f) == {"provenance.license": "info"} and f[0].examples == [str(b)]
    rec = {x["path"]: x for x in s["files"]}
    assert rec[str(a)]["sha256"] == hashlib.sha256(b'{"x": 1}\n').hexdigest()
    assert rec[str(a)]["licenses"] == ["apache-2.0"] and rec[str(a)]["examples"] == 1


# ------------------------------------------------------------------------------------------------------------
# Result types


def test_finding_caps_examples_and_result_json():
    f = Finding("x.y", "warning", "msg", examples=[f"s:{i}" for i in range(50)])
    assert len(f.examples) == 20 and f.data["count"] == 50
    with pytest.raises(ValueError):
        Finding("x", "fatal", "m")
    r = AuditResult([Finding("a", "info", "i"), Finding("b", "error", "e", fix="do it", examples=["t:1"])],
                    {"n": np.int64(3)})
    d = json.loads(r.to_json())
    assert d["summary"] == {"errors": 1, "warnings": 0, "info": 1} and d["findings"][0]["check"] == "b"
    assert d["stats"]["n"] == 3
    err = r.as_error()
    assert isinstance(err, AuditFailed) and err.exit_code == 1
    assert any("fix: do it" in line for line in err.lines) and "--skip-audit" in err.lines[-1]


# ------------------------------------------------------------------------------------------------------------
# End to end: `shipsft audit` and the training hook


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def conv(q: str, a: str, **kw) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], **kw}


def make_config(tmp_path, train_rows, suite_rows=None, extra: str = "") -> RunConfig:
    write_jsonl(tmp_path / "train.jsonl", train_rows)
    text = "data:\n  train: train.jsonl\n  max_length: 256\n" + extra
    if suite_rows is not None:
        write_jsonl(tmp_path / "suite.jsonl", suite_rows)
        text += "eval:\n  suites:\n    - name: qa\n      data: suite.jsonl\n"
    (tmp_path / "config.yaml").write_text(text)
    return load_config(tmp_path / "config.yaml")


def clean_rows(n: int = 60, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [conv(f"Question {i}: {sentence(rng, 10)}?", f"Answer {i}: {sentence(rng, 20)}.", license="cc-by-4.0")
            for i in range(n)]


def test_cli_clean_data_exits_0(tmp_path, smollm2_tokenizer):
    rng = random.Random(2)
    suite = [conv(sentence(rng, 10), sentence(rng, 15)) for _ in range(5)]
    make_config(tmp_path, clean_rows(), suite)
    code, text = run_cli("audit", tmp_path / "config.yaml", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert code == 0 and report["summary"]["errors"] == 0, report["findings"]
    assert report["stats"]["overview"]["examples"] == 60
    assert (tmp_path / "out" / "audit.html").stat().st_size > 5000
    assert "ready to train" in text


def test_cli_planted_errors_exit_1_and_default_out_dir(tmp_path, smollm2_tokenizer, monkeypatch):
    rows = clean_rows()
    rows.append(conv("Say something nice", "Lorem ipsum dolor sit amet."))  # placeholder: a warning
    suite = [conv(rows[3]["messages"][0]["content"], "anything")]  # leaked prompt: an error
    make_config(tmp_path, rows, suite, extra=f"output:\n  dir: {tmp_path / 'runs'}\n")
    code, text = run_cli("audit", tmp_path / "config.yaml")
    report = json.loads((tmp_path / "runs" / "audit-config" / "audit.json").read_text())
    errors = {f["check"] for f in report["findings"] if f["severity"] == "error"}
    warnings = {f["check"] for f in report["findings"] if f["severity"] == "warning"}
    assert code == 1 and errors == {"contamination.exact"} and "content.placeholder" in warnings
    assert "training would refuse to start" in text and "fix:" in text


def test_cli_template_that_raises_is_an_error_finding(tmp_path, smollm2_tokenizer):
    make_config(tmp_path, clean_rows(10), extra="  template: \"{{ raise_exception('no system role here') }}\"\n")
    code, _ = run_cli("audit", tmp_path / "config.yaml", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert code == 1 and report["findings"][0]["check"] == "template.render"
    assert "no system role here" in report["findings"][0]["message"]


def test_audit_of_the_training_split_reports_errors_and_writes_its_files(tmp_path, smollm2_tokenizer):
    from shipsft.train.run import write_audit

    rows = clean_rows()
    suite = [conv(rows[0]["messages"][0]["content"], "x")]
    cfg = make_config(tmp_path, rows, suite)
    prepared = prepare(cfg.data, smollm2_tokenizer, "train", strict=True, rejects_path=None)
    result = run_audit(cfg, smollm2_tokenizer, prepared)
    assert [f.check for f in result.errors] == ["contamination.exact"]
    write_audit(result, tmp_path / "run")
    assert (tmp_path / "run" / "audit.json").exists() and (tmp_path / "run" / "audit.html").exists()
    clean = run_audit(cfg, smollm2_tokenizer, prepared, eval_sets={})
    assert clean.errors == []


def test_cli_overlong_examples_are_reported_with_full_lengths(tmp_path, smollm2_tokenizer):
    rows = clean_rows(20)
    rows.append(conv("Tell me a long story please", " ".join(["word"] * 400)))
    make_config(tmp_path, rows)  # max_length 256; data.overlong defaults to error
    code, _ = run_cli("audit", tmp_path / "config.yaml", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    got = {f["check"]: f for f in report["findings"]}
    assert code == 1 and got["lengths.over_max_length"]["severity"] == "error"
    assert got["masks.answer_cut"]["examples"] == [f"{tmp_path / 'train.jsonl'}:21"]
    lengths = report["stats"]["lengths"]
    assert lengths["total"]["max"] > 400 and lengths["recommended_max_length"] % 64 == 0  # untruncated lengths
    assert lengths["model_max_positions"] == model_max_positions(smollm2_tokenizer) == 8192


def test_parity_flags_sequences_without_an_example(qwen):
    exs = clean_examples(2)
    rendered = render(qwen, exs)
    rendered[1].source = "moved.jsonl:2"  # e.g. a cache entry written for a file at another path
    f, _ = check_parity(qwen, exs, rendered)
    assert checks(f) == {"template.sources": "error"} and f[0].examples == ["moved.jsonl:2"]


@pytest.mark.parametrize("name", ["qwen2.5-instruct", "llama-3.2-instruct", "mistral-7b-instruct-v0.3", "qwen3"])
def test_all_template_checks_clean_on_real_families(name):
    """No false alarms on the real templates: multi-turn, system message (merged where the template drops it)."""
    tok = fixture_tokenizer(name)
    kw = {"date_string": "26 Jul 2024"} if name.startswith("llama") else {}
    policy = "merge" if name.startswith("mistral") else "keep"
    exs = [chat(f"t:{i}", f"Hi {i}", f"Hello {i}!", "2+2?", "4", system="Be terse.") for i in range(3)]
    rendered = render(tok, exs, template_kwargs=kw, system_message=policy)
    f, s = check_template(tok, exs, rendered, template_kwargs=kw, system_message=policy)
    assert [x for x in f if x.severity != "info"] == []
    assert s["parity"]["sampled"] == len(rendered) and s["eot"]["spans"] == 6


def test_shipsft_train_refuses_to_start_on_audit_errors(tmp_path, smollm2_tokenizer):
    """The issue's 'done when': `shipsft train` blocks on audit errors, says how to fix or override, loads no model."""
    rows = clean_rows()
    make_config(tmp_path, rows, [conv(rows[5]["messages"][0]["content"], "x")],
                extra=f"output:\n  dir: {tmp_path / 'runs'}\n  name: blocked\n")
    # run_cli sets SHIPSFT_ALLOCATOR=system: else `train` re-executes itself under tcmalloc, replacing pytest
    code, out = run_cli("train", tmp_path / "config.yaml")
    assert code == 1, out
    assert "refuses to start" in out and "contamination.exact" in out and "fix:" in out and "--skip-audit" in out
    audit = json.loads((tmp_path / "runs" / "blocked" / "audit.json").read_text())
    assert audit["summary"]["errors"] == 1
    assert not (tmp_path / "runs" / "blocked" / "manifest.json").exists()  # stopped before the model was loaded


def test_contamination_without_eval_data_says_so():
    f, s = check_contamination(texts_of(clean_examples(5)), {})
    assert checks(f) == {"contamination.no_eval": "info"} and s["sets"] == {}


def test_cli_foreign_template_on_a_vocabulary_without_its_markers(tmp_path):
    """ChatML on Llama-3.2's vocabulary: the markers split, nothing ends a turn, no EOS is learned: 3 errors."""
    from helpers import FIXTURES

    if not (FIXTURES / "llama-3.2-instruct").exists():
        pytest.skip("llama-3.2-instruct fixture missing")
    make_config(tmp_path, clean_rows(20),
                extra=f"  template: chatml\nmodel:\n  path: {FIXTURES / 'llama-3.2-instruct'}\n")
    code, _ = run_cli("audit", tmp_path / "config.yaml", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "audit.json").read_text())
    errors = {f["check"] for f in report["findings"] if f["severity"] == "error"}
    assert code == 1 and errors == {"template.role_markers", "template.eot_not_trained", "template.pad_eos"}
