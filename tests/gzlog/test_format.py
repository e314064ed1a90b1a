"""Tests of the gzlog layout (mimir/gzlog/format.py) and of the state as readers see it."""

from __future__ import annotations

import random
import struct
import zlib

from mimir.gzlog import (
    DEFLATE_START,
    EMPTY_LOG,
    HEADER,
    Gzlog,
    crc32_combine,
    parse_state,
    pending_operation,
)
from mimir.gzlog.format import BLOCK_SPAN, MAX_STORE, State, operation_of, stored_block_header


def test_crc32_combine_matches_zlib():
    """crc32_combine agrees with zlib.crc32 of the concatenation, lengths 0 to 2 MiB."""
    rnd = random.Random(1)
    for n in (0, 1, 7, 1000, 65536, 2 * 1024 * 1024 + 3):
        a, b = rnd.randbytes(333), rnd.randbytes(n)
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), n) == zlib.crc32(a + b)


def test_empty_log_state_parses_to_one_empty_final_block() -> None:
    """The state of a new log: first = last = 52, back 8, nothing stored, no operation."""
    st = parse_state(EMPTY_LOG)
    assert st is not None
    assert (st.first, st.last, st.back, st.stored, st.op_name, st.file_size) == (
        52,
        52,
        8,
        0,
        "none",
        64,
    )
    assert st.expected_size == len(EMPTY_LOG)
    assert parse_state(EMPTY_LOG[: DEFLATE_START - 1]) is None
    assert parse_state(b"\x00" + EMPTY_LOG[1:]) is None


def test_state_round_trips_with_each_operation() -> None:
    """Packing a state marked for each operation and decoding it gives the operation back."""
    state = State(EMPTY_LOG)
    for op, name in enumerate(("none", "append", "compress", "replace")):
        head = HEADER + state.pack(op)
        assert operation_of(head) == name
        assert parse_state(head, 64).op_name == name
    assert operation_of(HEADER) == "none"


def test_stored_block_headers_keep_earlier_bits() -> None:
    """A stored block header written over a shared byte keeps the earlier data's bits."""
    assert stored_block_header(0, 8, True, 0) == b"\x01\x00\x00\xff\xff"
    assert stored_block_header(0xFF, 3, False, 5) == bytes((0x1F,)) + struct.pack("<HH", 5, 0xFFFA)
    assert stored_block_header(0xFF, 10, True, 1) == bytes((0x7F, 0)) + struct.pack(
        "<HH", 1, 0xFFFE
    )
    assert BLOCK_SPAN == MAX_STORE + 5


def test_pending_operation_reads_the_state_of_a_log(tmp_path) -> None:
    """pending_operation names the operation a log's state marks, without the lock."""
    path = tmp_path / "run.jsonl.gz"
    with Gzlog(path) as log:
        log.append(b"x\n")
    assert pending_operation(path) == "none"
    data = bytearray(path.read_bytes())
    data[DEFLATE_START - 1] |= 1 << 3
    path.write_bytes(bytes(data))
    assert pending_operation(path) == "append"
