"""Helpers shared by the gzlog engine tests: fault points, crash simulation, checks."""

from __future__ import annotations

import errno
import gzip
import random
import struct
import subprocess
import zlib
from pathlib import Path

from mimir.gzlog import (
    Gzlog,
)

HEADER = bytes.fromhex("1f8b08040000000000ff270061702300")
M32 = 0xFFFFFFFF
WORKER = Path(__file__).with_name("gzlog_worker.py")
REPO = Path(__file__).resolve().parent.parent
NAME = "log.jsonl.gz"

APPEND_POINTS = [
    "append.add_written",
    "append.marked",
    "append.data",
    "append.block",
    "append.trailer",
    "append.committed",
    "append.add_unlinked",
]
COMPRESS_POINTS = [
    "compress.add_written",
    "compress.temp_written",
    "compress.marked",
    "compress.chunk",
    "compress.deflated",
    "compress.trailer",
    "replace.marked",
    "replace.add_unlinked",
    "replace.renamed",
    "replace.dir_synced",
    "replace.committed",
]
ALL_POINTS = ["state.pre", "state.post", *APPEND_POINTS, *COMPRESS_POINTS]


# --- helpers ---------------------------------------------------------------


class Crash(Exception):
    """Simulated death of the process at a fault-injection point."""


class CrashAt:
    """Hook raising Crash (or an exception made by ``exc``) at one (point, pass)."""

    def __init__(self, point: str, n: int = 1, exc=None):
        self.point, self.n, self.exc = point, n, exc
        self.fired = False

    def __call__(self, point: str, n: int) -> None:
        if point == self.point and n == self.n:
            self.fired = True
            raise (self.exc() if self.exc else Crash(f"{point} #{n}"))


class FailAt:
    """Hook raising OSError(EIO) at passes first..first+times-1 of one point."""

    def __init__(self, point: str, first: int, times: int):
        self.point, self.first, self.times = point, first, times
        self.fired = 0

    def __call__(self, point: str, n: int) -> None:
        if point == self.point and self.first <= n < self.first + self.times:
            self.fired += 1
            raise OSError(errno.EIO, f"injected failure at {point} #{n}")


class Recorder:
    """Hook recording every (point, pass) it sees."""

    def __init__(self):
        self.seen: list[tuple[str, int]] = []

    def __call__(self, point: str, n: int) -> None:
        self.seen.append((point, n))


def make(rnd: random.Random, n: int, tag: str = "") -> bytes:
    """n bytes of JSON-lines-like text (compressible, not trivially so)."""
    out: list[str] = []
    size = 0
    while size < n:
        line = f'{{"t":"{tag}","step":{rnd.randint(0, 10**6)},"loss":{rnd.random():.6f}}}\n'
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def parse_state(raw: bytes) -> dict:
    first, last, ccrc, clen, tcrc, tlen, stored, flags = struct.unpack_from("<QQIIIIHB", raw, 16)
    return dict(
        first=first,
        last=last,
        ccrc=ccrc,
        clen=clen,
        tcrc=tcrc,
        tlen=tlen,
        stored=stored,
        back=(flags & 7) + 3,
        op=(flags >> 3) & 3,
        reserved=flags >> 5,
    )


def expect_consistent(path: Path, expected: bytes) -> None:
    """Independent check that the state describes the file exactly and the data is right."""
    raw = Path(path).read_bytes()
    assert raw[:16] == HEADER
    st = parse_state(raw)
    assert st["op"] == 0 and st["reserved"] == 0
    # walk the stored blocks from `first`
    pos, back, tail = st["first"], st["back"], bytearray()
    while True:
        hbit = pos * 8 - back
        bits = int.from_bytes(raw[hbit // 8 : pos], "little") >> (hbit % 8)
        assert (bits >> 1) & 3 == 0, f"BTYPE of stored block at {pos}"
        assert bits >> 3 == 0, f"padding of stored block at {pos}"
        ln, nln = struct.unpack_from("<HH", raw, pos)
        assert ln ^ nln == 0xFFFF
        tail += raw[pos + 4 : pos + 4 + ln]
        if pos == st["last"]:
            assert bits & 1 == 1 and ln == st["stored"]
            end = pos + 4 + ln
            break
        assert bits & 1 == 0 and ln == 16384
        pos += 4 + ln + 1
        back = 8
        assert pos <= st["last"]
    assert raw[end:] == struct.pack("<II", st["tcrc"], st["tlen"])
    assert gzip.decompress(raw) == expected
    assert st["tcrc"] == zlib.crc32(expected) and st["tlen"] == len(expected) & M32
    clen = len(expected) - len(tail)
    assert expected[clen:] == tail
    assert st["clen"] == clen & M32 and st["ccrc"] == zlib.crc32(expected[:clen])
    # the compressed part ends exactly where the first stored block's header begins
    hbit = st["first"] * 8 - st["back"] - 51 * 8
    comp = int.from_bytes(raw[51 : 51 + (hbit + 7) // 8], "little") & ((1 << hbit) - 1)
    buf = (comp | (1 << hbit)).to_bytes((hbit + 10) // 8, "little") + b"\x00\x00\xff\xff"
    d = zlib.decompressobj(-15)
    assert d.decompress(buf) == expected[:clen]
    assert d.eof and not d.unused_data
    # a dictionary, if present, is a suffix of the compressed data
    dict_path = Path(str(path)[: -len(".gz")] + ".dict")
    if dict_path.exists():
        dct = dict_path.read_bytes()
        assert len(dct) <= 32768 and expected[:clen].endswith(dct)


def content(path: Path) -> bytes:
    return gzip.decompress(Path(path).read_bytes())


def gzip_t(path: Path) -> None:
    subprocess.run(["gzip", "-t", str(path)], check=True, capture_output=True)


def op_on_disk(path: Path) -> int:
    return (Path(path).read_bytes()[50] >> 3) & 3


def aux(path: Path, suffix: str) -> Path:
    return Path(str(path)[: -len(".gz")] + suffix)


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and "lock" not in p.name}


def restore(snap: dict[str, bytes], d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, data in snap.items():
        (d / name).write_bytes(data)


def repairs(path: Path) -> list[str]:
    p = aux(path, ".repairs")
    return p.read_text().splitlines() if p.exists() else []


class Tracker:
    """Records acknowledged data and the batch in flight."""

    def __init__(self, base: bytes = b""):
        self.acked = bytearray(base)
        self.inflight: bytes | None = None

    def append(self, g: Gzlog, data: bytes) -> None:
        self.inflight = data
        g.append(data)
        self.acked += data
        self.inflight = None

    def allowed(self) -> list[bytes]:
        out = [bytes(self.acked)]
        if self.inflight is not None:
            out.append(bytes(self.acked) + self.inflight)
        return out


def scenario(g: Gzlog, tr: Tracker, seed: int = 7) -> None:
    """Three rounds of four appends (1 B to 40 KB, crossing 16 KiB blocks) and a compress."""
    rnd = random.Random(seed)
    for r in range(3):
        for i, size in enumerate((1, 300, 20000, 40000)):
            tr.append(g, make(rnd, size, f"{r}.{i}"))
        g.compress()
    tr.append(g, make(rnd, 100, "end"))
