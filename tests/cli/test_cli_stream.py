"""`mimir tail` and `mimir demo --stream`, run as real processes against real sockets."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

import pytest

import mimir

pytest.importorskip("zmq")


def mimir_command(*args: str, **kwargs) -> subprocess.Popen:
    """Start the mimir command as a child process with its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "mimir", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def replaying_logger(keep: int = 100) -> mimir.Logger:
    """A logger streaming on free loopback ports that keeps ``keep`` entries for late joiners."""
    return mimir.Logger(
        stream=True,
        stream_maxlen=keep,
        formatter=None,
        stream_address="tcp://127.0.0.1:0",
        replay_address="tcp://127.0.0.1:0",
    )


@pytest.mark.parametrize("replay", ["announced", "given"])
def test_tail_prints_replay_then_live_entries_as_json_lines(replay):
    """`mimir tail --connect` prints the replayed entries, then live ones, one JSON object a line.

    Without --replay-address the replay comes from the address the publisher announces.
    """
    logger = replaying_logger()
    try:
        for i in range(10):
            logger.log({"iteration": i, "text": "Mímir"})
        given = ["--replay-address", logger.stream.replay_address] if replay == "given" else []
        tail = mimir_command("tail", "--connect", logger.stream.address, *given)
        try:
            first = [json.loads(tail.stdout.readline()) for _ in range(10)]
            for i in range(10, 15):
                logger.log({"iteration": i, "text": "Mímir"})
            live = [json.loads(tail.stdout.readline()) for _ in range(5)]
        finally:
            tail.terminate()
            tail.wait(timeout=10)
    finally:
        logger.close()
    assert [entry["iteration"] for entry in first + live] == list(range(15))
    assert first[0]["text"] == "Mímir"


def first_line(process: subprocess.Popen, logger: mimir.Logger, timeout: float = 30) -> str:
    """Log an entry at a time until ``process`` prints a line (it has joined); return that line."""
    deadline = time.monotonic() + timeout
    i = 100
    while not select.select([process.stdout], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, "mimir tail printed nothing in time"
        assert process.poll() is None, process.stderr.read()
        logger.log({"iteration": i})
        i += 1
    return process.stdout.readline()


def test_tail_no_replay_prints_live_entries_only():
    """`mimir tail --no-replay` prints none of the entries logged before it joined."""
    logger = replaying_logger()
    try:
        for i in range(10):
            logger.log({"iteration": i})
        tail = mimir_command("tail", "--connect", logger.stream.address, "--no-replay")
        try:
            first = json.loads(first_line(tail, logger))["iteration"]
            logger.log({"iteration": 1000})
            seen = [first]
            while seen[-1] != 1000:
                seen.append(json.loads(tail.stdout.readline())["iteration"])
        finally:
            tail.terminate()
            tail.wait(timeout=10)
    finally:
        logger.close()
    assert first >= 100  # a live entry, none of the 10 kept for replay
    assert seen == [*range(first, seen[-2] + 1), 1000]


def test_tail_replays_by_default_and_no_replay_is_live_only_side_by_side():
    """Joining at the same moment: the default prints the kept entries first, --no-replay not."""
    logger = replaying_logger(keep=100_000)  # room for every entry first_line logs
    try:
        for i in range(10):
            logger.log({"iteration": i})
        default = mimir_command("tail", "--connect", logger.stream.address)
        live = mimir_command("tail", "--connect", logger.stream.address, "--no-replay")
        try:
            live_first = json.loads(first_line(live, logger))["iteration"]
            default_first = [json.loads(default.stdout.readline())["iteration"] for _ in range(10)]
        finally:
            for process in (default, live):
                process.terminate()
                process.wait(timeout=10)
    finally:
        logger.close()
    assert default_first == list(range(10))
    assert live_first >= 100


def test_tail_timeout_is_a_normal_end_with_a_note():
    """`mimir tail --timeout` ends normally (status 0) with one note when the stream is silent."""
    logger = mimir.Logger(stream=True, formatter=None, stream_address="tcp://127.0.0.1:0")
    try:
        tail = mimir_command("tail", "--connect", logger.stream.address, "--timeout", "0.5")
        out, err = tail.communicate(timeout=30)
    finally:
        logger.close()
    assert tail.returncode == 0
    assert out == ""
    assert "within 0.5 s" in err
    assert len(err.strip().splitlines()) == 1


def test_demo_stream_can_be_followed_with_tail(tmp_path):
    """`mimir demo --stream` publishes the run; `mimir tail` (replay by default) sees all of it."""
    demo = mimir_command(
        "demo", "--stream", "--steps", "40", "--delay", "0.05", "-o", "run.jsonl", cwd=tmp_path
    )
    try:
        banner = demo.stdout.readline()
        assert "Streaming on tcp://127.0.0.1:5557" in banner
        assert "watch with: mimir tail" in banner
        tail = mimir_command("tail", "--timeout", "10")  # the replay address is announced
        try:
            seen = [json.loads(tail.stdout.readline())["iteration"] for _ in range(40)]
        finally:
            tail.terminate()
            tail.wait(timeout=10)
    finally:
        demo.communicate(timeout=60)
    assert demo.returncode == 0
    assert seen == list(range(40))
    assert len(mimir.load(tmp_path / "run.jsonl")) == 40


@pytest.mark.parametrize("spelling", ["--connect", "positional"])
def test_tail_follows_a_stream_given_as_host_and_port(spelling):
    """`mimir tail` reads HOST:PORT addresses; the positional spelling works with a note."""
    logger = replaying_logger()
    try:
        for i in range(3):
            logger.log({"iteration": i})
        address = logger.stream.address.removeprefix("tcp://")
        replay = logger.stream.replay_address.removeprefix("tcp://")
        where = ["--connect", address] if spelling == "--connect" else [address]
        tail = mimir_command("tail", *where, "--replay-address", replay, "--timeout", "1")
        out, err = tail.communicate(timeout=30)
    finally:
        logger.close()
    assert tail.returncode == 0, err
    assert [json.loads(line)["iteration"] for line in out.splitlines()] == [0, 1, 2]
    deprecated = "mimir tail: the ADDRESS argument is deprecated, use --connect ADDRESS"
    assert (deprecated in err) == (spelling == "positional")
