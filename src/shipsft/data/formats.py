"""Data files -> `Example`s: readers, format adapters and validation, with every problem named at file:line.

Readers: JSONL (`.jsonl`, `.ndjson`), JSON (a list of records, or `{"data": [...]}`), Parquet (any codec inside), CSV,
the first three also compressed (`t.jsonl.gz`, `.zst`, `.bz2`, `.xz`: read as a stream, line numbers those of the
decompressed file), `datasets.Dataset` objects, folders written by `Dataset.save_to_disk`, dataset repository folders
and hub dataset ids (data/hub.py). JSONL, Parquet and `datasets` rows stream (`open_source`, `ExampleStream`: read as
they are used, so a file larger than memory passes through); JSON and CSV are read whole. Every record keeps a
`source`: "path:LINE" (1-based line) for JSONL and CSV, "path:#INDEX" (0-based row, as in `ds[INDEX]`) for JSON,
Parquet and `datasets` rows.

Formats (an explicit setting; `auto` picks one from the columns and says which and why in `LoadResult.notes`):

    messages           {"messages": [{role, content, (tool_calls | tool_call_id, name)}], "tools": [...]}  (OpenAI)
    sharegpt           {"conversations": [{"from": "human"|"gpt"|..., "value": ...}], "system": ..., "tools": ...}
    alpaca             {"instruction", "input", "output", "system", "history": [[user, assistant], ...]}
    prompt_completion  {"prompt": str, "completion": str}          -> kind "completion_text" (no chat template)
                       {"prompt": [messages], "completion": [messages]} -> kind "chat", n_prompt = len(prompt)
    text               {"text": str}                                -> kind "text"

What the adapters normalise, so later stages can rely on it:
- every chat message has `role` in system/user/assistant/tool and a string `content` (an assistant message that only
  carries `tool_calls` gets content ""); `tool_calls`, `tool_call_id`, `name` and any other keys pass through
  unchanged, so the chat template sees them; keys whose value is null are dropped (templates test `is defined`).
- OpenAI content-part lists `[{"type": "text", "text": ...}, ...]` are joined into one string with no separator
  (how OpenAI concatenates them); any other part type (image, audio) is an error: we train text-only models.
- `messages`, `conversations` and `tools` given as a JSON *string* are decoded (CSV cannot hold lists, and
  LLaMA-Factory stores `tools` as a string).
- In Parquet and `datasets` rows, null dict keys are dropped recursively: Arrow unifies struct fields across rows and
  fills the missing ones with null, which would otherwise show up as e.g. `tool_calls: None` on every message.
- ShareGPT `function_call` turns (LLaMA-Factory: value = JSON `{"name", "arguments"}`, or a list of them) become
  assistant `tool_calls`; `observation` turns become `tool` messages.
- Short scalar columns that are not part of the format (`id`, `license`, `source`, ...) go to `Example.meta`.

Invalid records are never dropped silently: `on_invalid="error"` (the default) raises one `DataError` listing every
problem (the first 20, then "... and N more"); `on_invalid="skip"` skips them, counts them, and writes each to
`rejects_path` as JSONL `{"source", "reason", "record"}`.

    from shipsft.data.formats import load_examples
    res = load_examples(["data/train.jsonl"], "auto", "error", None, allow_any_role_order=False)
    print(res.format, len(res.examples), res.notes)

Speed: one `json.loads` per line and plain dict checks, no per-record pydantic, the cyclic GC paused while loading:
100k short three-message conversations (17 MB of JSONL) load in 1.1 s of CPU time on this 2-core machine
(tests/test_formats.py::test_speed_100k_short_conversations asserts < 10 s).
"""
from __future__ import annotations

import contextlib
import csv
import difflib
import gc
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from shipsft.config import is_hub_id
from shipsft.data.hub import is_repo_folder
from shipsft.data.types import Example
from shipsft.errors import DataError

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text")
ROLES = ("system", "user", "assistant", "tool")
# ShareGPT speaker names (incl. LLaMA-Factory's tool turns) -> OpenAI roles
SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "tool": "tool", "function_call": "assistant", "observation": "tool",
}
# Names other tools use for our roles: a hint is more useful than difflib's guess for these.
_ROLE_ALIASES = {
    "human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "developer": "system",
    "function": "tool", "ipython": "tool", "observation": "tool",
}
# Columns that decide the format, in priority order (a record with both `messages` and `text` is `messages`).
_SIGNATURES = (
    ("messages", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("prompt_completion", ("prompt", "completion")),
    ("alpaca", ("instruction", "output")),
    ("text", ("text",)),
)
# Columns each format consumes; the others may go to Example.meta.
_CONSUMED = {
    "messages": frozenset({"messages", "tools"}),
    "sharegpt": frozenset({"conversations", "system", "tools"}),
    "alpaca": frozenset({"instruction", "input", "output", "system", "history"}),
    "prompt_completion": frozenset({"prompt", "completion", "tools"}),
    "text": frozenset({"text"}),
}
MAX_SHOWN = 20  # problems printed in one DataError; more are counted ("... and N more")
_META_MAX_CHARS = 256  # longer string columns stay out of meta: 100k examples x a long text column would double RAM
_DETECT_SCAN = 100  # records looked at per file by format auto before giving up


@dataclass(slots=True)
class Record:
    """One raw record as read from a file: `data` is the parsed value, or `error` says why it could not be read."""

    source: str
    data: Any = None
    raw: str | None = None  # the raw line, kept only when it did not parse (goes to the rejects file)
    error: str | None = None


@dataclass
class FileInfo:
    """Provenance of one input (for the run manifest): what was read, its hash, and the licenses it declares."""

    path: str
    sha256: str
    n_records: int
    n_rejected: int = 0
    format: str = ""
    licenses: list[str] = field(default_factory=list)
    commit: str | None = None  # the Hugging Face Hub commit of a dataset read by hub id


@dataclass
class LoadResult:
    examples: list[Example]
    format: str  # the format used ("messages", ...): what `auto` chose, or the explicit setting
    n_rejected: int  # records skipped with on_invalid="skip" (always 0 with "error")
    notes: list[str]  # what was decided and why, for the user: format choice, skipped counts, normalisations
    files: list[FileInfo]


# ----------------------------------------------------------------------------------------------------------------
# Readers: path -> (records, FileInfo). File-level problems raise DataError; record-level ones ride on the Record.


@dataclass
class Source:
    """One input opened for reading: its provenance, its first records (what format auto looks at), and all its
    records; for JSONL, Parquet and `datasets` rows a generator that reads them as they are used, so a file larger
    than memory streams through (JSON and CSV are read whole)."""

    info: FileInfo
    head: list[Record]
    records: Iterable[Record]


_HEAD = 2 * _DETECT_SCAN  # records read ahead of the stream for format detection


def open_source(path: str | Path, repo: Any = None) -> Source:
    """Open one data file (or saved `datasets` folder, dataset repository folder or hub dataset id: `repo`, a
    data.hub.DatasetRef, says which config and split). Raises DataError for file-level problems."""
    name = str(path)
    p = Path(path)
    if not p.exists() and not is_hub_id(name):
        raise DataError(f"{name}: file not found")
    if p.is_dir() and not is_repo_folder(p):
        return _read_dataset_dir(p, name)
    if p.is_dir() or not p.exists():
        return _read_repo(name, repo)
    kind, codec = _file_type(p)
    reader = _READERS.get(kind)
    if reader is None or (codec and kind == ".parquet"):
        raise DataError(f"{name}: unsupported file type '{kind}{codec or ''}' (use .jsonl, .json or .csv, each also "
                        f"compressed as {', '.join(_CODECS)} (t.jsonl.gz), .parquet (any codec inside), a folder "
                        "written by datasets' save_to_disk, a dataset repository folder or a hub dataset id)")
    if kind in _STREAMED:
        head = list(itertools.islice(reader(p, codec, name), _HEAD))
        records: Iterable[Record] = reader(p, codec, name)  # read again from the start as it is used
    else:
        head = records = list(reader(p, codec, name))
    if not head:
        raise DataError(f"{name}: the file is empty (no records)")
    with open(p, "rb") as f:  # the file as stored (compressed or not): what the manifest records
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    info = FileInfo(path=name, sha256=sha256, n_records=0 if kind in _STREAMED else len(records))
    return Source(info, head[:_HEAD], records)


def read_records(path: str | Path, repo: Any = None) -> tuple[list[Record], FileInfo]:
    """Every raw record of one input (open_source), in memory. Raises DataError for file-level problems."""
    src = open_source(path, repo)
    records = list(src.records)
    src.info.n_records = len(records)
    return records, src.info


# Compressed files are read as a stream of decompressed chunks cut into lines as they come, so line numbers are the
# lines `zcat FILE | sed -n Np` shows and a large .jsonl.zst never sits in memory decompressed whole (a .json
# document is parsed whole, as it must be). A truncated stream is an error naming the line it stopped at, never a
# silently shorter data set: zstandard's stream reader returns EOF at the cut, so its frames are checked for their end.
_CODECS = (".gz", ".zst", ".bz2", ".xz")
_CHUNK = 1 << 20


def _file_type(p: Path) -> tuple[str, str | None]:
    """('.jsonl', '.gz') for t.jsonl.gz, ('.csv', None) for t.csv."""
    suffixes = [x.lower() for x in p.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _CODECS:
        return suffixes[-2], suffixes[-1]
    return p.suffix.lower(), None


def _chunks(p: Path, codec: str | None, name: str) -> Iterable[bytes]:
    if codec == ".zst":
        yield from _zstd_chunks(p, name)
        return
    import bz2
    import gzip
    import lzma

    opener = {None: open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[codec]
    with opener(p, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _zstd_chunks(p: Path, name: str) -> Iterable[bytes]:
    try:
        import zstandard
    except ImportError:
        raise DataError(f"{name}: reading .zst files needs the zstandard package. Fix: pip install zstandard "
                        "(a dependency of shipsft: reinstall it)") from None
    dctx = zstandard.ZstdDecompressor()
    frame = None
    with open(p, "rb") as f:
        while raw := f.read(_CHUNK):
            while raw:  # a file may hold several frames one after another (zstd -c a b > ab.zst)
                if frame is None or frame.eof:
                    frame = dctx.decompressobj()
                if out := frame.decompress(raw):
                    yield out
                raw = frame.unused_data if frame.eof else b""
    if frame is not None and not frame.eof:
        raise EOFError("the zstd stream ends inside a frame")


def _lines(p: Path, codec: str | None, name: str) -> Iterable[tuple[int, bytes]]:
    """(1-based line number, the line without its newline) of the decompressed file; a decompression error is one
    DataError naming the line it stopped at."""
    n, tail = 0, b""
    try:
        for chunk in _chunks(p, codec, name):
            *whole, tail = (tail + chunk).split(b"\n")
            for line in whole:
                n += 1
                yield n, line
    except DataError:
        raise
    except Exception as e:  # gzip: EOFError / BadGzipFile, lzma: LZMAError, bz2: OSError, zstandard: ZstdError
        raise DataError(f"{name}:{n + 1}: cannot decompress {codec or 'the file'} ({type(e).__name__}: {e}); the file "
                        f"is truncated or not {codec or 'readable'}: {n} complete lines were read. Fix: copy the file "
                        "again") from None
    if tail:
        yield n + 1, tail


def _text(line: bytes, n: int, name: str) -> str:
    try:
        return line.decode("utf-8-sig" if n == 1 else "utf-8")  # -sig: tolerate the BOM that Windows editors write
    except UnicodeDecodeError as e:
        raise DataError(f"{name}:{n}: not valid UTF-8 (byte 0x{line[e.start]:02x}); save the file as UTF-8") from None


def _read_jsonl(p: Path, codec: str | None, name: str) -> Iterator[Record]:
    """Records of a JSONL file as they are read (a generator: the file streams)."""
    # lines split at b"\n" only: splitlines() would also break on U+2028/U+0085, which JSON strings may hold raw
    for i, raw in _lines(p, codec, name):
        line = _text(raw, i, name)
        if not line.strip():
            continue  # blank lines (incl. the trailing newline) are not records
        try:
            yield Record(f"{name}:{i}", json.loads(line))
        except json.JSONDecodeError as e:
            yield Record(f"{name}:{i}", raw=line, error=f"invalid JSON at column {e.colno}: {e.msg}")


def _read_json(p: Path, codec: str | None, name: str) -> list[Record]:
    text = "\n".join(_text(line, i, name) for i, line in _lines(p, codec, name))
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        hint = " (one JSON object per line? name the file .jsonl)" if e.msg == "Extra data" else ""
        raise DataError(f"{name}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}{hint}") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        got = f"an object with keys {_names(obj)}" if isinstance(obj, dict) else f"a {_type_name(obj)}"
        raise DataError(f'{name}: the top level is {got}; expected a list of records or {{"data": [...]}}')
    return [Record(f"{name}:#{i}", r) for i, r in enumerate(obj)]


def _read_parquet(p: Path, codec: str | None, name: str) -> Iterator[Record]:
    """Rows of a Parquet file, one record batch at a time (a generator: the file streams). Any codec Parquet itself
    compresses with (snappy, gzip, zstd, brotli, lz4): pyarrow decodes each."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    i = 0
    try:
        for batch in pq.ParquetFile(p).iter_batches(batch_size=4096):
            for r in batch.to_pylist():
                yield Record(f"{name}:#{i}", _drop_nulls(r))
                i += 1
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{name}: cannot read Parquet: {e}") from None


def _read_csv(p: Path, codec: str | None, name: str) -> list[Record]:
    # decoded line by line (with its newline back) so a bad byte is named at its line; a quoted field may span lines
    text_lines = (_text(line, i, name) + "\n" for i, line in _lines(p, codec, name))
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB per field is too small for long documents
    try:
        reader = csv.reader(text_lines)
        header = next(reader, None)
        if header is None:
            return []
        records = []
        start = reader.line_num + 1  # line where the next row starts (a quoted field may span several lines)
        for row in reader:
            src = f"{name}:{start}"
            start = reader.line_num + 1
            if not row:
                continue  # blank line
            if len(row) != len(header):
                records.append(Record(src, raw=",".join(row), error=(
                    f"the row has {len(row)} cells but the header has {len(header)} columns (an unquoted comma?)")))
                continue
            records.append(Record(src, dict(zip(header, row))))
        return records
    except csv.Error as e:
        raise DataError(f"{name}:{reader.line_num}: invalid CSV: {e}") from None
    finally:
        csv.field_size_limit(old_limit)


_READERS = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet,
            ".csv": _read_csv}
_STREAMED = {".jsonl", ".ndjson", ".parquet"}  # their readers are generators; JSON and CSV are read whole


def _read_repo(name: str, repo: Any) -> Source:
    """A hub dataset id or a dataset repository folder, one config and split of it (data/hub.py)."""
    from shipsft.data.hub import DatasetRef, load_repo

    got = load_repo(name, repo or DatasetRef())
    src = _dataset_source(got.dataset, got.name, got.sha256)
    src.info.commit, src.info.licenses = got.commit, sorted(set(src.info.licenses) | set(got.licenses))
    return src


def _read_dataset_dir(p: Path, name: str) -> Source:
    if (p / "dataset_dict.json").exists():
        splits = sorted(q.name for q in p.iterdir() if (q / "state.json").exists())
        raise DataError(f"{name}: is a saved DatasetDict with splits {', '.join(splits)}; "
                        f"give one split's folder, e.g. {p / (splits[0] if splits else 'train')}")
    import datasets

    digest = hashlib.sha256()
    for q in sorted(q for q in p.rglob("*") if q.is_file()):
        digest.update(str(q.relative_to(p)).encode() + b"\0" + q.read_bytes())
    try:
        ds = datasets.load_from_disk(str(p))
    except (OSError, ValueError) as e:
        raise DataError(f"{name}: cannot load the saved dataset: {e}") from None
    return _dataset_source(ds, name, digest.hexdigest())


def _dataset_source(ds: Any, name: str, sha256: str | None = None) -> Source:
    """Rows of a Dataset, read a batch at a time from its Arrow table; `sha256` defaults to a hash of the rows'
    canonical JSON (an in-memory object has no file)."""
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        raise DataError(f"{name}: is a DatasetDict with splits {', '.join(ds)}; pass one split, e.g. ds['train']")
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"{name}: expected a datasets.Dataset, got {type(ds).__name__}")
    if len(ds) == 0:
        raise DataError(f"{name}: the dataset is empty (no records)")

    def rows() -> Iterator[Record]:
        i = 0
        for batch in ds.with_format("arrow").iter(batch_size=1024):
            for r in batch.to_pylist():
                yield Record(f"{name}:#{i}", _drop_nulls(r))
                i += 1

    if sha256 is None:
        h = hashlib.sha256()
        for rec in rows():
            h.update(json.dumps(rec.data, sort_keys=True, default=str).encode())
        sha256 = h.hexdigest()
    license = getattr(ds.info, "license", None) or ""
    info = FileInfo(path=name, sha256=sha256, n_records=len(ds), licenses=[license] if license else [])
    return Source(info, list(itertools.islice(rows(), _HEAD)), rows())


def _drop_nulls(obj: Any) -> Any:
    """Remove null-valued dict keys at any depth (Arrow fills struct fields missing from a row with null)."""
    if isinstance(obj, dict):
        return {k: _drop_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_nulls(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------------------------------------
# Format detection


def detect_format(records: list[Record]) -> tuple[str, str] | None:
    """(format, reason) from the columns of the first record that has a known signature, or None."""
    seen = 0
    for rec in records:
        if not isinstance(rec.data, dict):
            continue
        for fmt, cols in _SIGNATURES:
            if all(c in rec.data for c in cols):
                return fmt, f"column{'s' if len(cols) > 1 else ''} {_names(cols)}"
        seen += 1
        if seen >= _DETECT_SCAN:
            break
    return None


def _undetected(records: list[Record], path: str) -> str:
    """Why no format fits: the first record's line, its columns, and the closest format's missing column."""
    first = next((r for r in records if r.error is None), None)
    if first is None:
        return f"{records[0].source}: {records[0].error} (no record of {path} could be read)"
    if not isinstance(first.data, dict):
        kind = _type_name(first.data)
        return (f"{first.source}: the record is a {kind}, not an object: each record must be one JSON object such as "
                '{"messages": [...]} (one per line in JSONL)')
    cols = set(first.data)
    scored = [(sum(c in cols for c in sig), fmt, sig) for fmt, sig in _SIGNATURES]
    best, fmt, sig = max(scored, key=lambda t: t[0])
    if best:
        missing = [c for c in sig if c not in cols]
        return (f"{first.source}: cannot detect the data format: the record has columns {_names(first.data)}; "
                f"format {fmt} also needs {_names(missing)} (or set data.format)")
    return (f"{first.source}: cannot detect the data format: the record has columns {_names(first.data) or 'none'}; "
            f"expected {_expected_columns()} (or set data.format)")


def _expected_columns() -> str:
    return "; ".join(f"{' + '.join(repr(c) for c in cols)} -> {fmt}" for fmt, cols in _SIGNATURES)


# ----------------------------------------------------------------------------------------------------------------
# Adapters: one record (a dict) -> Example, appending problems (without the "file:line: " prefix) to `chk`.


@dataclass(slots=True)
class _Check:
    problems: list[str] = field(default_factory=list)
    n_joined: int = 0  # content-part lists joined into strings
    n_function_calls: int = 0  # ShareGPT function_call turns converted to tool_calls


def _type_name(v: Any) -> str:
    # JSON names: the user wrote JSON, not Python
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "list"}.get(type(v), type(v).__name__)


def _names(items: Iterable[Any]) -> str:
    return ", ".join(repr(x) for x in items)


def _did_you_mean(value: Any, allowed: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    if not isinstance(value, str):
        return ""
    allowed = list(allowed)
    key = value.strip().lower()
    guess = (aliases or {}).get(key) or (key if key in allowed else None)
    if guess is None:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f" — did you mean '{guess}'?" if guess else ""


def _content(value: Any, where: str, key: str, chk: _Check) -> str | None:
    """A message's content as a string; None when missing. Problems go to chk."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for j, part in enumerate(value):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = repr(part.get("type")) if isinstance(part, dict) else _type_name(part)
                chk.problems.append(f"{where}: {key}[{j}] is a {kind} part; only text parts "
                                    '{"type": "text", "text": ...} can be trained on')
                return ""
        chk.n_joined += 1
        return "".join(texts)
    chk.problems.append(f"{where}: {key} must be a string, got {_type_name(value)}")
    return ""


def _message(m: Any, where: str, chk: _Check, role: str | None = None, content_key: str = "content") -> dict | None:
    """Validate one OpenAI-style message; return a normalised copy (string content, no null keys).

    `role` is given when the caller already mapped it (ShareGPT); otherwise m["role"] is checked here.
    """
    if not isinstance(m, dict):
        chk.problems.append(f"{where}: must be an object with 'role' and '{content_key}', got {_type_name(m)}")
        return None
    skip = ("from", "value", "role", "content") if role is not None else ("role", "content")
    if role is None:
        role = m.get("role")
        if role is None:
            chk.problems.append(f"{where}: missing 'role' (one of {', '.join(ROLES)})")
            return None
        if role not in ROLES:
            chk.problems.append(f"{where}: role {role!r} is not one of {', '.join(ROLES)}"
                                + _did_you_mean(role, ROLES, _ROLE_ALIASES))
            return None
        content = m.get("content")
        if len(m) == 2 and type(content) is str:
            # fast path for the plain {role, content} message (most of them): halves the load time of 100k records
            if role in ("user", "assistant") and not content.strip():
                chk.problems.append(f"{where}: {role} content is empty")
            return {"role": role, "content": content}
    # role and content first (readable previews), then every other key unchanged: tool_calls, tool_call_id, name...
    out = {"role": role, "content": ""}
    out.update((k, v) for k, v in m.items() if v is not None and k not in skip)
    tool_calls = out.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        chk.problems.append(f"{where}: tool_calls must be a list, got {_type_name(tool_calls)}")
    has_calls = role == "assistant" and bool(tool_calls)
    n_problems = len(chk.problems)
    content = _content(m.get(content_key), where, content_key, chk)
    if len(chk.problems) > n_problems:
        pass  # the content itself is wrong (not a string); "is empty" would only repeat that
    elif content is None:
        if not has_calls:
            chk.problems.append(f"{where}: missing '{content_key}'")
        content = ""
    elif role in ("user", "assistant") and not has_calls and not content.strip():
        chk.problems.append(f"{where}: {role} {content_key} is empty")
    out["content"] = content or ""
    return out


def _decoded_list(row: dict, key: str, chk: _Check, required: bool = True) -> list | None:
    """row[key] as a list (non-empty when required); a JSON string holding a list is decoded (CSV cells,
    LLaMA-Factory `tools`)."""
    value = row.get(key)
    if isinstance(value, str) and not value.strip() and not required:
        value = None  # an empty CSV cell: no tools
    if value is None:
        if required:
            chk.problems.append(f"missing '{key}'")
        return None
    if isinstance(value, str):
        if not value.strip():
            chk.problems.append(f"'{key}' is empty")
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            chk.problems.append(f"'{key}' is a string that is not JSON (column {e.colno}: {e.msg}); "
                                "it must be a list")
            return None
    if not isinstance(value, list):
        chk.problems.append(f"'{key}' must be a list, got {_type_name(value)}")
        return None
    if required and not value:
        chk.problems.append(f"'{key}' is empty")
    return value


def _tools(row: dict, chk: _Check) -> list | None:
    tools = _decoded_list(row, "tools", chk, required=False)
    if tools is not None and not all(isinstance(t, dict) for t in tools):
        chk.problems.append("'tools' must be a list of tool schemas (objects)")
    return tools or None


def _string(row: dict, key: str, chk: _Check, required: bool, empty_is_error: str = "") -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            chk.problems.append(f"missing '{key}'")
        return None
    if not isinstance(value, str):
        chk.problems.append(f"'{key}' must be a string, got {_type_name(value)}")
        return None
    if empty_is_error and not value.strip():
        chk.problems.append(f"'{key}' is empty ({empty_is_error})")
    return value


def _check_messages(items: list, label: str, chk: _Check) -> list[dict]:
    msgs = []
    for i, m in enumerate(items):
        out = _message(m, f"{label}[{i}]", chk)
        if out is not None:
            msgs.append(out)
    return msgs


def _need_assistant(msgs: list[dict], label: str, chk: _Check) -> None:
    if not chk.problems and not any(m["role"] == "assistant" for m in msgs):
        roles = ", ".join(m["role"] for m in msgs)
        chk.problems.append(f"{label}: no assistant message to train on (roles: {roles})")


def _from_messages(row: dict, source: str, chk: _Check) -> Example | None:
    items = _decoded_list(row, "messages", chk)
    tools = _tools(row, chk)
    if not items:
        return None
    msgs = _check_messages(items, "messages", chk)
    _need_assistant(msgs, "messages", chk)
    return Example(source=source, kind="chat", messages=msgs, tools=tools)


def _function_call(value: Any, where: str, chk: _Check) -> dict | None:
    """LLaMA-Factory function_call turn: value is JSON {"name", "arguments"} (or a list) -> assistant tool_calls."""
    try:
        calls = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as e:
        calls, err = None, f"not JSON (column {e.colno}: {e.msg})"
    else:
        err = ""
    calls = [calls] if isinstance(calls, dict) else calls
    if not err and not (isinstance(calls, list) and calls and all(isinstance(c, dict) and "name" in c for c in calls)):
        err = "expected an object with 'name' and 'arguments', or a list of them"
    if err:
        chk.problems.append(f"{where}: function_call value: {err}")
        return None
    chk.n_function_calls += 1
    tool_calls = [{"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
                  for c in calls]
    return {"role": "assistant", "content": "", "tool_calls": tool_calls}


def _from_sharegpt(row: dict, source: str, chk: _Check) -> Example | None:
    turns = _decoded_list(row, "conversations", chk)
    system = _string(row, "system", chk, required=False)
    tools = _tools(row, chk)
    if not turns:
        return None
    msgs = [{"role": "system", "content": system}] if system and system.strip() else []
    for i, t in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(t, dict):
            chk.problems.append(f"{where}: must be an object with 'from' and 'value', got {_type_name(t)}")
            continue
        # role/content are accepted as spellings of from/value: some ShareGPT exports use them
        speaker = t.get("from", t.get("role"))
        if speaker is None:
            chk.problems.append(f"{where}: missing 'from' (one of {', '.join(SHAREGPT_ROLES)})")
            continue
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            chk.problems.append(f"{where}: from {speaker!r} is not one of {', '.join(SHAREGPT_ROLES)}"
                                + _did_you_mean(speaker, SHAREGPT_ROLES))
            continue
        key = "value" if "value" in t else ("content" if "content" in t else "value")
        if speaker == "function_call":
            out = _function_call(t.get(key), where, chk)
        else:
            out = _message(t, where, chk, role=role, content_key=key)
        if out is not None:
            msgs.append(out)
    _need_assistant(msgs, "conversations", chk)
    return Example(source=source, kind="chat", messages=msgs, tools=tools)


def _from_alpaca(row: dict, source: str, chk: _Check) -> Example | None:
    instruction = _string(row, "instruction", chk, True, "it is the user message")
    inp = _string(row, "input", chk, required=False)
    output = _string(row, "output", chk, True, "it is the assistant message to train on")
    system = _string(row, "system", chk, required=False)
    history = row.get("history") or []
    if not (isinstance(history, list) and all(
            isinstance(h, list) and len(h) == 2 and all(isinstance(s, str) for s in h) for h in history)):
        chk.problems.append("'history' must be a list of [user, assistant] string pairs")
        history = []
    if chk.problems:
        return None
    msgs = [{"role": "system", "content": system}] if system and system.strip() else []
    for user, assistant in history:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    user = instruction + "\n\n" + inp if inp and inp.strip() else instruction
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Example(source=source, kind="chat", messages=msgs)


def _from_prompt_completion(row: dict, source: str, chk: _Check) -> Example | None:
    prompt, completion = row.get("prompt"), row.get("completion")
    for key, value in (("prompt", prompt), ("completion", completion)):
        if value is None:
            chk.problems.append(f"missing '{key}'")
    if chk.problems:
        return None
    if isinstance(prompt, str) and isinstance(completion, str):
        if not completion.strip():
            chk.problems.append("'completion' is empty (it is the text to train on)")
        return Example(source=source, kind="completion_text", prompt=prompt, completion=completion)
    if isinstance(prompt, list) and isinstance(completion, list):
        tools = _tools(row, chk)
        if not prompt:
            chk.problems.append("'prompt' is an empty list of messages")
        if not completion:
            chk.problems.append("'completion' is an empty list of messages")
        head = _check_messages(prompt, "prompt", chk)
        tail = _check_messages(completion, "completion", chk)
        _need_assistant(tail, "completion", chk)
        return Example(source=source, kind="chat", messages=head + tail, n_prompt=len(head), tools=tools)
    chk.problems.append("'prompt' and 'completion' must both be strings (plain text) or both lists of messages "
                        f"(chat); got {_type_name(prompt)} and {_type_name(completion)}")
    return None


def _from_text(row: dict, source: str, chk: _Check) -> Example | None:
    text = _string(row, "text", chk, True, "nothing to train on")
    return Example(source=source, kind="text", text=text)


_ADAPTERS = {
    "messages": _from_messages, "sharegpt": _from_sharegpt, "alpaca": _from_alpaca,
    "prompt_completion": _from_prompt_completion, "text": _from_text,
}


def role_order_problems(msgs: list[dict]) -> list[str]:
    """Roles out of order, checked before any template sees them: a system message that is not first, two user or
    two assistant messages in a row, a tool result that follows no tool call. Permissive templates render these
    without a word (SmolLM2 even adds its default system prompt before a conversation whose system message is not
    first), strict ones raise a message that names the wrong fix."""
    problems = []
    opt_out = "or set data.allow_any_role_order: true if your template accepts this order"
    for j, m in enumerate(msgs):
        role, prev = m["role"], msgs[j - 1]["role"] if j else None
        if role == "system" and j > 0:
            problems.append(f"messages[{j}]: a system message after messages[0]: templates refuse it or render it "
                            f"where no served conversation has one. Fix: move it to the start, {opt_out}")
        elif role == prev and role in ("user", "assistant"):
            problems.append(f"messages[{j}]: two {role} messages in a row (messages[{j - 1}] and [{j}]). Fix: merge "
                            f"them into one {role} message, {opt_out}")
        elif role == "tool" and prev not in ("assistant", "tool"):
            problems.append(f"messages[{j}]: a tool result after {'a ' + prev + ' message' if prev else 'nothing'}, "
                            f"not after an assistant tool call. Fix: put the assistant's tool call before it, {opt_out}")
    return problems


def adapt_record(rec: Record, fmt: str, allow_any_role_order: bool) -> tuple[Example | None, list[str]]:
    """One raw record -> (Example, []) or (None, problems). Problems have no "file:line: " prefix."""
    ex, chk = _adapt(rec, fmt, allow_any_role_order)
    return ex, chk.problems


def _adapt(rec: Record, fmt: str, allow_any_role_order: bool) -> tuple[Example | None, _Check]:
    chk = _Check()
    if rec.error is not None:
        chk.problems.append(rec.error)
        return None, chk
    row = rec.data
    if not isinstance(row, dict):
        chk.problems.append(f"record must be a JSON object, got {_type_name(row)}")
        return None, chk
    ex = _ADAPTERS[fmt](row, rec.source, chk)
    if not chk.problems and ex.kind == "chat" and not allow_any_role_order:
        chk.problems.extend(role_order_problems(ex.messages))
    if chk.problems:
        missing = next((i for i, p in enumerate(chk.problems) if p.startswith("missing '")), None)
        if missing is not None:
            chk.problems[missing] += _columns_hint(row, fmt)
        return None, chk
    consumed = _CONSUMED[fmt]
    ex.meta = {k: v for k, v in row.items()
               if k not in consumed and isinstance(v, (str, int, float, bool))
               and not (isinstance(v, str) and len(v) > _META_MAX_CHARS)}
    return ex, chk


def _columns_hint(row: dict, fmt: str) -> str:
    other = detect_format([Record("", row)])
    guess = f" — is this format {other[0]}?" if other and other[0] != fmt else ""
    return f" (format {fmt}; the record has columns {_names(row) or 'none'}){guess}"


# ----------------------------------------------------------------------------------------------------------------
# Loading: read every file, settle the format, adapt + validate every record, then raise once or return.


def load_examples(paths: str | Path | Iterable[str | Path], fmt: str, on_invalid: str,
                  rejects_path: str | Path | None, allow_any_role_order: bool, repo: Any = None) -> LoadResult:
    """Read data files into Examples. Raises DataError listing every problem (file:line and message index). `repo`
    (data.hub.DatasetRef): the config and split of the hub ids and dataset repository folders among them."""
    stream = ExampleStream.of(paths, fmt, on_invalid, rejects_path, allow_any_role_order, repo)
    with _gc_paused():
        examples = [ex for chunk in stream for ex in chunk]
    return stream.result(examples)


def examples_from_dataset(ds: Any, name: str, fmt: str, on_invalid: str, rejects_path: str | Path | None,
                          allow_any_role_order: bool) -> LoadResult:
    """The same as load_examples for an in-memory `datasets.Dataset`; sources read "<name>:#<row>"."""
    _check_settings(fmt, on_invalid)
    stream = ExampleStream([_dataset_source(ds, name)], [], fmt, on_invalid, rejects_path, allow_any_role_order)
    with _gc_paused():
        examples = [ex for chunk in stream for ex in chunk]
    return stream.result(examples)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic GC while loading: it rescans the growing heap of acyclic dicts again and again.

    Measured (CPU time) on 100k three-message conversations, 17 MB of JSONL: 1.6 s with the GC on, 1.1 s paused.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_settings(fmt: str, on_invalid: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; use one of auto, {', '.join(FORMATS)}"
                        + _did_you_mean(fmt, FORMATS))
    if on_invalid not in ("error", "skip"):
        raise DataError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")


class ExampleStream:
    """The examples of several inputs, adapted and validated as they are read, in chunks of `chunk`: what
    `load_examples` collects into a list, and what data/pipeline.py renders chunk by chunk so that a set larger than
    memory is never held whole. Iterate once; the format, notes, rejected count and FileInfos are complete when the
    iteration ends, and every problem is raised then, at once (DataError), as load_examples always did.

        stream = ExampleStream.of(["train.jsonl"], "auto", "error", None, False)
        for chunk in stream: ...
        stream.format, stream.notes, stream.files
    """

    def __init__(self, sources: list[Source], errors: list[str], fmt: str, on_invalid: str,
                 rejects_path: str | Path | None, allow_any_role_order: bool, chunk: int = 8192):
        self.sources, self.errors, self.on_invalid = sources, list(errors), on_invalid
        self.rejects_path, self.allow_any_role_order, self.chunk = rejects_path, allow_any_role_order, chunk
        inputs = [(src.head, src.info) for src in sources]
        self.format, self.notes = _settle_format(inputs, fmt, self.errors)
        if self.format is None:
            raise DataError(_capped(self.errors))
        self.files = [src.info for src in sources]
        self.n_rejected = self.n_total = self.n_examples = 0

    @classmethod
    def of(cls, paths: str | Path | Iterable[str | Path], fmt: str, on_invalid: str,
           rejects_path: str | Path | None, allow_any_role_order: bool, repo: Any = None,
           chunk: int = 8192) -> "ExampleStream":
        """Open every input (file-level problems are collected, not raised one by one) and settle the format."""
        _check_settings(fmt, on_invalid)
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise DataError("no data files given (set data.train)")
        sources, errors = [], []
        for p in paths:
            try:
                sources.append(open_source(p, repo))
            except DataError as e:
                errors.extend(e.lines)
        return cls(sources, errors, fmt, on_invalid, rejects_path, allow_any_role_order, chunk)

    def __iter__(self) -> Iterator[list[Example]]:
        bad_lines: list[str] = []  # the first MAX_SHOWN problem lines; n_bad_lines counts them all
        rejects: list[dict] = []
        n_bad_lines = n_joined = n_calls = 0
        chunk: list[Example] = []
        for src in self.sources:
            info = src.info
            info.format = self.format
            licenses = set(info.licenses)
            n = 0
            try:
                for rec in src.records:
                    n += 1
                    ex, chk = _adapt(rec, self.format, self.allow_any_role_order)
                    if ex is not None:
                        n_joined += chk.n_joined
                        n_calls += chk.n_function_calls
                        lic = ex.meta.get("license")
                        if isinstance(lic, str) and lic:
                            licenses.add(lic)
                        chunk.append(ex)
                        if len(chunk) >= self.chunk:
                            self.n_examples += len(chunk)
                            yield chunk
                            chunk = []
                        continue
                    self.n_rejected += 1
                    info.n_rejected += 1
                    if self.on_invalid == "error":
                        n_bad_lines += len(chk.problems)
                        bad_lines += [f"{rec.source}: {p}" for p in chk.problems][:MAX_SHOWN - len(bad_lines)]
                    else:
                        rejects.append({"source": rec.source, "reason": "; ".join(chk.problems),
                                        "record": rec.data if rec.error is None else rec.raw})
            except DataError as e:  # a file-level problem further down the file (bad UTF-8 on line N)
                self.errors.extend(e.lines)
            info.licenses, info.n_records = sorted(licenses), n
            self.n_total += n
        if chunk:
            self.n_examples += len(chunk)
            yield chunk
        self._finish(bad_lines, n_bad_lines, rejects, n_joined, n_calls)

    def _finish(self, bad_lines: list[str], n_bad_lines: int, rejects: list[dict], n_joined: int,
                n_calls: int) -> None:
        """Raise every problem at once, or write the rejects and the notes."""
        if self.errors or bad_lines:
            shown = (self.errors + bad_lines)[:MAX_SHOWN]
            more = len(self.errors) + n_bad_lines - len(shown)
            lines = shown + ([f"... and {more} more"] if more > 0 else [])
            if bad_lines:
                lines.append(f"{self.n_rejected} of {self.n_total} records are invalid: fix them, or set "
                             "data.on_invalid: skip to skip them (each is written to the rejects file with its reason)")
            raise DataError(lines)
        if self.on_invalid == "skip":
            self.notes += _write_rejects(rejects, self.rejects_path, self.n_total)
        if not self.n_examples:
            raise DataError(f"no valid records left: all {self.n_total} records were rejected"
                            + (f" (see {self.rejects_path})" if self.rejects_path else ""))
        if n_joined:
            self.notes.append(f"{n_joined} message(s) had content-part lists; their text parts were joined into one "
                              "string")
        if n_calls:
            self.notes.append(f"{n_calls} ShareGPT function_call turn(s) became assistant tool_calls")

    def result(self, examples: list[Example]) -> LoadResult:
        """The LoadResult of a finished iteration, holding `examples` (all of them, or what the caller kept)."""
        return LoadResult(examples=examples, format=self.format, n_rejected=self.n_rejected, notes=self.notes,
                          files=self.files)


def _settle_format(inputs: list[tuple[list[Record], FileInfo]], fmt: str,
                   errors: list[str]) -> tuple[str | None, list[str]]:
    """The one format for all inputs, and a note saying what was chosen and why. Problems go to `errors`."""
    if fmt != "auto":
        return fmt, [f"format {fmt} (set explicitly)"]
    found: dict[str, list[tuple[str, str]]] = {}  # format -> [(file, reason)]
    for records, info in inputs:
        hit = detect_format(records)
        if hit is None:
            errors.append(_undetected(records, info.path))
            continue
        found.setdefault(hit[0], []).append((info.path, hit[1]))
    if len(found) > 1:
        parts = [f"{', '.join(f for f, _ in files)} {'are' if len(files) > 1 else 'is'} {f} ({files[0][1]})"
                 for f, files in found.items()]
        errors.append(f"the data files mix formats: {'; '.join(parts)}; convert them to one format "
                      "(one run reads one format)")
        return None, []
    if not found:
        return None, []
    chosen, files = next(iter(found.items()))
    reasons = sorted({r for _, r in files})
    names = [f for f, _ in files]
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return chosen, [f"format auto -> {chosen} ({' / '.join(reasons)} in {where})"]


def _write_rejects(rejects: list[dict], rejects_path: str | Path | None, n_total: int) -> list[str]:
    n = len(rejects)
    if rejects_path is not None:
        # written even when empty, so a rejects file left by an earlier run cannot be mistaken for this one's
        path = Path(rejects_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for r in rejects:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    if not n:
        return []
    note = f"skipped {n} invalid record(s) of {n_total} (on_invalid=skip)"
    if rejects_path is not None:
        return [f"{note}; each is in {rejects_path} with its reason"]
    return [f"{note}; no rejects file given, the first ones:"] + [f"  {r['source']}: {r['reason']}" for r in rejects[:5]]


def _capped(lines: list[str], n: int = MAX_SHOWN) -> list[str]:
    return lines[:n] + ([f"... and {len(lines) - n} more"] if len(lines) > n else [])
