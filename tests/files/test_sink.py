"""The sink interface of compressed logs, in this process and in the writer process alike.

Every test but the last runs twice: on :class:`GzlogSink` (this process) and on
:class:`WriterProcess` (the client of the writer process, which runs a GzlogSink),
through the interface the handler uses: append, sync, compress, close and the counts.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mimir
from mimir.files._sink import GzlogSink, Sink
from mimir.files._writer_process import WriterProcess
from mimir.gzlog import Gzlog, GzlogWarning, check

MakeSink = Callable[..., Sink]


def line(seq: int, size: int = 0) -> bytes:
    return (json.dumps({"seq": seq, "pad": "x" * size}) + "\n").encode()


def lines(start: int, stop: int, size: int = 0) -> bytes:
    return b"".join(line(seq, size) for seq in range(start, stop))


def seqs(path: Path) -> list[int]:
    return [entry["seq"] for entry in mimir.load(path)]


class Reports:
    """A ``report`` callback: keeps each message, and whether it came with an exception."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.with_exception: list[bool] = []

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        self.with_exception.append(sys.exc_info()[1] is not None)

    def saying(self, text: str) -> list[str]:
        return [m for m in self.messages if text in m]


@pytest.fixture(params=["in-process", "writer-process"])
def make_sink(request: pytest.FixtureRequest) -> Iterator[MakeSink]:
    """Build sinks of one kind; each is closed after the test."""
    made: list[Sink] = []

    def make(path: Path, report: Reports, max_buffer_bytes: int = 256 << 20) -> Sink:
        sink: Sink
        if request.param == "in-process":
            sink = GzlogSink(path, report=report, max_buffer_bytes=max_buffer_bytes)
        else:
            sink = WriterProcess(
                str(path),
                flush_interval=0.05,
                max_buffer_bytes=max_buffer_bytes,
                compression_level=4,
                report=report,
            )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def test_append_sync_compress_close(tmp_path: Path, make_sink: MakeSink) -> None:
    """Appended lines are in the log after sync, compressed on request and at close."""
    path = tmp_path / "run.jsonl.gz"
    reports = Reports()
    sink = make_sink(path, reports)
    for start in range(0, 1000, 100):
        sink.append(lines(start, start + 100))
    sink.sync()
    assert (sink.written, sink.dropped, sink.pending) == (1000, 0, 0)
    assert seqs(path) == list(range(1000))
    assert check(path)["stored_bytes"] > 0
    sink.compress()
    assert check(path)["stored_bytes"] == 0
    sink.append(bytearray(lines(1000, 1500, 3000)))  # more than a tail: split at line ends
    sink.close()
    sink.close()  # idempotent
    assert (sink.written, sink.dropped, sink.pending) == (1500, 0, 0)
    assert seqs(path) == list(range(1500))
    report = check(path)
    assert report["valid"] and report["stored_bytes"] == 0
    assert reports.messages == []


def test_a_damaged_log_is_moved_aside(tmp_path: Path, make_sink: MakeSink) -> None:
    """Damage only a full verification finds: the log is moved aside whole, with a warning."""
    path = tmp_path / "run.jsonl.gz"
    with Gzlog(path) as log:
        log.append(lines(0, 2000))
        log.compress()
        log.append(lines(2000, 2010))
        first = log.state().first
    damaged = bytearray(path.read_bytes())
    damaged[first - 40] ^= 0x08  # in the compressed part
    path.write_bytes(damaged)
    reports = Reports()
    with pytest.warns(GzlogWarning, match="moved whole to .*corrupt") as caught:
        sink = make_sink(path, reports)
        sink.append(lines(5000, 5005))
        sink.sync()
    (aside,) = tmp_path.glob("run.jsonl.gz.corrupt-*")
    assert aside.read_bytes() == damaged
    assert str(aside) in str(caught[0].message)
    assert seqs(path) == list(range(5000, 5005))
    assert (sink.written, sink.dropped, sink.pending) == (5, 0, 0)
    assert reports.messages == []


def test_a_failure_is_reported_once_and_retried(tmp_path: Path, make_sink: MakeSink) -> None:
    """Appends that fail: one report (from an except block), the lines kept, then written once."""
    path = tmp_path / "run.jsonl.gz"
    reports = Reports()
    sink = make_sink(path, reports)
    sink.append(line(0))
    sink.sync()
    blocker = tmp_path / "run.jsonl.add"  # the append's P.add cannot be created
    blocker.mkdir()
    sink.append(lines(1, 100))
    sink.sync()
    sink.append(line(100))
    sink.sync()
    assert len(reports.saying("could not write")) == 1 and reports.with_exception == [True]
    assert (sink.written, sink.dropped, sink.pending) == (1, 0, 100)
    assert seqs(path) == [0]
    blocker.rmdir()
    sink.sync()
    assert (sink.written, sink.dropped, sink.pending) == (101, 0, 0)
    sink.close()
    assert seqs(path) == list(range(101))
    assert len(reports.messages) == 1


def test_lines_beyond_the_bound_are_dropped_and_counted(
    tmp_path: Path, make_sink: MakeSink
) -> None:
    """While writes fail, lines past max_buffer_bytes are dropped; close gives up the rest."""
    path = tmp_path / "run.jsonl.gz"
    reports = Reports()
    batch = lines(0, 10)
    sink = make_sink(path, reports, max_buffer_bytes=3 * len(batch))
    (tmp_path / "run.jsonl.add").mkdir()
    for _ in range(6):
        sink.append(batch)
        sink.sync()
    assert (sink.written, sink.dropped, sink.pending) == (0, 30, 30)  # 3 batches kept
    assert len(reports.saying("buffer full")) == 1
    sink.close()
    assert (sink.written, sink.dropped, sink.pending) == (0, 60, 0)
    assert len(reports.saying("30 entries could not be written before close() and are lost")) == 1
    assert all(reports.with_exception)
    assert gzip.decompress(path.read_bytes()) == b""


def test_what_reached_the_log_before_a_failure_counts_as_written(tmp_path: Path) -> None:
    """An append that fails after earlier pieces of its batch were committed: those lines
    are written (counted once), the rest is kept and retried."""
    path = tmp_path / "run.jsonl.gz"
    reports = Reports()
    sink = GzlogSink(path, report=reports)
    batch = lines(0, 600, 3000)  # about 1.8 MiB: two appends, a compression between them

    def fault(point: str, n: int) -> None:
        if point == "append.add_written" and n == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    sink.appender.gzlog._hooks = fault  # type: ignore[attr-defined]
    sink.append(batch)
    assert 0 < sink.written < 600 and sink.dropped == 0
    assert sink.written + sink.pending == 600
    assert seqs(path) == list(range(sink.written))
    sink.sync()
    sink.close()
    assert (sink.written, sink.dropped, sink.pending) == (600, 0, 0)
    assert seqs(path) == list(range(600))
    assert len(reports.saying("could not write")) == 1


def test_handler_counts_what_reached_the_log_before_a_failure(tmp_path: Path) -> None:
    """Without a writer process, a batch whose second append fails: the lines already in
    the log count as written at once, the rest stays pending, and nothing is counted twice."""
    path = tmp_path / "run.jsonl.gz"
    handler = mimir.GzlogFileHandler(str(path), writer_process=False, flush_interval=0)
    handler.setFormatter(mimir.JSONFormatter())
    handler.report = lambda message: None  # type: ignore[method-assign]

    failing = True

    def fault(point: str, n: int) -> None:
        if failing and point == "append.add_written" and n >= 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    handler._gzlog._hooks = fault  # type: ignore[attr-defined]
    batch = lines(0, 600, 3000)  # about 1.8 MiB: two appends
    handler.add_line(batch)  # type: ignore[attr-defined]
    handler.flush()
    in_log = len(seqs(path))
    assert 0 < in_log < 600
    assert (handler.written, handler.dropped, handler.pending_entries) == (in_log, 0, 600 - in_log)
    failing = False
    handler.close()
    assert (handler.written, handler.dropped, handler.pending_entries) == (600, 0, 0)
    assert seqs(path) == list(range(600))
