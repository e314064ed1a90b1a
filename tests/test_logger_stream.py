"""mimir.Logger with stream=True: the ZeroMQ stream beside the memory ring and the files."""

from __future__ import annotations

import gzip
import json
import socket

import pytest

import mimir
import mimir.stream

pytest.importorskip("zmq")

EPHEMERAL = {"stream_address": "tcp://127.0.0.1:0", "replay_address": "tcp://127.0.0.1:0"}


def test_stream_file_and_memory_from_one_logger(tmp_path):
    """One Logger streams, writes a gzlog and keeps its ring, all with the same entries."""
    path = tmp_path / "run.jsonl.gz"
    logger = mimir.Logger(
        filename=path, maxlen=20, stream=True, stream_maxlen=50, formatter=None, **EPHEMERAL
    )
    try:
        for i in range(30):
            logger.log({"iteration": i, "loss": 1 / (i + 1)})
        with mimir.stream.subscribe(
            logger.stream.address, logger.stream.replay_address, timeout=10
        ) as subscription:
            subscription.sync(10)
            for i in range(30, 40):
                logger.log({"iteration": i, "loss": 1 / (i + 1)})
            received = [next(subscription)["iteration"] for _ in range(40)]
            assert subscription.gaps == 0
    finally:
        logger.close()
    assert received == list(range(40))
    assert [entry["iteration"] for entry in logger] == list(range(20, 40))
    with gzip.open(path, "rt") as file:
        assert [json.loads(line)["iteration"] for line in file] == list(range(40))


def test_two_loggers_stream_at_once_on_their_own_ports():
    """Two Loggers in one process stream side by side, each to its own subscribers."""
    first = mimir.Logger(stream=True, stream_maxlen=5, formatter=None, **EPHEMERAL)
    second = mimir.Logger(stream=True, stream_maxlen=5, formatter=None, **EPHEMERAL)
    try:
        assert first.stream.address != second.stream.address
        first.log({"logger": "first"})
        second.log({"logger": "second"})
        for logger, name in ((first, "first"), (second, "second")):
            with mimir.stream.subscribe(
                logger.stream.address, logger.stream.replay_address, timeout=10
            ) as subscription:
                assert next(subscription) == {"logger": name}
    finally:
        first.close()
        second.close()


def test_port_in_use_is_a_clear_error_naming_it():
    """Streaming on a port another socket holds fails at construction and names the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}"
        with pytest.raises(OSError, match=str(port)):
            mimir.Logger(stream=True, stream_address=address, replay_address="tcp://127.0.0.1:0")


def test_stream_maxlen_without_stream_is_refused():
    """stream_maxlen alone is a mistake worth saying, not a silent no-op."""
    with pytest.raises(ValueError, match="stream=True"):
        mimir.Logger(stream_maxlen=10)


def test_stream_goes_through_logging_when_the_logger_was_touched():
    """With a filter on the stdlib logger, entries still reach the stream, through records."""
    logger = mimir.Logger(stream=True, stream_maxlen=10, formatter=None, **EPHEMERAL)
    try:
        logger.logger.addFilter(lambda record: "skip" not in record.msg)
        logger.log({"keep": 1})
        logger.log({"skip": 1})
        logger.log({"keep": 2})
        with mimir.stream.subscribe(
            logger.stream.address, logger.stream.replay_address, timeout=10
        ) as subscription:
            assert [next(subscription), next(subscription)] == [{"keep": 1}, {"keep": 2}]
    finally:
        logger.close()
