"""Eval-gated training on a tiny random Llama with a tiny ChatML BPE tokenizer (trained here in 3 ms).

The model memorises six question/answer pairs in a hand-rolled loop, so the task metric moves from 0 to 1 and
everything the eval session measures and the gates decide (early stopping, best checkpoint, gates, promotion, KL,
forgetting probe) can be asserted exactly. One slow test runs generation on the real SmolLM2.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from helpers import Notes
from shipsft.config import DataConfig, RunConfig
from shipsft.data.types import Example
from shipsft.eval import session
from shipsft.eval.drift import BUDGET, batches_under_budget, mean_kl, mean_loss
from shipsft.eval.drift import teacher_forced as _teacher_forced
from shipsft.eval.gates import EarlyStop, choose
from shipsft.eval.generate import generate as _generate
from shipsft.eval.items import build_items, load_probe, stop_ids
from shipsft.eval.items import eval_renderer as _eval_renderer
from shipsft.eval.suites import before_after


def eval_renderer(tok):
    return _eval_renderer(tok, DataConfig())


def eot_ids(tok, model):
    return stop_ids(tok, model, eval_renderer(tok))


def generate(model, tok, prompts, stop_ids, max_new_tokens, batch_size=8):
    return _generate(model, tok, prompts, stop_ids=stop_ids, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     amp=None)


def teacher_forced(model, items, pad_id, ref=None, cache_topk=0, batch_size=8, **kw):
    return _teacher_forced(model, items, pad_id=pad_id, ref=ref, cache_topk=cache_topk, batch_size=batch_size, **kw)


def build(cfg, tok, model):
    return session.build_session(cfg.eval, cfg.data, tok, model, None)

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
          " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QA = [("capital of france?", "paris"), ("capital of italy?", "rome"), ("capital of spain?", "madrid"),
      ("capital of japan?", "tokyo"), ("two plus two?", "four"), ("color of the sky?", "blue")]


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{q} {a}" for q, a in QA] + ["user assistant system hello answer the question"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # pad == eos, as in SmolLM2: generation must still stop at (and keep training on) <|im_end|>
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   unk_token="<unk>", chat_template=CHATML)


def tiny_model(tok, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def write_suite(path: Path) -> Path:
    with path.open("w") as f:
        for q, a in QA:
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def make_cfg(tmp_path: Path, **eval_kw) -> RunConfig:
    suite = write_suite(tmp_path / "suite.jsonl")
    ev = {"suites": [{"name": "qa", "data": str(suite), "metrics": ["exact_match", "token_f1"], "max_new_tokens": 8}],
          "select_metric": "exact_match", "batch_size": 4, **eval_kw}
    return RunConfig.model_validate({"eval": ev})


def train_steps(model, items, n_steps: int, lr: float = 1e-2):
    """Hand-rolled SFT on the suite's own rendered items (labels = ids on the reference tokens; HF shifts)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    width = max(len(it.ids) for it in items)
    ids = torch.tensor([it.ids + [0] * (width - len(it.ids)) for it in items])
    labels = torch.tensor([[t if m else -100 for t, m in zip(it.ids, it.mask)] + [-100] * (width - len(it.ids))
                           for it in items])
    att = torch.tensor([[1] * len(it.ids) + [0] * (width - len(it.ids)) for it in items])
    model.train()
    for _ in range(n_steps):
        loss = model(input_ids=ids, attention_mask=att, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="module")
def memorised(tok):
    """One hand-rolled run on the six QA pairs, snapshots at steps 10 and 80 (80 memorises every answer)."""
    model = tiny_model(tok)
    items = qa_items(tok)
    snaps = {}
    for step, n in ((10, 10), (80, 70)):
        train_steps(model, items, n)
        snaps[step] = {k: v.clone() for k, v in model.state_dict().items()}
    return snaps


def qa_items(tok):
    return build_items(eval_renderer(tok), [Example(source=f"s:{i}", messages=[
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]) for i, (q, a) in enumerate(QA)])


def save(model, path: Path) -> Path:
    model.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------------------------


def test_generation_is_batch_invariant_and_stops_at_eot(tok, memorised):
    model = tiny_model(tok)
    model.load_state_dict(memorised[80])
    items = qa_items(tok)
    stop = eot_ids(tok, model)
    assert stop == [tok.convert_tokens_to_ids("<|im_end|>")]
    prompts = [it.prompt_ids for it in items]
    batched = generate(model, tok, prompts, stop_ids=stop, max_new_tokens=8, batch_size=6)
    single = [generate(model, tok, [p], stop_ids=stop, max_new_tokens=8, batch_size=1)[0] for p in prompts]
    # left padding + attention mask: a row's output does not depend on its neighbours
    assert batched == single
    assert batched == [a for _, a in QA]  # memorised, and cut at <|im_end|> (pad == eos must not break it)


def test_teacher_forced_loss_is_padding_invariant(tok):
    model = tiny_model(tok)
    items = build_items(eval_renderer(tok), load_probe()[:5])
    together = teacher_forced(model, items, pad_id=tok.pad_token_id, batch_size=5)
    alone = [teacher_forced(model, [it], pad_id=tok.pad_token_id)[0] for it in items]
    for it, a, b in zip(items, together, alone):
        assert a.n == b.n == sum(it.mask[1:])  # every reference token (+ end-of-turn) scored, nothing else
        assert a.nll == pytest.approx(b.nll, rel=1e-4)  # left padding + position ids: neighbours change nothing


def test_eval_memory_is_flat_in_the_number_of_examples(tok):
    """Failure mode 16: the largest logits tensor the LM head ever produces does not grow with the eval set."""
    model = tiny_model(tok)
    probe = build_items(eval_renderer(tok), load_probe())
    sizes: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, out: sizes.append(out.numel()))
    try:
        peaks = []
        for n in (8, 40):
            sizes.clear()
            teacher_forced(model, probe[:n], pad_id=2, batch_size=8, budget=4 * len(tok) * 16)
            generate(model, tok, [it.prompt_ids for it in probe[:n]], stop_ids=[2], max_new_tokens=4, batch_size=8)
            peaks.append(max(sizes))
    finally:
        hook.remove()
    longest = max(len(it.ids) - it.mask.index(True) + 1 for it in probe)
    # 5x the examples, the same bound: the budget (or one item's answer span), never [N, T, V]
    assert max(peaks) <= max(4 * 16, longest) * len(tok) < 40 * longest * len(tok) / 8
    spans = [(len(it.ids), len(it.ids) - it.mask.index(True) + 1) for it in probe]
    for chunk in batches_under_budget(spans, vocab=49152, batch_size=8, budget=BUDGET):
        assert len(chunk) * max(spans[i][1] for i in chunk) * 49152 <= BUDGET  # 128 MB of fp32 logits per batch


def test_kl_lora_exact_and_full_ft_bound(tok):
    import peft

    base = tiny_model(tok)
    reference = tiny_model(tok)  # a second copy, only here, to check both estimators against the exact value
    items = build_items(eval_renderer(tok), load_probe()[:6])
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    assert mean_kl(teacher_forced(lora, items, pad_id=2, ref="adapter")) == pytest.approx(0.0, abs=1e-7)
    train_steps(lora, items, 5, lr=5e-3)
    kl_lora = mean_kl(teacher_forced(lora, items, pad_id=2, ref="adapter"))
    exact = _exact_kl(lora, reference, items)
    assert kl_lora == pytest.approx(exact, rel=1e-4) and kl_lora > 1e-3

    full = tiny_model(tok)
    cache16 = [s.topk for s in teacher_forced(full, items, pad_id=2, cache_topk=16)]
    cache_all = [s.topk for s in teacher_forced(full, items, pad_id=2, cache_topk=len(tok))]
    train_steps(full, items, 5, lr=5e-3)
    exact_full = _exact_kl(full, reference, items)
    # with k = vocab the buckets are the tokens themselves: the cached estimate is the exact KL
    assert mean_kl(teacher_forced(full, items, pad_id=2, ref=cache_all)) == pytest.approx(exact_full, rel=1e-3)
    # with k < vocab it is a lower bound (data-processing inequality); loose on this near-uniform random model
    bound = mean_kl(teacher_forced(full, items, pad_id=2, ref=cache16))
    assert 0 < bound <= exact_full + 1e-6


def _exact_kl(tuned, base, items) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for it in items:
            ids = torch.tensor([it.ids])
            pos = [t for t in range(len(it.ids) - 1) if it.mask[t + 1]]
            lp = torch.log_softmax(tuned(input_ids=ids).logits[0, pos].float(), -1)
            lq = torch.log_softmax(base(input_ids=ids).logits[0, pos].float(), -1)
            total += (lp.exp() * (lp - lq)).sum().item()
            n += len(pos)
    return total / n


def test_session_measures_and_the_gates_promote_the_best(tok, tmp_path, memorised):
    cfg = make_cfg(tmp_path, smoke_every=2, smoke_size=3, samples=2,
                   gates=[{"metric": "exact_match", "op": ">=", "value": 0.9},
                          {"metric": "general_loss_increase", "op": "<=", "value": 20.0}])
    model = tiny_model(tok)
    sess = build(cfg, tok, model)
    base = session.baseline(sess)
    m = base.metrics
    assert m["qa/exact_match"] == 0.0 and m["kl_to_base"] == 0.0 and m["general_loss_increase"] == 0.0
    assert set(session.smoke(sess, 2).metrics) == {"qa/exact_match", "qa/token_f1"}
    fulls, ckpts = [], {}
    for step in (10, 80):
        model.load_state_dict(memorised[step])  # = training on the suite (see `memorised`)
        ckpts[step] = save(model, tmp_path / "ckpt" / f"step-{step}")
        fulls.append(session.full(sess, step))
    got = fulls[-1].metrics
    assert got["qa/exact_match"] == 1.0 and got["kl_to_base"] > 0 and got["qa/eval_loss"] < m["qa/eval_loss"]
    assert got["general_loss_increase"] == pytest.approx(got["probe_loss"] - m["probe_loss"])
    promo = choose(cfg.eval, [{"step": r.step, "metrics": r.metrics} for r in fulls], ckpts, tmp_path / "final")
    assert promo.promoted and promo.exit_code == 0 and promo.step == 80
    rows = before_after("qa", base.scores["qa"], fulls[-1].scores["qa"])
    em = next(r for r in rows if r["metric"] == "exact_match")
    assert (em["base"], em["tuned"], em["delta"]) == (0.0, 1.0, 1.0) and em["lo"] == em["hi"] == 1.0
    assert fulls[-1].samples[0] == {"suite": "qa", "source": fulls[-1].samples[0]["source"],
                                    "prompt": "capital of france?", "reference": "paris", "output": "paris"}
    assert sess.kl_method == "top-128 + rest (lower bound)"  # full fine-tune: cached base top-k
    line = base.to_json(sess.kl_method)
    assert line["kind"] == "baseline" and "scores" not in line and json.loads(json.dumps(line)) == line


def test_not_promoted_names_the_gate_and_margin(tok, tmp_path, memorised):
    cfg = make_cfg(tmp_path, forgetting_probe=False, kl_max_examples=2,
                   gates=[{"metric": "exact_match", "op": ">=", "value": 0.9},
                          {"metric": "kl_to_base", "op": "<=", "value": 1e-6}])
    model = tiny_model(tok)
    sess = build(cfg, tok, model)
    session.baseline(sess)
    model.load_state_dict(memorised[80])
    ckpt = save(model, tmp_path / "ckpt")
    got = session.full(sess, 80).metrics
    kl = got["kl_to_base"]
    # KL on the first 2 items only, eval loss on all 6: the split pass gives the same loss as one pass over all
    assert len(sess.kl_items) == 2 and len(sess.rest_items) == 4
    assert got["qa/eval_loss"] == pytest.approx(mean_loss(teacher_forced(model, sess.suites[0].items, pad_id=2)))
    promo = choose(cfg.eval, [{"step": 80, "metrics": got}], {80: ckpt}, tmp_path / "final")
    assert not promo.promoted and promo.exit_code == 3
    assert f"gate kl_to_base <= 1e-06: best {kl:.4g}, short by {kl - 1e-6:.4g}" in promo.message
    assert "exact_match" not in promo.message.split("\n")[1]  # the passing gate is not blamed


def test_config_names_checked_up_front(tok, tmp_path):
    from shipsft.errors import ConfigError

    cfg = make_cfg(tmp_path, select_metric="eval_loss", forgetting_probe=False,
                   gates=[{"metric": "exact_mach", "value": 0.9}, {"metric": "general_loss_increase", "value": 0.1}])
    with pytest.raises(ConfigError) as e:
        build(cfg, tok, tiny_model(tok))
    text = "\n".join(e.value.lines)
    assert "'exact_mach' (= 'qa/exact_mach') is not computed" in text
    assert "'general_loss_increase' is not measured because eval.forgetting_probe is off" in text
    assert "eval.select_metric: 'eval_loss' is a loss" in text


def test_early_stopping_and_selection_rules(tmp_path):
    es = EarlyStop("qa/exact_match", "max", patience=2, min_delta=0.01)
    for v, stop in ((0.5, False), (0.505, False), (0.6, False), (0.6, False), (0.61, True)):
        es.update({"qa/exact_match": v})
        assert es.should_stop is stop  # 0.505 and 0.61 are within min_delta: not improvements
    low = EarlyStop("kl_to_base", "min", patience=1, min_delta=0.0)
    low.update({"kl_to_base": 0.2})
    low.update({"kl_to_base": 0.1})
    assert not low.should_stop
    low.update({"kl_to_base": 0.1})
    assert low.should_stop

    # selection by the task metric (ties -> the earlier step), promotion of the best that passes every gate
    cfg = RunConfig.model_validate({"eval": {
        "suites": [{"name": "qa", "data": "x.jsonl"}], "gates": [{"metric": "kl_to_base", "op": "<=", "value": 0.2}]}})
    evals = [{"step": s, "metrics": {"qa/exact_match": em, "qa/eval_loss": loss, "kl_to_base": kl}}
             for s, em, loss, kl in ((10, 0.5, 2.0, 0.05), (20, 0.8, 1.5, 0.1), (30, 0.8, 1.2, 0.15),
                                     (40, 0.9, 1.0, 0.3))]
    ckpts = {}
    for e in evals:
        d = tmp_path / f"step-{e['step']}"
        d.mkdir()
        (d / "weights.txt").write_text(str(e["step"]))
        ckpts[e["step"]] = d
    promo = choose(cfg.eval, evals, ckpts, tmp_path / "run" / "final")
    assert promo.step == 20 and promo.value == 0.8  # step 40 is better but fails kl; 20 and 30 tie -> earlier
    assert promo.checkpoint == str(ckpts[20]) and promo.final_dir == str(tmp_path / "run" / "final")
    # lower loss came with a higher metric; the tie at 0.8 gets average ranks: rho = -0.9487, not -1
    assert promo.spearman_eval_loss == pytest.approx(-0.9486833, abs=1e-6)


@pytest.mark.slow
def test_train_loop_gates_promotes_and_exits_3(tok, tmp_path):
    """Through the real loop (shipsft.train.run_train) on a tiny full fine-tune, then `shipsft eval` on the run."""
    from shipsft.cli.eval_cmd import run_eval
    from shipsft.train.run import run_train

    model_dir = tmp_path / "tiny"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    suite = write_suite(tmp_path / "qa.jsonl")
    train = tmp_path / "train.jsonl"
    train.write_text(suite.read_text() * 8)  # 48 conversations, 4 per step -> 12 steps per epoch

    def run(name, epochs=6, keep=2, **ev):
        cfg = RunConfig.model_validate({
            "model": {"path": str(model_dir)}, "data": {"train": [str(train)], "max_length": 64},
            "method": {"name": "full"}, "optim": {"lr": 0.01, "warmup_ratio": 0, "schedule": "constant"},
            "train": {"epochs": epochs, "batch_size": 4, "precision": "fp32", "keep_checkpoints": keep},
            "output": {"dir": str(tmp_path), "name": name},
            "eval": {"suites": [{"name": "qa", "data": str(suite), "metrics": ["exact_match"], "max_new_tokens": 8}],
                     **ev}})
        notes = Notes()
        code = run_train(cfg, skip_audit=True, argv=["test"], progress=notes)
        return code, "\n".join(notes.lines), tmp_path / name

    code, log, run_dir = run("ok", gates=[{"metric": "exact_match", "value": 0.5}])
    promo = json.loads((run_dir / "promotion.json").read_text())
    assert code == 0 and promo["promoted"] and (run_dir / "final" / "model.safetensors").exists()
    assert promo["step"] == min(c["step"] for c in promo["candidates"] if c["passed"] and c["value"] == promo["value"])
    assert promo["spearman_eval_loss"] < -0.5  # inside one recipe, lower eval loss came with a better task metric
    assert "PROMOTED step" in log and "qa/exact_match" in log  # the before/after table is printed

    # `shipsft eval RUN` with no --suite: the run's own suites, metrics, budget and batch size
    console = Console(file=io.StringIO(), width=200)
    assert run_eval(str(run_dir), None, out=tmp_path / "eval.json", console=console) == 0
    saved = json.loads((tmp_path / "eval.json").read_text())
    row = saved["suites"]["qa"]["rows"][0]
    assert saved["baseline"] == str(model_dir) and row["base"] == 0.0 and row["tuned"] == promo["value"]
    assert saved["suites_config"]["suites"][0]["max_new_tokens"] == 8 and row["metric"] == "exact_match"
    assert "before / after" in console.file.getvalue()
    # records the loop wrote: eval.jsonl (baseline + a full eval per epoch) and strict JSON everywhere
    records = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["baseline"] + ["full"] * 6 and (run_dir / "report.html").exists()

    # early stopping (patience 1: the metric does not move from 0 between the first two epochs) and exit code 3
    code, log, run_dir = run("stop", gates=[{"metric": "exact_match", "value": 0.99}],
                             early_stopping={"metric": "exact_match", "patience": 1})
    promo = json.loads((run_dir / "promotion.json").read_text())
    assert code == 3 and not promo["promoted"] and not (run_dir / "final").exists()
    assert [c["step"] for c in promo["candidates"]] == [12, 24] and "early stopping at step 24" in log
    assert "gate qa/exact_match >= 0.99: best 0, short by 0.99" in log

    # eval.full_every: a full eval every 5 steps besides the epoch ends (12, 24), each with its checkpoint, all of
    # them candidates for promotion
    code, log, run_dir = run("every", epochs=2, keep=6, full_every=5, gates=[{"metric": "exact_match", "value": 0.0}])
    promo = json.loads((run_dir / "promotion.json").read_text())
    assert sorted(c["step"] for c in promo["candidates"]) == [5, 10, 12, 15, 20, 24]
    assert sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").iterdir()) == [5, 10, 12, 15, 20, 24]


def test_eval_cli_adapter_uses_disabled_adapter_as_baseline(tok, tmp_path):
    """`shipsft eval ADAPTER --baseline BASE`: the base is scored with the adapter off (no second model)."""
    import peft

    from shipsft.cli.eval_cmd import run_eval

    model_dir = tmp_path / "tiny"
    tiny_model(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    suite = write_suite(tmp_path / "qa.jsonl")
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    # a random tiny model only memorises through LoRA at full rank (64 = hidden) with a trained head
    lora = peft.get_peft_model(base, peft.LoraConfig(r=64, lora_alpha=64, target_modules="all-linear",
                                                     modules_to_save=["lm_head"]))
    train_steps(lora, qa_items(tok), 100, lr=3e-3)
    lora.save_pretrained(tmp_path / "adapter")
    console = Console(file=io.StringIO(), width=200)
    code = run_eval(str(tmp_path / "adapter"), [suite], baseline=str(model_dir), metrics=["exact_match", "rouge_l"],
                    limit=4, out=tmp_path / "e.json", console=console)
    out = console.file
    rows = {r["metric"]: r for r in json.loads((tmp_path / "e.json").read_text())["suites"]["qa"]["rows"]}
    assert code == 0 and rows["exact_match"]["n"] == 4 and rows["exact_match"]["base"] == 0.0
    assert rows["exact_match"]["tuned"] == 1.0 and rows["rouge_l"]["delta"] == 1.0
    assert "before / after" in out.getvalue()


@pytest.mark.slow
def test_smollm2_generation_batched_equals_single(smollm2_tokenizer):
    """The real SmolLM2 (pad == eos, default system prompt): left-padded batches give the unbatched answers."""
    from shipsft.model.load import load_base

    cfg = RunConfig()
    model, _ = load_base(cfg.model, cfg.method, torch.device("cpu"))
    tok = smollm2_tokenizer
    items = build_items(eval_renderer(tok), [load_probe()[0], load_probe()[4]])  # France capital; 12 x 8
    assert eot_ids(tok, model) == [tok.convert_tokens_to_ids("<|im_end|>")]
    prompts = [it.prompt_ids for it in items]
    batched = generate(model.eval(), tok, prompts, stop_ids=eot_ids(tok, model), max_new_tokens=16)
    single = [generate(model, tok, [p], stop_ids=eot_ids(tok, model), max_new_tokens=16)[0] for p in prompts]
    assert batched == single
    assert "Paris" in batched[0] and batched[1].startswith("12 multiplied by 8")  # (it says 104: a probe item
    # the base model gets wrong, which is fine: the probe measures change from the base, not correctness)
    assert not any("<|im_end|>" in b or "<|im_start|>" in b for b in batched)


def test_unmeasured_gate_fails_and_baseline_is_required(tok, tmp_path):
    cfg = RunConfig.model_validate({"eval": {
        "suites": [{"name": "qa", "data": "x.jsonl"}], "gates": [{"metric": "probe_kl", "op": "<=", "value": 0.1}]}})
    (tmp_path / "c").mkdir()
    promo = choose(cfg.eval, [{"step": 5, "metrics": {"qa/exact_match": 1.0}}], {5: tmp_path / "c"}, tmp_path)
    assert promo.exit_code == 3 and "gate probe_kl <= 0.1: not measured at any checkpoint" in promo.message

    sess = build(make_cfg(tmp_path), tok, tiny_model(tok))
    with pytest.raises(RuntimeError, match=r"baseline\(session\) must run before the first optimizer step"):
        session.full(sess, 1)


def test_template_answer_prefix_is_not_scored():
    """Qwen3's template writes an empty think block before every answer: a prediction starting with it is
    scored on the answer alone; the eval loss still covers the block (as training does)."""
    from helpers import fixture_tokenizer

    tok = fixture_tokenizer("qwen3")
    [item] = build_items(eval_renderer(tok), [Example(source="s:1", messages=[
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}])])
    assert item.answer_prefix == "<think>\n\n</think>\n\n"
    assert item.clean("<think>\n\n</think>\n\nParis.") == "Paris." and item.clean("Paris.") == "Paris."
    assert tok.decode([t for t, m in zip(item.ids, item.mask) if m]) == "<think>\n\n</think>\n\nParis.<|im_end|>"
    assert tok.decode(item.prompt_ids).endswith("<|im_start|>assistant\n")



def test_structured_tool_call_reference_is_the_rendered_call():
    """An assistant turn of OpenAI `tool_calls` has no text content: its reference is the call as the template writes
    it (what the model learns to generate), never the empty content, so a perfect answer scores 1."""
    from helpers import fixture_tokenizer
    from shipsft.eval.metrics import resolve_metrics, score_all

    tok = fixture_tokenizer("qwen2.5-instruct")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}}}}]
    [item] = build_items(eval_renderer(tok), [Example(source="s:1", tools=tools, messages=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}])])
    assert item.reference == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    metrics = resolve_metrics(["tool_call_match", "exact_match"])
    assert score_all(metrics, item.reference, item.reference) == {"tool_call_match": 1.0, "exact_match": 1.0}
    assert score_all(metrics, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bergen"}}\n</tool_call>',
                     item.reference)["tool_call_match"] == 0.5


def test_win_rate_in_training_evals_asks_the_judge_only_when_answers_differ(tok, tmp_path, memorised):
    from helpers import dead_url
    from shipsft.errors import ConfigError

    suite = write_suite(tmp_path / "suite.jsonl")
    cfg = RunConfig.model_validate({"eval": {
        "suites": [{"name": "qa", "data": str(suite), "metrics": ["exact_match", "win_rate"], "max_new_tokens": 8}],
        "judge_url": dead_url(), "forgetting_probe": False, "kl_to_base": False, "batch_size": 4,
        "gates": [{"metric": "win_rate", "op": ">", "value": 0.5}]}})
    model = tiny_model(tok)
    sess = build(cfg, tok, model)  # qa/win_rate is a name gates may use
    base = session.baseline(sess)  # the base against itself: every example a tie, no request
    assert base.metrics["qa/win_rate"] == 0.5 and [s["win_rate"] for s in base.scores["qa"]] == [0.5] * len(QA)
    assert all(p["judge"]["win_rate"]["same_answer"] for p in base.predictions)
    assert session.full(sess, 1).metrics["qa/win_rate"] == 0.5  # unchanged weights, same answers: no request
    model.load_state_dict(memorised[80])  # the answers change: now the judge is asked (and is not there)
    with pytest.raises(ConfigError, match="judge at .* failed"):
        session.full(sess, 80)
