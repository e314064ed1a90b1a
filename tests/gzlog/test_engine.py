"""Tests of the gzlog engine (mimir/gzlog/engine.py), reliability rows G1, G5, G9, G10."""

from __future__ import annotations

import errno
import gzip
import os
import random
import socket
import stat
import struct
import time
import warnings
from pathlib import Path

import pytest
from gzlog_helpers import (
    ALL_POINTS,
    COMPRESS_POINTS,
    HEADER,
    NAME,
    Crash,
    CrashAt,
    FailAt,
    Recorder,
    Tracker,
    aux,
    content,
    expect_consistent,
    gzip_t,
    make,
    op_on_disk,
    repairs,
    restore,
    scenario,
    snapshot,
)

from mimir.gzlog import (
    EMPTY_LOG,
    MAX_TAIL,
    Gzlog,
    GzlogCorruptError,
    GzlogError,
    GzlogWarning,
    check,
    recover,
)

# --- format basics -------------------------------------------------------------


def test_new_log_is_exact_64_bytes(tmp_path):
    """A new log is exactly the 64 bytes of the spec and a valid, empty gzip file."""
    expected = (
        HEADER
        + struct.pack("<QQIIIIHB", 52, 52, 0, 0, 0, 0, 0, 5)
        + bytes.fromhex("010000ffff")
        + bytes(8)
    )
    assert len(expected) == 64 and expected == EMPTY_LOG
    p = tmp_path / NAME
    with Gzlog(p) as g:
        assert p.read_bytes() == expected
        st = g.state()
        assert (st.first, st.last, st.back, st.op, st.stored, st.file_size) == (52, 52, 8, 0, 0, 64)
        assert st.stored_bytes == 0 and st.compressed_bytes == 0
    assert gzip.decompress(expected) == b""
    gzip_t(p)
    assert not aux(p, ".lock").exists()
    assert check(p)["valid"] is True


def test_valid_gzip_after_each_append(tmp_path):
    """After every append (1 B to 48 KiB, past a compression) gzip.decompress and gzip -t pass."""
    rnd = random.Random(11)
    p = tmp_path / NAME
    g = Gzlog(p)
    expected = bytearray()
    compressed_seen = False
    while len(expected) < 1_300_000:
        b = make(rnd, rnd.randint(1, 48 * 1024))
        g.append(b)
        expected += b
        assert content(p) == expected
        gzip_t(p)
        expect_consistent(p, bytes(expected))
        compressed_seen |= g.state().clen > 0
    assert compressed_seen


def test_many_appends_compress_ratio(tmp_path):
    """Appends of 1 B to 48 KiB over several compressions keep the content; ratio near gzip -6."""
    rnd = random.Random(12)
    p = tmp_path / NAME
    g = Gzlog(p)
    expected = bytearray()
    sizes = [1, 2, 16383, 16384, 16385, 49152, 32768, 5]
    clens = set()
    i = 0
    while len(expected) < 4_500_000:
        n = sizes[i] if i < len(sizes) else rnd.randint(1, 48 * 1024)
        b = make(rnd, n, str(i))
        g.append(b)
        expected += b
        clens.add(g.state().clen)
        if i % 25 == 0:
            expect_consistent(p, bytes(expected))
        i += 1
    assert len(clens - {0}) >= 4  # at least four compressions happened
    expect_consistent(p, bytes(expected))
    g.compress()
    expect_consistent(p, bytes(expected))
    assert g.state().stored_bytes == 0
    ours = p.stat().st_size
    reference = len(gzip.compress(bytes(expected), 6))
    assert ours <= 1.10 * reference, (ours, reference)


def test_single_append_larger_than_1mib_is_split(tmp_path):
    """A 2.5 MiB append is stored as 1 MiB appends with compressions; never over 204 blocks."""
    p = tmp_path / NAME
    rnd = random.Random(13)
    data = make(rnd, 2_600_000)
    seen = []
    g = Gzlog(p, hooks=lambda point, n: seen.append(point) if point == "append.marked" else None)
    g.append(data)
    assert seen.count("append.marked") == 3
    st = g.state()
    assert (st.last - st.first) // 16389 <= 204
    expect_consistent(p, data)


def test_every_back_value_3_to_10(tmp_path):
    """Logs whose first stored block starts at each back 3..10 append, compress and recover."""
    rnd = random.Random(3)
    main = tmp_path / "main"
    main.mkdir()
    p = main / NAME
    g = Gzlog(p)
    data = bytearray()
    snaps: dict[int, tuple[dict[str, bytes], bytes]] = {}
    for i in range(400):
        b = make(rnd, rnd.randint(1, 3000), str(i))
        g.append(b)
        data += b
        g.compress()
        back = g.state().back
        if back not in snaps:
            snaps[back] = (snapshot(main), bytes(data))
        if len(snaps) == 8:
            break
    assert sorted(snaps) == list(range(3, 11))
    for back, (snap, base) in sorted(snaps.items()):
        d = tmp_path / f"back{back}"
        restore(snap, d)
        q = d / NAME
        expect_consistent(q, base)
        g = Gzlog(q)
        assert g.state().back == back and g.state().stored == 0
        exp = bytearray(base)
        # crash inside an append to the first block (header bits shared with compressed data)
        b = make(rnd, 1000, "c1")
        with pytest.raises(Crash):
            Gzlog(q, hooks=CrashAt("append.data")).append(b)
        g = Gzlog(q)
        exp += b
        expect_consistent(q, bytes(exp))
        for b in (b"x", make(rnd, 20000, "big")):  # then cross a block boundary
            g.append(b)
            exp += b
            expect_consistent(q, bytes(exp))
        assert g.state().back == back
        # crash in the middle of a compression starting at this back value, recover
        with pytest.raises(Crash):
            Gzlog(q, hooks=CrashAt("compress.chunk")).compress()
        lines = recover(q)
        assert lines[0].endswith("compress recovery: start")
        assert lines[-1].endswith("compress recovery: complete")
        expect_consistent(q, bytes(exp))
        g = Gzlog(q)
        g.append(b"y\n")
        exp += b"y\n"
        g.compress()
        expect_consistent(q, bytes(exp))
        gzip_t(q)


# --- G1: crash at every step -------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("point", ALL_POINTS)
def test_g1_crash_at_every_point(tmp_path, point, n):
    """A crash at (point, pass n) leaves a log that reopens valid with acked data + batch or not."""
    p = tmp_path / NAME
    hook = CrashAt(point, n)
    tr = Tracker()
    g = Gzlog(p, hooks=hook)
    with pytest.raises(Crash):
        scenario(g, tr)
    assert hook.fired
    op = op_on_disk(p)
    assert aux(p, ".lock").exists()  # a dead process leaves its lock file
    before = len(repairs(p))
    t0 = time.monotonic()
    g2 = Gzlog(p, lock_timeout=10)
    assert time.monotonic() - t0 < 1.0
    got = content(p)
    assert got in tr.allowed()
    expect_consistent(p, got)
    gzip_t(p)
    new = repairs(p)[before:]
    if op:
        name = ("append", "compress", "replace")[op - 1]
        assert new[0].endswith(f"{name} recovery: start")
        time.strptime(new[0][:24], "%a %b %d %H:%M:%S %Y")  # ctime-style date
        assert new[0][24:] == f" {name} recovery: start"
        assert new[-1].endswith(f"{name} recovery: complete")
    else:
        assert new == []
    assert not aux(p, ".lock").exists()
    g2.append(b"after\n")
    g2.compress()
    expect_consistent(p, got + b"after\n")


@pytest.mark.parametrize("point", COMPRESS_POINTS)
def test_g1_crash_in_compression_triggered_by_append(tmp_path, point):
    """A crash in the compression an append triggers keeps the (already committed) batch."""
    p = tmp_path / NAME
    rnd = random.Random(5)
    tr = Tracker()
    g = Gzlog(p, hooks=CrashAt(point, 1))
    tr.append(g, make(rnd, 600_000, "a"))
    with pytest.raises(Crash):  # fills the tail to exactly 1 MiB: compression due after it
        tr.append(g, make(rnd, MAX_TAIL - 600_000, "b"))
    g = Gzlog(p)
    got = content(p)
    assert got == bytes(tr.acked) + tr.inflight
    expect_consistent(p, got)
    g.append(b"z\n")  # a compression still due is done before the next append
    assert g.state().stored_bytes == 2
    expect_consistent(p, got + b"z\n")


RECOVERING_POINTS = [
    pt for pt in ALL_POINTS if pt not in ("state.pre", "append.add_written", "append.add_unlinked")
]


@pytest.mark.parametrize("first_point", RECOVERING_POINTS)
def test_g1_crash_during_recovery(tmp_path, first_point):
    """A second crash at any point of the recovery is itself recovered by the next opener."""
    p = tmp_path / "a" / NAME
    p.parent.mkdir()
    tr = Tracker()
    with pytest.raises(Crash):
        scenario(Gzlog(p, hooks=CrashAt(first_point, 1)), tr)
    crashed = snapshot(p.parent)
    if op_on_disk(p) == 0:
        return
    rec = Recorder()
    restore(crashed, tmp_path / "probe")
    Gzlog(tmp_path / "probe" / NAME, hooks=rec)
    assert rec.seen
    for i, (point, n) in enumerate(rec.seen):
        d = tmp_path / f"case{i}"
        restore(crashed, d)
        q = d / NAME
        with pytest.raises(Crash):
            Gzlog(q, hooks=CrashAt(point, n))
        Gzlog(q, lock_timeout=10)
        got = content(q)
        assert got in tr.allowed(), (point, n)
        expect_consistent(q, got)


# --- I/O errors inside one process ----------------------------------------------


def match_batches(got: bytes, ops: list[tuple[bytes, bool]]) -> None:
    """got must be the acked batches in order, each failed batch whole or absent."""
    pos = 0
    for data, ok in ops:
        if got.startswith(data, pos):
            pos += len(data)
        else:
            assert not ok, f"acknowledged batch missing at offset {pos}"
    assert pos == len(got), "unexpected bytes at the end"


@pytest.mark.parametrize("times", [1, 3])
@pytest.mark.parametrize("point", ALL_POINTS)
def test_oserror_then_same_instance_recovers(tmp_path, point, times):
    """After an I/O error (once or 3 times) the same instance re-reads, recovers, loses no ack."""
    p = tmp_path / NAME
    hook = FailAt(point, 2, times)
    g = Gzlog(p, hooks=hook)
    rnd = random.Random(9)
    ops: list[tuple[bytes, bool]] = []
    for r in range(4):
        for i, size in enumerate((5, 20000, 30000)):
            b = f"#{r}.{i}#".encode() + make(rnd, size)  # unique
            try:
                g.append(b)
                ops.append((b, True))
            except GzlogError as e:
                assert e.committed in (0, len(b))
                ops.append((b, e.committed == len(b)))
        try:
            g.compress()
        except GzlogError:
            pass
    g.append(b"last\n")
    ops.append((b"last\n", True))
    assert hook.fired >= 1
    got = content(p)
    match_batches(got, ops)
    expect_consistent(p, got)


@pytest.mark.parametrize(
    ("point", "expected"), [("append.add_written", 1 << 20), ("append.marked", 2 << 20)]
)
def test_append_error_reports_committed_bytes(tmp_path, point, expected):
    """A failure in the second 1 MiB piece of a big append reports 1 MiB committed, or
    2 MiB once that piece's append was marked (recovery redoes it)."""
    p = tmp_path / NAME
    data = make(random.Random(4), 2_500_000)
    g = Gzlog(p, hooks=CrashAt(point, 2, exc=lambda: OSError(errno.ENOSPC, "full")))
    with pytest.raises(GzlogError) as info:
        g.append(data)
    assert info.value.committed == expected
    assert info.value.errno == errno.ENOSPC
    Gzlog(p)
    got = content(p)
    assert got == data[:expected]
    expect_consistent(p, got)


@pytest.mark.parametrize("nth", [1, 2, 3])
@pytest.mark.parametrize("point", ALL_POINTS)
def test_committed_is_exact_after_a_failure_at_every_point(tmp_path, point, nth):
    """After an I/O error at any hook point (pass 1-3) of a multi-piece append with
    compressions, the recovered log holds exactly data[:committed], and retrying the rest
    completes it: no duplicate, no loss."""
    p = tmp_path / NAME
    rnd = random.Random(11)
    before = make(rnd, 700_000, "before")
    Gzlog(p).append(before)
    data = make(rnd, 2_600_000, "x")  # 3 pieces, 3 compressions in one call
    hook = FailAt(point, nth, 1)
    g = Gzlog(p, hooks=hook)
    try:
        g.append(data)
        committed = len(data)
    except GzlogError as e:
        committed = e.committed
    assert hook.fired, "the fault point was never reached"
    assert 0 <= committed <= len(data)
    Gzlog(p)  # a new opener (the process could have died now): recovery
    assert content(p) == before + data[:committed], committed
    g.append(data[committed:])  # the retry, by the instance that failed
    expect_consistent(p, before + data)


def test_committed_when_the_state_on_disk_decides(tmp_path):
    """A failure after the append's state was marked counts the piece (recovery redoes it);
    a failure before the mark does not."""
    p = tmp_path / NAME
    for point, landed in (("append.add_written", False), ("append.marked", True)):
        p.unlink(missing_ok=True)
        g = Gzlog(p, hooks=CrashAt(point, 1, exc=lambda: OSError(errno.EIO, "x")))
        with pytest.raises(GzlogError) as info:
            g.append(b"abc\n")
        assert info.value.committed == (4 if landed else 0)
        assert op_on_disk(p) == (1 if landed else 0)
        Gzlog(p)
        assert content(p) == (b"abc\n" if landed else b"")


def test_stored_tail_never_exceeds_max_tail(tmp_path):
    """At every state write, the stored tail is at most MAX_TAIL (1 MiB), whatever the sizes."""
    p = tmp_path / NAME
    seen: list[int] = []

    def hook(point: str, n: int) -> None:
        if point == "state.post":
            seen.append(Gzlog.state(g).stored_bytes)

    g = Gzlog(p, hooks=hook)
    rnd = random.Random(2)
    expected = bytearray()
    for size in [1_048_000, 1000, 576, 1, 1_048_575, 2, 3_000_000, 100] + [
        rnd.randrange(1, 400_000) for _ in range(30)
    ]:
        data = make(rnd, size)
        g.append(data)
        expected += data
        assert g.state().stored_bytes <= MAX_TAIL
        assert g.room == MAX_TAIL - g.state().stored_bytes
    assert seen and max(seen) <= MAX_TAIL
    assert max(seen) > MAX_TAIL - 20_000  # the tail is filled, not compressed early
    expect_consistent(p, bytes(expected))


# --- G5: torn state writes ---------------------------------------------------------


def test_g5_torn_state_write(tmp_path):
    """A state write torn after j of 35 bytes is recovered, or moved aside with a warning;
    a commit torn just before its flag byte (beyond the format's atomic 35-byte write)
    redoes the append, as gzlog.c does."""
    src = tmp_path / "src"
    src.mkdir()
    p = src / NAME
    marks: list[dict] = []
    tr = Tracker()

    def hook(point: str, n: int) -> None:
        if point == "state.pre":
            marks.append({"files": snapshot(src), "allowed": tr.allowed(), "op": op_on_disk(p)})
        elif point == "state.post":
            marks[-1]["new"] = p.read_bytes()[16:51]

    g = Gzlog(p, hooks=hook)
    rnd = random.Random(21)
    tr.append(g, make(rnd, 40000, "a"))
    g.compress()
    tr.append(g, make(rnd, 100, "b"))
    tr.append(g, make(rnd, 20000, "c"))
    g.compress()
    tr.append(g, make(rnd, 50, "d"))
    assert len(marks) == 14
    moved_count = recovered = redone = 0
    for m, mark in enumerate(marks):
        for j in range(36):
            d = tmp_path / f"m{m}j{j}"
            restore(mark["files"], d)
            q = d / NAME
            torn = bytearray(mark["files"][NAME])
            torn[16 : 16 + j] = mark["new"][:j]
            q.write_bytes(torn)
            mode = "raise" if j % 2 else "new"
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                try:
                    g2 = Gzlog(q, on_corrupt=mode, lock_timeout=10)
                except GzlogCorruptError as e:
                    assert mode == "raise" and e.moved_to
                    g2 = None
            moved = list(d.glob(NAME + ".corrupt-*"))
            if moved:
                moved_count += 1
                assert len(moved) == 1 and moved[0].read_bytes() == torn
                assert content(moved[0]) in mark["allowed"]  # still a readable gzip file
                if mode == "new":
                    assert any(issubclass(x.category, GzlogWarning) for x in w)
                    assert content(q) == b""
                    gzip_t(q)
                else:
                    assert g2 is None and not q.exists()
            else:
                recovered += 1
                got = content(q)
                fields_new, flag = torn[16:50] == mark["new"][:34], torn[50]
                if (flag >> 3) & 3 == 1 and fields_new and (mark["new"][34] >> 3) & 3 == 0:
                    # Every field of the append's commit is new but the flag byte still
                    # says "append": indistinguishable from a crash right after marking
                    # an append of the same bytes (G18), so the append is redone.
                    acked, with_batch = mark["allowed"]
                    assert got == with_batch + with_batch[len(acked) :], (m, j)
                    redone += 1
                else:
                    assert got in mark["allowed"], (m, j)
                expect_consistent(q, got)
                gzip_t(q)
    assert recovered and moved_count and redone


# --- G9: auxiliary files removed or truncated before recovery ---------------------


def _crash_with_dict(tmp_path: Path, point: str, n: int):
    """Appends a, compress, appends b and c, compress (...), crashing at (point, n)."""
    p = tmp_path / NAME
    rnd = random.Random(31)
    tr = Tracker()
    g = Gzlog(p, hooks=CrashAt(point, n))
    with pytest.raises(Crash):
        tr.append(g, make(rnd, 50000, "a"))
        g.compress()
        assert aux(p, ".dict").stat().st_size == 32768
        tr.append(g, make(rnd, 30000, "b"))
        tr.append(g, make(rnd, 300, "c"))
        g.compress()
        tr.append(g, make(rnd, 20000, "d"))
        g.compress()
    return p, tr


def _after_recovery_still_good(p: Path, got: bytes) -> None:
    g = Gzlog(p)
    more = make(random.Random(99), 70000, "more")
    g.append(more)
    g.compress()
    expect_consistent(p, got + more)
    gzip_t(p)


G9_CASES = [
    # (crash point, pass, file, action, expected outcome); compress pass 2 has a P.dict
    ("append.marked", 2, ".add", "delete", "batch_absent"),
    ("append.data", 2, ".add", "truncate", "batch_truncated"),
    ("compress.marked", 2, ".add", "delete", "all"),
    ("compress.marked", 2, ".add", "truncate", "all"),
    ("compress.chunk", 2, ".add", "delete", "tail_lost"),
    ("compress.deflated", 2, ".add", "truncate", "tail_lost"),
    ("compress.marked", 2, ".dict", "delete", "all"),
    ("compress.marked", 2, ".dict", "truncate", "all"),
    ("compress.chunk", 2, ".dict", "truncate", "all"),
    ("compress.marked", 2, ".temp", "delete", "all"),
    ("compress.marked", 2, ".temp", "truncate", "all"),
    ("replace.marked", 2, ".temp", "delete", "all"),
    ("replace.marked", 2, ".temp", "truncate", "all"),
    ("replace.renamed", 2, ".dict", "truncate", "all"),
]


@pytest.mark.parametrize(("point", "n", "suffix", "action", "outcome"), G9_CASES)
def test_g9_aux_file_tampered_before_recovery(tmp_path, point, n, suffix, action, outcome):
    """Deleting or truncating P.add/P.dict/P.temp after a crash gives the documented outcome."""
    p, tr = _crash_with_dict(tmp_path, point, n)
    f = aux(p, suffix)
    assert f.exists()
    if action == "delete":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        Gzlog(p)
    msgs = [str(x.message) for x in w if issubclass(x.category, GzlogWarning)]
    got = content(p)
    acked = bytes(tr.acked)
    if outcome == "all":
        assert got in tr.allowed() and got.startswith(acked)
        assert not msgs
    elif outcome == "batch_absent":
        assert got == acked
        assert any("lost" in m for m in msgs)
        assert repairs(p)[-2].endswith("append recovery: missing .add file!")
    elif outcome == "batch_truncated":
        half = len(tr.inflight) // 2
        assert got == acked + tr.inflight[:half]  # documented: P.add has no checksum
    elif outcome == "tail_lost":
        first_clen = 50000
        assert got == acked[:first_clen]
        assert any(f"{len(acked) - first_clen} bytes" in m for m in msgs)
        assert any("lost" in line for line in repairs(p))
    expect_consistent(p, got)
    gzip_t(p)
    _after_recovery_still_good(p, got)


def test_g9_compress_recovery_reads_tail_back_from_gz(tmp_path):
    """With P.add gone before any compressed byte was written, the tail comes from P.gz."""
    p, tr = _crash_with_dict(tmp_path, "compress.marked", 2)
    aux(p, ".add").unlink()
    lines = recover(p)
    assert any("read the stored tail back" in line for line in lines)
    assert content(p) == bytes(tr.acked)


# --- G10: damaged files -------------------------------------------------------------


def _content_log(d: Path) -> tuple[Path, bytes]:
    """A log with a compressed part and a stored tail of two blocks."""
    d.mkdir(parents=True, exist_ok=True)
    p = d / NAME
    rnd = random.Random(41)
    g = Gzlog(p)
    data = make(rnd, 90000, "a")
    g.append(data)
    g.compress()
    tail = make(rnd, 20000, "b")
    g.append(tail)
    return p, data + tail


def _expect_detected(p: Path, damaged: bytes, good: bytes) -> str:
    """Open a damaged file: returns 'moved' or 'recovered' (op bits flipped)."""
    p.write_bytes(damaged)
    rep = check(p, recover=False, lock_timeout=10)
    assert p.read_bytes() == damaged
    if rep["valid"]:
        # only a flipped operation field passes validation: it must be reported
        assert rep["op"] != "none"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            Gzlog(p, lock_timeout=10)
        except GzlogCorruptError as e:
            assert not rep["valid"]
            moved = Path(e.moved_to)
            assert moved.read_bytes() == damaged and not p.exists()
            assert str(moved) in str(e)
            moved.unlink()
            return "moved"
    assert rep["valid"]
    assert any(issubclass(x.category, GzlogWarning) for x in w) or repairs(p)
    assert content(p) == good
    expect_consistent(p, good)
    return "recovered"


@pytest.mark.parametrize("kind", ["empty", "content"])
def test_g10_flip_each_bit_of_first_64_bytes(tmp_path, kind):
    """Every single-bit flip in bytes 0-63 is detected; damaged bytes are never written to."""
    if kind == "empty":
        p = tmp_path / NAME
        Gzlog(p)
        good = b""
    else:
        p, good = _content_log(tmp_path)
    original = p.read_bytes()
    outcomes = {"moved": 0, "recovered": 0}
    for bit in range(64 * 8):
        damaged = bytearray(original)
        damaged[bit // 8] ^= 1 << (bit % 8)
        outcomes[_expect_detected(p, bytes(damaged), good)] += 1
        aux(p, ".repairs").unlink(missing_ok=True)
    assert outcomes["recovered"] <= 1  # the flag bit of the append operation only
    assert outcomes["moved"] >= 64 * 8 - 1


def test_g10_random_flips_and_truncations(tmp_path):
    """Seeded random bit flips after byte 64 and truncations are all detected and moved aside."""
    p, good = _content_log(tmp_path)
    original = p.read_bytes()
    rnd = random.Random(43)
    for trial in range(250):
        damaged = bytearray(original)
        if trial < 180:
            for _ in range(1 + trial % 3):
                pos = rnd.randrange(64, len(original))
                damaged[pos] ^= 1 << rnd.randrange(8)
        else:
            del damaged[rnd.randrange(1, len(original)) :]
        if damaged == original:
            continue
        assert _expect_detected(p, bytes(damaged), good) == "moved", trial


def test_on_corrupt_new_starts_a_fresh_log(tmp_path):
    """on_corrupt='new' moves the damaged file aside, warns, and appends to a new log."""
    p, _good = _content_log(tmp_path)
    damaged = bytearray(p.read_bytes())
    damaged[-3] ^= 0xFF
    p.write_bytes(damaged)
    with pytest.warns(GzlogWarning, match="moved to"):
        g = Gzlog(p, on_corrupt="new")
    assert not aux(p, ".dict").exists()  # the old dictionary must not be reused
    g.append(b"fresh\n")
    expect_consistent(p, b"fresh\n")
    (moved,) = tmp_path.glob(NAME + ".corrupt-*")
    assert moved.read_bytes() == damaged


def test_corruption_found_later_blocks_the_instance(tmp_path):
    """Damage found by a later append raises GzlogCorruptError, then every call refuses."""
    p = tmp_path / NAME
    g = Gzlog(p)
    g.append(b"one\n")
    raw = bytearray(p.read_bytes())
    raw[-9] ^= 1  # last data byte of the stored tail
    st = p.stat()
    p.write_bytes(raw)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later modification
    with pytest.raises(GzlogCorruptError, match="CRC"):
        g.append(b"two\n")
    with pytest.raises(GzlogError, match="new Gzlog"):
        g.append(b"three\n")
    g2 = Gzlog(p)
    g2.append(b"four\n")
    expect_consistent(p, b"four\n")


def test_check_reports_without_moving(tmp_path):
    """check() reports a damaged file as invalid and leaves it in place."""
    p, good = _content_log(tmp_path)
    rep = check(p)
    assert rep["valid"] and rep["op"] == "none" and rep["stored_bytes"] == 20000
    assert rep["file_size"] == p.stat().st_size
    raw = bytearray(p.read_bytes())
    raw[100] ^= 0x10
    p.write_bytes(raw)
    rep = check(p)
    assert not rep["valid"] and rep["error"]
    assert p.read_bytes() == raw
    with pytest.raises(FileNotFoundError):
        check(tmp_path / "missing.gz")
    assert good


# --- auxiliary files ------------------------------------------------------------------


def test_symlinked_aux_files_are_not_followed(tmp_path):
    """Symlinks planted as P.add, P.temp, P.dict, P.repairs, P.lock never touch their targets."""
    p = tmp_path / NAME
    g = Gzlog(p)
    victims = {}
    for suffix in (".add", ".temp", ".dict", ".repairs"):
        v = tmp_path / f"victim{suffix}"
        v.write_bytes(b"V" * 40000)
        victims[suffix] = v
        aux(p, suffix).symlink_to(v)
    data = make(random.Random(51), 60000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GzlogWarning)
        g.append(data)
        g.compress()
        assert not aux(p, ".dict").is_symlink()
        # a recovery writes P.repairs: plant the symlink again first
        aux(p, ".repairs").unlink(missing_ok=True)
        aux(p, ".repairs").symlink_to(victims[".repairs"])
        with pytest.raises(Crash):
            Gzlog(p, hooks=CrashAt("append.marked")).append(b"more\n")
        Gzlog(p)
    for v in victims.values():
        assert v.read_bytes() == b"V" * 40000
    assert not aux(p, ".repairs").is_symlink() and repairs(p)
    expect_consistent(p, data + b"more\n")
    # a planted P.lock symlink is judged by its own mtime and removed, never followed
    lock_victim = tmp_path / "victim.lock"
    lock_victim.write_text("keep")
    aux(p, ".lock").symlink_to(lock_victim)
    os.utime(aux(p, ".lock"), (time.time() - 400, time.time() - 400), follow_symlinks=False)
    Gzlog(p, lock_timeout=5).append(b"x\n")
    assert lock_victim.read_text() == "keep"
    # a symlinked kernel-lock file is refused
    aux(p, ".lock.k").unlink()
    aux(p, ".lock.k").symlink_to(lock_victim)
    with pytest.raises(GzlogError, match="symlink"):
        Gzlog(p)
    assert lock_victim.read_text() == "keep"


# --- API odds and ends -------------------------------------------------------------------------


def test_api_misc(tmp_path):
    """Path checks, closed instances, context manager, empty appends, recover() on a clean log."""
    with pytest.raises(ValueError, match=r"\.gz"):
        Gzlog(tmp_path / "log.jsonl")
    with pytest.raises(ValueError, match="on_corrupt"):
        Gzlog(tmp_path / NAME, on_corrupt="ignore")
    p = tmp_path / NAME
    with Gzlog(p) as g:
        g.append(b"")
        g.append(bytearray(b"ab"))
        g.append(memoryview(b"cd"))
        g.compress()
        g.compress()  # nothing to compress: no-op
    with pytest.raises(ValueError, match="closed"):
        g.append(b"x")
    g.close()
    assert recover(p) == []
    expect_consistent(p, b"abcd")
    assert repr(g).startswith("<Gzlog")


def test_empty_file_is_initialised_and_stale_dict_removed(tmp_path):
    """A zero-length .gz becomes a new log (as in the C program); an old P.dict is deleted."""
    p = tmp_path / NAME
    p.write_bytes(b"")
    aux(p, ".dict").write_bytes(b"D" * 32768)
    Gzlog(p).append(b"hello\n")
    assert not aux(p, ".dict").exists()
    expect_consistent(p, b"hello\n")


def test_wrong_dictionary_is_repaired_on_open(tmp_path):
    """A P.dict that is not the end of the compressed data is rewritten from the verified data."""
    p, good = _content_log(tmp_path)
    aux(p, ".dict").write_bytes(b"Q" * 32768)  # stale, full length: cannot be told by size
    g = Gzlog(p)
    expect_consistent(p, good)  # includes: P.dict is a suffix of the compressed data
    more = make(random.Random(61), 50000)
    g.append(more)
    g.compress()
    expect_consistent(p, good + more)


# --- non-regular files, files moved aside -------------------------------------------------------


def _refused(p: Path, kind: str) -> None:
    """Gzlog, Gzlog.state, check and recover all refuse p at once, naming what it is."""
    t0 = time.monotonic()
    for call in (
        lambda: Gzlog(p, lock_timeout=5),
        lambda: Gzlog(p, verify="quick", lock_timeout=5),
        lambda: check(p, lock_timeout=5),
        lambda: recover(p, lock_timeout=5),
    ):
        with pytest.raises(GzlogError, match=f"is {kind}, not a regular file"):
            call()
    assert time.monotonic() - t0 < 5


def test_fifo_at_the_log_path_is_refused_at_once(tmp_path):
    """A FIFO named like the log is refused immediately (no hang) and left in place."""
    p = tmp_path / NAME
    os.mkfifo(p)
    _refused(p, r"a FIFO \(named pipe\)")
    assert stat.S_ISFIFO(os.lstat(p).st_mode)


def test_directory_socket_and_device_at_the_log_path_are_refused(tmp_path):
    """A directory, a socket, and a symlink to a character device are refused, untouched."""
    d = tmp_path / "dir" / NAME
    d.mkdir(parents=True)
    _refused(d, "a directory")
    assert d.is_dir() and not list(d.iterdir())
    s = tmp_path / "sock" / NAME
    s.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(s))
        _refused(s, "a socket")
    dev = tmp_path / "dev" / NAME
    dev.parent.mkdir()
    dev.symlink_to("/dev/null")
    _refused(dev, "a character device")
    assert dev.is_symlink()


def test_symlinked_log_is_followed(tmp_path):
    """A log symlinked on purpose is appended to through the link (its target is a file)."""
    target = tmp_path / "store" / NAME
    target.parent.mkdir()
    Gzlog(target).append(b"one\n")
    p = tmp_path / NAME
    p.symlink_to(target)
    Gzlog(p).append(b"two\n")
    assert p.is_symlink()
    expect_consistent(target, b"one\ntwo\n")


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_move_aside_never_follows_a_planted_symlink(tmp_path, monkeypatch, links):
    """A symlink planted under the name a damaged log would be moved to is neither followed
    nor replaced: the log goes to the next free name, the symlink's target is untouched."""
    p, _ = _content_log(tmp_path)
    damaged = bytearray(p.read_bytes())
    damaged[-3] ^= 0xFF
    p.write_bytes(damaged)
    victim = tmp_path / "outside.txt"
    victim.write_bytes(b"precious")
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20240101T000000")
    planted = Path(f"{p}.corrupt-20240101T000000")
    planted.symlink_to(victim)
    if links == "no hard links":  # as on a file system without them

        def no_link(*args, **kwargs):
            raise OSError(errno.EPERM, "hard links not supported")

        monkeypatch.setattr(os, "link", no_link)
    with pytest.raises(GzlogCorruptError) as info:
        Gzlog(p)
    assert info.value.moved_to == f"{planted}-1"
    assert Path(info.value.moved_to).read_bytes() == damaged
    assert not Path(info.value.moved_to).is_symlink()
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert victim.read_bytes() == b"precious"
    assert not p.exists()


def test_on_corrupt_new_warning_carries_moved_to(tmp_path):
    """The on_corrupt='new' warning carries moved_to (the damaged file) and the reason."""
    p, _ = _content_log(tmp_path)
    damaged = bytearray(p.read_bytes())
    damaged[-3] ^= 0xFF
    p.write_bytes(damaged)
    with pytest.warns(GzlogWarning, match="moved to") as record:
        Gzlog(p, on_corrupt="new")
    (w,) = [x for x in record if issubclass(x.category, GzlogWarning)]
    assert w.filename == __file__  # attributed to the caller, not to the engine
    assert Path(w.message.moved_to).read_bytes() == damaged
    assert "CRC" in w.message.reason or "trailer" in w.message.reason
    assert content(p) == b""
