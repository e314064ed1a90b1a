"""Tests of the gzlog lock protocol (mimir/gzlog/lock.py), reliability row G11."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from gzlog_helpers import (
    NAME,
    REPO,
    WORKER,
    aux,
    content,
    expect_consistent,
    repairs,
)

from mimir.gzlog import (
    Gzlog,
    GzlogError,
    GzlogWarning,
    check,
    describe_lock_holder,
    read_snapshot,
    writer_active,
)

# --- G11: locks -------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_lock_of_killed_process_taken_over_fast(tmp_path):
    """A lock left by a SIGKILLed child on this host is taken over in under a second."""
    p = tmp_path / NAME
    Gzlog(p)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(p), "from the child\n"],
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held"
        owner = aux(p, ".lock").read_text().split()
        assert owner == [socket.gethostname(), str(child.pid)]
        with pytest.raises(GzlogError, match=r"log\.jsonl\.lock"):
            Gzlog(p, lock_timeout=0.2)  # the live owner holds it
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert aux(p, ".lock").exists()
    t0 = time.monotonic()
    g = Gzlog(p, lock_timeout=10)
    assert time.monotonic() - t0 < 1.0
    assert content(p) == b"from the child\n"  # the marked append was redone
    assert repairs(p)[-1].endswith("append recovery: complete")
    g.append(b"parent\n")
    expect_consistent(p, b"from the child\nparent\n")


def test_foreign_host_lock_goes_stale_after_300s(tmp_path):
    """A lock from another host blocks until its mtime is over 300 s old, then is stale."""
    p = tmp_path / NAME
    g = Gzlog(p, lock_timeout=0.3)
    lock = aux(p, ".lock")
    lock.write_text("some-other-host 4242\n")
    with pytest.raises(GzlogError, match=r"log\.jsonl\.lock"):
        g.append(b"blocked\n")
    old = time.time() - 301
    os.utime(lock, (old, old))
    t0 = time.monotonic()
    g.append(b"ok\n")
    assert time.monotonic() - t0 < 1.0
    assert not lock.exists()
    expect_consistent(p, b"ok\n")


def test_c_program_lock_without_owner_goes_stale(tmp_path):
    """An empty lock file (as the C program makes) is respected, then stale after 300 s."""
    p = tmp_path / NAME
    g = Gzlog(p, lock_timeout=0.2)
    lock = aux(p, ".lock")
    lock.write_bytes(b"")
    with pytest.raises(GzlogError):
        g.append(b"x\n")
    os.utime(lock, (time.time() - 400, time.time() - 400))
    g.append(b"y\n")
    expect_consistent(p, b"y\n")


def test_leftover_same_host_lock_of_live_pid_taken_over(tmp_path):
    """A same-host lock whose owner does not hold the kernel lock is taken over at once."""
    p = tmp_path / NAME
    g = Gzlog(p, lock_timeout=5)
    aux(p, ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    t0 = time.monotonic()
    g.append(b"z\n")
    assert time.monotonic() - t0 < 0.5
    expect_consistent(p, b"z\n")


def lock_wait(p: Path, timeout: float) -> tuple[list[str], GzlogError]:
    """Open p while its lock is held: the GzlogWarnings issued and the timeout error."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(GzlogError) as info:
            Gzlog(p, lock_timeout=timeout, lock_warning_after=0.1)
    return [str(x.message) for x in w if issubclass(x.category, GzlogWarning)], info.value


def test_lock_wait_on_empty_lock_file_speaks(tmp_path):
    """Waiting on an empty P.lock (zlib's gzlog holds one from open to close) gives one
    warning naming it, its age and when it is taken over, then a clear timeout error."""
    p = tmp_path / NAME
    Gzlog(p)
    lock = aux(p, ".lock")
    lock.write_bytes(b"")
    then = time.time() - 13
    os.utime(lock, (then, then))
    msgs, err = lock_wait(p, 0.6)
    assert len(msgs) == 1
    assert "an empty lock file, as zlib's gzlog leaves" in msgs[0]
    assert re.search(r"last touched 1[34] s ago", msgs[0])
    assert re.search(r"taken over in 28[67] s if its owner does not touch it", msgs[0])
    assert err.errno == errno.ETIMEDOUT
    assert "timed out after 0.6 s" in str(err) and "an empty lock file" in str(err)
    assert f"delete {lock}" in str(err)
    assert lock.exists() and lock.read_bytes() == b""  # respected, not taken over


def test_lock_wait_on_another_hosts_lock_names_it(tmp_path):
    """A lock of another host is named by host and pid in the warning and the error."""
    p = tmp_path / NAME
    Gzlog(p)
    aux(p, ".lock").write_text("elsewhere.example 4242\n")
    msgs, err = lock_wait(p, 0.4)
    assert len(msgs) == 1 and "host elsewhere.example pid 4242" in msgs[0]
    assert re.search(r"last touched 0 s ago\); taken over in 300 s", msgs[0])
    assert "host elsewhere.example pid 4242" in str(err)


HOLD_KERNEL_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_lock_wait_on_kernel_lock_of_live_process_speaks(tmp_path):
    """Another process holding P.lock.k is named by pid; the lock never goes stale; the
    wait times out with advice, and succeeds once that process lets go."""
    p = tmp_path / NAME
    Gzlog(p)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_KERNEL_LOCK, str(aux(p, ".lock.k"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "locked"
        msgs, err = lock_wait(p, 0.5)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    assert len(msgs) == 1
    assert f"host {socket.gethostname()} pid {child.pid}" in msgs[0]
    assert str(aux(p, ".lock.k")) in msgs[0]
    assert "never goes stale" in msgs[0]
    assert err.errno == errno.ETIMEDOUT and f"pid {child.pid}" in str(err)
    assert "Let that process finish" in str(err)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GzlogWarning)
        Gzlog(p, lock_timeout=10).append(b"after\n")  # released: no wait, no warning
    expect_consistent(p, b"after\n")


def test_short_lock_wait_is_silent(tmp_path):
    """A wait that ends before lock_warning_after issues no warning."""
    p = tmp_path / NAME
    Gzlog(p)
    aux(p, ".lock").write_bytes(b"")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(GzlogError, match="timed out"):
            Gzlog(p, lock_timeout=0.2)  # lock_warning_after defaults to 2 s
        with pytest.raises(GzlogError, match="timed out"):
            check(p, lock_timeout=0.2)
    assert not [x for x in w if issubclass(x.category, GzlogWarning)]
    with pytest.raises(ValueError, match="lock_warning_after"):
        Gzlog(p, lock_warning_after=-1)


def test_four_processes_append_to_one_log(tmp_path):
    """Four processes appending at once: every entry present exactly once, in order per writer."""
    p = tmp_path / NAME
    count = 220
    children = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "write", str(p), str(i), str(count), str(100 + i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        for i in range(4)
    ]
    try:
        for c in children:
            assert c.stdout.readline().strip() == "ready"
        for c in children:
            c.stdin.write("go\n")
            c.stdin.flush()
        for c in children:
            assert c.stdout.readline().strip() == "done"
            assert c.wait(timeout=120) == 0
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.wait()
    data = content(p)
    seqs: dict[int, list[int]] = {i: [] for i in range(4)}
    for line in data.splitlines():
        e = json.loads(line)
        seqs[e["id"]].append(e["seq"])
    assert all(s == list(range(count)) for s in seqs.values())
    st = Gzlog(p).state()
    assert st.clen > 0  # compressions happened while four writers shared the log
    expect_consistent(p, data)


@pytest.mark.parametrize("trial", range(8))
def test_sigkill_at_random_moments(tmp_path, trial):
    """A writer SIGKILLed after a random number of acks (compressions included) loses no ack."""
    p = tmp_path / NAME
    rnd = random.Random(1000 + trial)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), "ack", str(p), str(trial)],
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    try:
        for _ in range(rnd.randint(1, 400)):
            line = child.stdout.readline()
            assert line.startswith("ack ")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    acked = [int(x.split()[1]) for x in [line, *child.stdout.read().splitlines()]]
    Gzlog(p, lock_timeout=10)
    data = content(p)
    seqs = [json.loads(x)["seq"] for x in data.splitlines()]
    assert seqs == list(range(len(seqs)))  # no gap, no duplicate, no partial line
    assert len(seqs) - 1 in (acked[-1], acked[-1] + 1)
    expect_consistent(p, data)


# --- what readers and `mimir check` learn from the lock -------------------------------------


def test_readers_see_no_writer_on_an_idle_log(tmp_path):
    """An idle log: no writer active, no lock holder, and a snapshot taken quietly."""
    p = tmp_path / NAME
    with Gzlog(p) as g:
        g.append(b"one\n")
    assert writer_active(str(p)) is False
    assert describe_lock_holder(str(p)) is None
    data, quiet = read_snapshot(str(p), p.read_bytes)
    assert data == p.read_bytes() and quiet is True


def test_readers_see_a_foreign_lock_file(tmp_path):
    """zlib's empty lock file may be a live writer's: the snapshot is not vouched for."""
    p = tmp_path / NAME
    Gzlog(p).close()
    aux(p, ".lock").write_bytes(b"")
    _, quiet = read_snapshot(str(p), p.read_bytes)
    assert quiet is False
    assert describe_lock_holder(str(p)).startswith("unknown owner (e.g. zlib's gzlog.c)")


def test_a_dead_writers_lock_file_is_described_as_left_behind(tmp_path):
    """A lock file naming this host while no writer holds the kernel lock: left behind."""
    p = tmp_path / NAME
    Gzlog(p).close()
    aux(p, ".lock").write_text(f"{socket.gethostname()} 999999\n")
    _, quiet = read_snapshot(str(p), p.read_bytes)
    assert quiet is True  # a dead Mímir writer's lock: nobody is at work
    assert "left behind" in describe_lock_holder(str(p))
