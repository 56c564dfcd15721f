"""`shipsft init`: a config chosen by the data, written as YAML whose comments say why each value was chosen.

    st = make_starter(Path("tickets.jsonl"), Path("tickets.yaml"), model="smollm2", eval_data=None,
                      task_metrics=None, seed=0, force=False)
    Path("tickets.yaml").write_text(st.text)       # loads with shipsft.config.load_config, trains as it is

What it does, in order:
1. reads the data with the training loader (format auto, every record validated) and looks at the answers
   (data/inspect.py: JSON objects, short labels or free text);
2. without --eval, holds out an eval split (10%, 50..200 examples), stratified by the answers' label when they have
   one, and writes both parts next to the config (`<stem>.train.jsonl`, `<stem>.eval.jsonl`) so the split never
   changes; a second init with the same data and seed writes the same files;
3. renders the training split with the model's template (data/pipeline.py: `prepare`) and resolves
   `data.max_length`, `train.batch_size` and `train.epochs` from `auto` with steps/resolve.py's `resolve`, the
   function training itself calls, so the numbers written are the ones training would choose;
4. picks the LoRA learning rate by the model's width (`lora_lr`: a larger one for a small model);
5. picks the task metrics from the answer shape (tool calls -> tool_call_match + exact_match + rouge_l, the split
   stratified by the function called; JSON -> json_valid + json_field_match + exact_match; labels ->
   exact_match; short text -> exact_match + rouge_l; free text -> rouge_l + token_f1; a judge needs an endpoint,
   so it is named, not chosen), the
   checkpoint-selection metric, and gates that follow from the data (valid JSON; a label better than always
   answering the most common one).
"""
from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipsft.config import DataConfig, ModelConfig, RunConfig
from shipsft.data.formats import load_examples, read_records
from shipsft.data.inspect import (SELECT_METRIC, TASK_METRICS, AnswerShape, answer_shape, reference_answer, strata,
                                  write_records)
from shipsft.data.split import SplitPlan, plan_split
from shipsft.data.pipeline import prepare
from shipsft.data.store import trained_counts
from shipsft.data.types import Rendered
from shipsft.errors import ConfigError, DataError

SUITE = "heldout"  # the eval suite's name: metrics read heldout/json_field_match, ...
STRATUM = {"tool_call": "the function called"}  # what a split is stratified by, when not a JSON field or a label
JSON_VALID_GATE = 0.9  # a JSON task that answers invalid JSON more than 1 time in 10 is not ready to ship
# LoRA's learning rate by the model's width (alpha 32 as in LoraConfig: with alpha / r scaling the best LR hardly moves
# with the rank, LoRA Without Regret, Thinking Machines 2025). Smaller models want a larger one: the best LoRA LR in
# Tinker's SFT sweep (Tulu-3, batch 128, 780 steps) was 1e-3 for Llama-3.2-1B/3B and Qwen3-4B, 3e-4 for Llama-3.1-8B
# and 70B (github.com/thinking-machines-lab/tinker-cookbook, tinker_cookbook/hyperparam_utils.py: get_lr). On this
# repo's bench/recipe.py with SmolLM2-135M (hidden 576), 4e-4 beat the 2e-4 init used to write on all four tasks,
# paired by example (docs/benchmarks.md: Levers). Not higher: on the quickstart (examples/quickstart/config.yaml) 1e-3
# took the forgetting probe's KL to the base model to 1.53 where 5e-4 left it at 0.46. Models this wide or wider keep
# the config's method default (optim.lr null -> 2e-4), which nothing here measured against.
SMALL_WIDTH = 4096  # hidden size under which a model counts as small (Llama-3.2-3B 3072, Qwen3-4B 2560; 8B: 4096)
SMALL_LORA_LR = 4e-4


@dataclass
class Choice:
    """One value of the written config and the reason it was chosen."""

    section: str
    key: str
    value: Any
    why: str


@dataclass
class Starter:
    source: Path
    format: str
    notes: list[str]
    n_examples: int
    shape: AnswerShape
    train_path: Path
    eval_path: Path | None
    n_train: int
    n_eval: int
    split_by: str | None  # the label the split was stratified on (None: a plain random split, or --eval given)
    split: SplitPlan | None  # how the eval split was held out (None: --eval given)
    lengths: list[int]  # rendered token length of every training sequence
    trained: list[int]  # trained (answer) tokens of every training sequence
    sample: Rendered | None
    tokenizer: Any
    choices: list[Choice]
    text: str  # the commented YAML
    warnings: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict:
        return yaml.safe_load(self.text)


def make_starter(data: Path, config_path: Path, model: str, eval_data: Path | None, task_metrics: list[str] | None,
                 seed: int, force: bool) -> Starter:
    """Read, split, measure and choose (module docstring). Writes the split files; the caller writes `.text`."""
    from shipsft.model.locate import load_tokenizer
    from shipsft.steps.resolve import resolve

    data, config_path = Path(data), Path(config_path)
    loaded = load_examples([data], "auto", "error", None, False)
    answers = [reference_answer(ex) for ex in loaded.examples]
    shape = answer_shape(answers)
    split_by, split = None, None
    if eval_data is not None:
        train_path, eval_path, n_eval = data, Path(eval_data), None
    else:
        labels = strata(answers, shape)
        split_by = ((shape.label_field or STRATUM.get(shape.kind, "the answer"))
                    if any(x is not None for x in labels) else None)
        # whole sentence patterns when the data was written from them (data/split.py); examples sharing a prompt or
        # a 4+ word answer stay on one side either way: the audit refuses an eval that leaks
        split = plan_split(loaded.examples, shape, seed)
        n_eval = len(split.eval_idx)
        train_path, eval_path = _write_split(data, config_path.parent, split.train_idx, split.eval_idx, force)
    tok = load_tokenizer(ModelConfig(path=model))
    fmt = loaded.format
    prep = prepare(DataConfig(train=[str(train_path)], format=fmt, max_length="auto"), tok, "train", strict=False,
                   rejects_path=None)
    if prep.render_failed:
        raise prep.problems[0]
    if eval_path is not None and n_eval is None:
        n_eval = len(load_examples([eval_path], fmt, "error", None, False).examples)
    defaults = RunConfig()
    resolved = resolve(defaults, prep)
    data_cfg, train_cfg, reasons = resolved.config.data, resolved.config.train, resolved.reasons
    why = {r.split(" ", 1)[0]: r for r in reasons}
    metrics = list(task_metrics) if task_metrics else TASK_METRICS[shape.kind]
    n_train = len(prep.examples)
    trained = trained_counts(prep.rendered).tolist()
    rel = _relative_to(config_path.parent)
    choices = [
        Choice("model", "path", model, "the model to fine-tune (--model; smollm2 = the embedded SmolLM2-135M-"
               "Instruct, nothing is downloaded)"),
        Choice("data", "train", rel(train_path), _train_why(data, n_train, n_eval, split_by, eval_data, shape, split)),
        Choice("data", "format", fmt, f"{'; '.join(loaded.notes[:1])}: set explicitly so a new file in another "
               "format is an error, not a silent change"),
        Choice("data", "max_length", data_cfg.max_length, _length_why(prep.full_lengths, prep.notes)),
        Choice("method", "name", defaults.method.name, f"LoRA r={defaults.method.lora.r}, alpha "
               f"{defaults.method.lora.alpha:g} on every linear layer: on {n_train:,} examples a full fine-tune "
               "would mostly memorise, and LoRA trains about 3% of the weights at full-model quality for SFT of "
               "this size (LoRA Without Regret, Thinking Machines 2025)"),
        Choice("optim", "lr", *lora_lr(model_width(tok), defaults.optim.lr)),
        Choice("train", "batch_size", train_cfg.batch_size, _strip(why.get("train.batch_size"),
                                                                   "train.batch_size auto -> ")),
        Choice("train", "epochs", _number(train_cfg.epochs), _strip(why.get("train.epochs"), "train.epochs auto -> ")),
    ]
    if eval_path is not None:
        choices += _eval_choices(shape, metrics, rel(eval_path), n_eval, task_metrics is not None)
    choices.append(Choice("output", "dir", "runs", "run folders go under ./runs (relative to where you run "
                          "`shipsft train`)"))
    text = render_yaml(choices, data, eval_data)
    warnings = [line for p in prep.problems for line in p.lines]
    return Starter(data, fmt, list(loaded.notes), len(answers), shape, train_path, eval_path, n_train, n_eval or 0,
                   split_by, split, prep.full_lengths, trained, prep.rendered[0] if prep.rendered else None, tok,
                   choices, text, warnings)


def model_width(tokenizer) -> int | None:
    """The hidden size in the model's config.json next to its tokenizer (None when there is none to read)."""
    folder = Path(str(tokenizer.name_or_path))
    if not (folder / "config.json").exists():  # only ever a local folder: never a hub lookup
        return None
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(folder)
    conf = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
    return getattr(conf, "hidden_size", None)


def lora_lr(width: int | None, default: float) -> tuple[float, str]:
    """(LoRA learning rate, why): SMALL_LORA_LR for a model narrower than SMALL_WIDTH, else the config's default."""
    tail = "; warmup 3% of the steps, cosine decay to a tenth"
    if width is not None and width < SMALL_WIDTH:
        return SMALL_LORA_LR, (
            f"LoRA's learning rate for a small model (hidden size {width:,} < {SMALL_WIDTH:,}): small models want a "
            f"larger one (Tinker's SFT sweep: 1e-3 best for 1-4B models, 3e-4 for 8-70B; on shipsft's recipe "
            f"bench with SmolLM2-135M, 4e-4 beat 2e-4 on all four tasks: docs/benchmarks.md, Levers){tail}")
    what = "the model's width is unknown" if width is None else f"hidden size {width:,} >= {SMALL_WIDTH:,}"
    return default, (f"LoRA's learning rate ({what}): the config's default for LoRA, about 10x full fine-tuning's "
                     f"2e-5 (LoRA Without Regret, 2025){tail}")


def _write_split(data: Path, folder: Path, train_idx: list[int], eval_idx: list[int], force: bool
                 ) -> tuple[Path, Path | None]:
    """<stem>.train.jsonl and <stem>.eval.jsonl next to the config; an existing file with other content is an
    error unless --force (a changed split would compare a new model with an old one on different examples)."""
    if not eval_idx:
        return data, None
    records, _ = read_records(data)
    rows = [r.data for r in records]
    out = {}
    for part, idx in (("train", train_idx), ("eval", eval_idx)):
        path = folder / f"{data.stem}.{part}.jsonl"
        tmp = path.with_name(f".{path.name}.new")
        write_records(rows, idx, tmp)
        if path.exists() and path.read_bytes() != tmp.read_bytes() and not force:
            tmp.unlink()
            raise ConfigError([f"{path}: already holds a different {part} split (other data, or another --seed). "
                               f"Fix: keep it and pass --eval {folder / f'{data.stem}.eval.jsonl'} with the train "
                               "file, or run init again with --force to replace both"])
        os.replace(tmp, path)
        out[part] = path
    return out["train"], out["eval"]


def _train_why(data: Path, n_train: int, n_eval: int | None, split_by: str | None, eval_data: Path | None,
               shape: AnswerShape, split: SplitPlan | None) -> str:
    if eval_data is not None:
        return f"{n_train:,} examples from {data}; the eval set is --eval {eval_data}"
    if not n_eval:
        return (f"all {n_train:,} examples of {data}: too few to hold any out (an eval of fewer than 20 examples "
                "measures nothing); add an eval file with --eval to get task metrics and gates")
    how = (f"stratified by {split_by!r} so every label keeps its share" if split_by and shape.kind == "json" else
           f"stratified by {split_by} so every function keeps its share" if split_by and shape.kind == "tool_call" else
           "stratified by the answer label" if split_by else "the answers have no label to stratify by")
    kind = "whole sentence patterns" if split is not None and split.by == "patterns" else "at random"
    return (f"{n_train:,} of the {n_train + n_eval:,} examples in {data}; the other {n_eval:,} are the eval split, "
            f"held out {kind} ({how}), written once to files so it never changes (same data + --seed = same split). "
            + (f"Split: {split.why}." if split is not None else ""))


def _length_why(lengths: list[int], notes: list[str]) -> str:
    s = sorted(lengths)
    stats = f"rendered lengths p50 {s[len(s) // 2]}, p90 {s[int(len(s) * 0.9)]}, max {s[-1]} tokens" if s else ""
    auto = next((n for n in notes if n.startswith("data.max_length auto")), "")
    return f"{auto.removeprefix('data.max_length auto -> ')}; {stats}: no example is cut and no row is padded past " \
           "the longest one"


def _eval_choices(shape: AnswerShape, metrics: list[str], eval_path: str, n_eval: int | None, given: bool
                  ) -> list[Choice]:
    if given:
        why = "--task-metric"
    else:
        why = {"tool_call": "the answers are tool calls: each call's name and arguments right (a missing or invented "
                             "argument costs a part; the answers after a tool result by exact match), the whole "
                             "answer right, and ROUGE-L to see how close the misses are",
               "json": "the answers are JSON objects: valid JSON, each field right, the whole answer right",
               "label": "the answers are short labels: exact match (case, spaces and end punctuation ignored)",
               "short_text": "the answers are short text with one right form: exact match, and ROUGE-L to see how "
                             "close the misses are",
               "text": "the answers are free text: ROUGE-L and token F1 for overlap (a judge model scores meaning "
                       "better: add `judge` and eval.judge_url when you have one)"}[shape.kind]
    suite = {"name": SUITE, "data": eval_path, "metrics": metrics}
    select = SELECT_METRIC[shape.kind] if SELECT_METRIC[shape.kind] in metrics else metrics[0]
    out = [Choice("eval", "suites", [suite], f"{n_eval:,} held-out examples scored by greedy generation before "
                  f"training, at each epoch end and at the last step; metrics: {why}"),
           Choice("eval", "select_metric", f"{SUITE}/{select}", "the checkpoint that ships is the best by this task "
                  "metric (never by loss)")]
    gates, reasons = [], []
    if shape.kind == "json" and "json_valid" in metrics:
        gates.append({"metric": f"{SUITE}/json_valid", "op": ">=", "value": JSON_VALID_GATE})
        reasons.append("valid JSON at least 9 times in 10")
    label_metric = (f"json_field_match/{shape.label_field}" if shape.kind == "json" and shape.label_field
                    and "json_field_match" in metrics else
                    "exact_match" if shape.kind == "label" and "exact_match" in metrics else None)
    if label_metric:
        share = round(shape.majority_share, 3)
        gates.append({"metric": f"{SUITE}/{label_metric}", "op": ">", "value": share})
        reasons.append(f"{label_metric} above {share:.3f}, the accuracy of always answering the most common label "
                       f"{shape.majority!r}")
    if gates:
        out.append(Choice("eval", "gates", gates, "promote a checkpoint only with " + "; and ".join(reasons)
                          + " (exit code 3 otherwise)"))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The YAML text: a comment block above each key, values in flow style


def render_yaml(choices: list[Choice], data: Path, eval_data: Path | None) -> str:
    cmd = f"shipsft init {data}" + (f" --eval {eval_data}" if eval_data else "")
    lines = _comment(f"Written by `{cmd}`. Every value was chosen from the data; the comment above it says why. "
                     "Edit freely: `shipsft config explain KEY` describes every key (and the ones left at their "
                     "defaults), `shipsft train` on this file runs it.", "")
    for section in dict.fromkeys(c.section for c in choices):
        lines += ["", f"{section}:"]
        for c in (c for c in choices if c.section == section):
            lines += _comment(c.why, "  ")
            if isinstance(c.value, list) and c.value and isinstance(c.value[0], dict):
                lines.append(f"  {c.key}:")
                lines += [f"    - {_flow(item)}" for item in c.value]
            else:
                lines.append(f"  {c.key}: {_flow(c.value)}")
    return "\n".join(lines) + "\n"


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix(
        "\n...").strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 116 - len(indent))]


def _relative_to(folder: Path):
    def rel(p: Path) -> str:
        try:
            return os.path.relpath(Path(p).resolve(), folder.resolve())
        except ValueError:  # another drive (Windows): keep it absolute
            return str(Path(p).resolve())
    return rel


def _strip(text: str | None, prefix: str) -> str:
    if text is None:
        raise DataError(["steps/resolve.py gave no reason for an automatic choice (a bug: please report it)"])
    return text.removeprefix(prefix)


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x
