"""Format fidelity of the gzlog engine: reliability rows G15 (stale P.dict) and G18 (marked
appends of repeated lines are completed as zlib's gzlog.c completes them)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from gzlog_helpers import (
    NAME,
    REPO,
    WORKER,
    Crash,
    CrashAt,
    aux,
    content,
    expect_consistent,
    gzip_t,
    make,
    repairs,
)

from mimir.gzlog import MAX_TAIL, Gzlog, GzlogWarning, check

DICT = 32768


def env() -> dict[str, str]:
    """The environment of a child process that imports this checkout's mimir."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def build(d: Path, seed: int, tag: str, rounds: int = 3) -> tuple[Path, bytes]:
    """A log in d with `rounds` compressions (so a full 32 KiB P.dict) and a stored tail."""
    d.mkdir(parents=True, exist_ok=True)
    p = d / NAME
    rnd = random.Random(seed)
    g = Gzlog(p)
    data = bytearray()
    for r in range(rounds):
        b = make(rnd, 90_000, f"{tag}{r}")
        g.append(b)
        g.compress()
        data += b
    b = make(rnd, 5_000, f"{tag}-tail")
    g.append(b)
    data += b
    assert aux(p, ".dict").stat().st_size == DICT
    return p, bytes(data)


def log_lines(p: Path, seed: int, total: int = 3 << 20, **kwargs: object) -> bytes:
    """Append `total` bytes of lines in 64 KiB appends (several compressions); return them."""
    rnd = random.Random(seed)
    g = Gzlog(p, **kwargs)
    added = bytearray()
    i = 0
    while len(added) < total:
        b = make(rnd, 64 * 1024, f"new{i}")
        g.append(b)
        added += b
        i += 1
    g.close()
    return bytes(added)


def expect_exact(p: Path, expected: bytes) -> None:
    """gzip.decompress gives exactly `expected`, gzip -t passes, the state is consistent."""
    assert content(p) == expected
    gzip_t(p)
    expect_consistent(p, expected)  # includes: P.dict, if any, ends the compressed data


# --- G15: a P.dict that does not belong to the .gz -------------------------------------------


@pytest.mark.parametrize("verify", ["quick", "full"])
def test_g15_copy_of_another_run_with_its_dict_left(tmp_path, verify):
    """A .gz copied over from another run, this run's P.dict left beside it, then 3 MiB of
    appends: every entry exact and gzip -t passes."""
    mine, _ = build(tmp_path / "mine", 1, "mine")
    other, other_data = build(tmp_path / "other", 2, "other")
    stale = aux(mine, ".dict").read_bytes()
    shutil.copyfile(other, mine)
    assert aux(mine, ".dict").read_bytes() == stale != aux(other, ".dict").read_bytes()
    Gzlog(mine, verify=verify)
    if verify == "full":  # the full verification rewrites P.dict from the data
        assert aux(mine, ".dict").read_bytes() == other_data[:-5_000][-DICT:]
    added = log_lines(mine, 3, verify=verify)
    expect_exact(mine, other_data + added)


@pytest.mark.parametrize("verify", ["quick", "full"])
def test_g15_older_backup_restored_with_newer_dict_left(tmp_path, verify):
    """An older backup of the same run restored, the newer P.dict left: new entries exact."""
    p, data = build(tmp_path, 4, "run")
    backup = p.read_bytes()
    g = Gzlog(p)
    later = make(random.Random(5), 120_000, "later")
    g.append(later)
    g.compress()  # P.dict now ends data + later
    assert aux(p, ".dict").read_bytes() == (data + later)[-DICT:]
    p.write_bytes(backup)
    added = log_lines(p, 6, verify=verify)
    expect_exact(p, data + added)


@pytest.mark.parametrize("verify", ["quick", "full"])
def test_g15_dict_left_by_gzlog_c_after_a_compress_recovery_without_add(tmp_path, verify):
    """The P.dict gzlog.c leaves after recovering a compress whose P.add is gone (the last
    32 KiB of the lost tail) is not used: the next compressions are exact."""
    p, data = build(tmp_path, 7, "run")
    tail = make(random.Random(8), 200_000, "lost")
    Gzlog(p).append(tail)
    with pytest.raises(Crash):  # the compressed bytes overwrite the stored tail
        Gzlog(p, hooks=CrashAt("compress.chunk")).compress()
    aux(p, ".add").unlink()
    with pytest.warns(GzlogWarning, match="lost"):
        Gzlog(p)  # cuts the log back to its compressed part, as gzlog.c does
    assert content(p) == data[:-5_000]  # the stored tail of build() went with the lost tail
    # gzlog.c's log_replace then renames P.temp (the lost tail's last 32 KiB) to P.dict:
    aux(p, ".dict").write_bytes(tail[-DICT:])
    added = log_lines(p, 9, verify=verify)
    expect_exact(p, data[:-5_000] + added)


def test_g15_file_copied_over_while_a_writer_keeps_it_open(tmp_path):
    """A writer whose instance stays open while the .gz is replaced by another run's copy
    does not carry its own dictionary over to the new file."""
    mine, _ = build(tmp_path / "mine", 10, "mine")
    other, other_data = build(tmp_path / "other", 11, "other")
    g = Gzlog(mine)
    g.append(b"before the copy\n")
    g.compress()
    shutil.copyfile(other, mine)
    rnd = random.Random(12)
    added = bytearray()
    for i in range(20):
        b = make(rnd, 100_000, f"w{i}")
        g.append(b)
        added += b
    g.compress()
    expect_exact(mine, other_data + bytes(added))


def test_dictionary_caught_up_after_another_writers_compression(tmp_path):
    """After another instance compressed, a writer still compresses with the right
    dictionary: a repeat of the other's last 30 KB costs almost nothing."""
    p = tmp_path / NAME
    a = Gzlog(p)
    first = make(random.Random(13), 200_000, "a")
    a.append(first)
    a.compress()
    b = Gzlog(p, verify="quick")
    noise = random.Random(14).randbytes(30_000)  # incompressible without the dictionary
    b.append(noise)
    b.compress()
    a.append(noise)
    before = p.stat().st_size
    a.compress()
    grown = p.stat().st_size - before
    assert grown < 1_000, grown  # the repeat was found in the caught-up dictionary
    expect_exact(p, first + noise + noise)


# --- G18: a marked append of the same bytes that already end the log ------------------------

LINE = b'{"heartbeat": 1}\n'


def log_ending_in_line(p: Path) -> bytes:
    """A log with a compressed part whose last entry is LINE; returns its content."""
    g = Gzlog(p)
    base = make(random.Random(15), 60_000, "base") + LINE
    g.append(base[:40_000])
    g.compress()
    g.append(base[40_000:])
    assert content(p).endswith(LINE)
    return base


@pytest.mark.parametrize(
    "point", ["append.marked", "append.data", "append.block", "append.trailer"]
)
def test_g18_marked_append_of_a_repeated_line_is_completed(tmp_path, point):
    """A crash after an append of the line already ending the log was marked: the next
    open completes it, so the line is there twice."""
    p = tmp_path / NAME
    base = log_ending_in_line(p)
    with pytest.raises(Crash):
        Gzlog(p, hooks=CrashAt(point)).append(LINE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GzlogWarning)  # nothing is lost: no warning
        Gzlog(p)
    expect_exact(p, base + LINE)
    assert repairs(p)[-2:] == [
        repairs(p)[-2][:24] + " append recovery: loaded .add file",
        repairs(p)[-1][:24] + " append recovery: complete",
    ]


def test_g18_state_marked_with_add_equal_to_the_last_line(tmp_path):
    """A complete log ending in LINE, its state marked for an append (op 1) and P.add
    holding LINE: recovery appends LINE again, as gzlog.c does."""
    p = tmp_path / NAME
    base = log_ending_in_line(p)
    raw = bytearray(p.read_bytes())
    raw[50] |= 1 << 3  # operation 1: append in progress
    p.write_bytes(raw)
    aux(p, ".add").write_bytes(LINE)
    assert check(p, recover=False)["op"] == "append"
    Gzlog(p, verify="quick")
    expect_exact(p, base + LINE)


def test_g18_sigkill_after_the_append_was_marked(tmp_path):
    """A real process SIGKILLed right after marking the append of the repeated line: the
    next opener completes it."""
    p = tmp_path / NAME
    base = log_ending_in_line(p)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(p), LINE.decode()],
        stdout=subprocess.PIPE,
        env=env(),
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    Gzlog(p, lock_timeout=10)
    expect_exact(p, base + LINE)


HOLD_AFTER_DATA = """
import sys, time
from mimir.gzlog import Gzlog

def hook(point, n):
    if point == "append.data":
        print("written", flush=True)
        time.sleep(600)  # killed by the test

Gzlog(sys.argv[1], hooks=hook).append(sys.argv[2].encode())
"""


def test_g18_sigkill_after_the_data_was_written(tmp_path):
    """A real process SIGKILLed after writing the repeated line's data (header and state
    not updated yet): the next opener completes the append once."""
    p = tmp_path / NAME
    base = log_ending_in_line(p)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_AFTER_DATA, str(p), LINE.decode()],
        stdout=subprocess.PIPE,
        env=env(),
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    Gzlog(p, lock_timeout=10)
    expect_exact(p, base + LINE)


# --- tail bound after recovering a big P.add --------------------------------------------------


@pytest.mark.parametrize("how", ["open", "check"])
def test_recovered_3mb_append_is_compressed_before_returning(tmp_path, how):
    """A marked append whose P.add holds 3 MB (one gzlog_write of zlib's gzlog.c) is
    completed, and the stored tail is back within MAX_TAIL when the call returns."""
    p = tmp_path / NAME
    g = Gzlog(p)
    base = make(random.Random(16), 900_000, "base")
    g.append(base)
    assert g.state().stored_bytes == len(base)
    big = make(random.Random(17), 3_000_000, "big")
    raw = bytearray(p.read_bytes())
    raw[50] |= 1 << 3  # an append of `big` was marked, then the writer died
    p.write_bytes(raw)
    aux(p, ".add").write_bytes(big)
    if how == "open":
        Gzlog(p, verify="quick")
    else:
        assert check(p)["valid"]
    st = Gzlog(p, verify="quick").state()
    assert st.op == 0 and st.stored_bytes <= MAX_TAIL
    assert (st.last - st.first) // 16389 < 205  # the C program's trigger stays exact
    expect_exact(p, base + big)
    assert not aux(p, ".add").exists()


# --- incompressible data: deflate's own stored blocks -------------------------------------------


def test_incompressible_data_compresses_validly_at_every_back_value(tmp_path):
    """Random bytes (which deflate emits as stored blocks, padded to byte boundaries) are
    compressed into a valid file whatever bit the compressed data starts at, both below and
    above the size deflated as two halves."""
    p = tmp_path / NAME
    g = Gzlog(p)
    rnd = random.Random(18)
    expected = bytearray()
    backs: set[int] = set()
    for i in range(200):
        size = 600_000 if i % 10 == 9 else rnd.randint(1, 3_000)
        b = rnd.randbytes(size) if i % 2 else make(rnd, size, str(i))
        backs.add(g.state().back)
        g.append(b)
        expected += b
        g.compress()
        if len(backs) == 8 and i >= 20:
            break
    assert backs == set(range(3, 11))
    expect_exact(p, bytes(expected))
    assert check(p)["valid"]
