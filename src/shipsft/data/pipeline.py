"""The whole data pipeline for one split, run once: files -> examples -> rendered (ids + mask) -> rows.

    prep = prepare(cfg.data, tokenizer, "train", strict=True, rejects_path=folder.rejects("train"))
    prep.rendered, prep.n_trained, prep.fingerprint

The files stream through it (formats.ExampleStream, chunks of examples): each chunk is validated, rendered and
appended to the split's store on disk (data/store.py), which is also the fingerprint-keyed render cache
(data/cache.py), so a second `prepare` of an unchanged set does not tokenise again and a set larger than memory is
never held whole. `prep.rendered` is that store, read back one sequence at a time; the per-sequence numbers (lengths,
trained-token counts) are arrays. `prep.examples` holds every example up to EXAMPLE_SAMPLE, beyond that a seeded
uniform sample of that many (`prep.n_examples` says how many were read, `prep.sample_index` which were kept): what
the audit's text checks read. Packed rows are built on demand (`prep.rows`: the eval split's rows for eval loss;
the loop packs each step's examples itself).

`strict=True` (training) raises every blocking problem at once: examples longer than data.max_length under
`data.overlong: error`, and examples that train on nothing (failure modes 7 and 13 in docs/failure-modes.md).
`strict=False` (the audit, preview) records them in `prep.problems` and carries on, so the audit can show them with
their full lengths; overlong examples are then left out of the rows. A data mixture (data.sources, data.replay)
renders each source the same way and draws the mixed list in memory (data/mixture.py).
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shipsft.config import DataConfig
from shipsft.data.mixture import SourceCount, is_mixture, mix, parts, recount
from shipsft.data.pack import Row, overlong_error, pack_examples, packed_row_count, round_up, truncated
from shipsft.data.store import StoreSubset, is_store, token_lengths, trained_counts
from shipsft.data.types import Example, Rendered
from shipsft.errors import DataError, ShipError, TemplateError

EXAMPLE_SAMPLE = 100_000  # examples kept in memory for the audit's text checks; above it, a seeded uniform sample


@dataclass
class Prepared:
    split: str
    examples: list[Example]  # every example, or a seeded sample of EXAMPLE_SAMPLE of them (sample_index)
    rendered: Sequence[Rendered]  # data/store.py's RenderedStore (a list for a mixture), after any truncation
    efficiency: float  # real tokens / row slots
    format: str
    renderer: Any  # shipsft.data.render.Renderer, or None when rendering itself failed (audit only)
    full_lengths: Any  # token length of each rendered sequence before any truncation (numpy array or list)
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
    n_examples: int = 0  # examples read; more than len(examples) when they are a sample
    sample_index: Any = None  # positions (among all examples) of `examples` when they are a sample, else None
    packing: bool = True  # data.packing, for the rows built on demand
    n_rows: int = 0  # rows the whole split packs into
    built_rows: list[Row] | None = None

    @property
    def rows(self) -> list[Row]:
        """The split packed into rows of max_length (built on first use: the eval split's rows for eval loss)."""
        if self.built_rows is None:
            self.built_rows = pack_examples(self.rendered, self.max_length, self.packing).rows
        return self.built_rows

    @property
    def sampled(self) -> bool:
        return self.sample_index is not None

    def sample_rendered(self) -> Sequence[Rendered]:
        """The sequences of `examples`: all of them, or those of the sampled examples (read on access)."""
        if not self.sampled or not is_store(self.rendered):
            return self.rendered
        return StoreSubset(self.rendered, np.flatnonzero(np.isin(self.rendered.example, self.sample_index)))

    @property
    def n_tokens(self) -> int:
        return int(token_lengths(self.rendered).sum())

    @property
    def lengths(self):
        """Token length of every sequence as training sees it (after data.overlong: truncate): what steps/ counts."""
        return token_lengths(self.rendered)

    @property
    def n_trained(self) -> int:
        """Trained tokens of the sequences that fit in max_length (what the rows hold)."""
        fits = token_lengths(self.rendered) <= self.max_length
        return int(trained_counts(self.rendered)[fits].sum())


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
    longest = int(np.max(full_lengths)) if len(full_lengths) else 8
    chosen = round_up(longest, 64)
    why = f"longest example {longest} tokens, rounded up to a multiple of 64"
    if model_max and chosen > model_max:
        chosen, why = model_max, f"longest example {longest} tokens, capped by the model's {model_max} positions"
    return chosen, f"data.max_length auto -> {chosen} ({why})"


# hashed as numpy arrays: ~0.1 s for 11 M tokens on the project's 2-core AMD EPYC, where a loop over tokens is minutes
def token_fingerprint(rendered: Sequence[Rendered]) -> str:
    """sha256 over every sequence's length, ids (as int64) and mask (as uint8), in that order: hashed as numpy arrays,
    a store's a chunk at a time (two passes: all ids, then all masks), so the digest does not depend on where the
    sequences live."""
    h = hashlib.sha256(np.asarray(token_lengths(rendered), dtype=np.int64).tobytes())
    if is_store(rendered):
        for part in (1, 2):
            for chunk in rendered.chunks():
                h.update(chunk[part].astype(np.int64 if part == 1 else np.uint8).tobytes())
        return h.hexdigest()
    total = int(token_lengths(rendered).sum())
    h.update(np.fromiter((t for r in rendered for t in r.ids), dtype=np.int64, count=total).tobytes())
    h.update(np.fromiter((m for r in rendered for m in r.mask), dtype=np.uint8, count=total).tobytes())
    return h.hexdigest()


def split_stream(data: DataConfig, split: str, rejects_path: Path | None):
    """One split's files opened for streaming (formats.ExampleStream). Skipped records (data.on_invalid: skip) go to
    data.rejects_file, else to `rejects_path`."""
    from shipsft.data.formats import ExampleStream
    from shipsft.data.hub import ref_for

    paths = data.train if split == "train" else data.eval
    if not paths:
        raise DataError([f"data.{split}: no files configured. Fix: set data.{split} to one or more JSONL/JSON/"
                         "Parquet/CSV files, saved datasets folders or hub dataset ids."])
    rejects = data.rejects_file or (str(rejects_path) if rejects_path is not None else None)
    return ExampleStream.of(paths, data.format, data.on_invalid, rejects, data.allow_any_role_order,
                            ref_for(data, split))


def load_split(data: DataConfig, split: str, rejects_path: Path | None):
    """Read and validate one split's files into memory (formats.LoadResult)."""
    stream = split_stream(data, split, rejects_path)
    return stream.result([ex for chunk in stream for ex in chunk])


def renderer_for(data: DataConfig, tokenizer, examples: list[Example]):
    """The configured renderer; a chat template is only required when some example is a conversation."""
    from shipsft.data.render import load_renderer

    return load_renderer(tokenizer, data, need_template=any(ex.kind == "chat" for ex in examples))


def zero_trained_error(rendered: Sequence[Rendered], idx: list[int], mode: str) -> DataError:
    shown = [rendered[i] for i in idx[:10]]
    lines = [f"{len(idx)} example(s) have zero trained tokens after rendering and masking "
             f"(mask mode {mode!r}), so they would teach nothing:"]
    lines += [f"  {x.source}" + (" (its answer was cut by truncation)" if x.truncated else "") for x in shown]
    if len(idx) > 10:
        lines.append(f"  ... and {len(idx) - 10} more")
    fix = "check that each example has an assistant answer inside the trained part (data.mask), or remove them"
    if any(x.truncated for x in shown):
        fix += "; raise data.max_length so truncation keeps the answers"
    lines.append(f"Fix: {fix}.")
    return DataError(lines)


class Sample:
    """Every example up to `cap`, then a seeded uniform sample of `cap` of them (reservoir sampling, algorithm R:
    Vitter 1985, "Random sampling with a reservoir"), kept in the order they were read."""

    def __init__(self, cap: int, seed: int = 0):
        self.cap, self.rng = cap, random.Random(seed)
        self.items: list[Example] = []
        self.pos: list[int] = []
        self.seen = 0

    def add(self, chunk: list[Example]) -> None:
        for ex in chunk:
            if self.seen < self.cap:
                self.items.append(ex)
                self.pos.append(self.seen)
            else:
                j = self.rng.randrange(self.seen + 1)
                if j < self.cap:
                    self.items[j], self.pos[j] = ex, self.seen
            self.seen += 1

    def result(self) -> tuple[list[Example], np.ndarray | None]:
        """(the examples, their positions among all examples, or None when they are all of them)."""
        if self.seen <= self.cap:
            return self.items, None
        order = sorted(range(len(self.pos)), key=self.pos.__getitem__)
        return [self.items[k] for k in order], np.array([self.pos[k] for k in order], dtype=np.int64)


def example_positions(chunk: list[Example], rendered: list[Rendered], first: int) -> list[int]:
    """The position (among all examples) of the example each rendered sequence came from: rendering keeps the order,
    and a template that is not prefix-stable makes several sequences of one example."""
    out, k = [], 0
    for r in rendered:
        while chunk[k].source != r.source:
            k += 1
        out.append(first + k)
    return out


def prepare(data: DataConfig, tokenizer, split: str, *, strict: bool, rejects_path: Path | None,
            renderer=None, example_sample: int = EXAMPLE_SAMPLE) -> Prepared:
    """Load, validate, render, check and pack one split (module docstring); `example_sample`: how many examples
    stay in memory (`prep.examples`)."""
    if split == "train" and is_mixture(data):
        return prepare_mixture(data, tokenizer, strict=strict, rejects_path=rejects_path, renderer=renderer)
    from shipsft.data import cache
    from shipsft.data.render import no_stop_problem, parse_string_arguments, render_examples

    stream = split_stream(data, split, rejects_path)
    key = render_key(data, [f"{f.path}:{f.sha256}" for f in stream.files], tokenizer)
    store = cache.load(key)
    writer = cache.writer(key) if store is None else None
    sample = Sample(example_sample)
    r, no_stop, failure, n_parsed = renderer, None, None, 0
    try:
        for chunk in stream:
            first = sample.seen
            sample.add(chunk)
            if failure is not None:
                continue  # the audit still reads the examples' text
            try:
                r = r or renderer_for(data, tokenizer, chunk)
                if no_stop is None and any(ex.kind == "chat" for ex in chunk):
                    no_stop = no_stop_problem(r) or False
                    if no_stop and strict:
                        raise no_stop
                if writer is not None:
                    done = render_examples(r, chunk)
                    writer.append(done, example_of=example_positions(chunk, done, first))
                if r.parse_json_arguments:
                    n_parsed += sum(parse_string_arguments(ex.messages or [])[1] for ex in chunk if ex.kind == "chat")
            except ShipError as e:
                if strict:
                    raise
                failure = e
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    examples, sample_index = sample.result()
    loaded = stream.result(examples)
    if failure is not None:  # the audit still runs its text-level checks on the examples, and reports this as an error
        if writer is not None:
            writer.abort()
        return Prepared(split, examples, [], 0.0, loaded.format, None, [], 0, list(loaded.notes), list(loaded.files),
                        loaded.n_rejected, problems=[failure], render_failed=True, n_examples=sample.seen,
                        sample_index=sample_index, packing=data.packing)
    rendered = store if store is not None else writer.close()
    return finish(data, tokenizer, split, strict, loaded, rendered, r, no_stop or None, n_parsed, [], sample.seen,
                  sample_index)


def finish(data: DataConfig, tokenizer, split: str, strict: bool, loaded, rendered: Sequence[Rendered], r,
           no_stop, n_parsed: int, report: list[SourceCount], n_examples: int, sample_index) -> Prepared:
    """max_length resolved, truncation, the blocking problems, the notes and the fingerprint of a rendered split."""
    full_lengths = token_lengths(rendered)
    max_length, why = resolve_max_length(data, full_lengths, model_max_positions(tokenizer))
    data = data.model_copy(update={"max_length": max_length})
    over = np.flatnonzero(full_lengths > max_length)
    n_trunc = n_cut = 0
    if data.overlong == "truncate" and len(over):
        before = trained_counts(rendered)[over].copy()
        rendered = rendered.truncated(max_length) if is_store(rendered) else truncated(rendered, max_length)
        n_trunc, n_cut = len(over), int((trained_counts(rendered)[over] < before).sum())
    lengths = token_lengths(rendered)
    left_out = np.flatnonzero(lengths > max_length).tolist()
    zero = np.flatnonzero(trained_counts(rendered) == 0).tolist()  # after truncation: a cut-away answer counts
    problems = [no_stop] if no_stop is not None else []
    if left_out:
        worst = max(left_out, key=lambda i: lengths[i])
        problems.append(overlong_error([rendered[i] for i in dict.fromkeys(left_out[:10] + [worst])],
                                       data.max_length, len(left_out)))
    if zero:
        problems.append(zero_trained_error(rendered, zero, r.mode))
    if strict and problems:
        raise DataError([line for p in problems for line in p.lines])
    notes = list(loaded.notes) + ([why] if why else [])
    if r is not None and r.turn_end is not None:
        stop = r.turn_end.stop_token
        ids = f" (stop token {stop!r} = id {r.tokenizer.convert_tokens_to_ids(stop)})" if stop else ""
        notes.append(f"end of turn: {r.turn_end.describe()}{ids}")
    if n_parsed:
        notes.append(f"{n_parsed} example(s) give tool-call arguments as JSON strings; this template JSON-encodes "
                     "arguments itself, so they were parsed into objects (else they would be encoded twice)")
    n_split = int((rendered.turn >= 0).sum()) if is_store(rendered) else sum(1 for x in rendered if x.turn is not None)
    if n_split:
        notes.append(f"the chat template is not prefix-stable (it rewrites earlier turns): {n_split} sequences were "
                     "made one per assistant turn, each trained on that turn only")
    if n_trunc:
        notes.append(f"{n_trunc} example(s) truncated to {data.max_length} tokens; {n_cut} of them lost trained "
                     "(answer) tokens")
    recount(report, rendered)  # after truncation: the trained tokens each source really gives
    notes += [c.describe(sum(x.trained_tokens for x in report)) for c in report]
    if sample_index is not None:
        notes.append(f"{n_examples:,} examples: {len(loaded.examples):,} of them (a seeded sample) are kept in memory "
                     "for the audit's text checks; every sequence is on disk and trains")
    h = hashlib.sha256()
    for f in loaded.files:
        h.update(str(f.sha256).encode())
    h.update(repr(sorted(data.model_dump(mode="json").items())).encode())
    h.update(token_fingerprint(rendered).encode())
    efficiency, n_rows = packing_figures(lengths, max_length, data.packing)
    return Prepared(split, loaded.examples, rendered, efficiency, loaded.format, r, full_lengths, max_length, notes,
                    list(loaded.files), loaded.n_rejected, n_trunc, n_cut, h.hexdigest()[:16], problems, left_out,
                    zero, mixture=report, n_examples=n_examples, sample_index=sample_index, packing=data.packing,
                    n_rows=n_rows)


def packing_figures(lengths: np.ndarray, max_length: int, packing: bool) -> tuple[float, int]:
    """(real tokens / row slots, rows) of the whole split packed as pack_examples packs it, from the lengths alone."""
    fits = lengths[lengths <= max_length]
    if not len(fits):
        return 0.0, 0
    rows = packed_row_count(fits, max_length) if packing else len(fits)
    slots = rows * (max_length if packing else int(fits.max()))
    return float(fits.sum()) / slots, rows


def prepare_mixture(data: DataConfig, tokenizer, *, strict: bool, rejects_path: Path | None,
                    renderer=None) -> Prepared:
    """A training mixture: each source read and rendered (through the cache) with its own format and mask, the mixed
    list drawn from them in memory (data/mixture.py)."""
    from shipsft.data.render import no_stop_problem, parse_string_arguments

    loads = load_sources(data, rejects_path)
    loaded = merge_loaded(loads)
    try:
        r = renderer or renderer_for(data, tokenizer, loaded.examples)
        no_stop = no_stop_problem(r) if any(ex.kind == "chat" for ex in loaded.examples) else None
        if no_stop is not None and strict:
            raise no_stop
        rendered, report = mix(data, [render_cached(renderer_for(p.data, tokenizer, one.examples), one, p.data)
                                      for one, p in loads])
    except ShipError as e:
        if strict:
            raise
        return Prepared("train", loaded.examples, [], 0.0, loaded.format, None, [], 0, list(loaded.notes),
                        list(loaded.files), loaded.n_rejected, problems=[e], render_failed=True,
                        n_examples=len(loaded.examples), packing=data.packing)
    n_parsed = (sum(parse_string_arguments(ex.messages or [])[1] for ex in loaded.examples if ex.kind == "chat")
                if r.parse_json_arguments else 0)
    return finish(data, tokenizer, "train", strict, loaded, rendered, r, no_stop, n_parsed, report,
                  len(loaded.examples), None)


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


def render_key(data: DataConfig, files: list[str], tokenizer) -> str:
    """The render cache's key: the inputs ("path:sha256"; every cached sequence carries its "file:line" source),
    the data settings that change rendering, the tokenizer."""
    from shipsft.data import cache

    knobs = data.model_dump(mode="json", exclude={"train", "eval", "max_length", "packing", "overlong"})
    return cache.cache_key(files, knobs, cache.tokenizer_fingerprint(tokenizer))


def render_cached(r, loaded, data: DataConfig) -> Sequence[Rendered]:
    """Render in-memory examples through the fingerprint-keyed cache (failure mode 15: never tokenise an unchanged
    set twice)."""
    from shipsft.data import cache
    from shipsft.data.render import render_examples

    key = render_key(data, [f"{f.path}:{f.sha256}" for f in loaded.files], r.tokenizer)
    store = cache.load(key)
    if store is None:
        writer = cache.writer(key)
        try:
            done = render_examples(r, loaded.examples)
            writer.append(done, example_of=example_positions(loaded.examples, done, 0))
        except BaseException:
            writer.abort()
            raise
        store = writer.close()
    return store
