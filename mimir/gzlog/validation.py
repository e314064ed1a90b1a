"""Validation of a gzlog: the checks before anything is written, and reading the tail back.

Every function takes an open descriptor of the ``.gz`` file and a decoded
:class:`~mimir.gzlog.format.State`; a check that fails raises
:class:`~mimir.gzlog.errors.InvalidLog` saying what is wrong and where.
"""

from __future__ import annotations

import os
import zlib

from mimir.gzlog.deflate import inflate
from mimir.gzlog.errors import InvalidLog
from mimir.gzlog.files import pread
from mimir.gzlog.format import (
    APPEND_OP,
    BLOCK_SPAN,
    COMPRESS_OP,
    DEFLATE_START,
    HEADER,
    M32,
    MAX_STORE,
    NO_OP,
    REPLACE_OP,
    TRAILER,
    State,
    crc32_combine,
    stored_block_header,
)

__all__ = ["check_compressed", "read_tail", "stored_data", "stored_tail_from_gz", "validate"]


def stored_data(fd: int, s: State, last: int, stored: int, *, check_last: bool) -> bytes | None:
    """Data of the stored blocks from s.first to last, or None if a header is wrong."""
    n0 = 2 if s.back > 8 else 1
    base = s.first - n0
    region = pread(fd, last + 4 + stored - base, base)
    if len(region) != last + 4 + stored - base:
        return None
    mv = memoryview(region)
    parts = []
    pos, back = s.first, s.back
    while True:
        is_last = pos == last
        r = pos - base
        nb = 2 if back > 8 else 1
        length = stored if is_last else MAX_STORE
        if not is_last or check_last:
            actual = region[r - nb : r + 4]
            if actual != stored_block_header(actual[0], back, is_last, length):
                return None
        parts.append(mv[r + 4 : r + 4 + length])
        if is_last:
            return b"".join(parts)
        pos += BLOCK_SPAN
        back = 8


def validate(fd: int, size: int, head: bytes) -> State:
    """The state of the file open at ``fd``, after checking everything but the compressed
    part: header, flags, pointers, stored block headers, the tail's CRC, the trailer.

    Raises :class:`InvalidLog` saying what is wrong and where.
    """
    if size < DEFLATE_START or len(head) < DEFLATE_START:
        raise InvalidLog(f"file is {size} bytes long, too short for a gzlog header")
    if head[:16] != HEADER:
        bad = next(i for i in range(16) if head[i] != HEADER[i])
        raise InvalidLog(f"bytes 0-15 are not the gzlog gzip header (byte {bad} differs)")
    flags = head[50]
    if flags & 0xE0:
        raise InvalidLog(f"reserved bits set in the state's flag byte (offset 50: 0x{flags:02x})")
    s = State(head)
    where = f"first={s.first} last={s.last} stored={s.stored} back={s.back} op={s.op}"
    if s.end_bit() < DEFLATE_START * 8:
        raise InvalidLog(f"first stored block starts before the deflate data ({where})")
    if s.last < s.first or (s.last - s.first) % BLOCK_SPAN:
        raise InvalidLog(f"last stored block pointer is inconsistent ({where})")
    if s.stored > MAX_STORE:
        raise InvalidLog(f"stored block length over {MAX_STORE} ({where})")
    end = s.last + 4 + s.stored
    if s.op in (NO_OP, REPLACE_OP) and size != end + 8:
        raise InvalidLog(f"file size {size} differs from {end + 8} given by the state ({where})")
    if s.op == APPEND_OP and size < end:
        raise InvalidLog(f"file size {size} is shorter than the state says ({where})")
    if s.op in (COMPRESS_OP, REPLACE_OP) and (s.last != s.first or s.stored):
        raise InvalidLog(f"state of a compression has a stored tail ({where})")
    if s.op == COMPRESS_OP:
        if not (s.tlen - s.clen) & M32:
            raise InvalidLog(f"compression marked with nothing to compress ({where})")
        if size < s.first:
            raise InvalidLog(f"file size {size} is shorter than the state says ({where})")
        return s
    if s.op == REPLACE_OP and (s.tcrc != s.ccrc or s.tlen != s.clen):
        raise InvalidLog(f"state of a finished compression has inconsistent CRCs ({where})")
    tail = stored_data(fd, s, s.last, s.stored, check_last=s.op != APPEND_OP)
    if tail is None:
        raise InvalidLog(f"a stored block header is damaged ({where})")
    n = len(tail)
    if (s.clen + n) & M32 != s.tlen or crc32_combine(s.ccrc, zlib.crc32(tail), n) != s.tcrc:
        raise InvalidLog(f"CRC or length of the stored tail ({n} bytes) do not match the state")
    if s.op != APPEND_OP and pread(fd, 8, end) != TRAILER.pack(s.tcrc, s.tlen):
        raise InvalidLog(f"gzip trailer at offset {end} does not match the state")
    return s


def check_compressed(fd: int, s: State) -> bytes:
    """Inflate the compressed part up to the first stored block; check ccrc/clen.

    Also proves ``back`` right. Returns the last 32 KiB of that data: the proven
    dictionary for the next compression.
    """
    crc, total, tail = inflate(fd, s, DEFLATE_START * 8, None)
    if total & M32 != s.clen or crc != s.ccrc:
        raise InvalidLog(
            f"compressed data ({total} bytes, crc {crc:08x}) does not match the state "
            f"(clen={s.clen}, ccrc={s.ccrc:08x})"
        )
    return tail


def read_tail(fd: int, s: State) -> bytes:
    """The stored tail the state ``s`` describes, checked against its CRC."""
    data = stored_data(fd, s, s.last, s.stored, check_last=True)
    if data is None:
        raise InvalidLog("a stored block header is damaged")
    if crc32_combine(s.ccrc, zlib.crc32(data), len(data)) != s.tcrc:
        raise InvalidLog(f"CRC of the stored tail ({len(data)} bytes) does not match the state")
    return data


def stored_tail_from_gz(fd: int, s: State, length: int) -> bytes | None:
    """During a compress recovery: the stored tail, if P.gz still holds it intact."""
    nblocks = (length + MAX_STORE - 1) // MAX_STORE
    last = s.first + (nblocks - 1) * BLOCK_SPAN
    stored = length - (nblocks - 1) * MAX_STORE
    size = os.fstat(fd).st_size
    if last + 4 + stored > size:
        return None
    data = stored_data(fd, s, last, stored, check_last=True)
    if data is None or crc32_combine(s.ccrc, zlib.crc32(data), length) != s.tcrc:
        return None
    return data
