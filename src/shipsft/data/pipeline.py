"""The whole data pipeline for one split, run once: files -> examples -> rendered (ids + mask) -> rows.

    prep = prepare(cfg.data, tokenizer, "train", strict=True, rejects_path=folder.rejects("train"))
    prep.rows, prep.n_trained, prep.fingerprint

`strict=True` (training) raises every blocking problem at once: examples longer than data.max_length under
`data.overlong: error`, and examples that train on nothing (failure modes 7 and 13 in docs/failure-modes.md).
`strict=False` (the audit, preview) records them in `prep.problems` and carries on, so the audit can show them with
their full lengths; overlong examples are then left out of the rows. Rendering goes through the fingerprint-keyed
cache (`data/cache.py`), so a second `prepare` of an unchanged set does not tokenise again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipsft.config import DataConfig
from shipsft.data.mixture import SourceCount, is_mixture, mix, parts, recount
from shipsft.data.pack import Row, overlong_error, pack_examples, round_up, truncate_overlong
from shipsft.data.types import Example, Rendered
from shipsft.errors import DataError, ShipError


@dataclass
class Prepared:
    split: str
    examples: list[Example]
    rendered: list[Rendered]
    rows: list[Row]
    efficiency: float  # real tokens / row slots
    format: str
    renderer: Any  # shipsft.data.render.Renderer, or None when rendering itself failed (audit only)
    full_lengths: list[int]  # token length of each rendered sequence before any truncation
    max_length: int = 0  # data.max_length as used (resolved from 'auto')
    notes: list[str] = field(default_factory=list)
    files: list[Any] = field(default_factory=list)  # formats.FileInfo: path, sha256, n_records, licenses
    n_rejected: int = 0
    n_truncated: int = 0
    n_answer_cut: int = 0
    fingerprint: str = ""  # sha256 over data file hashes, the data config and every (ids, mask)
    problems: list[DataError] = field(default_factory=list)  # blocking problems (strict=False records them)
    overlong: list[int] = field(default_factory=list)  # indices into `rendered` longer than max_length
    zero_trained: list[int] = field(default_factory=list)  # indices into `rendered` with no trained token
    render_failed: bool = False  # the template raised (strict=False only; the error is in `problems`)
    mixture: list[SourceCount] = field(default_factory=list)  # per source (data.sources / data.replay), else empty

    @property
    def n_tokens(self) -> int:
        return sum(len(r.ids) for r in self.rendered)

    @property
    def lengths(self) -> list[int]:
        """Token length of every sequence as training sees it (after data.overlong: truncate): what steps/ counts."""
        return [len(r.ids) for r in self.rendered]

    @property
    def n_trained(self) -> int:
        return sum(r.n_trained for r in self.rows)


def model_max_positions(tokenizer) -> int | None:
    """The model's position limit from the config next to the tokenizer, else the tokenizer's own limit."""
    folder = Path(str(tokenizer.name_or_path))
    if (folder / "config.json").exists():  # only ever a local folder: never a hub lookup
        try:
            from transformers import AutoConfig

            conf = AutoConfig.from_pretrained(folder)
            conf = getattr(conf, "text_config", None) or conf
            n = getattr(conf, "max_position_embeddings", None)
            if n:
                return int(n)
        except Exception:  # noqa: BLE001 - an unreadable config: fall back to the tokenizer's limit
            pass
    n = getattr(tokenizer, "model_max_length", None)
    return int(n) if n and n < 10_000_000 else None  # transformers uses 1e30 for "unset"


def resolve_max_length(data: DataConfig, full_lengths: list[int], model_max: int | None) -> tuple[int, str | None]:
    """data.max_length, or for 'auto' the longest example rounded up to a multiple of 64 (capped by the model's
    positions), with the reason to print."""
    if data.max_length != "auto":
        return data.max_length, None
    longest = max(full_lengths, default=8)
    chosen = round_up(longest, 64)
    why = f"longest example {longest} tokens, rounded up to a multiple of 64"
    if model_max and chosen > model_max:
        chosen, why = model_max, f"longest example {longest} tokens, capped by the model's {model_max} positions"
    return chosen, f"data.max_length auto -> {chosen} ({why})"


# hashed as numpy arrays: ~0.1 s for 11 M tokens on the project's 2-core AMD EPYC, where a loop over tokens is minutes
def token_fingerprint(rendered: list[Rendered]) -> str:
    """sha256 over every sequence's length, ids and mask (hashed as numpy arrays, not token by token)."""
    import numpy as np

    lengths = np.fromiter((len(r.ids) for r in rendered), dtype=np.int64, count=len(rendered))
    total = int(lengths.sum())
    ids = np.fromiter((t for r in rendered for t in r.ids), dtype=np.int64, count=total)
    mask = np.fromiter((m for r in rendered for m in r.mask), dtype=np.uint8, count=total)
    h = hashlib.sha256(lengths.tobytes())
    h.update(ids.tobytes())
    h.update(mask.tobytes())
    return h.hexdigest()


def load_split(data: DataConfig, split: str, rejects_path: Path | None):
    """Read and validate one split's files (formats.LoadResult). Skipped records (data.on_invalid: skip) go to
    data.rejects_file, else to `rejects_path`."""
    from shipsft.data.formats import load_examples
    from shipsft.data.hub import ref_for

    paths = data.train if split == "train" else data.eval
    if not paths:
        raise DataError([f"data.{split}: no files configured. Fix: set data.{split} to one or more JSONL/JSON/"
                         "Parquet/CSV files, saved datasets folders or hub dataset ids."])
    rejects = data.rejects_file or (str(rejects_path) if rejects_path is not None else None)
    return load_examples(paths, data.format, data.on_invalid, rejects, data.allow_any_role_order,
                         ref_for(data, split))


def renderer_for(data: DataConfig, tokenizer, examples: list[Example]):
    """The configured renderer; a chat template is only required when some example is a conversation."""
    from shipsft.data.render import load_renderer

    return load_renderer(tokenizer, data, need_template=any(ex.kind == "chat" for ex in examples))


def zero_trained_error(rendered: list[Rendered], idx: list[int], mode: str) -> DataError:
    empty = [rendered[i] for i in idx]
    lines = [f"{len(empty)} example(s) have zero trained tokens after rendering and masking "
             f"(mask mode {mode!r}), so they would teach nothing:"]
    lines += [f"  {x.source}" + (" (its answer was cut by truncation)" if x.truncated else "") for x in empty[:10]]
    if len(empty) > 10:
        lines.append(f"  ... and {len(empty) - 10} more")
    fix = "check that each example has an assistant answer inside the trained part (data.mask), or remove them"
    if any(x.truncated for x in empty):
        fix += "; raise data.max_length so truncation keeps the answers"
    lines.append(f"Fix: {fix}.")
    return DataError(lines)


def prepare(data: DataConfig, tokenizer, split: str, *, strict: bool, rejects_path: Path | None,
            renderer=None) -> Prepared:
    """Load, validate, render, check and pack one split (module docstring)."""
    from shipsft.data.render import no_stop_problem, parse_string_arguments

    mixed = split == "train" and is_mixture(data)
    loads = load_sources(data, rejects_path) if mixed else []
    loaded = merge_loaded(loads) if mixed else load_split(data, split, rejects_path)
    report: list[SourceCount] = []
    try:
        r = renderer or renderer_for(data, tokenizer, loaded.examples)
        no_stop = no_stop_problem(r) if any(ex.kind == "chat" for ex in loaded.examples) else None
        if no_stop is not None and strict:
            raise no_stop
        if mixed:  # each source renders with its own format and mask; the mixture draws from them
            rendered, report = mix(data, [render_cached(renderer_for(p.data, tokenizer, one.examples), one, p.data)
                                          for one, p in loads])
        else:
            rendered = render_cached(r, loaded, data)
    except ShipError as e:
        if strict:
            raise
        # the audit still runs its text-level checks on the examples, and reports this as an error
        return Prepared(split, loaded.examples, [], [], 0.0, loaded.format, None, [], 0, list(loaded.notes),
                        list(loaded.files), loaded.n_rejected, problems=[e], render_failed=True)
    full_lengths = [len(x.ids) for x in rendered]
    max_length, why = resolve_max_length(data, full_lengths, model_max_positions(tokenizer))
    data = data.model_copy(update={"max_length": max_length})
    n_trunc = n_cut = 0
    if data.overlong == "truncate":
        n_trunc, n_cut = truncate_overlong(rendered, data.max_length)
    packed = pack_examples(rendered, data.max_length, data.packing)
    zero = [i for i, x in enumerate(rendered) if x.n_trained == 0]  # after truncation: a cut-away answer counts
    problems = [no_stop] if no_stop is not None else []
    if packed.left_out:
        problems.append(overlong_error([rendered[i] for i in packed.left_out], data.max_length))
    if zero:
        problems.append(zero_trained_error(rendered, zero, r.mode))
    if strict and problems:
        raise DataError([line for p in problems for line in p.lines])
    notes = list(loaded.notes) + ([why] if why else [])
    if r is not None and r.turn_end is not None:
        stop = r.turn_end.stop_token
        ids = f" (stop token {stop!r} = id {r.tokenizer.convert_tokens_to_ids(stop)})" if stop else ""
        notes.append(f"end of turn: {r.turn_end.describe()}{ids}")
    if r is not None and r.parse_json_arguments:
        n_parsed = sum(parse_string_arguments(ex.messages or [])[1] for ex in loaded.examples if ex.kind == "chat")
        if n_parsed:
            notes.append(f"{n_parsed} example(s) give tool-call arguments as JSON strings; this template JSON-encodes "
                         "arguments itself, so they were parsed into objects (else they would be encoded twice)")
    n_split = sum(1 for x in rendered if x.turn is not None)
    if n_split:
        notes.append(f"the chat template is not prefix-stable (it rewrites earlier turns): {n_split} sequences were "
                     "made one per assistant turn, each trained on that turn only")
    if n_trunc:
        notes.append(f"{n_trunc} example(s) truncated to {data.max_length} tokens; {n_cut} of them lost trained "
                     "(answer) tokens")
    recount(report, rendered)  # after truncation: the trained tokens each source really gives
    notes += [c.describe(sum(x.trained_tokens for x in report)) for c in report]
    h = hashlib.sha256()
    for f in loaded.files:
        h.update(str(f.sha256).encode())
    h.update(repr(sorted(data.model_dump(mode="json").items())).encode())
    h.update(token_fingerprint(rendered).encode())
    return Prepared(split, loaded.examples, rendered, packed.rows, packed.efficiency, loaded.format, r, full_lengths,
                    max_length, notes, list(loaded.files), loaded.n_rejected, n_trunc, n_cut, h.hexdigest()[:16],
                    problems, packed.left_out, zero, mixture=report)


def load_sources(data: DataConfig, rejects_path: Path | None) -> list:
    """(formats.LoadResult, mixture.Part) per source of a training mixture; skipped records go to a rejects file
    per source (rejects-train-<source>.jsonl)."""
    out = []
    for p in parts(data):
        base = Path(data.rejects_file) if data.rejects_file else rejects_path
        mine = base.with_name(f"{base.stem}-{p.name}{base.suffix}") if base is not None else None
        sub = p.data.model_copy(update={"rejects_file": None})
        out.append((load_split(sub, "train", mine), p))
    return out


def merge_loaded(loads: list):
    """One LoadResult for the audit and the notes from every source's own (notes named by source)."""
    from shipsft.data.formats import LoadResult

    formats = sorted({one.format for one, _ in loads})
    fmt = formats[0] if len(formats) == 1 else "mixed: " + ", ".join(f"{p.name} {one.format}" for one, p in loads)
    notes = [f"{p.name}: {n}" for one, p in loads for n in one.notes]
    return LoadResult([ex for one, _ in loads for ex in one.examples], fmt, sum(one.n_rejected for one, _ in loads),
                      notes, [f for one, _ in loads for f in one.files])


def render_cached(r, loaded, data: DataConfig) -> list[Rendered]:
    """Render through the fingerprint-keyed cache (failure mode 15: never tokenise an unchanged set twice)."""
    from shipsft.data import cache
    from shipsft.data.render import render_examples

    knobs = data.model_dump(mode="json", exclude={"train", "eval", "max_length", "packing", "overlong"})
    # paths are part of the key: every cached Rendered carries its "file:line" source
    key = cache.cache_key([f"{f.path}:{f.sha256}" for f in loaded.files] + [str(len(loaded.examples))], knobs,
                          cache.tokenizer_fingerprint(r.tokenizer))
    rendered = cache.load(key)
    if rendered is None:
        rendered = render_examples(r, loaded.examples)
        cache.store(key, rendered)
    return rendered
