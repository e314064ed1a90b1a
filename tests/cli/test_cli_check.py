"""``mimir check FILE``: state, recovery and damage reports on real files."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mimir.gzlog import Gzlog

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parents[1] / "gzlog_worker.py"


class Crash(Exception):
    """Simulated death of the writing process at a fault-injection point."""


def run_check(*files: Path) -> subprocess.CompletedProcess:
    """Run ``python -m mimir check FILES`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "mimir", "check", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def lines(count: int, start: int = 0, pad: int = 200) -> bytes:
    return b"".join(
        json.dumps({"seq": i, "pad": "p" * pad}).encode() + b"\n" for i in range(start, count)
    )


def field(output: str, name: str) -> str:
    """The value printed after ``name:`` in the report."""
    for row in output.splitlines():
        if row.strip().startswith(name + ":"):
            return row.split(":", 1)[1].strip()
    raise AssertionError(f"{name!r} not in {output!r}")


def test_healthy_gzlog_reports_entries_and_sizes(tmp_path: Path) -> None:
    """A healthy log: entries, compressed and stored bytes as the state says, status 0."""
    path = tmp_path / "run.jsonl.gz"
    log = Gzlog(path)
    log.append(lines(6000))  # over 1 MiB: a compressed part and a stored tail
    log.append(lines(6100, 6000))
    state = log.state()
    assert state.compressed_bytes > 0 and state.stored_bytes > 0
    result = run_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert field(out, "entries") == "6100"
    assert field(out, "bytes compressed") == str(state.compressed_bytes)
    assert field(out, "bytes stored").startswith(str(state.stored_bytes))
    assert field(out, "operation pending") == "none"
    assert field(out, "lock holder") == "none"
    assert field(out, "status") == "healthy"


def test_interrupted_append_of_a_killed_writer_is_recovered(tmp_path: Path) -> None:
    """A writer SIGKILLed after marking an append: check names the operation and the dead
    writer's lock, redoes the append (the entry is there afterwards), exits 0."""
    path = tmp_path / "run.jsonl.gz"
    Gzlog(path).append(lines(10))
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(path), '{"seq": 10}\n'],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert child.stdout.readline().strip() == "held"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (tmp_path / "run.jsonl.lock").exists()
    result = run_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert field(out, "operation pending") == "append"
    assert f"pid {child.pid}" in field(out, "lock holder")
    assert "left behind" in field(out, "lock holder")
    assert "append recovery: start" in out and "append recovery: complete" in out
    assert field(out, "status") == "recovered"
    assert field(out, "entries") == "11"
    assert [json.loads(x)["seq"] for x in gzip.decompress(path.read_bytes()).splitlines()] == list(
        range(11)
    )
    assert not (tmp_path / "run.jsonl.lock").exists()
    again = run_check(path)
    assert again.returncode == 0 and field(again.stdout, "status") == "healthy"


def test_interrupted_compression_is_recovered(tmp_path: Path) -> None:
    """A compression interrupted after its first chunk (hooks fault injection) is finished."""
    path = tmp_path / "run.jsonl.gz"
    data = lines(3000)

    def die(point: str, n: int) -> None:
        if point == "compress.chunk":
            raise Crash(point)

    log = Gzlog(path, hooks=die)
    log.append(data)
    with pytest.raises(Crash):
        log.compress()
    assert (path.read_bytes()[50] >> 3) & 3 == 2  # compress pending on disk
    result = run_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert field(out, "operation pending") == "compress"
    assert "compress recovery: complete" in out
    assert field(out, "status") == "recovered"
    assert field(out, "entries") == "3000"
    assert field(out, "bytes stored").startswith("0 ")
    assert gzip.decompress(path.read_bytes()) == data


def test_damaged_gzlog_exits_1_and_is_left_in_place(tmp_path: Path) -> None:
    """A flipped byte in the stored tail is reported as damage (status 1); nothing is moved."""
    path = tmp_path / "run.jsonl.gz"
    Gzlog(path).append(lines(20))
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0x20
    path.write_bytes(bytes(raw))
    result = run_check(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DAMAGED" in result.stdout and "CRC" in result.stdout
    assert path.read_bytes() == bytes(raw)
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_plain_gzip_is_not_a_gzlog(tmp_path: Path) -> None:
    """A .gz that is not a gzlog (plain gzip) exits 1 with a message saying so."""
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(gzip.compress(lines(3)))
    result = run_check(path)
    assert result.returncode == 1
    assert "not a gzlog file" in result.stdout


def test_jsonl_entries_and_last_line(tmp_path: Path) -> None:
    """A .jsonl: its entries, and whether the last line is complete."""
    good = tmp_path / "good.jsonl"
    good.write_bytes(lines(5))
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(lines(5) + b'{"seq": 5, "pa')
    result = run_check(good, cut)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("cut.jsonl:")
    assert field(first, "entries") == "5" and field(first, "last line") == "complete"
    assert field(second, "entries") == "5"
    assert field(second, "last line").startswith("incomplete (14 bytes")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A missing file exits 1 with ``mimir check: error:`` and no traceback."""
    result = run_check(tmp_path / "nope.jsonl.gz")
    assert result.returncode == 1
    assert "mimir check: error:" in result.stderr and "Traceback" not in result.stderr


def test_check_says_who_holds_the_lock_while_it_waits(tmp_path: Path) -> None:
    """mimir check waiting for a held lock says so on stderr after 2 s, then finishes."""
    import fcntl

    path = tmp_path / "run.jsonl.gz"
    with Gzlog(path) as log:
        log.append(lines(10))
    holder = os.open(tmp_path / "run.jsonl.lock.k", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a Mímir writer in the middle of an append
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mimir", "check", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        said = proc.stderr.readline()  # blocks until the warning (or, at worst, the timeout)
    finally:
        os.close(holder)  # releases the lock: the check goes on
    out, err = proc.communicate(timeout=60)
    assert "mimir check: gzlog: waiting" in said and f"pid {os.getpid()}" in said, said
    assert "never goes stale" in said
    assert proc.returncode == 0, err
    assert "entries: 10" in out and "status: healthy" in out
