"""Deflate splicing: reading the compressed part back, and compressing a tail into it.

Python's :mod:`zlib` has no ``deflatePrime``, and deflate pads the stored blocks
it emits for incompressible data to byte boundaries counted from the start of its
output; so compressed data is always spliced in at a byte boundary of the file
(see the package docstring), and read back from any bit position by shifting.
"""

from __future__ import annotations

import errno
import threading
import zlib
from collections.abc import Iterator

from mimir.gzlog.errors import GzlogError, InvalidLog
from mimir.gzlog.files import pread
from mimir.gzlog.format import DICT_SIZE, State

__all__ = [
    "SPLIT",
    "flush_block_bit",
    "inflate",
    "next_dict",
    "raw_deflate",
    "skip_empty_stored",
]

_READ_CHUNK = 1 << 17  # compressed bytes read per step of an inflate
_MAX_OUT = 1 << 19  # inflate output per call: large fresh buffers cost page faults
SPLIT = 1 << 18  # data of a compression above this size is deflated in two halves at once
_SYNC_MARK = b"\x00\x00\xff\xff"  # LEN/NLEN of the empty stored block a sync flush ends with


def skip_empty_stored(fd: int, bit: int, end_bit: int) -> int:
    """The bit after an empty, non-final stored block at ``bit`` (byte-aligned), else bit.

    Our compressions that begin off a byte boundary begin with one: inflating from
    the byte after it needs no shift of the data (a shifted stream cannot inflate
    deflate's own stored blocks, whose padding counts from the true byte boundaries).
    """
    if not bit & 7:
        return bit
    pad_end = (bit + 3 + 7) & ~7  # the byte boundary after the 3 header bits
    if pad_end + 32 > end_bit:
        return bit
    head = pread(fd, (pad_end >> 3) - (bit >> 3) + 4, bit >> 3)
    if len(head) < 5 or head[-4:] != b"\x00\x00\xff\xff":
        return bit
    if int.from_bytes(head[:-4], "little") >> (bit & 7):  # BFINAL, BTYPE, padding: all 0
        return bit
    return pad_end + 32


def _deflate_bits(fd: int, start_bit: int, end_bit: int) -> Iterator[bytes]:
    """The deflate bits of the file from ``start_bit`` to ``end_bit``, as a raw stream.

    Bit positions count from the file's start (bit 0 of byte 0). The bytes are
    shifted so that ``start_bit`` becomes bit 0 (no shift in the common case of a
    byte-aligned start), and a final empty stored block is added after
    ``end_bit`` so that a complete stream must end exactly there.
    """
    k = start_bit & 7
    base = start_bit >> 3
    nbits = end_bit - start_bit
    whole = nbits >> 3
    j = 0
    while j < whole:
        n = min(_READ_CHUNK, whole - j)
        want = n + (1 if k else 0)
        raw = pread(fd, want, base + j)
        if len(raw) != want:
            raise InvalidLog("file ends inside the compressed data")
        if k:
            raw = (int.from_bytes(raw, "little") >> k).to_bytes(want, "little")[:n]
        yield raw
        j += n
    r = nbits & 7
    rest = pread(fd, (k + r + 7) // 8, base + whole) if k + r else b""
    if len(rest) != (k + r + 7) // 8:
        raise InvalidLog("file ends inside the compressed data")
    bits = (int.from_bytes(rest, "little") >> k) & ((1 << r) - 1)
    bits |= 1 << r  # BFINAL=1, BTYPE=00: an empty, final stored block, then LEN/NLEN
    yield bits.to_bytes((r + 10) // 8, "little") + b"\x00\x00\xff\xff"


def inflate(fd: int, s: State, start_bit: int, zdict: bytes | None) -> tuple[int, int, bytes]:
    """Inflate the deflate data from ``start_bit`` up to the first stored block.

    Returns the CRC-32 and length of the output and its last 32 KiB; raises
    :class:`InvalidLog` if the data is damaged or does not end exactly where the
    first stored block's header begins.
    """
    d = zlib.decompressobj(-15, zdict=zdict) if zdict else zlib.decompressobj(-15)
    end_bit = s.end_bit()
    crc = total = 0
    tail = b""
    try:
        for chunk in _deflate_bits(fd, start_bit, end_bit):
            if d.eof:  # the stream ended inside the compressed part
                raise InvalidLog(
                    f"deflate stream ends before offset {end_bit >> 3} (first={s.first})"
                )
            buf = chunk
            while True:
                out = d.decompress(buf, _MAX_OUT)
                if out:
                    crc = zlib.crc32(out, crc)
                    total += len(out)
                    tail = out[-DICT_SIZE:] if len(out) >= DICT_SIZE else (tail + out)[-DICT_SIZE:]
                buf = d.unconsumed_tail
                if d.eof or (not buf and len(out) < _MAX_OUT):
                    break
    except zlib.error as e:
        raise InvalidLog(f"compressed data is damaged ({e}; first={s.first})") from None
    if not d.eof or d.unused_data:
        raise InvalidLog(
            f"compressed data does not end where the first stored block begins "
            f"(first={s.first}, back={s.back})"
        )
    return crc, total, tail


def next_dict(zdict: bytes | None, data: bytes) -> bytes:
    if len(data) >= DICT_SIZE or not zdict:
        return data[-DICT_SIZE:]
    return zdict[-(DICT_SIZE - len(data)) :] + data


def _deflate_part(
    data: memoryview, zdict: bytes | None, level: int, flush: int = zlib.Z_PARTIAL_FLUSH
) -> bytes:
    """Raw deflate (window 15, memory level 8) ending with a partial (or ``flush``) flush."""
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush(flush)


def raw_deflate(data: bytes, zdict: bytes | None, level: int) -> bytes:
    """Raw deflate of ``data`` with preset dictionary ``zdict``, ending in a partial flush.

    The output must be placed at a byte boundary of the file: deflate pads the
    *stored* blocks it emits for incompressible data to byte boundaries counted
    from the start of its output. Large data is deflated as two halves on two
    threads (zlib releases the GIL), as pigz does: the first half ends with a sync
    flush (an empty stored block, so it ends on a byte boundary), the second half
    is primed with the 32 KiB before it and follows byte for byte: one valid stream.
    """
    view = memoryview(data)
    if len(data) <= SPLIT:
        return _deflate_part(view, zdict, level)
    half = len(data) // 2
    first: list[bytes] = []
    helper = threading.Thread(
        target=lambda: first.append(_deflate_part(view[:half], zdict, level, zlib.Z_SYNC_FLUSH)),
        name="mimir-gzlog-deflate",
    )
    helper.start()
    second = _deflate_part(view[half:], bytes(view[half - DICT_SIZE : half]), level)
    helper.join()
    if not first or not first[0].endswith(_SYNC_MARK):
        raise GzlogError(errno.EIO, "gzlog: unexpected deflate output (no sync flush)")
    return first[0] + second


def flush_block_bit(out: bytes) -> int:
    """Bit position of the empty static block that a partial flush ends ``out`` with.

    That block is 3 header bits 0,1,0 then seven 0 bits: its second bit is the last
    1-bit of the output. -1 if there is no 1-bit at all.
    """
    top = len(out) - 1
    while top >= 0 and not out[top]:
        top -= 1
    return top * 8 + out[top].bit_length() - 2 if top >= 0 else -1
