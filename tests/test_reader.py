"""Reading logs back: mimir.load and mimir.open."""

from __future__ import annotations

import decimal
import gzip
import itertools
import json
import logging
import math

import pytest

import mimir
from mimir import MalformedLogError

ENTRIES = [
    {"iteration": 0, "training_error": 1.0},
    {"iteration": 1, "training_error": 0.5, "nested": {"norms": [1, 2.5]}},
    {"iteration": 2, "training_error": math.inf, "text": "Mímir \U0001f600"},
    {"iteration": 3, "big": 2**80},
]


def jsonl_bytes(entries) -> bytes:
    """Entries as line-delimited JSON."""
    return b"".join(json.dumps(entry).encode() + b"\n" for entry in entries)


@pytest.fixture
def plain_log(tmp_path):
    """A plain .jsonl log holding ENTRIES."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(jsonl_bytes(ENTRIES))
    return path


@pytest.fixture
def gzip_log(tmp_path):
    """A .jsonl.gz log holding ENTRIES, written with Python's gzip module."""
    path = tmp_path / "run.jsonl.gz"
    with gzip.open(path, "wb") as file:
        file.write(jsonl_bytes(ENTRIES))
    return path


def test_load_returns_every_entry_of_a_plain_log(plain_log):
    """mimir.load returns the entries of a .jsonl file as a list of dicts."""
    entries = mimir.load(plain_log)
    assert isinstance(entries, list)
    assert entries == ENTRIES


def test_load_accepts_str_paths(plain_log):
    """mimir.load accepts a str as well as a path object."""
    assert mimir.load(str(plain_log)) == ENTRIES


def test_load_reads_gzip_logs(gzip_log):
    """mimir.load reads gzip-compressed logs written with Python's gzip module."""
    assert mimir.load(gzip_log) == ENTRIES


def test_load_reads_multi_member_gzip_logs(gzip_log):
    """A gzip file appended to (several members) reads as one log."""
    with gzip.open(gzip_log, "ab") as file:
        file.write(jsonl_bytes([{"appended": True}]))
    assert mimir.load(gzip_log) == [*ENTRIES, {"appended": True}]


def test_compression_is_recognised_by_content(tmp_path):
    """A gzip file without a .gz suffix is read; a file named .gz that is not gzip is an error."""
    disguised = tmp_path / "compressed.jsonl"
    disguised.write_bytes(gzip.compress(jsonl_bytes(ENTRIES)))
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_bytes(jsonl_bytes(ENTRIES))
    assert mimir.load(disguised) == ENTRIES
    with pytest.raises(mimir.DamagedLogError, match="not a gzip file"):
        mimir.load(plain)


def test_open_iterates_lazily_as_a_context_manager(tmp_path):
    """mimir.open yields entries one at a time: a bad line later on is not read early."""
    path = tmp_path / "lazy.jsonl"
    path.write_bytes(jsonl_bytes(ENTRIES[:2]) + b"not json\n")
    with mimir.open(path) as entries:
        assert list(itertools.islice(entries, 2)) == ENTRIES[:2]
        with pytest.raises(MalformedLogError):
            next(iter(entries))


def test_open_reader_is_closed_after_the_with_block(plain_log):
    """Iterating a reader after its with-block is an error, not a silent empty log."""
    with mimir.open(plain_log) as entries:
        first = next(iter(entries))
    assert first == ENTRIES[0]
    with pytest.raises(ValueError, match="closed"):
        list(entries)


def test_open_reads_gzip_logs(gzip_log):
    """mimir.open iterates over compressed logs too."""
    with mimir.open(gzip_log) as entries:
        assert [entry["iteration"] for entry in entries] == [0, 1, 2, 3]


def test_json_keyword_arguments_are_passed_on(plain_log, gzip_log):
    """object_hook=, parse_float= and friends go to json.loads."""
    hooked = mimir.load(plain_log, object_hook=lambda d: {"wrapped": d} if "norms" in d else d)
    assert hooked[1]["nested"] == {"wrapped": {"norms": [1, 2.5]}}
    with mimir.open(gzip_log, parse_float=decimal.Decimal) as entries:
        assert next(iter(entries))["training_error"] == decimal.Decimal("1.0")


def test_incomplete_last_line_is_left_out(tmp_path):
    """A last line without its newline (still being written) is not returned."""
    path = tmp_path / "growing.jsonl"
    path.write_bytes(jsonl_bytes(ENTRIES) + b'{"iteration": 4, "trai')
    assert mimir.load(path) == ENTRIES
    path.write_bytes(jsonl_bytes(ENTRIES) + b'{"iteration": 4}')  # valid JSON, still no newline
    assert mimir.load(path) == ENTRIES


def test_truncated_gzip_stream_is_an_error_or_on_request_a_prefix(tmp_path):
    """A gzip log cut at any byte raises DamagedLogError; errors="partial" gives a prefix."""
    entries = [{"i": i, "pad": "p" * (i % 7)} for i in range(40)]
    data = gzip.compress(jsonl_bytes(entries), compresslevel=1)
    path = tmp_path / "cut.jsonl.gz"
    seen_lengths = set()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(mimir.DamagedLogError):
            mimir.load(path)
        with pytest.warns(mimir.PartialReadWarning):
            loaded = mimir.load(path, errors="partial")
        assert loaded == entries[: len(loaded)], cut
        seen_lengths.add(len(loaded))
    path.write_bytes(data)
    assert mimir.load(path) == entries
    assert 0 in seen_lengths and max(seen_lengths) > 30


def test_truncated_gzip_with_incomplete_line_inside_stream(tmp_path):
    """A finished gzip member whose text ends without a newline gives the complete lines only."""
    path = tmp_path / "torn.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_bytes(ENTRIES) + b'{"partial": '))
    assert mimir.load(path) == ENTRIES


def test_blank_lines_are_skipped(tmp_path):
    """Blank lines are ignored."""
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b'\n{"a": 1}\n\n  \n{"a": 2}\n')
    assert mimir.load(path) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_malformed_line_names_file_and_line(tmp_path, compressed):
    """A line that is not JSON raises MalformedLogError (a ValueError) with file and line number."""
    path = tmp_path / ("bad.jsonl.gz" if compressed else "bad.jsonl")
    data = b'{"a": 1}\n\n{"a": oops}\n{"a": 3}\n'
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.raises(MalformedLogError) as info:
        mimir.load(path)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.lineno == 3
    assert error.filename == str(path)
    assert str(path) in str(error)
    assert "line 3" in str(error)


def test_invalid_utf8_is_a_malformed_line(tmp_path):
    """Bytes that are not UTF-8 give a MalformedLogError naming the line."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"a": 1}\n{"name": "M\xedmir"}\n')
    with pytest.raises(MalformedLogError) as info:
        mimir.load(path)
    assert info.value.lineno == 2


def test_damaged_gzip_is_a_malformed_log(tmp_path):
    """A gzip log whose checksum does not match raises MalformedLogError, not a zlib error."""
    path = tmp_path / "damaged.jsonl.gz"
    data = bytearray(gzip.compress(jsonl_bytes(ENTRIES)))
    data[-8] ^= 0xFF  # the CRC-32 of the member
    path.write_bytes(bytes(data))
    with pytest.raises(MalformedLogError) as info:
        mimir.load(path)
    assert info.value.filename == str(path)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    """Loading a log that does not exist raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        mimir.load(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError):
        mimir.open(tmp_path / "missing.jsonl")


def test_empty_file_is_an_empty_log(tmp_path):
    """An empty file is a log with no entries."""
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert mimir.load(path) == []


def test_reads_what_mimir_writes(tmp_path):
    """A log written by mimir.Logger loads back as the logged entries, NaN and big ints included."""
    path = tmp_path / "round.jsonl"
    logged = [{"i": i, "x": i / 3, "big": 2**70 + i, "nan": math.nan} for i in range(50)]
    with mimir.Logger(filename=path, formatter=None) as logger:
        for entry in logged:
            logger.log(entry)
    loaded = mimir.load(path)
    assert len(loaded) == 50
    for got, want in zip(loaded, logged, strict=True):
        assert math.isnan(got.pop("nan"))
        assert got == {k: v for k, v in want.items() if k != "nan"}


def test_reader_sees_a_prefix_of_a_log_being_written(tmp_path):
    """Loading a log while a handler is still writing it gives a prefix of the entries."""
    path = tmp_path / "live.jsonl"
    handler = mimir.JSONLFileHandler(path, flush_interval=0)
    logger = logging.Logger("mimir-test-reader")
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.info({"i": i})
            if i % 20 == 0:
                assert mimir.load(path) == [{"i": n} for n in range(i + 1)]
    finally:
        handler.close()
