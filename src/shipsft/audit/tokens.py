"""Token-level audit checks: trained-token masks, length distributions, the padding of the loop's own micro-batches,
data size vs recipe, and provenance of the data files.

Pure functions over `Rendered` sequences (ids + mask) and plain numbers, so each is tested without a model.

    from shipsft.audit.tokens import check_masks, check_lengths
    findings, stats = check_masks(prepared.rendered, max_length=2048)
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipsft.audit.findings import MAX_EXAMPLES, Finding
from shipsft.data.pack import Batching, micro_batches, padded_tokens
from shipsft.data.store import prompt_counts, token_lengths, trained_counts
from shipsft.steps.auto import auto_batch_size
from shipsft.steps.batches import walk
from shipsft.steps.schedule import StepPlan


def histogram(values, bins: int = 30, lo: float | None = None, hi: float | None = None) -> dict:
    """{edges, counts} for the HTML plots (JSON-ready)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {"edges": [], "counts": []}
    lo = float(v.min()) if lo is None else lo
    hi = float(v.max()) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def percentiles(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {"n": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0, "sum": 0}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": len(v), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(v.max()),
            "mean": round(float(v.mean()), 2), "sum": int(v.sum())}


# ------------------------------------------------------------------------------------------------------------
# Masks


def check_masks(rendered: list, max_length: int | None = None) -> tuple[list[Finding], dict]:
    """Trained-token share per sequence, sequences that train on nothing, answers cut by max_length."""
    findings: list[Finding] = []
    n_trained = np.array([r.n_trained for r in rendered], dtype=np.int64)
    lengths = np.array([len(r.ids) for r in rendered], dtype=np.int64)
    share = n_trained / np.maximum(lengths, 1)
    zero = [r.source for r, k in zip(rendered, n_trained) if k == 0]
    # An answer is cut when trained tokens lie past max_length (before truncation) or the sequence was truncated
    # and its last token is a trained one (after truncation: the end-of-turn marker is gone).
    cut = []
    for r in rendered:
        untruncated_cut = max_length is not None and len(r.ids) > max_length and any(r.mask[max_length:])
        if untruncated_cut or (r.truncated and r.mask and r.mask[-1]):
            cut.append(r.source)
    stats = {"n_sequences": len(rendered), "trained_tokens": int(n_trained.sum()), "tokens": int(lengths.sum()),
             "trained_share": {**percentiles(share), "hist": histogram(share, 20, 0.0, 1.0)},
             "zero_trained": len(zero), "answers_cut": len(cut)}
    if zero:
        findings.append(Finding(
            "masks.zero_trained", "error",
            f"{len(zero)} sequence(s) have zero trained tokens: they cost compute and teach nothing (the usual sign "
            "of a mask built from markers the template does not produce, or of examples without an answer).",
            fix="check data.mask and that every example ends with an assistant answer; remove the rest",
            examples=zero))
    if cut:
        findings.append(Finding(
            "masks.answer_cut", "warning",
            f"{len(cut)} sequence(s) lose trained answer tokens to max_length={max_length}: the model learns "
            "answers that stop mid-way and never sees their end-of-turn marker.",
            fix="raise data.max_length (see lengths.recommended_max_length) or shorten/remove these examples",
            examples=cut))
    if len(rendered):
        low = [r.source for r, s in zip(rendered, share) if 0 < s < 0.02]
        if low:
            findings.append(Finding(
                "masks.low_share", "info",
                f"{len(low)} sequence(s) train on under 2% of their tokens (long prompt, short answer): "
                "most of their compute goes to context.",
                fix="fine for classification-style data; otherwise consider trimming the context", examples=low))
    return findings, stats


# ------------------------------------------------------------------------------------------------------------
# Lengths, recommended max_length, padding waste vs packing


def recommend_max_length(total_lengths, model_max: int | None = None, multiple: int = 64) -> int:
    """p99 of total lengths rounded up to a multiple of 64, capped by the model's positions."""
    if len(total_lengths) == 0:
        return multiple
    p99 = float(np.percentile(np.asarray(total_lengths), 99))
    rec = int(math.ceil(p99 / multiple) * multiple) or multiple
    return min(rec, model_max) if model_max else rec


MAX_WALKED_STEPS = 2000  # steps of the first epoch the batching figures walk (a larger set: its first 2,000)


def batch_figures(rendered: list, plan: StepPlan, seed: int, batching: Batching) -> dict:
    """The loop's own micro-batches over the first epoch (steps/batches.py: walk; data/pack.py: micro_batches): the
    share of positions that are padding (what each training step logs as `padding_share`), and the rows and
    micro-batches a step holds."""
    lengths = token_lengths(rendered)  # a store's index: the sequences themselves are read for the walked steps only
    steps = max(1, min(plan.steps_per_epoch, MAX_WALKED_STEPS))
    real = slots = rows = micro = 0
    for _, _, idx in walk(lengths, plan.rule, seed, steps):
        for group in micro_batches([rendered[i] for i in idx], batching):
            r, n = padded_tokens(group)
            real, slots, rows, micro = real + r, slots + n, rows + len(group), micro + 1
    return {"steps_walked": steps, "padding_share": round(1 - real / slots, 4) if slots else 0.0,
            "rows_per_step": round(rows / steps, 2), "micro_batches_per_step": round(micro / steps, 2),
            "packing": batching.packing, "joined": batching.joined}


def check_lengths(rendered: list, full_lengths: list[int], max_length: int, model_max: int | None, overlong: str,
                  batches: dict, packed: dict | None = None) -> tuple[list[Finding], dict]:
    """Token length distributions (prompt / answer / total; totals before any truncation), a recommended
    max_length, and the padding of the loop's own micro-batches (`batches`, from `batch_figures`; `packed`: the
    same with packing on, when it is off)."""
    findings: list[Finding] = []
    total = np.array(full_lengths, dtype=np.int64)
    prompt, answer = prompt_counts(rendered), trained_counts(rendered)
    rec = recommend_max_length(total, model_max)
    hi = float(max(total.max(initial=0), max_length))
    stats = {
        "prompt": {**percentiles(prompt), "hist": histogram(prompt, 30)},
        "answer": {**percentiles(answer), "hist": histogram(answer, 30)},
        "total": {**percentiles(total), "hist": histogram(total, 30, 0, hi)},
        "max_length": max_length, "recommended_max_length": rec, "model_max_positions": model_max,
        "n_over_max_length": int((total > max_length).sum()), "batches": batches,
        **({"batches_packed": packed} if packed is not None else {}),
    }
    if not len(total):
        return findings, stats
    over = int((total > max_length).sum())
    if model_max and max_length > model_max:
        findings.append(Finding(
            "lengths.beyond_model", "error",
            f"data.max_length={max_length} is beyond the model's {model_max} positions: positions past it were "
            "never trained and give garbage.", fix=f"set data.max_length <= {model_max}"))
    if over:
        # with data.overlong=error `shipsft train` refuses these, so the audit says so as an error
        fit_all = recommend_max_length([int(total.max())], model_max)
        fix = f"--set data.max_length={fit_all} fits every example"
        if rec < fit_all:
            fix += (f"; or --set data.max_length={rec} (p99, rounded up to 64) data.overlong=truncate, which cuts "
                    f"{int((total > rec).sum())}")
        findings.append(Finding(
            "lengths.over_max_length", "error" if overlong == "error" else "warning",
            f"{over} sequence(s) ({over / len(total):.1%}) are longer than data.max_length={max_length} (longest "
            f"{int(total.max())} tokens); with data.overlong={overlong} training "
            f"{'refuses to start' if overlong == 'error' else 'cuts them'}.",
            fix=fix + "; or remove the long ones",
            examples=[rendered[int(i)].source for i in np.flatnonzero(total > max_length)[:MAX_EXAMPLES]],
            data={"count": over}))
    elif max_length >= 2 * rec and max_length > 256:
        findings.append(Finding(
            "lengths.max_length_oversized", "info",
            f"data.max_length={max_length} is {max_length / rec:.1f}x the recommended {rec} (p99 of the data): "
            "packed rows and attention buffers are sized for sequences the data does not have.",
            fix=f"--set data.max_length={rec}"))
    share = batches["padding_share"]
    if packed is not None and share > 0.2 and packed["padding_share"] < share:
        findings.append(Finding(
            "lengths.padding_waste", "warning",
            f"without packing, {share:.0%} of the positions of the training micro-batches are padding (the loop's "
            f"own batches over the first {batches['steps_walked']} step(s)); with packing "
            f"{packed['padding_share']:.0%} would be.",
            fix="set data.packing: true (examples never attend to each other: position ids restart per example)"))
    else:
        findings.append(Finding(
            "lengths.summary", "info",
            f"total tokens p50/p90/p99/max = {int(np.percentile(total, 50))}/{int(np.percentile(total, 90))}/"
            f"{int(np.percentile(total, 99))}/{int(total.max())}; recommended max_length {rec}; the training "
            f"micro-batches are {share:.0%} padding ({batches['rows_per_step']:g} row(s) in "
            f"{batches['micro_batches_per_step']:g} micro-batch(es) a step)."))
    return findings, stats


# ------------------------------------------------------------------------------------------------------------
# Data size vs method, epochs and optimizer steps


def size_band(n_examples: int) -> str:
    if n_examples < 50:
        return "very few: even a style or format change usually takes 50+ examples"
    if n_examples < 500:
        return "enough for a style or format change with LoRA"
    if n_examples < 1000:
        return "between a style/format change and task specialisation"
    if n_examples < 10_000:
        return "task specialisation"
    if n_examples < 100_000:
        return "substantial behaviour change; full fine-tuning starts to pay"
    return "large; more data helps with diminishing returns"


# fewer optimizer steps than this is a warning: a rule of thumb, not a measured threshold (each step is one update;
# the data-sized defaults aim at about 120: steps/auto.py MIN_STEPS). The recipe bench (README, bench/recipe.py)
# saw classify_json at 65.7% after 26 steps and 94.0% after 127 on the same 1,200 examples.
MIN_STEPS_TO_LEARN = 50
# under this many examples the data set, not the step count, is what is too small (recipe.too_few)
MIN_EXAMPLES = 50


@dataclass(frozen=True)
class Updates:
    """Whether a run makes enough optimizer steps to learn from its data: the one rule behind both recipe.summary's
    words and the recipe.too_few_steps warning, so the two cannot disagree."""

    judged: bool  # False under MIN_EXAMPLES examples: the data size is the problem there (recipe.too_few)
    enough: bool
    words: str  # the clause recipe.summary ends with


def judge_updates(n_examples: int, plan: StepPlan) -> Updates:
    if n_examples < MIN_EXAMPLES:
        return Updates(False, True, "")
    if plan.total_steps < MIN_STEPS_TO_LEARN:
        return Updates(True, False, f"but {plan.total_steps} updates are too few to learn it (under "
                                    f"{MIN_STEPS_TO_LEARN}: recipe.too_few_steps)")
    return Updates(True, True, f"{plan.total_steps} updates are enough to learn it ({MIN_STEPS_TO_LEARN} or more)")


def check_recipe(n_examples: int, trained_tokens: int, method: str, plan: StepPlan) -> tuple[list[Finding], dict]:
    """Examples and tokens against the chosen method, epochs and optimizer steps (`plan`: steps/resolve.py)."""
    findings: list[Finding] = []
    epochs = plan.epochs
    band = size_band(n_examples)
    per_step = (f"{plan.rule.examples} examples" if plan.rule.examples is not None
                else f"up to {plan.rule.tokens:,} tokens")
    updates = judge_updates(n_examples, plan)
    verdict = f"{band}; {updates.words}" if updates.words else band
    stats = {"n_examples": n_examples, "trained_tokens": trained_tokens, "method": method,
             "epochs": round(epochs, 3), "band": band, "verdict": verdict, "examples_per_step": plan.rule.examples,
             "tokens_per_step": plan.rule.tokens, "optimizer_steps": plan.total_steps,
             "steps_per_epoch": plan.steps_per_epoch, "trained_tokens_seen": int(trained_tokens * epochs)}
    findings.append(Finding(
        "recipe.summary", "info",
        f"{n_examples:,} examples, {trained_tokens:,} trained tokens, method={method}, {epochs:.2f} epoch(s) in "
        f"{plan.total_steps} optimizer step(s) of {per_step}: {verdict}."))
    if not updates.enough:
        better = min(16, max(1, n_examples * max(1, round(epochs)) // 100))  # about 100 steps
        tokens = "train.batch_tokens=null " if plan.rule.examples is None else ""  # one batch setting at a time
        fix = f"--set {tokens}train.batch_size={better}"
        auto = auto_batch_size(n_examples)
        if plan.rule.examples is None or plan.rule.examples > auto:  # never "use auto" to a run that is auto
            fix += f"; or --set {tokens}train.batch_size=auto ({auto} examples per step for this data)"
        findings.append(Finding(
            "recipe.too_few_steps", "warning",
            f"the run makes only {plan.total_steps} optimizer step(s) ({per_step} each): too few updates to learn a "
            f"task from {n_examples:,} examples (each step is one update: in steps of {per_step} they make "
            f"{plan.steps_per_epoch} updates an epoch; in steps of {better} examples they would make "
            f"{math.ceil(n_examples / better)}).",
            fix=fix))
    if n_examples < MIN_EXAMPLES:
        findings.append(Finding(
            "recipe.too_few", "warning",
            f"only {n_examples} examples: fewer than the ~50 even a style/format LoRA usually needs; expect the "
            "model to memorise them.", fix="collect more demonstrations (50-500 for style/format, 1k-10k for a task)"))
    if method == "full" and n_examples < 10_000:
        findings.append(Finding(
            "recipe.full_on_small_data", "warning",
            f"full fine-tuning on {n_examples} examples: on small sets LoRA on every linear layer matches full "
            "fine-tuning closely (Schulman et al., LoRA Without Regret, 2025) while changing far fewer weights, "
            "so it forgets less of what the base model knew (Biderman et al., LoRA Learns Less and Forgets Less, "
            "2024).", fix="--set method.name=lora (all linear layers), or gather 10k+ examples"))
    if epochs > 2 and n_examples >= 500:
        findings.append(Finding(
            "recipe.epochs", "warning",
            f"{epochs:.1f} epochs over {n_examples} examples: repeating a set this size many times overfits it "
            "(the eval loss turns up while the train loss keeps falling) and erodes what the base model knew.",
            fix="--set train.epochs=2 and spend the budget on fresh examples; gate on an eval with early stopping"))
    elif epochs > 2:
        findings.append(Finding(
            "recipe.epochs", "info",
            f"{epochs:.1f} epochs over a small set ({n_examples} examples): small sets can need several passes, "
            "but watch for overfitting.", fix="watch the eval loss and task metric; enable eval.early_stopping"))
    return findings, stats


# ------------------------------------------------------------------------------------------------------------
# Provenance: files, hashes, licenses


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():  # a saved `datasets` folder: hash every file in a stable order
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            h.update(file_sha256(p).encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_LICENSE_KEYS = ("license", "licence", "license_name", "dataset_license")


def _field(rec: Any, key: str, default: Any = None) -> Any:
    return rec.get(key, default) if isinstance(rec, dict) else getattr(rec, key, default)


def check_provenance(paths: dict[str, list[str]], examples: dict[str, list], loaded_files: list | None = None
                     ) -> tuple[list[Finding], dict]:
    """Source files per role (train / eval / suite:name): size, sha256, example count and license fields.

    `loaded_files` are the loader's `FileInfo` records (path, sha256, n_records, licenses) when available; any file
    they do not cover is hashed here. Licenses also come from each example's `meta` (a `license` column kept by the
    format adapters). A file without any license is reported as info.
    """
    findings: list[Finding] = []
    known = {str(_field(f, "path")): f for f in (loaded_files or []) if _field(f, "path")}
    per_file_licenses: dict[str, set] = defaultdict(set)
    per_file_count: Counter = Counter()
    for exs in examples.values():
        for ex in exs:
            file = ex.source.rsplit(":", 1)[0]
            per_file_count[file] += 1
            meta = ex.meta or {}
            lic = next((meta[k] for k in _LICENSE_KEYS if meta.get(k)), None)
            if lic:
                per_file_licenses[file].add(str(lic))
    files = []
    for role, ps in paths.items():
        for p in ps:
            path, rec = Path(p), known.get(str(p))
            entry: dict[str, Any] = {"role": role, "path": str(p), "exists": path.exists()}
            if path.exists():
                entry["bytes"] = (sum(q.stat().st_size for q in path.rglob("*") if q.is_file()) if path.is_dir()
                                  else path.stat().st_size)
                entry["sha256"] = _field(rec, "sha256") or file_sha256(path)
            entry["examples"] = per_file_count.get(str(p), 0) or (_field(rec, "n_records", 0) if rec else 0)
            entry["licenses"] = sorted(set(_field(rec, "licenses", None) or []) | per_file_licenses.get(str(p), set()))
            files.append(entry)
    missing = [f["path"] for f in files if not f["licenses"]]
    if missing:
        findings.append(Finding(
            "provenance.license", "info",
            f"{len(missing)} data file(s) record no license (no `license` field in the records or the file's "
            "metadata): check that you may train on them before shipping the model.",
            fix="add a `license` field per record (kept in Example.meta), or document the source in the run notes",
            examples=missing))
    mixed = [f["path"] for f in files if len(f["licenses"]) > 1]
    if mixed:
        findings.append(Finding(
            "provenance.mixed_licenses", "info",
            f"{len(mixed)} file(s) mix several licenses; the most restrictive one binds the model.",
            fix="check that the licenses are compatible with your use", examples=mixed))
    return findings, {"files": files}
