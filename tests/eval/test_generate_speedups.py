"""Eval generation speedups (eval/generate.py, eval/suites.py): rows leave the batch at their stop token, greedy
tokens equal transformers' `generate`, and the generation budget comes from the suite's longest reference."""
from __future__ import annotations

import torch

from helpers import tiny_llama
from shipsft.eval.generate import generate, greedy_ids
from shipsft.eval.items import EvalItem
from shipsft.eval.suites import generation_budget

PROMPTS = [[5, 9, 11, 40, 7], [8, 3], [60, 61, 62, 63, 64, 65, 66], [12, 13, 14], [99]]


def _hf(model, prompts, stop, max_new):
    """transformers' batched greedy generate, cut before the first stop token: the oracle."""
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                         eos_token_id=stop, pad_token_id=0, temperature=None, top_p=None, top_k=None)
    cut = []
    for row in out[:, width:].tolist():
        k = next((j for j, t in enumerate(row) if t in stop), len(row))
        cut.append(row[:k])
    return cut


def _stop_that_ends_some_rows(model, prompts, max_new=12):
    """A token that the model emits early in some rows and never in others (deterministic for the seed)."""
    free = _hf(model, prompts, [127], max_new)
    firsts = {}
    for r, row in enumerate(free):
        for j, t in enumerate(row[:6]):
            firsts.setdefault(t, set()).add(r)
    for t, rows in sorted(firsts.items()):
        if 0 < len(rows) < len(prompts) and all(t not in free[r] for r in range(len(prompts)) if r not in rows):
            return t
    raise AssertionError("no token ends only some rows for this seed")


def test_greedy_tokens_equal_transformers_generate_and_rows_stop_early():
    model = tiny_llama(seed=1)
    stop = _stop_that_ends_some_rows(model, PROMPTS)
    expected = _hf(model, PROMPTS, [stop], 12)
    got = greedy_ids(model, PROMPTS, stop_ids=[stop], max_new_tokens=12, pad_id=0)
    assert got == expected
    assert any(len(g) < 12 for g in got) and any(len(g) == 12 for g in got)


def test_finished_rows_leave_the_batch():
    """Each decode step runs only the rows still generating: the rows processed per step shrink as rows end, and
    the total is exactly the tokens each row still needed."""
    model = tiny_llama(seed=1)
    stop = _stop_that_ends_some_rows(model, PROMPTS)
    seen = []
    handle = model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape),
                                                   with_kwargs=True)
    got = greedy_ids(model, PROMPTS, stop_ids=[stop], max_new_tokens=12, pad_id=0)
    handle.remove()
    prefill, decode = seen[0], seen[1:]
    assert prefill == (len(PROMPTS), max(map(len, PROMPTS)))
    assert all(s[1] == 1 for s in decode)
    sizes = [s[0] for s in decode]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < len(PROMPTS)
    # a row that stopped at step k (its k-th token was the stop) was fed k-1 decode steps; one that ran out of
    # budget was fed 11 (the 12th token needs no further forward)
    needed = [len(g) if len(g) < 12 else 11 for g in got]
    assert sum(sizes) == sum(needed)


def test_generate_returns_text_in_input_order_and_matches_single_prompts():
    from helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), seed=2)
    prompts = [tok("<|im_start|>user\nreverse: red cat<|im_end|>\n<|im_start|>assistant\n")["input_ids"],
               tok("<|im_start|>user\nreverse: one<|im_end|>\n<|im_start|>assistant\n")["input_ids"],
               tok("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")["input_ids"]]
    stop = [tok.convert_tokens_to_ids("<|im_end|>")]
    batched = generate(model, tok, prompts, stop_ids=stop, max_new_tokens=6, batch_size=2, amp=None)
    single = [generate(model, tok, [p], stop_ids=stop, max_new_tokens=6, batch_size=1, amp=None)[0] for p in prompts]
    assert batched == single


def test_lora_model_generates_with_and_without_its_adapter():
    import peft

    base = tiny_llama(seed=4)
    expected = _hf(base, PROMPTS, [127], 5)
    model = peft.get_peft_model(tiny_llama(seed=4), peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # a non-zero adapter changes the output
    with model.disable_adapter():
        assert greedy_ids(model, PROMPTS, stop_ids=[127], max_new_tokens=5, pad_id=0) == expected
    assert greedy_ids(model, PROMPTS, stop_ids=[127], max_new_tokens=5, pad_id=0) == _hf(model, PROMPTS, [127], 5)


def _item(n_answer: int) -> EvalItem:
    ids = list(range(10 + n_answer))
    return EvalItem("s.jsonl:1", ids[:10], ids, [False] * 10 + [True] * n_answer, "ref", "prompt")


def test_generation_budget_is_the_longest_reference_plus_a_quarter_at_least_16():
    assert generation_budget([_item(30), _item(12)], None) == 30 + 16
    assert generation_budget([_item(100), _item(3)], None) == 100 + 25
    assert generation_budget([_item(100)], 40) == 40  # a configured budget wins


def test_auto_batches_fill_to_the_memory_budget_or_max_rows_shortest_first(monkeypatch):
    from shipsft.eval import generate as gen

    lengths = [30, 10, 20, 40, 50]
    # a fixed size cuts the length-sorted prompts into runs of that many
    assert gen.batches(lengths, 5, 2, per_position=1) == [[1, 2], [0, 3], [4]]
    # auto: rows x (longest prompt + budget) x bytes within KV_BUDGET. 1,000 bytes/position, budget 100,000:
    # [10, 20] -> 2 x 30 x 1000 = 60,000 fits; + 30 -> 3 x 40 x 1000 = 120,000 does not; [30, 40] -> 2 x 50 x 1000
    # = 100,000 fits (the edge is inclusive); + 50 -> 3 x 60 x 1000 no
    monkeypatch.setattr(gen, "KV_BUDGET", 100_000)
    assert gen.batches(lengths, 10, "auto", per_position=1000) == [[1, 2], [0, 3], [4]]
    # a prompt too long for the budget on its own still gets its own batch of one
    assert gen.batches([500, 5], 10, "auto", per_position=1000) == [[1], [0]]
    monkeypatch.setattr(gen, "KV_BUDGET", 10**12)
    assert [len(b) for b in gen.batches([7] * 150, 10, "auto", per_position=1)] == [64, 64, 22]  # MAX_ROWS


def test_bytes_per_position_counts_kv_of_every_layer_and_the_prefill_mlp():
    from transformers import LlamaConfig

    from shipsft.eval.generate import bytes_per_position

    # SmolLM2-135M's shape: 30 layers, 3 KV heads of 64, MLP 1536: (2 x 30 x 3 x 64 + 3 x 1536) x 4 bytes
    cfg = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30,
                      intermediate_size=1536)
    assert bytes_per_position(cfg, 4) == (11520 + 4608) * 4 == 64512


def test_auto_batch_generates_what_fixed_batches_generate():
    from helpers import tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok), seed=2)
    prompts = [tok(f"<|im_start|>user\nreverse: {w}<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
               for w in ("red cat", "one", "a b c d", "hi")]
    stop = [tok.convert_tokens_to_ids("<|im_end|>")]
    auto = generate(model, tok, prompts, stop_ids=stop, max_new_tokens=6, batch_size="auto", amp=None)
    assert auto == [generate(model, tok, [p], stop_ids=stop, max_new_tokens=6, batch_size=1, amp=None)[0]
                    for p in prompts]
