"""The train/serve parity check: does the export serve exactly as the run trained? Each mismatch is a finding that
names what differs; any failed finding fails the export (`ParityFailed`, exit 1).

    report = check_export(src, ExportFolder(path), prompts=8, strict=True)
    report.ok, report.lines()

What it checks, in the order a served request meets it:
1. template   the exported tokenizer's chat template is the training template (kwargs baked in), byte for byte.
2. rendering  every training sequence, rendered by the EXPORTED tokenizer's own `apply_chat_template` (what a server
              calls, no kwargs) and tokenised by it, equals the text and ids training trained on (data.pipeline.prepare
              re-renders the run's data as training did). A template edited after training fails here, naming the
              first example and the first differing characters.
3. stop ids   generation_config.json's eos_token_id holds the trained end-of-turn id (what the masks trained the
              model to emit), so a server stops where training taught the model to stop; the GGUF's eos/eot likewise.
4. generation greedy generation from the export (its own template, its own generation_config eos ids) on N eval
              prompts equals greedy generation from the run's adapter on the base (training's prompt rendering and
              stop rule): the prompt ids are the same, and the adapter, teacher-forced on the export's output, picks
              the export's token at every step and the training-time stop token at the end. That is exactly "greedy
              decoding of the adapter gives the same output", at the cost of one forward pass instead of one per
              token (~2x faster on the 2-core CPU than generating twice). Exact for an f32 export; f16/bf16 exports
              round the weights, so differences there are reported, not failed.
5. gguf       the GGUF's template and eot id, its token list (= the tokenizer's, in id order), and every tensor against
              the HF export's weights within the quantisation step of its type (F32: exact; F16/BF16: the dtype's
              rounding; Q8_0: amax/127 per 32-value block; Q4_0: amax/8; ...), q/k permutation included.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from shipsft.data.pack import padding_id
from shipsft.data.pipeline import prepare
from shipsft.data.render import Renderer, apply_system_policy, end_of_turn_marker
from shipsft.errors import ShipError
from shipsft.eval.generate import KV_BUDGET, MAX_ROWS, greedy_ids, model_batches
from shipsft.eval.items import build_items, eval_renderer, split_reference, stop_ids
from shipsft.eval.suites import build_suite, generation_budget
from shipsft.export.folder import ExportFolder
from shipsft.export.source import RunSource
from shipsft.model.load import load_trained
from shipsft.runs.manifest import read_manifest


class ParityFailed(ShipError):
    """The export does not serve as the run trained (a finding names what differs)."""

    exit_code = 1


@dataclass
class Finding:
    check: str  # template | rendering | stop ids | generation | gguf | data
    ok: bool
    detail: str
    note: bool = False  # informational: never fails the check

    def line(self) -> str:
        mark = "note" if self.note else ("ok" if self.ok else "FAIL")
        return f"{mark:<4} {self.check}: {self.detail}"


@dataclass
class Generation:
    source: str
    messages: list[dict]  # the prompt conversation (system policy applied), as a chat request sends it
    prompt_ids: list[int]  # as the export's tokenizer renders it (what a server sends the model)
    max_new_tokens: int
    exported: str = ""  # the export's greedy output, decoded up to (not including) the stop token
    exported_ids: list[int] = field(default_factory=list)
    stopped: bool = False  # ended at one of its stop ids (else it ran to max_new_tokens)
    trained_prompt_ids: list[int] = field(default_factory=list)  # as training's eval renders the prompt
    agrees: bool = False  # the run's adapter picks the same token at every step and stops there too
    first_disagreement: str = ""


@dataclass
class ParityReport:
    findings: list[Finding] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok or f.note for f in self.findings)

    def add(self, check: str, ok: bool, detail: str, note: bool = False) -> None:
        self.findings.append(Finding(check, ok, detail, note))

    def lines(self) -> list[str]:
        return [f.line() for f in self.findings]

    def failures(self) -> list[str]:
        return [f"parity {f.check}: {f.detail}" for f in self.findings if not f.ok and not f.note]

    def to_json(self) -> dict:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings],
                "generations": [asdict(g) for g in self.generations]}


def first_difference(a: str, b: str) -> str:
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at character {k}: exported {a[max(0, k - 10):k + 30]!r} vs trained {b[max(0, k - 10):k + 30]!r}"


# ------------------------------------------------------------------------------------------------------ 1-3 text
def check_template(report: ParityReport, exported: str | None, trained: str) -> None:
    if exported is None:
        report.add("template", False, "the exported tokenizer has no chat template (a server would refuse chat "
                                      "requests or fall back to a default one)")
    elif exported != trained:
        report.add("template", False, "the exported chat template differs from the one training rendered with "
                                      f"({first_difference(exported, trained)})")
    else:
        report.add("template", True, f"the exported chat template is the training template ({len(trained)} chars)")


def check_rendering(report: ParityReport, src: RunSource, renderer: Renderer, export_tok) -> None:
    """Every training sequence re-rendered by the exported tokenizer, against what training trained on."""
    prep = prepare(src.cfg.data, renderer.tokenizer, "train", strict=False, rejects_path=None, renderer=renderer)
    trained_fp = (read_manifest(src.folder).get("data_fingerprint") or {}).get("train")
    if trained_fp and prep.fingerprint != trained_fp:
        report.add("data", True, f"the training data as rendered today has fingerprint {prep.fingerprint}, the run "
                                 f"recorded {trained_fp}: the data files or shipsft's rendering changed since "
                                 "training, so the rendering check compares against today's rendering", note=True)
    examples = {ex.source: ex for ex in prep.examples}
    n = same = skipped = 0
    first_bad = None
    for r in prep.rendered:
        ex = examples.get(r.source)
        if ex is None or ex.kind != "chat":
            skipped += 1
            continue
        msgs = apply_system_policy(ex.messages or [], renderer.system_message)
        if r.turn is not None:  # a prefix-unstable template: this sequence is the conversation through that turn
            msgs = msgs[: r.turn + 1]
        text = export_tok.apply_chat_template(msgs, tools=ex.tools, tokenize=False)
        ids = export_tok(text, add_special_tokens=False)["input_ids"]
        n += 1
        ok_ids = ids[: len(r.ids)] == r.ids if r.truncated else ids == r.ids
        if text == r.text and ok_ids:
            same += 1
        elif first_bad is None:
            why = first_difference(text, r.text) if text != r.text else "same text, different token ids"
            first_bad = f"{r.source}" + (f" (turn {r.turn})" if r.turn is not None else "") + f": {why}"
    if not n:
        report.add("rendering", True, f"no chat sequences to compare ({skipped} non-chat)", note=True)
    elif same == n:
        report.add("rendering", True, f"{n}/{n} training sequences render byte-identically with the exported "
                                      "tokenizer's apply_chat_template (same text, same token ids)")
    else:
        report.add("rendering", False, f"{n - same}/{n} training sequences render differently with the exported "
                                       f"tokenizer; first: {first_bad}")


def as_list(x) -> list[int]:
    return [] if x is None else list(x) if isinstance(x, (list, tuple)) else [x]


def check_stop_ids(report: ParityReport, gen_eos, eot_id: int | None, eot_token: str | None, where: str) -> None:
    eos = as_list(gen_eos)
    if eot_id is None:
        report.add("stop ids", True, f"{where}: the training template closes no turn with a special token; eos "
                                     f"ids {eos}", note=True)
    elif eot_id in eos:
        report.add("stop ids", True, f"{where}: eos ids {eos} include the trained end-of-turn {eot_token!r} "
                                     f"(id {eot_id})")
    else:
        report.add("stop ids", False, f"{where}: eos ids {eos} lack the trained end-of-turn {eot_token!r} (id "
                                      f"{eot_id}): a server would not stop where training taught the model to stop")


# --------------------------------------------------------------------------------------------------- 4 generation
def greedy(model, prompts: list[list[int]], stop: list[int], max_new_tokens: int, batch_size: int | str,
           pad_id: int) -> list[list[int]]:
    """Eval's greedy generation (`eval.generate.greedy_ids`: length-sorted left-padded batches sized as eval sizes
    them, rows leave when they stop) keeping the ids, cut before the stop token: a row stopped when it is shorter
    than max_new_tokens."""
    was_training = model.training
    model.eval()
    out: list = [None] * len(prompts)
    for chunk in model_batches(model, prompts, max_new_tokens, batch_size):
        new = greedy_ids(model, [prompts[i] for i in chunk], stop_ids=stop, max_new_tokens=max_new_tokens,
                         pad_id=pad_id)
        for i, seq in zip(chunk, new):
            out[i] = seq
    model.train(was_training)
    return out


@torch.no_grad()
def greedy_choices(model, prompts: list[list[int]], continuations: list[list[int]], batch_size: int | str,
                   pad_id: int) -> list[list[int]]:
    """The model's greedy (argmax) token at every position of each continuation and one past its end, given the
    prompt and the continuation before it: teacher forcing, one forward pass per batch instead of one per generated
    token. Greedy decoding reproduces a continuation exactly when these equal its tokens (and the extra one is a
    stop id when it stopped). Rows are right-padded, so each keeps positions 0..n-1 and padding only follows."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[int]] = []
    if batch_size == "auto":  # every position's logits are kept here: rows x width x vocab fp32 within KV_BUDGET
        width = max((len(p) + len(c) for p, c in zip(prompts, continuations)), default=1)
        vocab = model.get_output_embeddings().weight.shape[0]
        batch_size = max(1, min(MAX_ROWS, KV_BUDGET // (width * vocab * 4)))
    for start in range(0, len(prompts), batch_size):
        rows = [p + c for p, c in zip(prompts[start:start + batch_size], continuations[start:start + batch_size])]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, :len(r)] = torch.tensor(r)
            mask[k, :len(r)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        for k, (p, c) in enumerate(zip(prompts[start:start + batch_size], continuations[start:start + batch_size])):
            out.append(logits[k, len(p) - 1: len(p) + len(c)].argmax(-1).tolist())
    model.train(was_training)
    return out


def eval_items(src: RunSource, renderer: Renderer, n: int) -> tuple[list, int]:
    """(the first N eval items, their generation budget): the run's first eval suite as eval builds it (else its
    data.eval, else its training data, with eval's budget rule)."""
    from shipsft.data.formats import load_examples

    cfg = src.cfg
    er = eval_renderer(renderer.tokenizer, cfg.data)
    if cfg.eval.suites:
        suite = build_suite(cfg.eval.suites[0], er, cfg.eval, cfg.data.allow_any_role_order)
        return suite.items[:n], suite.max_new_tokens
    files = cfg.data.eval or cfg.data.train or [p for source in cfg.data.sources for p in source.path]  # a mixture
    examples = [ex for ex in load_examples(files, cfg.data.format, "error", None,
                                           cfg.data.allow_any_role_order).examples if ex.kind == "chat"][:n]
    items = build_items(er, examples)
    return items, generation_budget(items, None)


def export_generations(src: RunSource, renderer: Renderer, hf_dir: Path, n: int,
                       device: torch.device) -> tuple[list[Generation], list[int]]:
    """Greedy generations from the export on N eval prompts, as a server runs it: the prompt rendered by the
    export's tokenizer (no kwargs), generation stopped at its generation_config eos ids (returned too)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    items, max_new = eval_items(src, renderer, n)
    items = [it for it in items if it.example is not None and it.example.kind == "chat"]  # a server gets chats
    tok = AutoTokenizer.from_pretrained(hf_dir)
    stop = as_list(GenerationConfig.from_pretrained(hf_dir).eos_token_id)
    gens = []
    for it in items:
        ex = it.example
        prompt, _ = split_reference(ex)
        msgs = apply_system_policy(prompt, renderer.system_message) if isinstance(prompt, list) else \
            [{"role": "user", "content": prompt}]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tools=ex.tools, tokenize=False)
        gens.append(Generation(it.source, msgs, tok(text, add_special_tokens=False)["input_ids"], max_new,
                               trained_prompt_ids=it.prompt_ids))
    if not gens or not stop:
        return gens, stop
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).to(device)
    pad = padding_id(tok, stop)
    for g, ids in zip(gens, greedy(model, [g.prompt_ids for g in gens], stop, max_new, src.cfg.eval.batch_size,
                                   pad)):
        g.exported, g.exported_ids, g.stopped = tok.decode(ids, skip_special_tokens=True), ids, len(ids) < max_new
    del model
    return gens, stop


def first_departure(want: list[int], got: list[int], stopped: bool, stops: set[int], shared: set[int]) -> int | None:
    """Where greedy decoding with choices `got` (teacher-forced, one past the end) and stop ids `stops` leaves the
    continuation `want`: a different token, a stop where `want` goes on, or, where `want` stopped, a choice that is
    not a stop id of both sides (`shared`). None: it follows `want` exactly."""
    k = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b or b in stops), None)
    if k is None and stopped and got[len(want)] not in shared:
        k = len(want)
    return k


def adapter_agreement(src: RunSource, renderer: Renderer, gens: list[Generation], export_stop: list[int],
                      device: torch.device) -> None:
    """Does the run's adapter on the base (unmerged, as eval ran it), fed the training-side prompt, choose the
    export's token at every step, and stop (at an id both the training stop rule and the export's eos list hold)
    exactly where the export stopped? Sets `agrees` per generation."""
    tok = renderer.tokenizer
    model = load_trained(src.cfg.model, src.cfg.method, src.weights, device)
    stop = stop_ids(tok, model, renderer)
    pad = padding_id(tok, stop)
    choices = greedy_choices(model, [g.trained_prompt_ids for g in gens], [g.exported_ids for g in gens],
                             src.cfg.eval.batch_size, pad)
    for g, got in zip(gens, choices):
        k = first_departure(g.exported_ids, got, g.stopped, set(stop), set(stop) & set(export_stop))
        g.agrees = k is None
        if k is not None:
            want = tok.decode(g.exported_ids[k:k + 1]) if k < len(g.exported_ids) else "<stop>"
            g.first_disagreement = (f"generated token {k}: export {want!r}, adapter {tok.decode([got[k]])!r} "
                                    f"(id {got[k]})")
    del model


def check_generation(report: ParityReport, gens: list[Generation], strict: bool, why_not_strict: str) -> None:
    n = len(gens)
    bad_prompts = [g.source for g in gens if g.prompt_ids != g.trained_prompt_ids]
    if bad_prompts:
        report.add("generation", False, f"{len(bad_prompts)}/{n} eval prompts tokenise differently with the exported "
                                        f"tokenizer's template than in training (first: {bad_prompts[0]})")
    agree = sum(g.agrees for g in gens)
    stopped = sum(g.stopped for g in gens)
    text = (f"{agree}/{n} greedy generations from the export are the run's adapter's own greedy choice at every "
            f"token; {stopped}/{n} stopped at the end-of-turn token")
    if agree == n:
        report.add("generation", True, text)
        return
    g = next(g for g in gens if not g.agrees)
    report.add("generation", not strict, f"{text}; first difference {g.source}: {g.first_disagreement}"
               + ("" if strict else f" ({why_not_strict})"), note=not strict)


# --------------------------------------------------------------------------------------------------------- 5 gguf
def quant_bound(ref: np.ndarray, qtype: str) -> np.ndarray:
    """Per-element bound on |dequantised - reference| for one GGUF type: one quantisation step of its block."""
    a = np.abs(ref)
    if qtype == "F32":
        return np.zeros_like(ref)
    if qtype == "F16":
        return a * 2.0 ** -10 + 2.0 ** -24
    if qtype == "BF16":
        return a * 2.0 ** -7 + 1e-38
    blocks = ref.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    spread = blocks.max(axis=1, keepdims=True) - blocks.min(axis=1, keepdims=True)
    step = {"Q8_0": amax / 127, "Q4_0": amax / 8, "Q5_0": amax / 16, "Q4_1": spread / 15, "Q5_1": spread / 31}[qtype]
    # + the fp16 rounding of the stored scale (and min), felt by up to 127 / 15 / 31 steps
    return np.broadcast_to(step * 1.01 + amax * 2.0 ** -10, blocks.shape).reshape(ref.shape)


HF_ROUNDING = {"float32": 0.0, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}


def check_gguf(report: ParityReport, gguf_file: Path, hf_dir: Path, template: str, eot_id: int | None,
               gens: list[Generation] | None = None, stop: list[int] | None = None,
               batch_size: int | str = "auto") -> None:
    """The GGUF's metadata and every tensor against the HF export (read with gguf-py's reader, safetensors); with
    the export's generations, how often the GGUF's weights pick the same greedy token (`gguf_agreement`)."""
    import gguf
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    from shipsft.export.gguf_writer import permute, unpermute, vocabulary

    reader = gguf.GGUFReader(gguf_file)
    meta = {k: f.contents() for k, f in reader.fields.items()
            if k in ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                     "tokenizer.ggml.tokens")}
    name = gguf_file.name
    if meta.get("tokenizer.chat_template") != template:
        got = meta.get("tokenizer.chat_template") or ""
        report.add("gguf", False, f"{name}: the embedded chat template differs from the training template "
                                  f"({first_difference(got, template)})")
    else:
        report.add("gguf", True, f"{name}: the embedded chat template is the training template")
    if eot_id is not None:
        stops = [meta.get("tokenizer.ggml.eos_token_id"), meta.get("tokenizer.ggml.eot_token_id")]
        report.add("gguf", eot_id in stops, f"{name}: eos/eot ids {stops} "
                   + ("include" if eot_id in stops else "lack") + f" the trained end-of-turn id {eot_id}")
    cfg = AutoConfig.from_pretrained(hf_dir)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    tokens, _ = vocabulary(tok, cfg.vocab_size)
    same_tokens = list(meta.get("tokenizer.ggml.tokens") or []) == tokens
    report.add("gguf", same_tokens, f"{name}: {'the same' if same_tokens else 'a DIFFERENT'} token list as the "
                                    f"exported tokenizer ({len(tokens)} tokens)")

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    in_file = {t.name: t for t in reader.tensors}
    worst, bad, seen, weights, qtypes = {}, [], set(), {}, set()
    shards = sorted(Path(hf_dir).glob("*.safetensors"))
    for shard in shards:
        with safe_open(shard, framework="pt") as f:
            for key in f.keys():
                new = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if new is None:
                    bad.append(f"{key}: no GGUF name")
                    continue
                t = in_file.get(new)
                if t is None:
                    bad.append(f"{new} ({key}) missing from the GGUF")
                    continue
                seen.add(new)
                w = f.get_tensor(key)
                dtype = str(w.dtype).removeprefix("torch.")
                ref = w.float().numpy()
                if key.endswith(("q_proj.weight", "q_proj.bias")):
                    ref = permute(ref, n_head, n_head)
                elif key.endswith(("k_proj.weight", "k_proj.bias")):
                    ref = permute(ref, n_head, n_kv)
                got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape).astype(np.float32)
                qtype = t.tensor_type.name
                bound = quant_bound(ref, qtype) + np.abs(ref) * HF_ROUNDING.get(dtype, 2.0 ** -8)
                diff = np.abs(got - ref)
                worst[qtype] = max(worst.get(qtype, 0.0), float(diff.max()))
                if (diff > bound + 1e-12).any():
                    bad.append(f"{new}: max |diff| {diff.max():.3g} beyond the {qtype} step")
                if key.endswith(("q_proj.weight", "q_proj.bias")):
                    got = unpermute(got, n_head, n_head)
                elif key.endswith(("k_proj.weight", "k_proj.bias")):
                    got = unpermute(got, n_head, n_kv)
                weights[key] = torch.from_numpy(np.ascontiguousarray(got))
                if w.dim() > 1:
                    qtypes.add(qtype)
    extra = sorted(set(in_file) - seen)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    if "output.weight" in extra and tied:
        bad.append("output.weight is in the GGUF but the HF export ties lm_head to the embeddings")
        extra.remove("output.weight")
    if extra:
        bad.append(f"tensors only in the GGUF: {extra[:5]}")
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in sorted(worst.items()))
    if bad:
        report.add("gguf", False, f"{name}: {len(bad)} tensor problem(s); first: {bad[0]}")
    else:
        report.add("gguf", True, f"{name}: {len(seen)} tensors equal the HF export within their type's quantisation "
                                 f"step (max |diff| by type: {diffs})")
    if gens and not bad:
        gguf_agreement(report, name, hf_dir, weights, gens, stop or [], batch_size, exact=qtypes == {"F32"})


def gguf_agreement(report: ParityReport, name: str, hf_dir: Path, weights: dict, gens: list[Generation],
                   stop: list[int], batch_size: int | str, exact: bool) -> None:
    """The HF export's architecture with the GGUF's de-quantised weights, teacher-forced on the export's greedy
    output: the share of generated tokens (stop token included) it picks too. An F32 GGUF must pick all of them;
    a quantised one is reported: a LoRA update smaller than the quantisation step is rounded away (measured on the
    quickstart run: Q8_0 kept 97% of the tuned model's top-1 tokens on one prompt, Q4_1 52%)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.load_state_dict(weights, strict=False)  # a tied lm_head follows embed_tokens
    choices = greedy_choices(model, [g.prompt_ids for g in gens], [g.exported_ids for g in gens], batch_size,
                             0)  # pad: masked, and only after a row's tokens
    stops = set(stop)
    n = sum(len(g.exported_ids) + g.stopped for g in gens)
    same = sum(sum(a == b for a, b in zip(g.exported_ids, got)) + (g.stopped and got[len(g.exported_ids)] in stops)
               for g, got in zip(gens, choices))
    text = (f"{name}: its de-quantised weights pick the export's greedy token at {same}/{n} generated positions "
            f"({same / max(n, 1):.1%})")
    if exact:
        report.add("gguf", same == n, text)
    else:
        report.add("gguf", True, text + (" (quantised: the rest is the price of the quantisation)" if same < n
                                         else ""), note=True)


# --------------------------------------------------------------------------------------------------------- entry
def check_export(src: RunSource, folder: ExportFolder, renderer: Renderer, template: str, prompts: int,
                 strict: bool, why_not_strict: str = "") -> ParityReport:
    """Run every check on an export folder (the HF folder, and the GGUF when there is one)."""
    report = ParityReport()
    marker = end_of_turn_marker(renderer) if renderer.template is not None else None
    eot_id = renderer.tokenizer.convert_tokens_to_ids(marker) if marker is not None else None
    device = torch.device("cpu")
    gguf_file = folder.find_gguf()
    if folder.has_hf():
        from transformers import AutoTokenizer, GenerationConfig

        export_tok = AutoTokenizer.from_pretrained(folder.hf)
        check_template(report, export_tok.chat_template, template)
        if report.ok:  # with a different template every sequence differs: the one line above says why
            check_rendering(report, src, renderer, export_tok)
        check_stop_ids(report, GenerationConfig.from_pretrained(folder.hf).eos_token_id, eot_id, marker,
                       "generation_config.json")
        stop: list[int] = []
        if prompts:
            gens, stop = export_generations(src, renderer, folder.hf, prompts, device)
            adapter_agreement(src, renderer, gens, stop, device)
            check_generation(report, gens, strict, why_not_strict)
            report.generations = gens
        if gguf_file is not None:
            check_gguf(report, gguf_file, folder.hf, template, eot_id, report.generations, stop,
                       src.cfg.eval.batch_size)
    elif gguf_file is not None:
        report.add("gguf", True, f"{gguf_file.name}: no HF folder to compare the GGUF's tensors and generations "
                                 "with (export with --to hf too for the full check)", note=True)
        from shipsft.export.gguf_writer import read_metadata

        meta = read_metadata(gguf_file, ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                                         "tokenizer.ggml.eot_token_id"))
        check_template(report, meta.get("tokenizer.chat_template"), template)
        check_stop_ids(report, [meta.get("tokenizer.ggml.eos_token_id"), meta.get("tokenizer.ggml.eot_token_id")],
                       eot_id, marker, gguf_file.name)
    else:
        report.add("export", False, f"{folder.root}: no export found (no hf/config.json, no gguf/*.gguf). Fix: "
                                    "`shipsft export RUN` first")
    return report
