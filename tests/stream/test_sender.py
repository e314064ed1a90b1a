"""The sender core both ZeroMQ handlers build on: every entry is sent or dropped, once."""

from __future__ import annotations

import logging
import threading

import pytest

from mimir.stream._sender import QueuedSender
from mimir.stream.protocol import decode_forward, decode_identity


class GatedSender(QueuedSender):
    """A sender whose "socket" is a list; it sends only while ``gate`` is set."""

    _thread_name = "test"
    _batch_bytes = 40
    _max_line = 100
    _receiver = "the test"

    def __init__(self, queue_size: int, refuse_every: int = 0) -> None:
        self._wakeup = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[tuple[int, int, bytes]] = []
        self.refuse_every = refuse_every
        self.calls = 0
        super().__init__(queue_size, 0.1, logging.NOTSET)

    def _wake_locked(self) -> None:
        self._wakeup.set()

    def _send_loop(self) -> None:
        try:
            while True:
                self._wakeup.wait(0.005)
                self._wakeup.clear()
                self.gate.wait()
                taken = self._take()
                if taken is not None:
                    data, seq, count = taken
                    left = self._send_batches(data, 0, seq, count, self._send_one(data))[2]
                    assert left == 0
                    self._processed = self._taken
                if self._closed and not self._count:
                    break
        finally:
            self._stop_queue()

    def _send_one(self, data: bytearray):
        def send(seq: int, count: int, start: int, stop: int) -> bool:
            self.calls += 1
            if self.refuse_every and self.calls % self.refuse_every == 0:
                return False  # "ZeroMQ refused it": counted as dropped
            self.batches.append((seq, count, bytes(data[start:stop])))
            return True

        return send


def _received(sender: GatedSender) -> list[int]:
    """The sequence numbers sent, checked against the lines of each batch."""
    seqs = []
    for seq, count, lines in sender.batches:
        assert lines.count(b"\n") == count
        assert len(lines) <= sender._batch_bytes or count == 1
        for offset, line in enumerate(lines.splitlines()):
            assert int(line) == seq + offset  # each line is its own sequence number
            seqs.append(seq + offset)
    return seqs


def test_sent_plus_dropped_is_logged_across_a_reopen(capsys):
    """Queue full, refused batches, an entry too long, close and reopen: nothing uncounted."""
    sender = GatedSender(queue_size=20, refuse_every=3)
    logged = 0

    def log(n: int) -> None:
        nonlocal logged
        for _ in range(n):
            logged += 1
            sender.add_line(b"%d\n" % logged)

    sender.gate.clear()  # the sender holds off: the queue fills, then drops
    log(50)
    sender.gate.set()
    sender._wait_processed(5)
    log(15)  # fits: the streak of drops is over
    logged += 1
    sender.add_line(b"x" * 200 + b"\n")  # too long: dropped, numbered after the others
    sender.close()
    first = sender.sent + sender.dropped
    assert first == logged
    log(40)  # reopens: same handler, next sequence numbers
    sender.close()
    assert sender.sent + sender.dropped == logged
    assert sender.dropped >= 30  # 30 at least were dropped while the queue was full
    received = _received(sender)
    assert received == sorted(set(received))
    assert received[-1] <= logged
    assert max(received) > first  # entries after the reopen continue the numbering
    err = capsys.readouterr().err
    assert "queue full (20 entries waiting to be sent)" in err
    assert "larger than the test accepts" in err


def test_entry_too_long_keeps_its_place_in_the_numbering(capsys):
    """An entry dropped for its length takes its number in order, queued behind or not."""
    sender = GatedSender(queue_size=100)
    too_long = b"x" * 200 + b"\n"
    sender.gate.clear()  # everything below is queued before the sender takes any
    sender.add_line(b"1\n")
    sender.add_line(b"2\n")
    sender.add_line(too_long)  # 3
    sender.add_line(b"4\n")
    sender.add_line(b"5\n")
    sender.add_line(too_long)  # 6
    sender.add_line(too_long)  # 7
    sender.gate.set()
    sender._wait_processed(5)
    assert sender._processed == 5
    sender.add_line(too_long)  # 8, with nothing queued
    sender.add_line(b"9\n")
    sender.close()
    assert _received(sender) == [1, 2, 4, 5, 9]  # each line is sent with its own number
    assert [(seq, count) for seq, count, _ in sender.batches] == [(1, 2), (4, 2), (9, 1)]
    assert (sender.sent, sender.dropped) == (5, 4)
    assert "an entry of 201 bytes is larger than the test accepts" in capsys.readouterr().err


def test_one_report_per_streak_of_drops(capsys):
    """Drops while the queue stays full are reported once; a new streak after it drains."""
    sender = GatedSender(queue_size=5)
    sender.gate.clear()
    for i in range(1, 21):
        sender.add_line(b"%d\n" % i)
    assert sender.dropped == 15
    assert sender.failures == 1
    sender.gate.set()
    sender._wait_processed(5)
    sender.gate.clear()
    for i in range(21, 41):
        sender.add_line(b"%d\n" % i)
    assert sender.failures == 2
    sender.gate.set()
    sender.close()
    assert sender.sent + sender.dropped == 40
    assert sender.sent == 10
    capsys.readouterr()


def test_closed_sender_that_cannot_reopen_drops_and_reports_once(capsys):
    """A sender whose reopening fails counts every later entry as dropped, one report."""

    class Stuck(GatedSender):
        def _open_again(self) -> bool:
            return False

    sender = Stuck(queue_size=5)
    sender.add_line(b"1\n")
    sender.close()
    for i in range(2, 12):
        sender.add_line(b"%d\n" % i)
    assert (sender.sent, sender.dropped) == (1, 10)
    assert sender.failures == 1
    assert "closed; entries are dropped" in capsys.readouterr().err


def test_forward_handler_accounts_every_entry_across_a_reopen(capsys):
    """ZMQForwardHandler to a PULL socket: same run, next numbers after close(), all counted."""
    zmq = pytest.importorskip("zmq")
    from mimir.stream.forwarder import ZMQForwardHandler

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind("tcp://127.0.0.1:*")
    address = pull.getsockopt(zmq.LAST_ENDPOINT).decode()
    handler = ZMQForwardHandler(address, name="t", queue_size=1000)
    try:
        for i in range(1, 301):
            handler.add_line(b'{"i":%d}\n' % i)
        handler.close()
        run = handler.run_id
        for i in range(301, 401):
            handler.add_line(b'{"i":%d}\n' % i)
        handler.close()
        assert handler.run_id == run
        assert handler.sent + handler.dropped == 400
        seqs = []
        while pull.poll(500 if len(seqs) < handler.sent else 50):
            header, first, count, data = decode_forward(pull.recv_multipart())
            assert decode_identity(header)["run"] == run
            seqs.extend(range(first, first + count))
            assert [int(line[5:-1]) for line in data.splitlines()] == list(
                range(first, first + count)
            )
        assert sorted(seqs) == list(range(1, 401))  # two sockets: interleaved
        assert handler.sent == 400
    finally:
        handler.close()
        pull.close()
        context.term()


def test_stream_handler_accounts_every_entry_across_a_reopen():
    """ZMQStreamHandler with a tiny queue: sent + dropped equals logged, over two lives."""
    pytest.importorskip("zmq")
    from mimir.stream.publisher import ZMQStreamHandler

    handler = ZMQStreamHandler("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", replay=10, queue_size=8)
    handler.handleError = lambda record: None  # drops are expected here
    try:
        for i in range(2000):
            handler.add_line(b'{"i":%d}\n' % i)
        handler.close()
        run, address = handler.run_id, handler.address
        for i in range(2000, 3000):
            handler.add_line(b'{"i":%d}\n' % i)
        handler.close()
        assert (handler.run_id, handler.address) == (run, address)
        assert handler.sent + handler.dropped == 3000
        assert handler.sent > 0
    finally:
        handler.close()
