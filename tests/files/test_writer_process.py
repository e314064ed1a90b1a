"""The writer process behind GzlogFileHandler: life cycle, failures, signals and fork."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import mimir
from mimir.files.compressed import GzlogFileHandler
from mimir.gzlog import check

ROOT = Path(__file__).resolve().parents[2]


def line(seq: int, who: str = "p") -> bytes:
    return (json.dumps({"who": who, "seq": seq}) + "\n").encode()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def seqs(path: Path, who: str = "p") -> list[int]:
    return [e["seq"] for e in mimir.load(path) if e["who"] == who]


def spawn(script: str, path: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """Run ``script`` (Python source) on ``path`` in a child process, stdout piped."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.fixture
def quiet_errors() -> None:
    """Failures are still counted, but not printed."""
    logging.raiseExceptions = False


def test_writer_process_life_cycle(tmp_path: Path, closing: Any) -> None:
    """A writer process starts with the handler, flush() waits for it, close() ends it."""
    path = tmp_path / "run.jsonl.gz"
    handler = closing(GzlogFileHandler(path, flush_interval=60))
    pid = handler.writer_pid
    assert pid is not None and pid != os.getpid() and alive(pid)
    assert os.getsid(pid) != os.getsid(0)  # Ctrl-C in a terminal reaches the logger only
    for seq in range(1000):
        handler.add_line(line(seq))
    handler.flush()  # 60 s before the thread would write: flush() alone wrote these
    assert seqs(path) == list(range(1000))
    handler.close()
    assert handler.writer_pid is None and not alive(pid)
    assert check(path)["stored_bytes"] == 0  # the writer compressed the tail at close
    assert (handler.failures, handler.dropped) == (0, 0)


def test_killed_writer_is_reported_and_replaced(
    tmp_path: Path, closing: Any, quiet_errors: None
) -> None:
    """SIGKILL of the writer: one report, a new writer, flushed entries kept, later ones land.

    (Entries handed to a writer that dies before writing them are lost, like those a
    crashed logging process had not flushed; the report says so.)
    """
    path = tmp_path / "run.jsonl.gz"
    handler = closing(GzlogFileHandler(path, flush_interval=60))
    for seq in range(500):
        handler.add_line(line(seq))
    handler.flush()
    first = handler.writer_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(first):  # gone before the next batch: that batch meets a closed pipe
        assert time.monotonic() < deadline
        time.sleep(0.001)
    for seq in range(500, 1000):
        handler.add_line(line(seq))
    handler.flush()
    second = handler.writer_pid
    assert second is not None and second != first and alive(second)
    assert handler.failures == 1
    handler.close()
    assert seqs(path) == list(range(1000))  # the batch went whole to the new writer


def test_failure_inside_the_writer_reaches_the_handler(
    tmp_path: Path, closing: Any, quiet_errors: None
) -> None:
    """An append that fails in the writer is reported here once, kept, and retried."""
    path = tmp_path / "run.jsonl.gz"
    handler = closing(GzlogFileHandler(path, flush_interval=60))
    handler.add_line(line(0))
    handler.flush()
    blocker = tmp_path / "run.jsonl.add"  # the append's P.add cannot be created
    blocker.mkdir()
    for seq in range(1, 100):
        handler.add_line(line(seq))
    handler.flush()
    handler.add_line(line(100))
    handler.flush()
    assert handler.failures == 1  # one report for the whole streak
    assert seqs(path) == [0]
    blocker.rmdir()
    handler.flush()
    handler.close()
    assert seqs(path) == list(range(101))
    assert handler.failures == 1 and handler.dropped == 0


def test_writer_finishes_when_the_logging_process_exits_without_close(tmp_path: Path) -> None:
    """os._exit after entries were handed over: the writer writes them, closes the log, exits."""
    path = tmp_path / "run.jsonl.gz"
    script = (
        "import os, sys\n"
        "from mimir.files.compressed import GzlogFileHandler\n"
        "handler = GzlogFileHandler(sys.argv[1], flush_interval=60)\n"
        "for seq in range(20000):\n"
        '    handler.add_line(b\'{"who": "p", "seq": %d}\\n\' % seq)\n'
        "handler._commit()  # handed to the writer, not waited for\n"
        "print(handler.writer_pid, flush=True)\n"
        "os._exit(0)\n"
    )
    child = spawn(script, path)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    writer = int(out)
    deadline = time.monotonic() + 30
    while alive(writer):
        assert time.monotonic() < deadline, "the writer did not exit"
        time.sleep(0.01)
    assert seqs(path) == list(range(20000))
    report = check(path)
    assert report["op"] == "none" and report["stored_bytes"] == 0


def test_sigint_to_the_process_group_leaves_the_writer_running(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the foreground group): the training script's handler still closes."""
    path = tmp_path / "run.jsonl.gz"
    script = (
        "import sys, time\n"
        "from mimir.files.compressed import GzlogFileHandler\n"
        "handler = GzlogFileHandler(sys.argv[1], flush_interval=60)\n"
        "seq = 0\n"
        "try:\n"
        "    while True:\n"
        '        handler.add_line(b\'{"who": "p", "seq": %d}\\n\' % seq)\n'
        "        seq += 1\n"
        "        if seq == 1000:\n"
        "            print(handler.writer_pid, flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    handler.close()\n"
        "    print(seq, flush=True)\n"
    )
    child = spawn(script, path, start_new_session=True)  # a process group, as a shell job
    assert child.stdout is not None
    try:
        writer = int(child.stdout.readline())
        os.killpg(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0
    logged = int(out)  # the interrupt may land between an add_line and its seq += 1
    assert seqs(path) in (list(range(logged)), list(range(logged + 1)))
    assert not alive(writer)


def test_fork_child_gets_a_writer_of_its_own(tmp_path: Path, closing: Any) -> None:
    """After fork the child neither writes to nor keeps alive the parent's writer."""
    path = tmp_path / "run.jsonl.gz"
    handler = closing(GzlogFileHandler(path, flush_interval=60))
    parent_writer = handler.writer_pid
    for seq in range(100):
        handler.add_line(line(seq, "parent"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_end)
            for seq in range(50):
                handler.add_line(line(seq, "child"))
            handler.flush()
            os.write(write_end, str(handler.writer_pid).encode())
            handler.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    child_writer = int(os.read(read_end, 100))
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pid = os.fork()
    if pid == 0:  # a child that logs nothing starts no writer, even to flush and close
        code = 1
        try:
            handler.flush()
            started = handler.writer_pid
            handler.close()
            code = 0 if started is None and not handler.failures else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_writer not in (parent_writer, None)
    assert handler.writer_pid == parent_writer and alive(parent_writer)
    handler.close()
    assert seqs(path, "parent") == list(range(100))
    assert seqs(path, "child") == list(range(50))


def test_no_writer_process_without_a_python_to_run_it(
    tmp_path: Path, closing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the writer cannot start, a warning says so and the handler's thread writes."""
    missing = tmp_path / "no-such-python"
    monkeypatch.setattr(sys, "executable", str(missing))
    path = tmp_path / "run.jsonl.gz"
    with pytest.warns(RuntimeWarning, match="could not start the writer process"):
        handler = closing(GzlogFileHandler(path, flush_interval=60))
    assert handler.writer_pid is None
    for seq in range(10):
        handler.add_line(line(seq))
    handler.close()
    assert seqs(path) == list(range(10))


def test_writer_process_false_and_flush_interval_zero_use_no_process(
    tmp_path: Path, closing: Any
) -> None:
    """Both write from this process: the thread, or the caller before emit returns."""
    for n, kwargs in enumerate(({"writer_process": False}, {"flush_interval": 0})):
        path = tmp_path / f"run{n}.jsonl.gz"
        handler = closing(GzlogFileHandler(path, **kwargs))
        assert handler.writer_pid is None
        handler.add_line(line(0))
        handler.close()
        assert seqs(path) == [0]


def test_writer_holds_back_only_what_would_cost_a_second_append() -> None:
    """Lines that fit the log's tail are written at once; beyond it, whole lines up to
    the tail's end (or a tail's worth after the compression), the rest waits."""
    from mimir.files._writer_process import _fill_point
    from mimir.gzlog import MAX_TAIL

    lines = bytearray(b"".join(line(seq) for seq in range(100_000)))
    assert _fill_point(lines[:5000], 5000) == 5000
    cut = _fill_point(lines, 300_000)
    assert 300_000 - 40 < cut <= 300_000 and lines[cut - 1 : cut] == b"\n"
    cut = _fill_point(lines, 10)  # the tail is full: a whole tail after compressing
    assert MAX_TAIL - 40 < cut <= MAX_TAIL and lines[cut - 1 : cut] == b"\n"
    huge = bytearray(b"x" * (MAX_TAIL + 10) + b"\n")
    assert _fill_point(huge, 10) == len(huge)


def test_batches_above_the_frame_limit_go_as_several_frames(
    tmp_path: Path, closing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch longer than a frame can say is split at line ends: every entry once."""
    import mimir.files._writer_process

    monkeypatch.setattr(mimir.files._writer_process, "_MAX_FRAME", 1000)  # 1 GiB really
    path = tmp_path / "run.jsonl.gz"
    handler = closing(GzlogFileHandler(path, flush_interval=60))
    for seq in range(5000):
        handler.add_line(line(seq))
    handler.flush()
    assert (handler.written, handler.dropped, handler.pending_entries) == (5000, 0, 0)
    handler.close()
    assert seqs(path) == list(range(5000)) and handler.failures == 0
