"""The gzlog layout: header, the 35-byte state, stored block headers, sizes, CRC-32 maths.

Pure byte arithmetic, no I/O. Offsets count from the start of the ``.gz`` file;
bit positions from its bit 0 (bit 0 of byte 0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "APPEND_OP",
    "BLOCK_SPAN",
    "COMPRESS_OP",
    "DEFLATE_START",
    "DICT_SIZE",
    "EMPTY_LOG",
    "HEADER",
    "M32",
    "MAX_APPEND",
    "MAX_STORE",
    "MAX_TAIL",
    "NO_OP",
    "OP_NAMES",
    "REPLACE_OP",
    "STATE",
    "TRAILER",
    "GzlogState",
    "State",
    "crc32_combine",
    "operation_of",
    "stored_block_header",
]

#: The fixed 16-byte gzip header of a gzlog file (FEXTRA with one 'ap' subfield).
HEADER = bytes((0x1F, 0x8B, 8, 4, 0, 0, 0, 0, 0, 0xFF, 39, 0, 0x61, 0x70, 35, 0))
#: The state in the extra field, at offset 16: first last ccrc clen tcrc tlen stored flags.
STATE = struct.Struct("<QQIIIIHB")
TRAILER = struct.Struct("<II")  # gzip trailer: CRC-32 and length of all data
_LENS = struct.Struct("<HH")  # LEN and NLEN of a stored block
DEFLATE_START = 51  # offset of the deflate stream: header and state come before it
#: A new, empty log: exactly 64 bytes.
EMPTY_LOG = HEADER + STATE.pack(52, 52, 0, 0, 0, 0, 0, 5) + b"\x01\x00\x00\xff\xff" + bytes(8)

MAX_STORE = 16384  # data bytes per stored block
BLOCK_SPAN = MAX_STORE + 5  # distance between the LEN fields of two consecutive full blocks
DICT_SIZE = 32768
#: Largest single gzlog append: a longer :meth:`Gzlog.append` is split into
#: appends of this size, each atomic on its own.
MAX_APPEND = 1 << 20
#: Largest uncompressed (stored) tail: an append that would make it longer
#: compresses the tail first. A tail this long (counted in whole KiB, as the C
#: program does) is due for compression.
MAX_TAIL = 1 << 20
M32 = 0xFFFFFFFF

NO_OP, APPEND_OP, COMPRESS_OP, REPLACE_OP = 0, 1, 2, 3
OP_NAMES = ("none", "append", "compress", "replace")


def operation_of(head: bytes) -> str:
    """The operation a state marks as in progress (``"none"`` for a short ``head``)."""
    if len(head) < DEFLATE_START:
        return "none"
    return OP_NAMES[(head[DEFLATE_START - 1] >> 3) & 3]


@dataclass(frozen=True)
class GzlogState:
    """The 35-byte state of a gzlog plus derived sizes."""

    first: int
    last: int
    ccrc: int
    clen: int
    tcrc: int
    tlen: int
    stored: int
    back: int
    op: int
    file_size: int

    @property
    def op_name(self) -> str:
        """``"none"``, ``"append"``, ``"compress"`` or ``"replace"``."""
        return OP_NAMES[self.op]

    @property
    def stored_bytes(self) -> int:
        """Length of the uncompressed (stored) tail."""
        return (self.last - self.first) // BLOCK_SPAN * MAX_STORE + self.stored

    @property
    def expected_size(self) -> int:
        """File size the state gives when no operation is in progress (data and trailer)."""
        return self.last + 4 + self.stored + 8

    @property
    def compressed_bytes(self) -> int:
        """File bytes spanned by the compressed part of the deflate stream."""
        return max(0, (self.first * 8 - self.back + 7) // 8 - DEFLATE_START)


_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    m = 1 << 31
    p = 0
    while m:
        if a & m:
            p ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _make_x2n() -> list[int]:
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _make_x2n()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc32(A), crc32(B) and len(B), like zlib's crc32_combine."""
    p = 1 << 31  # x^0
    k = 3
    n = len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1 & M32) ^ (crc2 & M32)


# --- small I/O helpers ---


def stored_block_header(prev: int, back: int, final: bool, length: int) -> bytes:
    """The bytes that C's log_last writes for a stored block.

    The block's 3-bit header begins ``back`` bits before its LEN field; the
    bits of ``prev`` (the byte holding the header's first bit) below it belong
    to earlier data and are kept.
    """
    mask = 0x80 >> ((back - 1) & 7)
    b = (prev & (mask - 1)) | (mask if final else 0)
    lens = _LENS.pack(length, length ^ 0xFFFF)
    return (bytes((b, 0)) if back > 8 else bytes((b,))) + lens


class State:
    """Mutable in-memory copy of the 35-byte state, decoded from a file's first 51 bytes."""

    __slots__ = ("back", "ccrc", "clen", "first", "last", "op", "stored", "tcrc", "tlen")

    def __init__(self, buf: bytes):
        (self.first, self.last, self.ccrc, self.clen, self.tcrc, self.tlen, self.stored, flags) = (
            STATE.unpack_from(buf, 16)
        )
        self.back = 3 + (flags & 7)
        self.op = (flags >> 3) & 3

    def pack(self, op: int) -> bytes:
        """The 35 bytes of this state, marked for operation ``op``."""
        return STATE.pack(*self._numbers(), (self.back - 3) | (op << 3))

    def _numbers(self) -> tuple[int, int, int, int, int, int, int]:
        """first, last, ccrc, clen, tcrc, tlen, stored: the state's fields before its flags."""
        return self.first, self.last, self.ccrc, self.clen, self.tcrc, self.tlen, self.stored

    def tail_len(self) -> int:
        """Length of the stored (uncompressed) tail."""
        return (self.last - self.first) // BLOCK_SPAN * MAX_STORE + self.stored

    def due(self) -> bool:
        """Whether the stored tail is due for compression (C's rule, in whole KiB)."""
        return ((self.last - self.first) >> 10) + (self.stored >> 10) >= MAX_TAIL >> 10

    def end_bit(self) -> int:
        """Bit where the first stored block's header begins: the compressed part ends there."""
        return self.first * 8 - self.back

    def public(self, size: int) -> GzlogState:
        """The frozen, public view of this state, for a file of ``size`` bytes."""
        return GzlogState(*self._numbers(), self.back, self.op, size)
