"""JSON that stays JSON: every file shipsft writes goes through `dumps`, which writes NaN and infinities as null.

`json.dumps(float("nan"))` gives the bare token `NaN`, which is not JSON: strict parsers (browsers, jq, most
languages) reject the whole file. A metric that could not be measured, or a loss that went non-finite (the step is
skipped and marked `"skipped": true`), is written as null. numpy scalars and arrays, tuples, sets and paths are
converted to their JSON equivalents.

    from shipsft.runs.jsonio import write_json, JsonlWriter
    write_json(path, {"loss": float("nan")})          # {"loss": null}, written atomically
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def clean(obj: Any) -> Any:
    """A copy of `obj` made of JSON types only: non-finite floats -> None, numpy -> Python, tuples/sets -> lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays, torch tensors
    if callable(tolist):
        return clean(tolist())
    return str(obj)


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(clean(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write to a temporary file beside `path`, fsync, then rename over it: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json(path: Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text_atomic(path, dumps(obj, indent) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def jsonl_records(path: Path, start: int, end: int | None = None) -> list[tuple[int, dict]]:
    """(byte offset, record) of every complete line of a JSONL file between `start` and `end` bytes; a line a kill
    cut in half, or one that is not a JSON object, is not a record."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(start)
        blob = f.read() if end is None else f.read(max(0, end - start))
    out, pos = [], start
    for line in blob.split(b"\n")[:-1]:  # the part after the last newline is not a complete line
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            out.append((pos, record))
        pos += len(line) + 1
    return out


class JsonlWriter:
    """Append one JSON object per line, flushed per line, so a killed run keeps every line it wrote."""

    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(dumps(record) + "\n")
        self._f.flush()

    def tell(self) -> int:
        self._f.flush()
        return self._f.tell()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
