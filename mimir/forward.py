"""Send entries from many processes, on one host or many, to one :class:`mimir.collector.Collector`.

The wire protocol is described in ``docs/multiprocess.rst``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from mimir import _fork
from mimir._handler import Handler, as_line
from mimir.zmq_handler import RUN, import_zmq

__all__ = ["KIND_FORWARD", "MAX_MESSAGE_BYTES", "RUN", "ZMQForwardHandler"]

#: First byte of frame 0 of every forwarded message; the rest of the frame is the
#: sender's identity as a JSON object (host, pid, run, and name when given).
KIND_FORWARD = b"F"
#: Default largest frame a collector accepts; a batch is cut well below it, and one
#: entry longer than it is dropped by the sender.
MAX_MESSAGE_BYTES = 4 << 20
# A message carries the entries taken together, up to this many bytes (cut at a newline).
_BATCH_BYTES = 128 << 10
# While entries keep coming, the sender takes them every this many seconds.
_ACTIVE_POLL = 0.002
# How long to wait before retrying a batch ZeroMQ refused (its queue was full).
_RETRY_POLL = 0.005
# Messages ZeroMQ queues for the collector (while it is away too) before refusing more.
_SNDHWM = 64
# How long close() keeps sending what is still queued before counting it as dropped.
_CLOSE_DRAIN_SECONDS = 0.5


def _curve_key(value: Any, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) from a key file made by :mod:`zmq.auth`, or a 40-character Z85 key."""
    if isinstance(value, (bytes, str)) and len(value) == 40 and not os.path.exists(value):
        return (value.encode() if isinstance(value, str) else value), None
    import zmq.auth

    path = os.fspath(value)
    if not os.path.isfile(path):
        raise ValueError(f"{what}: no key file {path!r}")
    public, secret_key = zmq.auth.load_certificate(path)
    if secret and secret_key is None:
        raise ValueError(f"{what}: {path!r} holds no secret key (pass the '.key_secret' file)")
    return public, secret_key


class ZMQForwardHandler(Handler):
    """Sends every entry to a :class:`~mimir.collector.Collector`, which writes one log for all.

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
        if not isinstance(address, str) or "://" not in address:
            raise ValueError(
                f"expected a ZeroMQ address such as tcp://127.0.0.1:5555, got {address!r}"
            )
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
        super().__init__(level)
        self.address = address
        self.name = name
        self.queue_size = queue_size
        self.linger = float(linger)
        self._keys: tuple[bytes, bytes, bytes] | None = None
        if curve_server_public_key is not None:
            if not zmq.has("curve"):
                raise ValueError("this libzmq was built without CURVE support")
            server, _ = _curve_key(curve_server_public_key, "curve_server_public_key", False)
            public, secret = _curve_key(curve_client_secret_key, "curve_client_secret_key", True)
            assert secret is not None
            self._keys = (server, public, secret)
        #: Entries handed to ZeroMQ for the collector.
        self.sent = 0
        #: Entries thrown away: buffer full, closed, too big, or not sent by close().
        self.dropped = 0
        self._lock = threading.Lock()
        self._life_lock = threading.RLock()  # close() and reopening
        self._closed = False
        self._dropping = False
        self._finalizer: Any = None
        self._reset()
        _fork.reset_after_fork(self)

    def _reset(self) -> None:
        """Start a new sender: a new identity, sequence and buffer; no thread yet."""
        #: Random hex string naming this sender (new in a forked child).
        self.run_id = uuid.uuid4().hex
        identity: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
        if self.name is not None:
            identity["name"] = self.name
        identity["run"] = self.run_id
        self._header = KIND_FORWARD + json.dumps(identity, separators=(",", ":")).encode()
        # The entries waiting for the sender: their JSON lines, each ending in b"\n",
        # back to back in _pending; _count of them, numbered _seq + 1 to _seq + _count.
        # The _lost entries dropped since come after them (drops happen only when no
        # more fit). The sender swaps the bytearray out whole, under _lock.
        self._pending = bytearray()
        self._seq = 0
        self._count = 0
        self._lost = 0
        self._room = 0 if self._closed else self.queue_size
        self._taken = 0  # seq of the last entry the sender took from _pending
        self._processed = 0  # seq of the last entry the sender dealt with (sent or dropped)
        self._idle = True
        self._stalled = False  # ZeroMQ refused the last send (the collector is away or slow)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- the caller's side ---------------------------------------------------------

    def add_line(self, line: bytes | str, record: logging.LogRecord | None = None) -> None:
        """Queue one entry, already encoded as one line of JSON (a JSON object).

        ``line`` is UTF-8 bytes ending in ``b"\\n"`` (as :class:`mimir.Logger` makes
        them), or text; a missing final newline is added. It must hold no other
        newline.
        """
        if not line or line[-1] != 10:  # 10: b"\\n"; text never equals it
            line = as_line(line)
        with self._lock:  # not acquire()/try: see BufferedHandler.add_line
            count = self._count
            if count < self._room and len(line) < MAX_MESSAGE_BYTES:
                self._pending += line
                self._count = count + 1
                if count or not self._idle:
                    return
                self._idle = False
                action = "start" if self._thread is None else "wake"
            elif self._closed and len(line) < MAX_MESSAGE_BYTES:
                action = "reopen"  # closed by close(), dictConfig or logging.shutdown
            else:
                action = "drop"
        if action == "reopen" and self._reopen():
            self.add_line(line, record)
        elif action in ("reopen", "drop"):
            self._drop(record, len(line))
        elif action == "start":
            self._start()
        else:
            self._wake.set()

    def _drop(self, record: logging.LogRecord | None, size: int) -> None:
        """Count a dropped entry; report the first of a streak through handleError."""
        with self._lock:
            self._lost += 1
            self.dropped += 1
            if self._dropping:
                return
            self._dropping = True
            why = self._drop_reason(size)
        self.report_dropped(f"{self!r}: {why}; entries are dropped (count in .dropped)", record)

    def _reopen(self) -> bool:
        """After close(): send again (same identity, next sequence number); False if not yet."""
        with self._life_lock:
            with self._lock:
                if not self._closed:
                    return True
                thread = self._thread
            if thread is not None and thread.is_alive():
                return False  # close() gave up waiting for it: it still owns the socket
            with self._lock:
                self._closed = self._stopping = self._dropping = False
                self._room = self.queue_size
                self._thread = None
                self._idle = True
            _fork.reset_after_fork(self)
            return True

    def _drop_reason(self, size: int) -> str:
        if self._closed:
            return "closed"
        if size >= MAX_MESSAGE_BYTES:
            return f"an entry of {size} bytes is larger than the collector accepts"
        if self._stopping:
            return "the sending thread has stopped"
        return f"queue full ({self.queue_size} entries waiting to be sent to {self.address})"

    def _start(self) -> None:
        """Start the sending thread (on the first entry, in this process)."""
        self._wake.set()
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"mimir-forward-{id(self):x}", daemon=True
            )
        self._thread.start()
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
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        with self._lock:
            target = self._seq + self._count if self._count else self._taken
        self._wake.set()
        deadline = time.monotonic() + timeout
        while (
            self._processed < target
            and not self._stalled
            and time.monotonic() < deadline
            and thread.is_alive()
        ):
            time.sleep(0.0005)

    def close(self) -> None:
        """Send what is queued, stop the thread, close the socket. Idempotent.

        Returns within about ``linger`` + 0.5 seconds even when the collector is gone
        or not reading; entries that could not be handed to ZeroMQ by then are
        counted in ``dropped``. Entries ZeroMQ still held when ``linger`` ran out
        are lost too: the collector reports them as a gap.
        """
        try:
            with self._life_lock:
                with self._lock:
                    closing = not self._closed
                    self._closed = True
                    self._room = 0
                    thread = self._thread
                if closing:
                    if thread is not None and thread is not threading.current_thread():
                        self._wake.set()
                        thread.join(self.linger + _CLOSE_DRAIN_SECONDS + 1.0)
                    _fork.forget(self)
        finally:
            super().close()

    def _after_fork_in_child(self) -> None:
        # Nothing of the parent's (socket, context, thread) is used or closed here.
        self._lock = threading.Lock()
        self._life_lock = threading.RLock()
        self._dropping = False
        self._finalizer = None
        self.sent = self.dropped = 0
        self._reset()

    def __repr__(self) -> str:
        who = f" {self.name}" if self.name else ""
        return f"<ZMQForwardHandler{who} -> {self.address}>"

    # -- the sender thread -----------------------------------------------------------

    def _run(self) -> None:
        zmq = import_zmq()
        context = sock = None
        # What ZeroMQ refused so far: (data, offset, seq of the first entry there, count).
        held: tuple[bytearray, int, int, int] | None = None
        try:
            context = zmq.Context()
            sock = context.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, _SNDHWM)
            # Queue nothing in ZeroMQ while the collector is away: entries wait in this
            # handler's buffer, where they are counted (sent or dropped), not in a pipe
            # that LINGER or a reconnection would empty without a word.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            if self._keys is not None:
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._keys
            sock.connect(self.address)
            active = False
            while True:
                if held is not None:
                    self._wake.wait(_RETRY_POLL)
                elif active:
                    self._wake.wait(_ACTIVE_POLL)
                else:
                    self._wake.wait()
                self._wake.clear()
                if held is None:
                    held = self._take()
                    if held is None and active:
                        with self._lock:
                            if not self._count:
                                self._idle = True
                                active = False
                if held is not None:
                    active = True
                    held = self._send(zmq, sock, *held)
                if self._closed:
                    break
            deadline = time.monotonic() + _CLOSE_DRAIN_SECONDS
            while time.monotonic() < deadline:
                if held is None:
                    held = self._take()
                    if held is None:
                        break
                held = self._send(zmq, sock, *held)
                if held is not None:
                    time.sleep(_RETRY_POLL)
        except Exception:
            self.report(f"{self!r}: the sending thread failed; entries are dropped")
        finally:
            with self._lock:
                self._stopping = True
                self._room = 0
                lost = self._count + (held[3] if held is not None else 0)
                self.dropped += lost
                self._seq += self._count + self._lost
                self._pending = bytearray()
                self._count = self._lost = 0
                self._processed = self._seq
            if sock is not None:
                sock.close(linger=int(self.linger * 1000))
            if context is not None:
                context.term()
            if lost:
                self.report_dropped(
                    f"{self!r}: {lost} entries could not be sent before close (the"
                    " collector is away or not keeping up); counted in .dropped"
                )

    def _take(self) -> tuple[bytearray, int, int, int] | None:
        """Swap the buffer out: (its data, offset 0, the seq of its first entry, its count)."""
        with self._lock:
            count = self._count
            if not count:
                return None
            data = self._pending
            first = self._seq + 1
            self._pending = bytearray()
            self._count = 0
            self._taken = first + count - 1
            self._seq = self._taken + self._lost
            self._lost = 0
            self._dropping = False  # the next entry fits
        return data, 0, first, count

    def _send(
        self, zmq: Any, sock: Any, data: bytearray, start: int, seq: int, left: int
    ) -> tuple[bytearray, int, int, int] | None:
        """Send ``data[start:]`` in messages of about ``_BATCH_BYTES``; return what was refused."""
        header = self._header
        view = memoryview(data)
        try:
            end = len(data)
            while start < end:
                if end - start <= _BATCH_BYTES:
                    stop = end
                    count = left
                else:  # cut after the last newline within the limit (or the first after)
                    stop = data.rfind(b"\n", start, start + _BATCH_BYTES) + 1
                    if stop <= start:
                        stop = data.find(b"\n", start + _BATCH_BYTES) + 1
                    count = data.count(b"\n", start, stop)
                try:
                    sock.send(header, zmq.SNDMORE | zmq.NOBLOCK)
                    sock.send(RUN.pack(seq, count), zmq.SNDMORE | zmq.NOBLOCK)
                    sock.send(view[start:stop], zmq.NOBLOCK)
                except zmq.Again:  # the queue to the collector is full: retry later
                    self._stalled = True
                    return data, start, seq, left
                self._stalled = False
                self.sent += count
                seq += count
                left -= count
                start = stop
            return None
        finally:
            view.release()
            self._processed = seq - 1 if left else self._taken
