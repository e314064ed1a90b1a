"""Tests of the deflate splicing of the gzlog engine (mimir/gzlog/deflate.py)."""

from __future__ import annotations

import random
import zlib

from mimir.gzlog.deflate import SPLIT, flush_block_bit, raw_deflate


def testraw_deflate_in_two_halves_is_one_valid_stream() -> None:
    """Large data is deflated as two halves joined at a byte boundary: text or random
    bytes inflate back to the data with the same dictionary, at any level, hardly larger."""
    rng = random.Random(11)
    text = b"".join(b'{"iteration": %d, "loss": %r}\n' % (i, rng.random()) for i in range(40_000))
    noise = rng.randbytes(len(text))  # incompressible: deflate emits stored blocks
    cases = [(source, size) for source in (text, noise) for size in (1, 1000, SPLIT)]
    cases += [(source, size) for source in (text, noise) for size in (SPLIT + 1, len(text))]
    for source, size in cases:
        data = source[:size]
        for zdict in (None, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32768)))):
            for level in (1, 4, 9):
                out = raw_deflate(data, zdict, level)
                primed = {"zdict": zdict} if zdict else {}
                assert zlib.decompressobj(-15, **primed).decompress(out) == data, (size, level)
                whole = zlib.compressobj(level, zlib.DEFLATED, -15, **primed)
                one = whole.compress(data) + whole.flush(zlib.Z_PARTIAL_FLUSH)
                assert len(out) <= len(one) * 1.01 + 16, (size, level)


def test_partial_flush_block_is_found_at_the_end_of_the_output() -> None:
    """The empty static block a partial flush ends with starts at the found bit: bits 0,1,0."""
    for data in (b"", b"a", b'{"loss": 0.5}\n' * 1000, random.Random(3).randbytes(5000)):
        out = raw_deflate(data, None, 6)
        h = flush_block_bit(out)
        bits = [(out[(h + i) >> 3] >> ((h + i) & 7)) & 1 for i in range(3)]
        assert bits == [0, 1, 0], data[:20]
        assert (len(out) * 8 - h) <= 10 + 7
