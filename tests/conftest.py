"""Shared fixtures: real tokenizers from ../shared/fixtures/models, the embedded SmolLM2, tiny random models."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from shipsft.source import load_tokenizer

    return load_tokenizer("smollm2")


def tiny_llama(vocab_size: int = 128, seed: int = 0, **kw):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      attn_implementation="sdpa", **kw)
    return LlamaForCausalLM(cfg).eval()
