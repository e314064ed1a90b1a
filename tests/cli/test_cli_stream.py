"""`mimir tail` and `mimir demo --stream`, run as real processes against real sockets."""

from __future__ import annotations

import json
import subprocess
import sys

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


def replaying_logger() -> mimir.Logger:
    """A logger streaming on free loopback ports that keeps 100 entries for late joiners."""
    return mimir.Logger(
        stream=True,
        stream_maxlen=100,
        formatter=None,
        stream_address="tcp://127.0.0.1:0",
        replay_address="tcp://127.0.0.1:0",
    )


def test_tail_prints_replay_then_live_entries_as_json_lines():
    """`mimir tail` prints the replayed entries, then live ones, one JSON object per line."""
    logger = replaying_logger()
    try:
        for i in range(10):
            logger.log({"iteration": i, "text": "Mímir"})
        tail = mimir_command(
            "tail",
            "--connect",
            logger.stream.address,
            "--replay-address",
            logger.stream.replay_address,
        )
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
    """`mimir demo --stream` publishes the run; `mimir tail` with replay sees all of it."""
    demo = mimir_command(
        "demo", "--stream", "--steps", "40", "--delay", "0.05", "-o", "run.jsonl", cwd=tmp_path
    )
    try:
        banner = demo.stdout.readline()
        assert "Streaming on tcp://127.0.0.1:5557" in banner
        tail = mimir_command("tail", "--replay-address", "tcp://127.0.0.1:5556", "--timeout", "10")
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
