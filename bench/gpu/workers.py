"""The GPU bench's workers: each runs in its own subprocess (`run.py --worker NAME --spec FILE --result FILE`), so a
contender's peak memory is its own, liger-kernel's patches stay in the process that asked for them, and a crash is
one contender's failure, not the bench's.

    prepare    the device, package versions, the bf16 matmul rate, and the random-weight model saved as a folder
    numerics   bf16 vs fp32 loss and gradients on one batch; per-document packing equivalence per attention path
    shipsft    one contender through `shipsft train`'s own setup and loop (train/run.py: setup, train/loop.py: fit)
    trl        one contender through TRL's SFTTrainer
    plan       `shipsft plan` (sweep/plan.py) for each shipsft contender's config

Every worker writes one JSON dict; the parent (run.py) adds rates, MFU and ratios.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.train_vs_trl import conversations, cpu_name  # noqa: E402

PACKAGES = ["torch", "transformers", "peft", "accelerate", "trl", "datasets", "liger-kernel", "bitsandbytes",
            "flash-attn", "triton", "pydantic", "tokenizers"]
MATMUL_N = {"cuda": 8192, "cpu": 512}  # the size each device's matmul rate is measured at (square, bf16 / fp32)
# tolerances of the numerics section. bf16 keeps 8 significand bits (each rounding up to 2^-9 = 2e-3 relative), so
# one bf16 product lands 1e-3..1e-2 from fp32; through 16 layers the step's loss is allowed 1e-2 and its gradient
# 5e-2. Packing computes the same function in two batch shapes: fp32 (no TF32: torch's default "highest" matmul
# precision, recorded in the results) must agree to 1e-4, bf16 to 3e-2.
TOL = {"loss_bf16": 1e-2, "grad_bf16": 5e-2, "pack_fp32": 1e-4, "pack_bf16": 3e-2}


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_of(spec: dict):
    import torch

    return torch.device(spec["device"])


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory(device) -> dict:
    """Peak memory of this process: on CUDA the caching allocator's peaks plus what lives outside it (the CUDA
    context, cuBLAS workspaces: the device's used memory minus the allocator's reservation, read now); on the CPU
    the peak resident set (getrusage)."""
    import torch

    if device.type != "cuda":
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"measured_peak": rss, "peak_rss": rss}
    free, total = torch.cuda.mem_get_info(device)
    reserved = torch.cuda.memory_reserved(device)
    outside = max(total - free - reserved, 0)
    peak_reserved = torch.cuda.max_memory_reserved(device)
    return {"peak_allocated": torch.cuda.max_memory_allocated(device), "peak_reserved": peak_reserved,
            "outside_allocator": outside, "measured_peak": peak_reserved + outside, "device_total": total}


# ------------------------------------------------------------------------------------------------------------------
# prepare


def matmul_rate(device, n: int, dtype, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n matmul on random data: median of `repeats` after 3 warm-ups (CUDA events on a GPU)."""
    import statistics

    import torch

    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


def prepare(spec: dict) -> dict:
    """The device and packages, the matmul rate, and the random-weight model (seeded) saved with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    device = device_of(spec)
    env = {"python": platform.python_version(), "packages": versions(), "device": device.type,
           "cuda": torch.version.cuda, "cpu": cpu_name(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                   memory_bytes=p.total_memory, bf16_supported=bool(torch.cuda.is_bf16_supported()),
                   fp32_matmul_precision=torch.get_float32_matmul_precision())
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = MATMUL_N[device.type]
    matmul = {"n": n, "dtype": str(dtype).replace("torch.", ""), "flops": matmul_rate(device, n, dtype)}
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(spec["tokenizer"])
    conf = LlamaConfig(**spec["shape"], vocab_size=len(tok), tie_word_embeddings=True, max_position_embeddings=8192,
                       rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
    # stored in bf16 on a GPU (half the bytes to write and read); every contender loads it as fp32, the same values
    model.to(torch.bfloat16 if device.type == "cuda" else torch.float32).save_pretrained(spec["model_dir"])
    tok.save_pretrained(spec["model_dir"])
    params = sum(p.numel() for p in model.parameters())
    return {"status": "ok", "env": env, "matmul": matmul, "model": {"params": params, "config": conf.to_dict(),
                                                                     "save_s": time.perf_counter() - t0}}


# ------------------------------------------------------------------------------------------------------------------
# numerics


def _batch(spec: dict, tok, n: int, seed: int):
    """`n` conversations rendered with the model's template and packed into one row (the loop's own packing)."""
    from shipsft.config import DataConfig
    from shipsft.data.pack import collate, pack_examples, padding_id
    from shipsft.data.render import render_conversation

    data = DataConfig(template_kwargs=spec.get("template_kwargs", {}))
    rendered = [r for c in conversations(n, seed, *spec["words"]) for r in render_conversation(tok, c, data)]
    rows = pack_examples(rendered, sum(len(r.ids) for r in rendered), True).rows
    assert len(rows) == 1, "the numerics batch is one packed row"
    return collate(rows, padding_id(tok)), rows[0].seq_lens


def _grads(model, batch, device, amp) -> tuple[float, list]:
    import torch

    from shipsft.train.loss import batch_ce_sum

    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        loss = batch_ce_sum(model, batch)
    loss.backward()
    return float(loss), [p.grad.detach().float().clone() for p in model.parameters() if p.requires_grad]


def rel_error(a: list, b: list) -> float:
    """||a - b|| / ||b|| over lists of tensors taken as one vector."""
    num = sum(float((x - y).double().square().sum()) for x, y in zip(a, b))
    den = sum(float(y.double().square().sum()) for y in b)
    return math.sqrt(num / den) if den else float("inf")


def precision_check(model, batch, method: str, lora: dict) -> dict:
    """One batch, fp32 then bf16 autocast, as the loop runs it (shipsft's loss; LoRA's frozen weights stored in bf16
    for the bf16 pass, as `load_for_training` does under bf16): loss and gradient agreement. `model` is the plain
    causal LM; LoRA wraps it in place, so the full check runs first."""
    import torch

    from shipsft.config import MethodConfig
    from shipsft.model.load import apply_method
    from shipsft.model.precision import store_frozen

    device = batch["input_ids"].device
    mc = MethodConfig.model_validate({"name": method, **({"lora": lora} if method == "lora" else {})})
    model = apply_method(mc, model, False).train()
    torch.manual_seed(0)
    for name, p in model.named_parameters():  # LoRA's B starts at zero (peft): give it values so dL/dA is not zero
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    loss32, g32 = _grads(model, batch, device, None)
    if method == "lora":
        store_frozen(model, torch.bfloat16)
    loss16, g16 = _grads(model, batch, device, torch.bfloat16)
    model.zero_grad(set_to_none=True)
    loss_rel, grad_rel = abs(loss16 - loss32) / abs(loss32), rel_error(g16, g32)
    return {"method": method, "loss_fp32": loss32, "loss_bf16": loss16, "loss_rel": loss_rel, "grad_rel": grad_rel,
            "tol_loss": TOL["loss_bf16"], "tol_grad": TOL["grad_bf16"],
            "ok": loss_rel <= TOL["loss_bf16"] and grad_rel <= TOL["grad_bf16"]}


def per_document(model, batch, spans, amp, attention_mask=None) -> tuple[list[float], list]:
    """Each document's summed CE and its last hidden states, from one forward over `batch` (shipsft's loss on the
    decoder's output). `attention_mask` all ones on the SDPA path turns the per-document isolation off: transformers
    then builds one causal mask over the whole row (the leak control)."""
    import torch

    from shipsft.data.labels import IGNORE_INDEX
    from shipsft.train.loss import decoder_and_head, linear_ce_sum

    decoder, head = decoder_and_head(model)
    device = batch["input_ids"].device
    with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        h = decoder(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=attention_mask,
                    use_cache=False).last_hidden_state[0].float()
        labels = batch["labels"][0]
        keep = labels != IGNORE_INDEX
        per_token = torch.empty(int(keep.sum()), device=device)
        linear_ce_sum(h[keep], head, labels[keep], per_token=per_token)
    ce, hs, start, first = [], [], 0, 0
    for n in spans:
        k = int(keep[start:start + n].sum())
        ce.append(float(per_token[first:first + k].sum()))
        hs.append(h[start:start + n])
        start, first = start + n, first + k
    return ce, hs


def against_alone(packed: tuple, alone: list[tuple]) -> dict:
    """The largest relative difference over the documents, of the summed loss and of the hidden states."""
    (ce_p, h_p), ce_a, h_a = packed, [a[0][0] for a in alone], [a[1][0] for a in alone]
    return {"loss_rel": max(abs(p - a) / abs(a) for p, a in zip(ce_p, ce_a)),
            "hidden_rel": max(rel_error([p], [a]) for p, a in zip(h_p, h_a))}


def packing_check(model, batch, spans: list[int]) -> dict:
    """Per attention path and precision: each document's loss and hidden states in the packed row vs the document
    run alone. The leak control (the same row with isolation off, on the SDPA path) says how far a leak would move
    them: a path passes within the tolerance, and the check sees leaks when the control moves 10x further."""
    import torch

    from shipsft.model.attention import register

    model.eval()
    device = batch["input_ids"].device
    paths = {"sdpa": "sdpa", "per_document": register()}
    out: dict = {}
    if importlib.util.find_spec("flash_attn") is not None and device.type == "cuda":
        paths["flash_attention_2"] = "flash_attention_2"
    else:
        out["flash_attention_2"] = {"status": "unavailable", "why": "flash-attn is not installed (no wheel carried)"}
    starts = [sum(spans[:i]) for i in range(len(spans))]
    alone = [{k: v[:, a:a + n] for k, v in batch.items() if torch.is_tensor(v)} for a, n in zip(starts, spans)]
    leak = {}
    model.set_attn_implementation("sdpa")
    for label, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        solo = [per_document(model, b, [n], amp) for b, n in zip(alone, spans)]
        leak[label] = against_alone(per_document(model, batch, spans, amp, torch.ones_like(batch["input_ids"])), solo)
    out["leak_control"] = {"status": "ok", **leak}
    for name, impl in paths.items():
        model.set_attn_implementation(impl)
        rows = {}
        for label, amp in (("fp32", None), ("bf16", torch.bfloat16)):
            solo = [per_document(model, b, [n], amp) for b, n in zip(alone, spans)]
            r = against_alone(per_document(model, batch, spans, amp), solo)
            tol = TOL[f"pack_{label}"]
            rows[label] = {**r, "tol": tol, "ok": r["loss_rel"] <= tol and r["hidden_rel"] <= tol,
                           "leak_seen": leak[label]["hidden_rel"] > max(tol, 10 * r["hidden_rel"])}
        out[name] = {"status": "ok", **rows}
    return out


def numerics(spec: dict) -> dict:
    """One model load: packing first (the plain model), then bf16 vs fp32 for full fine-tuning, then for LoRA (which
    wraps the model in place)."""
    import torch

    from shipsft.config import MethodConfig, ModelConfig
    from shipsft.model.attention import register
    from shipsft.model.load import load_weights
    from shipsft.model.locate import load_tokenizer

    device = device_of(spec)
    tok = load_tokenizer(ModelConfig(path=spec["model_dir"]))
    batch, spans = _batch(spec, tok, spec["numerics_docs"], 11)
    batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
    model = load_weights(Path(spec["model_dir"]), ModelConfig(path=spec["model_dir"], attn_implementation="sdpa"),
                         MethodConfig(name="full"), device)
    packing = packing_check(model, batch, spans)
    model.set_attn_implementation(register())  # shipsft's default attention for the training checks
    precision = [precision_check(model, batch, m, spec["lora"]) for m in ("full", "lora")]
    return {"status": "ok", "documents": spans, "ce_path": ce_path(device), "bf16_vs_fp32": precision,
            "packing": packing}


def ce_path(device) -> str:
    """Which LM-head loss shipsft's `linear_ce_sum` takes here: liger's fused kernel on CUDA when it is installed."""
    return "liger fused linear CE" if importlib.util.find_spec("liger_kernel") and device.type == "cuda" else "chunked"


# ------------------------------------------------------------------------------------------------------------------
# training contenders


class Counter:
    """Forward pre-hooks on the decoder (tokens, sum of document lengths squared from position_ids) and on the model
    as the trainer calls it (trained tokens from its labels: TRL passes them in; peft calls the wrapped model's
    forward directly, so the hook sits on the outermost module), summed over every forward."""

    def __init__(self, model):
        from shipsft.model.load import base_model

        self.tokens = self.attn_sq = self.trained = 0
        self.handles = [base_model(model).get_decoder().register_forward_pre_hook(self._decoder, with_kwargs=True),
                        model.register_forward_pre_hook(self._lm, with_kwargs=True)]

    def _decoder(self, module, args, kwargs):
        from shipsft.model.attention import document_lengths

        ids = kwargs.get("input_ids", args[0] if args else None)
        pos = kwargs.get("position_ids")
        self.tokens += ids.numel()
        lengths = document_lengths(pos) if pos is not None else [[ids.shape[1]]] * ids.shape[0]
        self.attn_sq += sum(n * n for row in lengths for n in row)

    def _lm(self, module, args, kwargs):
        labels = kwargs.get("labels")
        if labels is not None:
            self.trained += int((labels != -100).sum())

    def snapshot(self) -> tuple[int, int, int]:
        return self.tokens, self.trained, self.attn_sq


class Stamps:
    """Marks the end of every optimizer step (after a device sync) with the counters at that moment. It is the
    shipsft loop's Progress (train/loop.py) and is called by TRL's callback."""

    def __init__(self, device):
        self.device, self.times, self.snaps, self.records, self.notes = device, [], [], [], []
        self.counter: Counter | None = None

    def start(self, total: int) -> None:
        pass

    def step(self, record: dict | None = None) -> None:
        sync(self.device)
        self.times.append(time.perf_counter())
        self.snaps.append(self.counter.snapshot() if self.counter else (0, 0, 0))
        self.records.append(record or {})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def stop(self) -> None:
        pass


def timed(stamps: Stamps, warmup: int, trained_from_records: bool) -> dict:
    """Seconds and work of the steps after the first `warmup` (each step's end minus the warm-up's last end)."""
    if len(stamps.times) <= warmup:
        raise RuntimeError(f"only {len(stamps.times)} steps ran; {warmup} warm-up steps were asked for")
    t0, t1 = stamps.times[warmup - 1], stamps.times[-1]
    (tok0, tr0, sq0), (tok1, tr1, sq1) = stamps.snaps[warmup - 1], stamps.snaps[-1]
    if trained_from_records:
        later = stamps.records[warmup:]
        tokens, trained = sum(r["tokens"] for r in later), sum(r["trained_tokens"] for r in later)
    else:
        tokens, trained = tok1 - tok0, tr1 - tr0
    return {"timed_steps": len(stamps.times) - warmup, "seconds": t1 - t0,
            "work": {"tokens": tokens, "trained": trained, "attn_sq": sq1 - sq0},
            "step_seconds": [b - a for a, b in zip(stamps.times, stamps.times[1:])]}


def train_shipsft(spec: dict) -> dict:
    """`shipsft train CONFIG`'s setup and loop, stopped after warmup + steps optimizer steps (no final save)."""
    import torch

    from shipsft.config import load_config
    from shipsft.model.load import param_counts
    from shipsft.train.loop import fit
    from shipsft.train.run import setup

    device = device_of(spec)
    cfg = load_config(spec["config"])
    stamps = Stamps(device)
    t0 = time.perf_counter()
    s = setup(cfg, spec["config"], True, None, stamps)
    setup_s = time.perf_counter() - t0
    stamps.counter = Counter(s.model)
    try:
        fit(s, stamps, limit_steps=spec["warmup"] + spec["steps"])
    finally:
        s.run.close()
    trainable, total = param_counts(s.model)
    attn = cfg.model.attn_implementation
    if attn == "per_document":
        attn += (" (flash-attn varlen)" if importlib.util.find_spec("flash_attn") and device.type == "cuda"
                 else " (SDPA per bucket of documents)")
    losses = [r["loss"] for r in stamps.records]
    return {"status": "ok", **timed(stamps, spec["warmup"], True), "losses": losses, "setup_s": setup_s,
            "precision": "bf16" if s.amp == torch.bfloat16 else "fp32", "attention": attn, "ce": ce_path(device),
            "trainable": trainable, "total": total, "memory": memory(device)}


def train_trl(spec: dict) -> dict:
    """TRL's SFTTrainer on the same model, data and LoRA: prompt/completion pairs (loss on the completion, TRL's
    default for that format), padding_free (the batch flattened into one row: TRL's recommendation), bf16 autocast
    on a GPU, no gradient checkpointing, the same lr and batch; liger-kernel when the spec asks."""
    import tempfile

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    device = device_of(spec)
    convs = [json.loads(line)["messages"] for line in Path(spec["data"]).read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in convs])
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32, attn_implementation="sdpa")
    args = SFTConfig(output_dir=tempfile.mkdtemp(), report_to="none", save_strategy="no", logging_steps=1, seed=0,
                     max_steps=spec["warmup"] + spec["steps"], per_device_train_batch_size=spec["batch"],
                     gradient_checkpointing=False, bf16=device.type == "cuda", use_cpu=device.type != "cuda",
                     learning_rate=spec["lr"], lr_scheduler_type="constant", warmup_steps=0, max_length=None,
                     padding_free=True, use_liger_kernel=spec["liger"], dataloader_num_workers=0)
    peft_config = None
    if spec["method"] == "lora":
        lora = spec["lora"]
        peft_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    setup_s = time.perf_counter() - t0
    stamps = Stamps(device)
    stamps.counter = Counter(trainer.model)

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.step()

    trainer.add_callback(Stamp())
    trainer.train()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"status": "ok", **timed(stamps, spec["warmup"], False), "losses": losses, "setup_s": setup_s,
            "precision": "bf16" if args.bf16 else "fp32", "attention": "sdpa (padding_free: masked over the row)",
            "ce": "TRL fused LM head" + (" + liger kernels" if spec["liger"] else ""),
            "trainable": trainable, "total": total, "memory": memory(device)}


# ------------------------------------------------------------------------------------------------------------------
# plan


def plan_configs(spec: dict) -> dict:
    """`shipsft plan` for each config: the planned peak, the moment that sets it and every component."""
    from shipsft.config import load_config
    from shipsft.sweep.plan import plan

    out = {}
    for name, path in spec["configs"].items():
        t0 = time.perf_counter()
        try:
            p = plan(load_config(path), Path(path), device=spec["device"], memory=spec.get("memory"))
        except Exception as e:  # noqa: BLE001 - one config's failure is reported, the others still planned
            out[name] = {"status": "error", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            continue
        out[name] = {"status": "ok", "peak": p.chosen.peak, "moment": p.chosen.moment, "seconds":
                     time.perf_counter() - t0, "components": {c.name: c.bytes for c in p.chosen.components},
                     "alternatives": p.alternatives}
    return {"status": "ok", "plans": out}


WORKERS = {"prepare": prepare, "numerics": numerics, "shipsft": train_shipsft, "trl": train_trl,
           "plan": plan_configs}


def main(name: str, spec_path: Path, result_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    result_path.write_text(json.dumps(WORKERS[name](spec)))
