"""The model card (README.md) written into every export: what this model is, how it was made, how well it does,
and how to serve it so that it behaves as trained.

    text = model_card(CardFacts(...))

Everything in it is read from the run folder (config.yaml, manifest.json, promotion.json, audit.json) or measured by
the export (sizes, the parity check); nothing is typed by hand. A card describes a whole run, so it takes the run's
RunConfig (the one exception to "a function takes the section it needs").
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from shipsft.config import RunConfig


@dataclass
class CardFacts:
    name: str
    cfg: RunConfig
    manifest: dict
    promotion: dict | None
    data_files: list[dict]  # audit.json stats.provenance.files: role, path, sha256, examples, licenses
    template: str  # the chat template the export carries (the training one, kwargs baked in)
    eot_token: str | None
    stop_ids: list[int]
    merge: str  # MergeInfo.summary()
    hf_dtype: str | None  # None: no HF folder
    gguf_name: str | None  # None: no GGUF
    gguf_type: str | None
    modelfile_note: str = ""
    base_license: str | None = None
    note: str = ""  # e.g. "not promoted: ..."
    parity: list[str] = field(default_factory=list)  # ParityReport.lines(); empty: not checked yet
    sizes: dict[str, int] = field(default_factory=dict)  # what -> bytes
    adapter_repo: str | None = None  # the card of an adapter pushed alone (--adapter-only) to this hub id: unmerged


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


def front_matter(f: CardFacts) -> str:
    tags = ["shipsft", f.cfg.method.name, "text-generation"] + (["gguf"] if f.gguf_name else [])
    lines = ["---", f"base_model: {json.dumps(f.cfg.model.path)}"]
    if f.base_license:
        lines.append(f"license: {f.base_license}")
    lines += [f"library_name: {'peft' if f.adapter_repo else 'transformers'}", "pipeline_tag: text-generation",
              "tags:"] + [f"- {t}" for t in tags]
    return "\n".join(lines + ["---"])


def method_rows(cfg: RunConfig) -> list[tuple[str, str]]:
    rows = [("method", cfg.method.name)]
    if cfg.method.lora is not None:
        lc = cfg.method.lora
        rows += [("LoRA r / alpha / dropout", f"{lc.r} / {_fmt(lc.alpha)} / {lc.dropout}"),
                 ("target modules", lc.target_modules if isinstance(lc.target_modules, str) else
                  ", ".join(lc.target_modules)),
                 ("DoRA / rsLoRA", f"{lc.use_dora} / {lc.use_rslora}")]
        if lc.modules_to_save:
            rows.append(("modules trained in full", ", ".join(lc.modules_to_save)))
        if lc.layers is not None:
            rows.append(("layers", str(lc.layers)))
    # the optimizer and train sections as resolved in the run's config.yaml (every value that was chosen)
    for section in ("optim", "train"):
        values = getattr(cfg, section).model_dump(mode="json")
        rows.append((section, ", ".join(f"{k} {_fmt(v)}" for k, v in values.items() if v is not None)))
    d = cfg.data
    template = d.template or "the model's own"
    rows += [("data", f"max_length {d.max_length}, packing {d.packing}, loss mask {d.mask}, end-of-turn trained "
                      f"{d.train_eot}, system message {d.system_message}, template {template}")]
    return rows


def eval_section(f: CardFacts) -> list[str]:
    p = f.promotion
    if not p:
        return ["No eval suites ran in this run (no promotion decision)."]
    out = []
    rows = p.get("before_after") or []
    if rows:
        out += ["| suite | metric | n | base | tuned | delta | 95% CI |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r.get('suite')} | {r.get('metric')} | {r.get('n')} | {_fmt(r.get('base'))} | "
                f"{_fmt(r.get('tuned'))} | {_fmt(r.get('delta'))} | [{_fmt(r.get('lo'))}, {_fmt(r.get('hi'))}] |"
                for r in rows]
        out.append("")
    gates = p.get("gates") or []
    if gates:
        out += ["| gate | value | passed |", "|---|---|---|"]
        out += [f"| {g.get('metric')} {g.get('op')} {_fmt(g.get('threshold'))} | {_fmt(g.get('value'))} | "
                f"{'yes' if g.get('passed') else 'NO'} |" for g in gates]
        out.append("")
    decision = "promoted" if p.get("promoted") else "NOT promoted"
    out.append(f"Gate decision: **{decision}** (checkpoint step {p.get('step')}, selected by "
               f"{p.get('select_metric')} = {_fmt(p.get('value'))}).")
    return out


def data_section(f: CardFacts) -> list[str]:
    fps = f.manifest.get("data_fingerprint") or {}
    out = ["Data fingerprints (sha256 over files, data config and every token id/mask): "
           + ", ".join(f"{k} `{v}`" for k, v in fps.items()), ""]
    if f.data_files:
        out += ["| role | file | examples | sha256 | license fields |", "|---|---|---|---|---|"]
        for d in f.data_files:
            lic = ", ".join(str(x) for x in d.get("licenses") or []) or "none recorded"
            out.append(f"| {d.get('role')} | `{d.get('path')}` | {d.get('examples')} | `{str(d.get('sha256'))[:16]}` "
                       f"| {lic} |")
    return out


def serve_section(f: CardFacts) -> list[str]:
    out = []
    if f.adapter_repo:
        out += ["**peft** (downloads the base named in adapter_config.json at the commit trained on; the tokenizer "
                "here carries the training template):", "", "```python",
                "from peft import AutoPeftModelForCausalLM",
                "from transformers import AutoTokenizer",
                f'model = AutoPeftModelForCausalLM.from_pretrained("{f.adapter_repo}")',
                f'tok = AutoTokenizer.from_pretrained("{f.adapter_repo}")', "```", ""]
    if f.hf_dtype:
        out += ["**transformers** (the template and the end-of-turn stop ids are in this folder):", "", "```python",
                "from transformers import AutoModelForCausalLM, AutoTokenizer",
                'tok = AutoTokenizer.from_pretrained("hf")',
                'model = AutoModelForCausalLM.from_pretrained("hf")',
                'inputs = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,',
                '                                 return_tensors="pt", return_dict=True)',
                "out = model.generate(**inputs, max_new_tokens=256, do_sample=False)  # stops at generation_config eos",
                'print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))', "```", "",
                "**vLLM** (OpenAI-compatible server; `--generation-config` makes the eos list the stop ids):", "",
                "```bash", "vllm serve ./hf --generation-config ./hf", "```", ""]
    if f.gguf_name:
        out += ["**llama.cpp** (`--jinja` renders with the chat template embedded in the GGUF):", "", "```bash",
                f"llama-server -m gguf/{f.gguf_name} --jinja", "```", "",
                "**Ollama** (`gguf/Modelfile`: " + (f.modelfile_note or "see the file") + "):", "", "```bash",
                f"cd gguf && ollama create {f.name} -f Modelfile && ollama run {f.name}", "```", ""]
    out.append("Greedy decoding (temperature 0) reproduces the generations the parity check compared.")
    if f.cfg.data.system_message != "keep":
        out.append(f"Trained with `data.system_message: {f.cfg.data.system_message}`: "
                   + ("put system instructions into the first user turn." if f.cfg.data.system_message == "merge"
                      else "the model never saw a system message in training."))
    return out


def model_card(f: CardFacts) -> str:
    cfg, m = f.cfg, f.manifest
    made = f"made with shipsft {(m.get('packages') or {}).get('shipsft', '')} ({cfg.method.name})"
    lines = [front_matter(f), "", f"# {f.name}", "",
             f"A {cfg.method.name} adapter for `{cfg.model.path}` {made}; the base is not included." if f.adapter_repo
             else f"A fine-tune of `{cfg.model.path}` {made}; exported with the adapter merged ({f.merge}).", ""]
    if f.note:
        lines += [f"Note: {f.note}", ""]
    lines += ["## Files", ""]
    lines += (["- `adapter_model.safetensors`, `adapter_config.json`: the adapter (peft); the tokenizer files with the "
               "training template"] if f.adapter_repo else
              ["Paths are relative to the export folder (by default `<run>/export`).", ""])
    if f.hf_dtype:
        lines.append(f"- `hf/`: Hugging Face folder, {f.hf_dtype} safetensors"
                     + (f" ({f.sizes['hf'] / 1e6:.0f} MB)" if "hf" in f.sizes else ""))
    if f.gguf_name:
        lines.append(f"- `gguf/{f.gguf_name}`: GGUF, {f.gguf_type}"
                     + (f" ({f.sizes['gguf'] / 1e6:.0f} MB)" if "gguf" in f.sizes else "") + "; `gguf/Modelfile`")
    lines += ["", "## Training", "", f"Base model: `{cfg.model.path}`"
              + (f" (loaded from `{m['model_dir']}`)" if m.get("model_dir") else ""), "",
              "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in method_rows(cfg)]
    facts = [f"Config hash `{m.get('config_hash')}`", f"seed {m.get('seed')}"]
    facts += [f"optimizer steps {m['steps']}"] if m.get("steps") is not None else []
    facts += [f"trainable parameters {m['trainable_params']:,} of {m['total_params']:,}"] \
        if m.get("trainable_params") and m.get("total_params") else []
    facts += [f"command `{' '.join(m['command'])}`"] if m.get("command") else []
    facts += ["packages " + ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items() if v)]
    lines += ["", "; ".join(facts) + ".",
              "", "## Data", ""] + data_section(f)
    lines += ["", "## Evaluation", ""] + eval_section(f)
    lines += ["", "## Chat template and stopping", "",
              f"The exact template training rendered with (ends an assistant turn with {f.eot_token!r}; generation "
              f"stops at token ids {f.stop_ids}):", "", "```jinja", f.template, "```", ""]
    lines += ["## Train/serve parity check", ""]
    lines += ([f"- {x}" for x in f.parity] if f.parity else ["Not run (`shipsft export RUN --check`)."])
    lines += ["", "## How to serve it", ""] + serve_section(f)
    return "\n".join(lines) + "\n"
