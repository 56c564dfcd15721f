"""`shipsft init DATA`: the answer shape picks the metrics, the eval split is stratified, leak-free and the same on
every run, and the written config loads and holds the numbers training itself would resolve from `auto`."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import save_tiny_model
from shipsft.cli.main import app
from shipsft.config import RunConfig, load_config
from shipsft.data.formats import load_examples
from shipsft.data.inspect import answer_shape, leak_groups, leak_keys, reference_answer, split_indices
from shipsft.recipe.starter import SMALL_LORA_LR, SMALL_WIDTH, lora_lr, model_width

CATEGORIES = ["billing"] * 6 + ["shipping"] * 3 + ["account"]  # 60% / 30% / 10%: the split must keep the shares


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args], env={"SHIPSFT_ALLOCATOR": "system", "COLUMNS": "80"})
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": "Sort the ticket."}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def json_task(n: int) -> list[dict]:
    # every tenth answer repeats the one before word for word: a leak if the two land on both sides of the split
    return [chat(f"ticket {i}: my order number {i * 7} has a problem",
                 json.dumps({"category": CATEGORIES[i % 10], "product": f"Widget {i - 1 if i % 10 == 1 else i}"}))
            for i in range(n)]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_answer_shape_picks_the_metrics(tmp_path, model_dir):
    texts = {
        "json_label": [r["messages"][-1]["content"] for r in json_task(200)],
        "json": [json.dumps({"name": f"person {i}", "age": i}) for i in range(200)],
        "label": [["positive", "negative", "neutral"][i % 3] for i in range(200)],
        "short_text": [f"Meeting moved to room {i * 3} on day {i}." for i in range(200)],
        "text": [f"The meeting on day {i} moved to room {i * 3} because of the {i % 7} visitors, who arrived early "
                 "and asked for a larger space with a projector, a whiteboard and enough chairs for everyone, so the "
                 "organisers booked the hall next door." for i in range(200)],
    }
    shapes = {k: answer_shape(v) for k, v in texts.items()}
    assert (shapes["json_label"].kind, shapes["json_label"].label_field) == ("json", "category")
    assert shapes["json_label"].majority_share == pytest.approx(0.6) and shapes["json_label"].majority == "billing"
    assert (shapes["json"].kind, shapes["json"].label_field) == ("json", None)  # 200 names, 200 ages: no label
    assert (shapes["label"].kind, shapes["label"].n_labels) == ("label", 3)
    assert shapes["short_text"].kind == "short_text" and shapes["text"].kind == "text"
    expected = {"json_label": ["json_valid", "json_field_match", "exact_match"], "label": ["exact_match"],
                "short_text": ["exact_match", "rouge_l"], "text": ["rouge_l", "token_f1"]}
    for kind, metrics in expected.items():
        data = write(tmp_path / f"{kind}.jsonl", [chat(f"question {i} about item {i}", a)
                                                  for i, a in enumerate(texts[kind])])
        code, out = run("init", data, "--model", model_dir)
        assert code == 0, out
        cfg = load_config(tmp_path / f"{kind}.yaml")
        assert cfg.eval.suites[0].metrics == metrics
    gates = load_config(tmp_path / "json_label.yaml").eval.gates
    assert [(g.metric, g.op, g.value) for g in gates] == [
        ("heldout/json_valid", ">=", 0.9), ("heldout/json_field_match/category", ">", 0.6)]
    assert [(g.metric, g.value) for g in load_config(tmp_path / "label.yaml").eval.gates] == [
        ("heldout/exact_match", 0.335)]  # 67 of 200 answer "positive"
    assert load_config(tmp_path / "text.yaml").eval.gates == []  # nothing in free text sets a threshold
    assert [load_config(tmp_path / f"{k}.yaml").eval.select_metric for k in ("short_text", "text")] == [
        "heldout/exact_match", "heldout/rouge_l"]


def tool_task(n: int, structured: bool) -> list[dict]:
    """Calls to three functions; every fifth example ends with the answer after the tool result instead, so the last
    answers are 40% get_weather, 30% set_alarm, 10% play_music and 20% text."""
    out = []
    for i in range(n):
        name = ["get_weather"] * 5 + ["set_alarm"] * 3 + ["play_music"] * 2
        name = name[i % 10]
        args = {"query": f"song {i}"} if name == "play_music" else {"city": f"Town {i}"} if name == "get_weather" \
            else {"time": f"{i % 24:02d}:00", "label": f"task {i}"}
        msgs = [{"role": "user", "content": f"request number {i} for {name}"}]
        if structured:
            msgs.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
        else:
            msgs.append({"role": "assistant", "content": "<tool_call>" + json.dumps({"name": name, "arguments": args})
                         + "</tool_call>"})
        if i % 5 == 4:
            msgs += [{"role": "tool" if structured else "user", "content": f"result {i}"},
                     {"role": "assistant", "content": f"Done: request {i} went through."}]
        out.append({"messages": msgs})
    return out


def test_tool_call_answers_get_call_metrics_and_a_split_by_function(tmp_path, model_dir):
    for structured in (False, True):
        records = tool_task(400, structured)
        shape = answer_shape([reference_answer(ex) for ex in load_examples_from(records)])
        assert shape.kind == "tool_call", shape.why
        assert shape.why.startswith("320 of 400 answers are tool calls (3 functions")
        if structured:
            continue  # the tiny model's template does not render structured calls; the shape is what is checked
        data = write(tmp_path / "calls.jsonl", records)
        code, out = run("init", data, "--model", model_dir)
        assert code == 0, out
        cfg = load_config(tmp_path / "calls.yaml")
        assert cfg.eval.suites[0].metrics == ["tool_call_match", "exact_match", "rouge_l"]
        assert cfg.eval.select_metric == "heldout/tool_call_match" and cfg.eval.gates == []
        assert "stratified by the function called" in (tmp_path / "calls.yaml").read_text()
        held = [json.loads(line)["messages"] for line in (tmp_path / "calls.eval.jsonl").read_text().splitlines()]
        first = Counter(json.loads(m[1]["content"].removeprefix("<tool_call>").removesuffix("</tool_call>"))["name"]
                        if m[-1]["content"].startswith("<tool_call>") else "(text)" for m in held)
        # 50 held out: each function keeps its share, and the text answers theirs
        assert first == {"get_weather": 20, "set_alarm": 15, "play_music": 5, "(text)": 10}


def test_split_is_stratified_leak_free_and_reproducible(tmp_path, model_dir):
    from shipsft.audit.text import check_contamination, texts_of

    data = write(tmp_path / "tickets.jsonl", json_task(400))
    code, out = run("init", data, "--model", model_dir)
    assert code == 0, out
    train, held = tmp_path / "tickets.train.jsonl", tmp_path / "tickets.eval.jsonl"
    first = (train.read_bytes(), held.read_bytes())
    cats = lambda p: Counter(json.loads(json.loads(line)["messages"][-1]["content"])["category"]  # noqa: E731
                             for line in p.read_text().splitlines())
    assert sum(cats(held).values()) == 50 and sum(cats(train).values()) == 350  # 400 -> 50 held out (at least 50)
    assert cats(held) == {"billing": 30, "shipping": 15, "account": 5}  # 60/30/10, as in the whole set
    # no eval answer of 4+ words and no eval prompt occurs in training: the audit's contamination check agrees
    ex = lambda p: load_examples([p], "auto", "error", None, False).examples  # noqa: E731
    findings, _ = check_contamination(texts_of(ex(train), "all_assistant"), {"heldout": texts_of(ex(held),
                                                                                                 "all_assistant")})
    assert [f.check for f in findings] == []
    # the same data and seed: byte-identical files; another seed: refused unless --force, then a different split
    assert run("init", data, "--model", model_dir, "--force")[0] == 0
    assert (train.read_bytes(), held.read_bytes()) == first
    code, out = run("init", data, "--model", model_dir, "--out", tmp_path / "other.yaml", "--seed", "1")
    assert code == 2 and "already holds a different train split" in out and "--force" in out
    assert (train.read_bytes(), held.read_bytes()) == first  # nothing was replaced
    assert run("init", data, "--model", model_dir, "--out", tmp_path / "other.yaml", "--seed", "1",
               "--force")[0] == 0
    assert held.read_bytes() != first[1]


def test_leaky_groups_stay_on_one_side():
    examples = load_examples_from([chat("same question", "a long answer of many words"),
                                   chat("same question", "another long answer of words"),
                                   chat("q3", "a long answer of many words"), chat("q4", "x"), chat("q5", "y")])
    groups = leak_groups([leak_keys(e, answers=True) for e in examples])
    assert groups == [0, 0, 0, 3, 4]  # 1-2 share the prompt, 1-3 the answer; "x" and "y" are too short to leak
    train, held = split_indices([None] * 5, 2, seed=0, groups=groups)
    assert held == [3, 4] and train == [0, 1, 2]  # the group of 3 does not fit a 2-example eval share


def load_examples_from(records: list[dict]):
    from shipsft.data.formats import examples_from_dataset
    from datasets import Dataset

    return examples_from_dataset(Dataset.from_list(records), "mem", "auto", "error", None, False).examples


def test_config_holds_what_training_resolves_and_loads(tmp_path, model_dir):
    from shipsft.data.pipeline import prepare
    from shipsft.model.locate import load_tokenizer
    from shipsft.steps.resolve import resolve

    data = write(tmp_path / "tickets.jsonl", json_task(300))
    code, out = run("init", data, "--model", model_dir, "--out", tmp_path / "cfg" / "run.yaml")
    assert code == 0, out
    assert "wrote" in out and "shipsft train" in out and "stratified by 'category'" in out
    text = (tmp_path / "cfg" / "run.yaml").read_text()
    assert text.count("\n  # ") >= 10  # a reason above every value
    cfg = load_config(tmp_path / "cfg" / "run.yaml")  # relative paths resolved against the config's folder
    assert cfg.data.train == [str(tmp_path / "cfg" / "tickets.train.jsonl")]
    assert cfg.eval.suites[0].data == str(tmp_path / "cfg" / "tickets.eval.jsonl")
    prep = prepare(cfg.data.model_copy(update={"max_length": "auto"}), load_tokenizer(cfg.model), "train",
                   strict=True, rejects_path=None)
    trained = resolve(RunConfig(), prep).config  # what training resolves for an unedited config
    assert (cfg.data.max_length, cfg.train.batch_size, cfg.train.epochs) == (
        trained.data.max_length, trained.train.batch_size, trained.train.epochs)
    assert cfg.eval.select_metric == "heldout/json_field_match" and cfg.method.name == "lora"
    raw = yaml.safe_load(text)
    assert raw["data"]["format"] == "messages" and raw["optim"]["lr"] == cfg.optim.lr
    # the tiny model is 64 wide: a small model's LoRA LR, written with its reason (not the config's 2e-4)
    assert cfg.optim.lr == SMALL_LORA_LR != RunConfig().optim.lr
    assert "small model (hidden size 64 < 4,096)" in text


def test_lora_lr_follows_the_model_width(tmp_path):
    from transformers import Gemma3Config, LlamaConfig

    default = RunConfig().optim.lr
    assert lora_lr(576, default)[0] == lora_lr(3072, default)[0] == SMALL_LORA_LR  # SmolLM2-135M, Llama-3.2-3B
    assert lora_lr(SMALL_WIDTH, default)[0] == lora_lr(8192, default)[0] == default  # 8B and 70B: the default
    assert lora_lr(None, default) == (default, lora_lr(None, default)[1]) and "unknown" in lora_lr(None, default)[1]
    # the width is read from config.json beside the tokenizer, from a multimodal config's text part too
    LlamaConfig(hidden_size=576).save_pretrained(tmp_path / "llama")
    Gemma3Config(text_config={"hidden_size": 2560}).save_pretrained(tmp_path / "gemma3")
    tok = lambda folder: type("Tok", (), {"name_or_path": str(folder)})()  # what model_width reads
    assert (model_width(tok(tmp_path / "llama")), model_width(tok(tmp_path / "gemma3"))) == (576, 2560)
    assert model_width(tok(tmp_path / "nowhere")) is None


def test_small_sets_given_eval_and_user_mistakes(tmp_path, model_dir):
    tiny = write(tmp_path / "tiny.jsonl", json_task(12))
    code, out = run("init", tiny, "--model", model_dir)
    assert code == 0, out
    cfg = load_config(tmp_path / "tiny.yaml")
    assert cfg.eval.suites == [] and cfg.data.train == [str(tiny)] and "too few" in out
    train = write(tmp_path / "t.jsonl", json_task(100))
    held = write(tmp_path / "e.jsonl", json_task(130)[100:])
    code, out = run("init", train, "--eval", held, "--model", model_dir, "--task-metric", "exact_match")
    assert code == 0, out
    cfg = load_config(tmp_path / "t.yaml")
    assert cfg.eval.suites[0].data == str(held) and cfg.eval.suites[0].metrics == ["exact_match"]
    assert cfg.eval.select_metric == "heldout/exact_match" and not (tmp_path / "t.train.jsonl").exists()
    assert run("init", train, "--model", model_dir)[0] == 2  # t.yaml exists: refused without --force
    code, out = run("init", train, "--model", model_dir, "--force", "--task-metric", "exact_mach")
    assert code == 2 and "did you mean 'exact_match'" in out
    code, out = run("init", tmp_path / "missing.jsonl")
    assert code == 2 and "missing.jsonl: file not found" in out and "Traceback" not in out


def test_init_holds_out_whole_sentence_patterns_and_says_why(tmp_path, model_dir):
    from patterns_data import natural, records, templated

    from shipsft.data.skeleton import prompt_and_answers, seen_patterns

    texts, which = templated(480)
    data = write(tmp_path / "tickets.jsonl", records(texts))
    code, out = run("init", data, "--model", model_dir)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "patterns: 12 sentence-pattern clusters in 480 examples; 100% of the examples share theirs" in flat
    assert "whole clusters go to eval (3 clusters, 120 examples)" in flat
    assert "eval 120, held out whole sentence patterns, stratified by 'category'" in flat
    config = unwrapped(tmp_path / "tickets.yaml")
    assert "held out whole sentence patterns" in config and "Split: 12 sentence-pattern clusters" in config
    train = load_examples([tmp_path / "tickets.train.jsonl"], "auto", "error", None, False).examples
    held = load_examples([tmp_path / "tickets.eval.jsonl"], "auto", "error", None, False).examples
    assert not any(seen_patterns([prompt_and_answers(e) for e in train], [prompt_and_answers(e) for e in held]))
    # hand-written conversations: a random split, and init says so
    nat = write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": p},
                                                        {"role": "assistant", "content": a[-1]}]}
                                          for p, a in natural()])
    code, out = run("init", nat, "--model", model_dir)
    assert code == 0, out
    assert "not written from sentence patterns), so a plain random split" in " ".join(out.split())
    assert "held out at random" in unwrapped(tmp_path / "chat.yaml")


def unwrapped(config: Path) -> str:
    """The config's text with its wrapped comment lines joined."""
    return " ".join(line.strip().lstrip("#").strip() for line in config.read_text().splitlines())
