"""Send entries from many processes, on one host or many, to one :class:`mimir.Collector`.

The wire protocol is :mod:`mimir.stream.protocol` (described in
``docs/multiprocess.rst``); the queue and its accounting are the sender core shared
with :class:`~mimir.ZMQStreamHandler` (:mod:`mimir.stream._sender`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from mimir import _fork
from mimir.stream._sender import ACTIVE_POLL, CLOSE_DRAIN_SECONDS, QueuedSender
from mimir.stream.protocol import (
    KIND_FORWARD,
    MAX_MESSAGE_BYTES,
    SPAN,
    encode_entries,
    encode_identity,
)
from mimir.stream.transport import check_address, client_curve_keys, client_socket, import_zmq

__all__ = ["KIND_FORWARD", "MAX_MESSAGE_BYTES", "SPAN", "ZMQForwardHandler"]

# How long to wait before retrying a batch ZeroMQ refused (its queue was full).
_RETRY_POLL = 0.005
# Messages ZeroMQ queues for the collector (while it is away too) before refusing more.
_SNDHWM = 64

# What ZeroMQ refused so far: (lines, offset, seq of the first entry there, count).
_Held = tuple[bytearray, int, int, int]


class ZMQForwardHandler(QueuedSender):
    """Sends every entry to a :class:`~mimir.Collector`, which writes one log for all.

    Use one per process (a rank, a data-loader worker, a process on another host):
    the collector adds who sent each entry (host, pid and ``name``) and checks that
    nothing went missing on the way, from a sequence number (1, 2, 3 ... per sender)
    that ``emit`` gives each entry.

    ``emit`` formats the record (the formatter's JSON line) and appends the line to
    a buffer of at most ``queue_size`` entries; it never waits for the network. A
    background thread, which owns the socket, takes the whole buffer at once and
    sends it as one message (or a few). When the buffer is full, because the
    collector is gone or slow, the entry is dropped, counted in ``dropped``, and
    the first drop of a streak is reported through :meth:`handleError`; the
    collector sees the dropped entries as a gap and reports it.

    Arguments:
        address: the collector's address (``tcp://host:port``). The socket connects,
            and reconnects by itself when the collector restarts.
        name: a name for this sender in the log, such as ``"rank3"``.
        queue_size: entries waiting to be sent before new ones are dropped.
        linger: seconds :meth:`close` waits for the collector to take what was sent
            (ZeroMQ's LINGER).
        curve_server_public_key: the collector's public key (a ``.key`` file made by
            :func:`zmq.auth.create_certificates`, or its 40-character Z85 text):
            encrypt with CURVE.
        curve_client_secret_key: this sender's ``.key_secret`` file, whose public
            key the collector must know (needed with ``curve_server_public_key``).
        level: the handler's level.

    In a child made by ``fork()`` (a data-loader worker) the handler works on: it
    starts afresh with a new sender identity (the child's pid, a new run id) and
    sequence, and makes its own socket and thread on the child's first entry.
    Entries buffered in the parent are sent by the parent only.
    """

    _thread_name = "forward"
    _max_line = MAX_MESSAGE_BYTES
    _receiver = "the collector"
    _batch_bytes = 128 << 10
    _retry_refused = True

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5555",
        name: str | None = None,
        queue_size: int = 100_000,
        linger: float = 1.0,
        curve_server_public_key: Any = None,
        curve_client_secret_key: Any = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        check_address(address, "tcp://127.0.0.1:5555")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int):
            raise TypeError(f"queue_size must be an int, got {type(queue_size).__name__}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be positive, got {queue_size}")
        if not 0 <= linger <= 10:
            raise ValueError(f"linger must be between 0 and 10 seconds, got {linger!r}")
        if (curve_server_public_key is None) != (curve_client_secret_key is None):
            raise ValueError(
                "curve_server_public_key and curve_client_secret_key go together: pass both"
            )
        zmq = import_zmq()
        self._finalizer: Any = None
        super().__init__(queue_size, linger, level)
        self.address = address
        self.name = name
        self._keys = client_curve_keys(zmq, curve_server_public_key, curve_client_secret_key)
        self._reset()
        _fork.reset_after_fork(self)

    def _reset(self) -> None:
        """Start a new sender: a new identity, sequence and queue; no thread yet."""
        #: Random hex string naming this sender (new in a forked child).
        self.run_id = uuid.uuid4().hex
        self._header = encode_identity(socket.gethostname(), os.getpid(), self.name, self.run_id)
        self._reset_queue()
        self._wakeup = threading.Event()
        self._thread = None

    # -- the caller's side ---------------------------------------------------------

    def _destination(self) -> str:
        return f"sent to {self.address}"

    def _wake_locked(self) -> None:
        self._wakeup.set()

    def _on_thread_started(self) -> None:
        mp_util = sys.modules.get("multiprocessing.util")
        mp = sys.modules.get("multiprocessing")
        if mp_util is not None and mp is not None and mp.parent_process() is not None:
            # Children of multiprocessing leave through os._exit, skipping
            # logging.shutdown: its own exit hook sends what the child queued.
            self._finalizer = mp_util.Finalize(self, self.close, exitpriority=100)

    def flush(self, timeout: float = 1.0) -> None:
        """Wait until every entry logged so far is handed to ZeroMQ (at most ``timeout`` s).

        Returns at once while the collector is away or not keeping up: the entries
        stay queued (``logging.shutdown`` calls this before :meth:`close`, which
        bounds the wait).
        """
        self._wait_processed(timeout)

    def close(self) -> None:
        """Send what is queued, stop the thread, close the socket. Idempotent.

        Returns within about ``linger`` + 0.5 seconds even when the collector is gone
        or not reading; entries that could not be handed to ZeroMQ by then are
        counted in ``dropped``. Entries ZeroMQ still held when ``linger`` ran out
        are lost too: the collector reports them as a gap.
        """
        super().close()

    def _after_fork_in_child(self) -> None:
        # Nothing of the parent's (socket, context, thread) is used or closed here.
        super()._after_fork_in_child()
        self._finalizer = None
        self.sent = self.dropped = 0
        self._reset()

    def __repr__(self) -> str:
        who = f" {self.name}" if self.name else ""
        return f"<ZMQForwardHandler{who} -> {self.address}>"

    # -- the sender thread -----------------------------------------------------------

    def _send_loop(self) -> None:
        zmq = import_zmq()
        context = sock = None
        held: _Held | None = None
        try:
            context = zmq.Context()
            sock = client_socket(zmq, context, zmq.PUSH, self._keys)
            sock.setsockopt(zmq.SNDHWM, _SNDHWM)
            # Queue nothing in ZeroMQ while the collector is away: entries wait in this
            # handler's queue, where they are counted (sent or dropped), not in a pipe
            # that LINGER or a reconnection would empty without a word.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.connect(self.address)
            wakeup = self._wakeup
            active = False
            while True:
                if held is not None:
                    wakeup.wait(_RETRY_POLL)
                elif active:
                    wakeup.wait(ACTIVE_POLL)
                else:
                    wakeup.wait()
                wakeup.clear()
                if held is None:
                    held = self._take_held()
                    if held is None and active:
                        with self._lock:
                            if not self._count:
                                self._idle = True
                                active = False
                if held is not None:
                    active = True
                    current, held = held, None
                    held = self._send(zmq, sock, *current)
                if self._closed:
                    break
            deadline = time.monotonic() + CLOSE_DRAIN_SECONDS
            while time.monotonic() < deadline:
                if held is None:
                    held = self._take_held()
                    if held is None:
                        break
                current, held = held, None
                held = self._send(zmq, sock, *current)
                if held is not None:
                    time.sleep(_RETRY_POLL)
        except Exception:
            self._report_failure()
        finally:
            lost = self._stop_queue(held[3] if held is not None else 0)
            if sock is not None:
                sock.close(linger=int(self.linger * 1000))
            if context is not None:
                context.term()
            if lost:
                self.report_dropped(
                    f"{self!r}: {lost} entries could not be sent before close (the"
                    " collector is away or not keeping up); counted in .dropped"
                )

    def _take_held(self) -> _Held | None:
        taken = self._take()
        return None if taken is None else (taken[0], 0, taken[1], taken[2])

    def _send(
        self, zmq: Any, sock: Any, data: bytearray, start: int, seq: int, left: int
    ) -> _Held | None:
        """Send ``data[start:]`` in messages of about ``_batch_bytes``; return what was refused."""
        header = self._header
        view = memoryview(data)

        def send(seq: int, count: int, start: int, stop: int) -> bool:
            try:
                sock.send_multipart(
                    encode_entries(header, seq, count, view[start:stop]), zmq.NOBLOCK
                )
            except zmq.Again:  # the queue to the collector is full: retry later
                return False
            return True

        try:
            start, seq, left = self._send_batches(data, start, seq, left, send)
        finally:
            view.release()
        self._processed = seq - 1 if left else self._taken
        return (data, start, seq, left) if left else None
