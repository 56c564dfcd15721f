"""Compressed data files read as a stream: .jsonl/.json/.csv compressed with gzip, zstd, bzip2 or xz load the same
examples as the plain file, with the same line numbers in every source and error; a truncated or foreign stream is
one line naming where it stopped; Parquet loads with any codec inside it."""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma

import pytest

from shipsft.data import formats
from shipsft.data.formats import read_records
from shipsft.errors import DataError

CONVERSATIONS = [[{"role": "user", "content": f"q{i} ünïcode"}, {"role": "assistant", "content": f"a{i}"}]
                 for i in range(5)]


def compress(data: bytes, codec: str) -> bytes:
    if codec == ".zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[codec](data)


def jsonl() -> bytes:
    # a blank line (line 3) and a record on line 4: line numbers count every line of the decompressed file
    lines = [json.dumps({"messages": c}) for c in CONVERSATIONS[:2]] + [""] + \
            [json.dumps({"messages": c}) for c in CONVERSATIONS[2:]]
    return ("\n".join(lines) + "\n").encode()


def load(path):
    return formats.load_examples([path], "auto", "error", None, False)


@pytest.mark.parametrize("codec", [".gz", ".zst", ".bz2", ".xz"])
def test_compressed_jsonl_loads_as_the_plain_file_with_its_line_numbers(tmp_path, codec):
    plain, packed = tmp_path / "t.jsonl", tmp_path / f"t.jsonl{codec}"
    plain.write_bytes(jsonl())
    packed.write_bytes(compress(jsonl(), codec))
    a, b = load(plain), load(packed)
    assert [e.messages for e in b.examples] == [e.messages for e in a.examples] == CONVERSATIONS
    assert [e.source for e in b.examples] == [f"{packed}:{n}" for n in (1, 2, 4, 5, 6)]
    records, info = read_records(packed)
    assert info.n_records == 5 and info.sha256 == __import__("hashlib").sha256(packed.read_bytes()).hexdigest()


def test_compressed_json_and_csv_load_with_their_sources(tmp_path):
    doc = tmp_path / "t.json.gz"
    doc.write_bytes(gzip.compress(json.dumps([{"messages": c} for c in CONVERSATIONS]).encode()))
    assert [e.messages for e in load(doc).examples] == CONVERSATIONS
    assert [e.source for e in load(doc).examples] == [f"{doc}:#{i}" for i in range(5)]

    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["prompt", "completion"])
    w.writerow(["first\nspans two lines", "one"])  # a quoted field over lines 2-3: the next row starts at line 4
    w.writerow(["second", "two"])
    table = tmp_path / "t.csv.zst"
    table.write_bytes(compress(buf.getvalue().encode(), ".zst"))
    records, _ = read_records(table)
    assert [(r.source, r.data) for r in records] == [
        (f"{table}:2", {"prompt": "first\nspans two lines", "completion": "one"}),
        (f"{table}:4", {"prompt": "second", "completion": "two"})]


def test_errors_in_a_compressed_file_name_the_decompressed_line(tmp_path):
    bad = jsonl().replace(b'"a3"', b'"a3" oops', 1)  # line 5 is not JSON
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(bad))
    with pytest.raises(DataError) as e:
        load(path)
    assert e.value.lines == [f"{path}:5: invalid JSON at column 106: Expecting ',' delimiter",
                             "1 of 5 records are invalid: fix them, or set data.on_invalid: skip to skip them (each is "
                             "written to the rejects file with its reason)"]
    latin = tmp_path / "l.csv.gz"
    latin.write_bytes(gzip.compress("prompt,completion\nZürich,x\n".encode("latin-1")))
    with pytest.raises(DataError) as e:
        read_records(latin)
    assert e.value.lines == [f"{latin}:2: not valid UTF-8 (byte 0xfc); save the file as UTF-8"]


@pytest.mark.parametrize("codec", [".gz", ".zst"])
def test_a_truncated_stream_names_the_line_it_stopped_at_never_a_shorter_data_set(tmp_path, codec):
    data = b"".join(json.dumps({"text": f"document {i} " + "x" * 200}).encode() + b"\n" for i in range(2000))
    packed = compress(data, codec)
    path = tmp_path / f"t.jsonl{codec}"
    path.write_bytes(packed[:len(packed) // 2])  # an interrupted copy
    with pytest.raises(DataError) as e:
        read_records(path)
    (line,) = e.value.lines
    read = int(line.split(": ")[0].rsplit(":", 1)[1]) - 1
    assert 0 <= read < 2000
    assert line.startswith(f"{path}:{read + 1}: cannot decompress {codec} (")
    assert line.endswith(f"the file is truncated or not {codec}: {read} complete lines were read. Fix: copy the file "
                         "again")


def test_a_file_that_is_not_what_its_name_says_and_concatenated_zstd_frames(tmp_path):
    fake = tmp_path / "t.jsonl.gz"
    fake.write_text('{"text": "plain, not gzip"}\n')
    with pytest.raises(DataError, match=r"t.jsonl.gz:1: cannot decompress .gz \(BadGzipFile: Not a gzipped file"):
        read_records(fake)
    two = tmp_path / "two.jsonl.zst"  # zstd -c a b > two.zst: two frames, one file
    two.write_bytes(compress(b'{"text": "a"}\n', ".zst") + compress(b'{"text": "b"}\n', ".zst"))
    assert [(r.source, r.data) for r in read_records(two)[0]] == [(f"{two}:1", {"text": "a"}),
                                                                   (f"{two}:2", {"text": "b"})]
    with pytest.raises(DataError, match=r"unsupported file type '.parquet.gz'"):
        read_records(_touch(tmp_path / "t.parquet.gz"))


def _touch(path):
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize("codec", ["none", "snappy", "gzip", "zstd", "brotli", "lz4"])
def test_parquet_with_any_codec(tmp_path, codec):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"messages": [c for c in CONVERSATIONS]}), path, compression=codec)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression.lower() == \
        ("uncompressed" if codec == "none" else codec)
    assert [e.messages for e in load(path).examples] == CONVERSATIONS
