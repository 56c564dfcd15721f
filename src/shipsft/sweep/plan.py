"""`shipsft plan CONFIG`: how much memory a run needs, per component, how long it takes, and LoRA / QLoRA / full.

Peak memory is modelled as what lives through the whole run plus the largest of three moments:

    static    runtime + weights + adapter + optimizer states
    step      gradients + activations saved for backward + the LM-head chunk + optimizer-step temporaries
    eval      the drift eval's logits (eval suites only)
    save      the copy safetensors makes of the weights it writes
    peak    = static + max(step, eval, save) + allocator slack on the dynamic part

Each component follows the code and the config it is given, not a rule of thumb:

    runtime      CPU: this very process's resident memory once the training code is imported and the tokenizer and
                 the rendered data are loaded, as `shipsft train` does before loading the model (measured);
                 CUDA: the CUDA context (CUDA_CONTEXT)
    weights      every parameter at the dtype `shipsft.model.load.load_weights` keeps (fp32; QLoRA: NF4 linear
                 weights, 4 bits + one 8-bit scale per 64 weights), counted on a meta-device copy of the model
                 built by transformers from its config.json and adapted by `shipsft.model.load.apply_method`
    adapter      the LoRA parameters (fp32), from the same meta copy
    gradients    one fp32 gradient per trainable parameter
    optimizer    states per trainable parameter, by optim.name (OPTIMIZER_STATES)
    activations  the bytes autograd saves for backward in the run's largest micro-batch, traced through
                 `shipsft.train.loss.batch_ce_sum` itself on 1- and 2-layer copies of the model (same attention
                 implementation, method, LoRA targets, precision; vocabulary shrunk, widths scaled down for big
                 layers): per layer x layers + the rest. With gradient checkpointing: each layer's input, plus one
                 layer recomputed in backward.
    LM head      shipsft.train.loss computes the loss in CHUNK_ROWS-row blocks over trained positions only: one
                 [rows, vocab] fp32 logits block, dL/dh for the trained positions, and dL/dW (vocab x hidden) when
                 the head is trained
    slack        what the allocator holds beyond live tensors, as a share of the dynamic part (ALLOCATOR_SLACK)

The error bound is tested: tests/sweep/test_sweep_plan.py runs `shipsft plan` and real `shipsft train` processes
and requires the planned peak within 20% of the measured peak RSS (a 57M-parameter random Llama, LoRA and full;
the errors it measured are beside ALLOCATOR_SLACK). CPU only; the CUDA side (CUDA_CONTEXT, the caching allocator's
slack) has not been measured against a GPU.

    p = plan(cfg, config_path, device="cpu", memory=None, gpus=1)
    print(p.lines())
"""
from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.config import RunConfig
from shipsft.data.pack import Batching
from shipsft.data.store import token_lengths, trained_counts
from shipsft.errors import ConfigError
from shipsft.steps.schedule import StepPlan

GB = 1e9
GiB = 2**30
CUDA_CONTEXT = int(0.5 * GiB)  # the CUDA context and cuBLAS workspace outside PyTorch's allocator (typical, H100)
# bytes of optimizer state per trainable parameter (fp32 states unless noted)
OPTIMIZER_STATES = {"adamw": 8.0, "adamw_8bit": 2.0, "lion": 4.0, "schedule_free_adamw": 8.0, "muon": 4.0,
                    "adafactor": 0.0}  # adafactor: factored, computed per tensor (rows + columns)
# what the allocator holds beyond the live tensors of the step, as a share of the step's dynamic memory; measured
# on this project's 2-core EPYC with tests/sweep/test_sweep_plan.py (tcmalloc is what `shipsft train` uses when it
# is installed; glibc malloc keeps more of what a step frees); CUDA: PyTorch's caching allocator
# tests/sweep/test_sweep_plan.py's planned vs measured peak RSS on the project's 2-core AMD EPYC: LoRA -5.1%, full -2.5%
ALLOCATOR_SLACK = {"tcmalloc": 0.15, "system": 0.6, "cuda": 0.1}
NF4_BYTES = 0.5 + 1 / 64  # 4 bits per weight + one 8-bit absmax per 64 (double quantization; its fp32 scales ~0)
PROBE_VOCAB = 512
PROBE_LAYER_PARAMS = 50_000_000  # wider layers are traced at a fraction of their width, then scaled back
MAX_SIMULATED_STEPS = 500  # steps walked to find the largest micro-batch


def rss_now() -> int:
    """This process's resident set size in bytes (Linux /proc; elsewhere the peak so far)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------------------------------------------
# the micro-batches the loop will build


@dataclass
class Batches:
    max_rows: int  # rows of the largest micro-batch
    max_width: int  # its row length (the longest row in it)
    max_trained: int  # trained positions in the micro-batch with the most
    example: dict  # the largest micro-batch as collate() builds it (input_ids, labels, position_ids)
    total_steps: int
    tokens_per_epoch: int  # real tokens of one pass
    trained_per_epoch: int
    epochs: float
    n_examples: int


def largest_micro_batch(rendered: list, plan: StepPlan, seed: int, batching: Batching, pad_id: int) -> Batches:
    """Walk the loop's own batching (steps/batches.py: walk, data/pack.py: micro_batches) for up to
    MAX_SIMULATED_STEPS steps and keep the largest micro-batch (rows x width) and the most trained positions in one
    micro-batch."""
    from shipsft.data.pack import collate, micro_batches, padded_tokens
    from shipsft.steps.batches import walk

    lengths = token_lengths(rendered)  # a store's index: only the walked steps' sequences are read
    best, most_trained = None, 0
    for _, _, idx in walk(lengths, plan.rule, seed, min(plan.total_steps, MAX_SIMULATED_STEPS)):
        for group in micro_batches([rendered[i] for i in idx], batching):
            most_trained = max(most_trained, sum(r.n_trained for r in group))
            if best is None or padded_tokens(group)[1] > best[0]:
                best = (padded_tokens(group)[1], group)
    mb = collate(best[1], pad_id)
    trained = int(trained_counts(rendered).sum())
    return Batches(mb["input_ids"].shape[0], mb["input_ids"].shape[1], most_trained, mb, plan.total_steps,
                   int(lengths.sum()), trained, plan.epochs, len(rendered))


# ------------------------------------------------------------------------------------------------------------------
# parameters, on a meta-device copy of the model


@dataclass
class Params:
    total: int
    trainable: int
    frozen_linear: int  # frozen weights of plain Linear layers (NF4 under QLoRA)
    frozen_other: int
    largest_trainable: int  # elements of the biggest trainable tensor (optimizer-step temporaries)
    head_trained: bool
    vocab: int
    hidden: int
    layers: int
    adafactor_state: int  # elements of Adafactor's factored state
    names: list[str] = field(default_factory=list)


def count_params(cfg: RunConfig, conf) -> Params:
    """Parameter counts of the model as `apply_method` adapts it (QLoRA counted as LoRA on NF4 weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from shipsft.model.load import apply_method

    method = cfg.method if cfg.method.name != "qlora" else cfg.method.model_copy(update={"name": "lora"})
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(conf, trust_remote_code=cfg.model.trust_remote_code)
    lm = apply_method(method, lm, False)
    head = lm.get_output_embeddings()
    frozen_linear = frozen_other = trainable = total = largest = ada = 0
    seen = set()
    linear_weights = {id(m.weight) for m in lm.modules() if type(m) is torch.nn.Linear and m is not head}
    for p in lm.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
            largest = max(largest, n)
            ada += (p.shape[0] + p.shape[1]) if p.ndim == 2 else n
        elif id(p) in linear_weights:
            frozen_linear += n
        else:
            frozen_other += n
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    head = base.get_output_embeddings()
    return Params(total, trainable, frozen_linear, frozen_other, largest, bool(head.weight.requires_grad),
                  head.weight.shape[0], head.weight.shape[1], conf.num_hidden_layers, ada)


# ------------------------------------------------------------------------------------------------------------------
# activations, traced through the training code on small copies of the model


def _scale_factor(conf) -> int:
    """Width divisor for the probe: 1 for layers up to PROBE_LAYER_PARAMS, else a divisor of both head counts."""
    d, i = conf.hidden_size, getattr(conf, "intermediate_size", 4 * conf.hidden_size)
    layer = 4 * d * d + 3 * d * i
    if layer <= PROBE_LAYER_PARAMS:
        return 1
    heads, kv = conf.num_attention_heads, getattr(conf, "num_key_value_heads", None) or conf.num_attention_heads
    g = math.gcd(heads, kv)
    want = math.ceil(math.sqrt(layer / PROBE_LAYER_PARAMS))
    return next((k for k in range(want, g + 1) if g % k == 0), g)


def probe_config(conf, layers: int, k: int):
    """conf with `layers` decoder layers, a PROBE_VOCAB vocabulary and widths divided by k (head_dim kept)."""
    import copy

    c = copy.deepcopy(conf)
    head_dim = getattr(conf, "head_dim", None) or conf.hidden_size // conf.num_attention_heads
    c.num_hidden_layers = layers
    c.vocab_size = PROBE_VOCAB
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = getattr(c, key, None)
        if isinstance(v, int) and v >= PROBE_VOCAB:
            setattr(c, key, 0)
        elif isinstance(v, list):
            setattr(c, key, [x if x < PROBE_VOCAB else 0 for x in v])
    if hasattr(c, "layer_types") and isinstance(c.layer_types, list):
        c.layer_types = c.layer_types[:layers]
    if k > 1:
        c.num_attention_heads = conf.num_attention_heads // k
        kv = getattr(conf, "num_key_value_heads", None)
        if kv:
            c.num_key_value_heads = kv // k
        c.head_dim = head_dim
        c.hidden_size = conf.hidden_size // k
        if getattr(conf, "intermediate_size", None):
            c.intermediate_size = conf.intermediate_size // k
    return c


def saved_bytes(model, batch: dict, amp) -> int:
    """Bytes autograd saves for backward in one forward of `batch_ce_sum` (unique storages, parameters excluded)."""
    import torch

    from shipsft.train.loss import batch_ce_sum

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        try:
            s = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return t
        if s.data_ptr() not in params and s.data_ptr() != 0:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            loss = batch_ce_sum(model, batch)
    del loss
    return sum(seen.values())


@dataclass
class Trace:
    per_layer: int  # an adapted (or fully trained) layer
    per_frozen_layer: int  # a frozen layer above the first adapted one (backward runs through it)
    fixed: int  # embeddings, final norm, the loss inputs
    layer_input: int  # one layer's input (what gradient checkpointing keeps per layer)
    scale: int


def trace_activations(cfg: RunConfig, conf, batch: dict, amp) -> Trace:
    """Saved-for-backward bytes of the run's largest micro-batch, from 1- and 2-layer copies of the model built and
    adapted by shipsft's own loading code, run through the training loss."""
    import torch
    from transformers import AutoModelForCausalLM

    from shipsft.model.load import apply_method, frozen_dtype
    from shipsft.model.precision import store_frozen

    k = _scale_factor(conf)
    method = cfg.method if cfg.method.name != "qlora" else cfg.method.model_copy(update={"name": "lora"})
    ids = batch["input_ids"] % PROBE_VOCAB
    labels = torch.where(batch["labels"] >= 0, batch["labels"] % PROBE_VOCAB, batch["labels"])
    probe_batch = {"input_ids": ids, "labels": labels, "position_ids": batch["position_ids"]}
    attn = cfg.model.attn_implementation
    kwargs = {}
    if attn == "per_document":
        from shipsft.model.attention import register

        kwargs["attn_implementation"] = register()
    elif attn not in ("auto", "flash_attention_2"):
        kwargs["attn_implementation"] = attn
    elif attn == "flash_attention_2":
        kwargs["attn_implementation"] = "sdpa"  # the probe runs on the CPU; flash-attn saves q, k, v, out, lse alike

    def run(layers: int, adapted: list[int] | None) -> int:
        torch.manual_seed(0)
        c = probe_config(conf, layers, k)
        lm = AutoModelForCausalLM.from_config(c, dtype=torch.float32, **kwargs)
        lm.config.use_cache = False
        m = method
        if method.name != "full" and method.lora.layers is not None:
            m = method.model_copy(update={"lora": method.lora.model_copy(update={"layers": adapted})})
        lm = apply_method(m, lm, False)
        if (stored := frozen_dtype(method.name, amp)) is not None:  # as load_for_training stores them
            store_frozen(lm, stored)
        lm.train()
        return saved_bytes(lm, probe_batch, amp)

    one = run(1, [0])
    two = run(2, [0, 1])
    per_layer = two - one
    per_frozen = per_layer
    if method.name != "full" and method.lora.layers is not None:
        per_frozen = run(2, [0]) - one
    hidden_bytes = 4  # the residual stream stays fp32 under autocast (the embeddings and norms are fp32)
    rows, width = batch["input_ids"].shape
    return Trace(per_layer * k, per_frozen * k, max(one - per_layer, 0) * k,
                 rows * width * conf.hidden_size * hidden_bytes,
                 k)


# ------------------------------------------------------------------------------------------------------------------
# the plan


@dataclass
class Component:
    name: str
    bytes: int
    note: str


@dataclass
class MethodPlan:
    method: str
    components: list[Component]
    peak: int
    moment: str  # which moment sets the peak: step, eval or save


@dataclass
class Plan:
    device: str
    gpus: int
    memory: int | None  # budget per device in bytes
    allocator: str
    chosen: MethodPlan  # the config's own method
    alternatives: dict[str, int]  # method -> planned peak (the other methods, same config otherwise)
    recommendation: str
    reasons: list[str]
    time_s: float | None
    time_note: str
    batches: Batches
    params: Params
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.memory is None else self.chosen.peak <= self.memory


def _optimizer_bytes(name: str, params: Params) -> int:
    if name == "adafactor":
        return 4 * params.adafactor_state
    if name == "muon":  # momentum for the hidden matrices; embeddings, head, norms get AdamW (2 states)
        return int(4 * params.trainable)
    return int(OPTIMIZER_STATES[name] * params.trainable)


def method_plan(cfg: RunConfig, params: Params, trace: Trace, batches: Batches, device: str, allocator: str,
                runtime: int, amp) -> MethodPlan:
    """Components and peak for one method (`params` and `trace` as that method adapts the model)."""
    from shipsft.train.loss import CHUNK_ROWS

    m = cfg.method.name
    from shipsft.model.load import frozen_dtype

    stored = frozen_dtype(m, amp)  # LoRA's frozen Linears as load_for_training stores them
    linear_bytes = NF4_BYTES if m == "qlora" else stored.itemsize if stored is not None else 4
    weights = 4 * params.total if m == "full" else int(linear_bytes * params.frozen_linear) + 4 * params.frozen_other
    adapter = 0 if m == "full" else 4 * params.trainable
    grads = 4 * params.trainable
    optim = _optimizer_bytes(cfg.optim.name, params)
    layers = params.layers
    lora_layers = None if m == "full" else cfg.method.lora.layers
    first = min(lora_layers) if lora_layers else 0  # layers below the first adapted one save nothing
    adapted = len(set(lora_layers)) if lora_layers else layers
    frozen_after = max(layers - first - adapted, 0)
    full_act = trace.fixed + adapted * trace.per_layer + frozen_after * trace.per_frozen_layer
    ckpt_act = trace.fixed + (layers - first) * trace.layer_input + trace.per_layer
    mib = 2**20
    if cfg.train.gradient_checkpointing:
        act, other, other_name = ckpt_act, full_act, "activations without checkpointing"
        act_note = (f"checkpointing: {layers - first} layer inputs of {trace.layer_input / mib:.1f} MiB + one layer "
                    f"recomputed ({trace.per_layer / mib:.1f} MiB)")
    else:
        act, other, other_name = full_act, ckpt_act, "activations with checkpointing"
        act_note = (f"{batches.max_rows} x {batches.max_width} tokens: {adapted} layers x "
                    f"{trace.per_layer / mib:.1f} MiB" + (f" + {frozen_after} frozen x "
                                                          f"{trace.per_frozen_layer / mib:.1f}" if frozen_after else "")
                    + f" + {trace.fixed / mib:.1f} MiB")
    rows = min(batches.max_trained, CHUNK_ROWS)
    head = rows * params.vocab * (4 + (2 if amp is not None else 0)) + 2 * batches.max_trained * params.hidden * 4
    if params.head_trained:
        head += 2 * params.vocab * params.hidden * 4  # dL/dW accumulated in the forward, and each chunk's product
    temps = 0 if device == "cuda" else 2 * 4 * params.largest_trainable  # CPU AdamW: sqrt, then divide
    # forward/backward: the saved activations with the loss's buffers, freed layer by layer as gradients fill in;
    # the optimizer step: every gradient and the step's temporaries (activations are gone by then)
    step = max(act + head, grads + temps)
    evals = 0
    if cfg.eval.suites:
        from shipsft.eval.drift import BUDGET

        evals = BUDGET * 4 * (2 if m != "full" and cfg.eval.kl_to_base else 1)
    save = 4 * params.total if m == "full" else adapter
    moment, working = max((("step", step), ("eval", evals), ("save", save)), key=lambda x: x[1])
    slack = int(ALLOCATOR_SLACK[allocator] * working)
    linear = "4 B" if linear_bytes == 4 else f"{linear_bytes:g} B (linear layers) / 4 B"
    comps = [
        Component("runtime", runtime, "Python, torch, transformers, tokenizer and data (measured in this process)"
                  if device == "cpu" else "CUDA context and cuBLAS workspace"),
        Component("weights", weights, f"{params.total - (0 if m == 'full' else params.trainable):,} parameters at "
                  + linear),
        Component("adapter", adapter, f"{params.trainable:,} LoRA parameters, fp32" if adapter else "none"),
        Component("gradients", grads, f"fp32, one per trainable parameter ({params.trainable:,})"),
        Component("optimizer states", optim, cfg.optim.name),
        Component("activations", act, act_note),
        Component("LM head / loss chunk", head, f"{rows:,} x {params.vocab:,} fp32 logits block, dL/dh of "
                  f"{batches.max_trained:,} trained positions" + (", dL/dW" if params.head_trained else "")),
        Component("optimizer step temporaries", temps, "CPU AdamW: 2 x the largest trainable tensor" if temps else
                  "fused kernel"),
        Component("eval (drift logits)", evals, "teacher-forced logits budget" if evals else "no eval suites"),
        Component("checkpoint save copy", save, "safetensors copies the weights it writes"),
        Component("allocator slack", slack, f"{ALLOCATOR_SLACK[allocator]:.0%} of the {moment} working set "
                  f"({allocator})"),
        Component(other_name, other, "for comparison; not in the peak"),
    ]
    peak = runtime + weights + adapter + optim + working + slack
    return MethodPlan(m, comps, int(peak), moment)


# ------------------------------------------------------------------------------------------------------------------
# time, recommendation, the whole plan


def measure_throughput(cfg: RunConfig, config_path: Path | None, steps: int, scratch: Path) -> float:
    """Processed tokens per second of `steps` real optimizer steps of this config (task evals off, run folder in
    `scratch`), read from the steps' own records: tokens / training time (the first step included)."""
    from shipsft.runs.layout import RunFolder
    from shipsft.runs.sinks import read_metrics
    from shipsft.train.run import run_train

    quick = cfg.model_copy(update={
        "train": cfg.train.model_copy(update={"max_steps": steps, "save_every": None, "eval_every": None}),
        "eval": type(cfg.eval)(), "data": cfg.data.model_copy(update={"eval": []}),
        "output": cfg.output.model_copy(update={"dir": str(scratch), "name": "throughput", "export": None})})
    run_train(quick, config_path=config_path, skip_audit=True)
    recs = [m for m in read_metrics(RunFolder(scratch / "throughput")) if "loss" in m]
    trained = sum(m["trained_tokens"] for m in recs)
    seconds = trained / recs[-1]["trained_tok_s"]
    return sum(m["tokens"] for m in recs) / seconds


def default_memory(device: str) -> int | None:
    """The device's memory: this machine's RAM for cpu, GPU 0's for cuda (None where there is none)."""
    import os

    if device == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None


def _amp(cfg: RunConfig, device: str):
    import torch

    from shipsft.model.precision import autocast_dtype

    if device == "cuda":  # bf16 autocast on every GPU shipsft targets (A100, H100, H200: native bf16)
        return None if cfg.train.precision == "fp32" else torch.bfloat16
    return autocast_dtype(cfg.train.precision, torch.device("cpu"))


def with_method(cfg: RunConfig, name: str) -> RunConfig:
    """cfg trained with another method (LoRA settings kept, or the defaults when the config is full FT)."""
    if name == cfg.method.name:
        return cfg
    method = {"name": name} if name == "full" else {"name": name, "lora": (cfg.method.lora.model_dump()
                                                                            if cfg.method.lora else {})}
    return cfg.model_copy(update={"method": type(cfg.method).model_validate(method)})


# LoRA stores about 2 bits of information per adapter parameter ("LoRA Without Regret", Schulman et al., Thinking
# Machines 2025, citing Allen-Zhu & Li, "Physics of Language Models 3.3", 2024); a trained token carries at most a
# few bits of new information, so we count one bit per trained token as the data's demand.
BITS_PER_ADAPTER_PARAM = 2.0
BITS_PER_TRAINED_TOKEN = 1.0


def recommend(cfg: RunConfig, device: str, memory: int | None, peaks: dict[str, int], params: dict[str, Params],
              batches: Batches) -> tuple[str, list[str]]:
    """LoRA, QLoRA or full fine-tuning for this data, memory and task, with the reasons."""
    reasons = []
    fits = {m: memory is None or p <= memory for m, p in peaks.items()}
    lora = params.get("lora")
    demand = batches.trained_per_epoch * BITS_PER_TRAINED_TOKEN
    capacity = (lora.trainable if lora else 0) * BITS_PER_ADAPTER_PARAM
    forgetting = [g.metric for g in cfg.eval.gates if g.metric in ("general_loss_increase", "probe_kl",
                                                                   "kl_to_base")]
    gb = lambda b: f"{b / GB:.2f} GB"  # noqa: E731
    if memory is not None:
        for m, p in peaks.items():
            reasons.append(f"{m}: {gb(p)} planned peak {'fits' if fits[m] else 'does not fit'} in {gb(memory)}")
    big_data = lora is not None and demand > capacity
    if lora is not None:
        reasons.append(f"data: {batches.trained_per_epoch:,} trained tokens per epoch vs a rank-"
                       f"{cfg.method.lora.r if cfg.method.lora else 16} adapter of {lora.trainable:,} parameters "
                       f"(~{BITS_PER_ADAPTER_PARAM:g} bits each, LoRA Without Regret 2025): "
                       + ("more than the adapter can store; full fine-tuning (or a larger rank) learns more"
                          if big_data else "the adapter can hold it; LoRA matches full fine-tuning at this size"))
    if forgetting:
        reasons.append(f"the config gates on {', '.join(forgetting)}: LoRA forgets less of the base model than full "
                       "fine-tuning (Biderman et al., \"LoRA Learns Less and Forgets Less\", TMLR 2024)")
    order = (["full", "lora", "qlora"] if big_data and not forgetting else ["lora", "qlora", "full"])
    for m in order:
        if m in peaks and fits[m]:
            if m == "qlora":
                reasons.append("qlora: the frozen weights in 4-bit NF4 (Dettmers et al. 2023) are what makes it fit")
            return m, reasons
    reasons.append("nothing fits: turn on train.gradient_checkpointing, lower train.micro_batch_tokens, or plan for "
                   "more memory / more GPUs")
    return "none fits", reasons


def plan(cfg: RunConfig, config_path: Path | None, device: str | None = None, memory: int | None = None,
         gpus: int = 1, allocator: str = "system", throughput: float | None = None, measure_steps: int = 0,
         scratch: Path | None = None) -> Plan:
    """The memory plan of `cfg` (and of the other methods for comparison), a time estimate and a recommendation."""
    from shipsft.data.pack import padding_id
    from shipsft.data.pipeline import prepare
    from shipsft.model.attention import rows_join
    from shipsft.model.load import hf_config
    from shipsft.model.locate import load_tokenizer
    from shipsft.model.precision import pick_device
    from shipsft.steps.resolve import resolve

    device = device or pick_device().type
    if device == "cpu" and cfg.method.name == "qlora":
        raise ConfigError(["method.name=qlora needs a CUDA GPU (bitsandbytes' NF4 kernels). Fix: plan with "
                           "--device cuda, or method.name=lora"])
    if gpus < 1:
        raise ConfigError(["--gpus must be at least 1"])
    tok = load_tokenizer(cfg.model)
    prep = prepare(cfg.data, tok, "train", strict=False, rejects_path=None)
    if not prep.rendered:
        raise ConfigError([f"{config_path}: data.train has no usable example (run `shipsft audit {config_path}`)"])
    resolved = resolve(cfg, prep)
    cfg = resolved.config
    conf = hf_config(cfg.model)
    if conf is None:
        raise ConfigError([f"model.path: {cfg.model.path} has no config.json, and the plan counts the model's "
                           "parameters from it. Fix: point model.path at the model's full folder."])
    methods = [cfg.method.name] + [m for m in ("lora", "full", "qlora") if m != cfg.method.name
                                   and (m != "qlora" or device == "cuda")]
    params = {m: count_params(with_method(cfg, m), conf) for m in methods}  # on the meta device: no memory
    # measured after the model's class and peft are imported (count_params did): importing them costs ~90 MB of
    # RSS, which `shipsft train` pays before its first step (a 0.1M-parameter Llama: 335 MB after the data, 429 MB
    # after loading the model)
    runtime = rss_now() if device == "cpu" else CUDA_CONTEXT
    alloc = "cuda" if device == "cuda" else allocator
    batching = Batching.of(cfg.data, cfg.train, rows_join(cfg.model, cfg.train, conf))
    batches = largest_micro_batch(prep.rendered, resolved.plan, cfg.train.seed, batching, padding_id(tok))
    amp = _amp(cfg, device)
    plans = {}
    traces: dict[str, Trace] = {}
    for m in methods:
        c = with_method(cfg, m)
        key = "full" if m == "full" else "lora"  # QLoRA's adapters save what LoRA's do
        if key not in traces:
            traces[key] = trace_activations(c, conf, batches.example, amp)
        plans[m] = method_plan(c, params[m], traces[key], batches, device, alloc, runtime, amp)
    if gpus > 1:  # DDP replicas: every GPU holds the whole plan, plus DDP's gradient buckets (one more copy)
        for m, mp in plans.items():
            grads = next(c.bytes for c in mp.components if c.name == "gradients")
            mp.components.append(Component("DDP gradient buckets", grads, "data parallel: one copy of the gradients"))
            mp.peak += grads
    tokens = batches.tokens_per_epoch * batches.epochs if not cfg.train.max_steps else \
        batches.tokens_per_epoch * cfg.train.max_steps / max(1, math.ceil(batches.total_steps / batches.epochs))
    note = ""
    if throughput is None and measure_steps > 0:
        if device != pick_device().type:
            note = f"not measured: this machine has no {device}; give --throughput (processed tokens/s on one GPU)"
        else:
            import tempfile

            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                t0 = time.perf_counter()
                throughput = measure_throughput(cfg, config_path, measure_steps, Path(tmp))
                note = (f"measured: {measure_steps} steps here ({time.perf_counter() - t0:.0f} s with loading), "
                        f"{throughput:,.0f} processed tokens/s")
    elif throughput is not None:
        note = f"given: {throughput:,.0f} processed tokens/s per device"
    time_s = tokens / (throughput * gpus) if throughput else None
    if time_s is not None:
        note += f"; {tokens:,.0f} tokens over {batches.total_steps} steps / {gpus} device(s); evals not included"
    elif not note:
        note = "no throughput: give --throughput, or --measure-steps N to measure N steps here"
    memory = memory if memory is not None else default_memory(device)
    choice, reasons = recommend(cfg, device, memory, {m: p.peak for m, p in plans.items()}, params, batches)
    notes = [f"largest micro-batch: {batches.max_rows} row(s) x {batches.max_width} tokens "
             f"(train.micro_batch_tokens {cfg.train.micro_batch_tokens:,}, data.max_length {cfg.data.max_length}); "
             f"activations traced at 1/{traces[('full' if cfg.method.name == 'full' else 'lora')].scale} width"
             if traces[("full" if cfg.method.name == "full" else "lora")].scale > 1 else
             f"largest micro-batch: {batches.max_rows} row(s) x {batches.max_width} tokens "
             f"(train.micro_batch_tokens {cfg.train.micro_batch_tokens:,}, data.max_length {cfg.data.max_length})"]
    if gpus > 1:
        notes.append(f"--gpus {gpus}: planned as data-parallel replicas (each GPU holds everything); shipsft does "
                     "not launch multi-GPU runs yet")
    return Plan(device, gpus, memory, alloc, plans[cfg.method.name],
                {m: p.peak for m, p in plans.items() if m != cfg.method.name}, choice, reasons, time_s, note,
                batches, params[cfg.method.name], notes)


def parse_memory(text: str) -> int:
    """'80GB', '80G', '24GiB', '512MB', '1.5TB' -> bytes (GB = 10^9, GiB = 2^30)."""
    import re

    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(I?B?)\s*", text.upper())
    if not m:
        raise ConfigError([f"--memory {text!r}: expected a size such as 80GB, 24GiB or 512MB"])
    value, unit, suffix = float(m.group(1)), m.group(2), m.group(3)
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit]
    return int(value * ((1024 if suffix.startswith("I") else 1000) ** power))
