"""Shared test helpers: real tokenizers from ../shared/fixtures/models, tiny random models, the toy task's tokenizer.
(`tests/` is on sys.path: pyproject.toml sets pytest's pythonpath.)"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from shipsft.config import RunConfig
from shipsft.data.pack import pack_examples
from shipsft.data.render import render_conversation

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SHIPSFT_FIXTURES", REPO.parent / "shared" / "fixtures" / "models"))
# every fixture folder that ships a tokenizer.json (loadable with AutoTokenizer) and its template kwargs
TOKENIZER_FIXTURES = {
    "llama-3.2-instruct": {"date_string": "26 Jul 2024"},
    "qwen2.5-instruct": {},
    "qwen3": {},
    "mistral-7b-instruct-v0.3": {},
}
TEMPLATE_ONLY_FIXTURES = ["gemma-it", "gemma-3-it"]

_TOKENIZERS: dict = {}


def require_fixture(name: str) -> Path:
    """The fixture folder (../shared/fixtures/models/<name>, or $SHIPSFT_FIXTURES/<name>); skip with the reason when
    the checkout has no shared/ beside it (CI always has it)."""
    folder = FIXTURES / name
    if not folder.exists():
        pytest.skip(f"tokenizer fixture {folder} not present (set SHIPSFT_FIXTURES to the fixtures/models folder)")
    return folder


def fixture_tokenizer(name: str):
    if name not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[name] = AutoTokenizer.from_pretrained(require_fixture(name))
    return _TOKENIZERS[name]


def fixture_meta(name: str) -> dict:
    return json.loads((require_fixture(name) / "rendered_example.meta.json").read_text())


def tiny_llama(vocab_size: int = 128, seed: int = 0, **kw):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    shape = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, attn_implementation="sdpa")
    return LlamaForCausalLM(LlamaConfig(**{**shape, **kw})).eval()


# ------------------------------------------------------------------------------------------------------------
# The toy task: a tiny BPE, a tiny Llama, and the production loop on them

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WORDS = "red green blue cat dog bird one two three alpha beta gamma north south east west".split()


def conversations(n: int, seed: int = 0) -> list[list[dict]]:
    """A learnable toy task: repeat the listed words in reverse order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(2, 5))
        out.append([{"role": "user", "content": "reverse: " + " ".join(words)},
                    {"role": "assistant", "content": " ".join(reversed(words))}])
    return out


_TOK = {}


def tiny_tokenizer():
    """A 512-token byte-level BPE trained on the toy task in ~0.2 s, with a ChatML template."""
    if "tok" not in _TOK:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|im_start|>", "<|im_end|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        corpus = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for c in conversations(300, 99) for m in c]
        tok.train_from_iterator(corpus, trainer)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
        fast.chat_template = CHATML
        _TOK["tok"] = fast
    return _TOK["tok"]


def rows_for(convs, max_length=128):
    tok = tiny_tokenizer()
    rendered = [r for c in convs for r in render_conversation(tok, c)]
    return pack_examples(rendered, max_length, True).rows


def tiny_model(seed=0):
    return tiny_llama(vocab_size=len(tiny_tokenizer()), seed=seed).train()


def examples_for(convs):
    """The toy conversations rendered as training sequences (what the loop packs, step by step)."""
    tok = tiny_tokenizer()
    return [r for c in convs for r in render_conversation(tok, c)]


def cfg_for(tmp_path, **sections) -> RunConfig:
    raw = {"output": {"dir": str(tmp_path)}, "data": {"max_length": 128},
           "train": {"batch_size": 8, "epochs": 1, "log_every": 1, "seed": 0}, **sections}
    return RunConfig.model_validate(raw)


def fit_run(cfg, model, tok, examples, eval_rows, run_dir):
    """The production loop on an in-memory model: train/run.py's own `assemble`, the baselines setup measures, then
    `fit`."""
    from shipsft.runs.layout import RunFolder
    from shipsft.train.loop import fit
    from shipsft.train.run import assemble

    from shipsft.data.pipeline import resolve_max_length
    from shipsft.train.loop import measure_baselines

    max_length, _ = resolve_max_length(cfg.data, [len(x.ids) for x in examples], None)  # as data/pipeline.py does
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_length": max_length})})
    s = assemble(cfg, model, tok, examples, eval_rows, RunFolder(Path(run_dir)))  # resolves the rest (steps/)
    try:
        measure_baselines(s, Notes())
        return fit(s)
    finally:
        s.run.close()


class Notes:
    """A Progress (train/loop.py) that keeps the notes it is given."""

    def __init__(self):
        self.lines: list[str] = []
        self.evals: list[tuple[str, int]] = []

    def start(self, total: int) -> None:
        pass

    def step(self, record: dict) -> None:
        pass

    def note(self, text: str) -> None:
        self.lines.append(text)

    def stop(self) -> None:
        pass

    def eval_start(self, label: str, total: int) -> None:
        self.evals.append((label, total))

    def eval_step(self, n: int) -> None:
        self.evals[-1] = (self.evals[-1][0], self.evals[-1][1] - n)  # (label, generations still to come)

    def eval_stop(self) -> None:
        pass

    def summary(self, folder: Path, lines: list[str]) -> None:
        self.lines += lines


def save_tiny_model(folder: Path, **model_kw) -> Path:
    """A model folder as a user brings one: a random tiny Llama (safetensors) and the toy BPE tokenizer."""
    tiny_llama(vocab_size=len(tiny_tokenizer()), **model_kw).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def write_tiny_run(tmp_path: Path, n_train: int = 64, model_kw: dict | None = None, **overrides) -> Path:
    """A tiny run on disk: a random Llama + the toy BPE as a model folder, train/eval JSONL of the toy task, and a
    config.yaml (fp32, 4 steps of 16 examples, run folder runs/t) with `overrides` replacing whole sections."""
    import yaml

    model_dir = tmp_path / "tiny-model"
    if not model_dir.exists():
        save_tiny_model(model_dir, **(model_kw or {}))
    for split, (n, seed) in {"train": (n_train, 0), "eval": (16, 5)}.items():
        (tmp_path / f"{split}.jsonl").write_text(
            "".join(json.dumps({"messages": c}) + "\n" for c in conversations(n, seed)))
    cfg = {"model": {"path": str(model_dir)}, "data": {"train": "train.jsonl", "eval": "eval.jsonl", "max_length": 128},
           "train": {"max_steps": 4, "batch_size": 16, "precision": "fp32"}, "output": {"dir": str(tmp_path / "runs"),
           "name": "t"}, **overrides}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "config.yaml"


def make_run(run: Path, promoted: bool = True, lr: float = 2e-4, started: str = "2026-01-02T10:00:00+0000",
             finished: bool = True) -> Path:
    """A run folder's records written as a training run writes them (10 steps, evals at 0, 5 and 10, the gate
    decision, config.yaml and manifest.json), for the pages and tables that read them."""
    import yaml

    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"path": "smollm2"}, "method": {"name": "lora"},
                                                    "optim": {"lr": lr}, "train": {"batch_size": 8},
                                                    "output": {"dir": str(run.parent), "name": run.name}}))
    manifest = {"started": started, "model_dir": "/models/smollm2", "data_fingerprint": {"train": "abc123"},
                "trainable_params": 1000, "total_params": 100_000}
    if finished:
        manifest.update(steps=10, wall_s=125.4, trained_tok_s=160.0)
    (run / "manifest.json").write_text(json.dumps(manifest))
    steps = [{"step": s, "epoch": 0, "loss": 3.0 / s, "lr": 2e-4 * min(1, s / 3), "grad_norm": 1.5 - s / 10,
              "trained_tokens": 400, "trained_tok_s": 150.0 + s, "skipped": False} for s in range(1, 11)]
    lines = steps[:5] + [{"step": 5, "eval_loss": 1.1}] + steps[5:]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    sample = {"suite": "qa", "source": "qa.jsonl:1", "prompt": "Capital of France?", "reference": "Paris"}
    evals = [
        {"kind": "baseline", "step": 0, "metrics": {"qa/exact_match": 0.2, "qa/eval_loss": 2.5, "eval_loss": 2.5,
                                                    "kl_to_base": 0.0, "probe_loss": 1.0, "general_loss_increase": 0.0},
         "samples": [{**sample, "output": "Lyon <script>alert(1)</script>"}], "kl_method": "exact (adapter disabled)"},
        {"kind": "smoke", "step": 5, "metrics": {"qa/exact_match": 0.5}, "samples": []},
        {"kind": "full", "step": 10, "epoch_end": True,
         "metrics": {"qa/exact_match": 0.9, "qa/eval_loss": 1.0, "eval_loss": 1.0, "kl_to_base": 0.12,
                     "probe_loss": 1.03, "probe_kl": 0.05, "general_loss_increase": 0.03},
         "samples": [{**sample, "output": "Paris"}], "kl_method": "exact (adapter disabled)"},
    ]
    (run / "eval.jsonl").write_text("".join(json.dumps(x) + "\n" for x in evals))
    gate = {"metric": "qa/exact_match", "op": ">=", "threshold": 0.95 if not promoted else 0.8, "value": 0.9,
            "passed": promoted, "miss": 0.0 if promoted else 0.05}
    promo = {"promoted": promoted, "exit_code": 0 if promoted else 3, "step": 10, "select_metric": "qa/exact_match",
             "message": "PROMOTED step 10" if promoted else "NOT PROMOTED: none of 1 checkpoint(s) passed every gate.",
             "value": 0.9, "gates": [gate], "spearman_eval_loss": None,
             "candidates": [{"step": 10, "value": 0.9, "passed": promoted, "failed": [] if promoted else ["x"]}],
             "before_after": [{"suite": "qa", "metric": "exact_match", "n": 10, "base": 0.2, "tuned": 0.9,
                               "delta": 0.7, "lo": 0.4, "hi": 0.9}]}
    if finished:
        (run / "promotion.json").write_text(json.dumps(promo))
    return run


def dead_url() -> str:
    """An OpenAI-style base URL on a local port nothing listens on: any request to it fails at once (proves that a
    code path made no request)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# ------------------------------------------------------------------------------------------------------------
# Hugging Face Hub stand-ins: a hub cache built by hand, and a dataset repository folder


def cache_snapshot(cache: Path, repo_type: str, repo_id: str, commit: str, files: Path,
                   ref: str | None = "main") -> Path:
    """Copy `files` (a folder) into the hub cache layout huggingface_hub writes: <type>s--org--name/snapshots/<commit>/
    and refs/<ref> holding the commit. Returns the snapshot folder."""
    import shutil

    root = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snap = root / "snapshots" / commit
    shutil.copytree(files, snap)
    if ref is not None:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


REPO_CARD = """---
license: apache-2.0
configs:
- config_name: chat
  default: true
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
- config_name: plain
  data_files:
  - split: train
    path: plain/train.parquet
---
# toy reversal task
"""


def write_dataset_repo(folder: Path, n_train: int = 24, n_test: int = 8) -> Path:
    """A dataset repository as the Hub holds one: config `chat` (default; messages, the train split in two parquet
    shards, a test split) and config `plain` (text records), named by README.md's `configs:`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    (folder / "plain").mkdir()
    train = [{"messages": c} for c in conversations(n_train, 0)]
    half = n_train // 2
    pq.write_table(pa.Table.from_pylist(train[:half]), folder / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(train[half:]), folder / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist([{"messages": c} for c in conversations(n_test, 5)]),
                   folder / "data" / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{"text": f"plain {i}"} for i in range(5)]), folder / "plain" / "train.parquet")
    (folder / "README.md").write_text(REPO_CARD)
    return folder
