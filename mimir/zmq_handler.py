"""Publish entries live over ZeroMQ, with the newest entries replayed to late joiners.

The wire protocol is documented in ``docs/streaming.rst``; :mod:`mimir.stream` is
the client.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import struct
import threading
import time
import uuid
import warnings
from collections import deque
from typing import Any

from mimir import _fork
from mimir._handler import Handler, as_line

__all__ = [
    "MAX_REQUEST_SIZE",
    "RUN",
    "ZMQStreamHandler",
    "import_zmq",
    "is_loopback",
    "run_id_of",
]

#: Largest frame accepted by the server sockets, in bytes (``ZMQ_MAXMSGSIZE``): ZeroMQ
#: disconnects a peer that sends a bigger one. Requests are 6 or 14 bytes; the limit
#: leaves room for the CURVE handshake (about 300 bytes).
MAX_REQUEST_SIZE = 1024

# Frame 0 of every message: one kind letter followed by the 32-character run id.
KIND_ENTRY = b"E"
KIND_HEARTBEAT = b"H"
KIND_REPLAY = b"R"
REQUEST = b"REPLAY"
_SEQ = struct.Struct(">Q")
_TWO_SEQS = struct.Struct(">QQ")
#: A run of entries with consecutive sequence numbers: the sequence number of its
#: first entry (8 bytes) and how many entries it holds (4 bytes). Its entries travel
#: in another frame, as JSON lines each ending in a newline.
RUN = struct.Struct(">QI")
# A live message carries the entries drained together, up to this many bytes (cut at
# a newline): one send per batch rather than per entry (each send releases the GIL).
_BATCH_BYTES = 64 << 10

# At most this many replay requests are answered per turn of the sender loop, so
# that a peer flooding the replay socket cannot stall the live stream.
_REQUESTS_PER_TURN = 16
# While entries keep coming, the sender takes them every this many seconds.
_ACTIVE_POLL = 0.002
# How long close() keeps publishing what is still queued before counting it as dropped.
_CLOSE_DRAIN_SECONDS = 0.5


def import_zmq() -> Any:
    """Import pyzmq, or raise an ImportError that says how to install it."""
    try:
        import zmq
    except ImportError as error:
        raise ImportError(
            'streaming needs pyzmq: install it with pip install "mimir-logger[zmq]"'
            " (or pip install pyzmq)"
        ) from error
    return zmq


def run_id_of(header: bytes) -> str:
    """The run id carried by frame 0 of a message (kind letter + 32 hex digits)."""
    return header[1:].decode("ascii")


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint is reachable from this host only.

    ``ipc://`` and ``inproc://`` are local; ``tcp://HOST:PORT`` is local when HOST is
    ``localhost`` or a loopback address. ``*``, ``0.0.0.0``, interface names and
    other addresses are not.
    """
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _line_offset(data: bytes, lines: int) -> int:
    """The offset just after the first ``lines`` newline-terminated lines of ``data``."""
    offset = 0
    find = data.find
    for _ in range(lines):
        offset = find(b"\n", offset) + 1
    return offset


def bind_endpoint(zmq: Any, sock: Any, address: str, purpose: str) -> str:
    """Bind ``sock`` to ``address`` (port 0 or ``*``: a free port); return the endpoint bound.

    A port in use is an :class:`OSError` that names the address; ``purpose`` says
    what the socket is for in that message ("publish", "collect").
    """
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"expected a ZeroMQ address such as tcp://127.0.0.1:5557, got {address!r}")
    endpoint = address
    if address.startswith("tcp://") and address.endswith(":0"):
        endpoint = address[:-1] + "*"
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as error:
        if error.errno == errno.EADDRINUSE:
            raise OSError(
                errno.EADDRINUSE,
                f"cannot {purpose} on {address}: address already in use (another run "
                "there? use another port, or port * for a free one)",
            ) from None
        raise OSError(error.errno, f"cannot bind {address}: {error}") from None
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


class _DeniedAtWarning(logging.LoggerAdapter):
    """The ``zmq.auth`` logger, with authentication denials raised from DEBUG to WARNING."""

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        text = str(msg)
        if text.startswith("DENIED") or (text.startswith("%s") and args[:1] == ("DENIED",)):
            self.warning("authentication refused a client: " + text, *args, **kwargs)
        else:
            super().debug(msg, *args, **kwargs)


def load_server_keys(zmq: Any, secret_key_file: Any) -> tuple[bytes, bytes] | None:
    """The CURVE key pair of a server from its ``zmq.auth`` secret key file (None: no CURVE)."""
    if secret_key_file is None:
        return None
    if not zmq.has("curve"):
        raise ValueError("this libzmq was built without CURVE support")
    import zmq.auth

    public, secret = zmq.auth.load_certificate(os.fspath(secret_key_file))
    if secret is None:
        raise ValueError(
            f"{os.fspath(secret_key_file)!r} holds no secret key: pass the "
            "'.key_secret' file made by zmq.auth.create_certificates"
        )
    return public, secret


def start_authenticator(context: Any, directory: Any) -> Any:
    """Accept only the CURVE clients whose public keys are in ``directory``; denials logged."""
    from zmq.auth.thread import ThreadAuthenticator

    location = os.fspath(directory)
    if not os.path.isdir(location):
        raise ValueError(f"curve_authorized_keys: {location!r} is not a directory")
    auth = ThreadAuthenticator(context, log=_DeniedAtWarning(logging.getLogger("zmq.auth"), {}))
    auth.start()
    auth.configure_curve(domain="*", location=location)
    return auth


class HandshakeMonitor:
    """Counts and logs the connections a CURVE socket refused during the handshake.

    ZeroMQ drops a peer without keys or with the wrong server key before any key
    check runs, so only a socket monitor sees it. Logged on ``logger`` at WARNING,
    at most 5 a second; every refusal is counted in :attr:`refused`.
    """

    def __init__(self, zmq: Any, sock: Any, where: str, logger: logging.Logger) -> None:
        self.refused = 0
        self._sock = sock
        self._where = where
        self._log = logger
        self._window = (0.0, 0)
        self.socket = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        )
        self._kinds = {
            zmq.EVENT_HANDSHAKE_FAILED_AUTH: "authentication refused the client's key",
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the handshake failed (no CURVE keys,"
            " the wrong server key, or not a Mímir peer)",
        }

    def drain(self, zmq: Any) -> None:
        """Count and log the refusals reported so far."""
        from zmq.utils.monitor import recv_monitor_message

        for _ in range(100):
            try:
                event = recv_monitor_message(self.socket, zmq.NOBLOCK)
            except zmq.Again:
                return
            self.refused += 1
            now = time.monotonic()
            start, logged = self._window
            if now - start >= 1.0:
                start, logged = now, 0
            self._window = (start, logged + 1)
            if logged < 5:
                self._log.warning(
                    "refused a connection on %s: %s (%d refused so far)",
                    self._where,
                    self._kinds.get(event["event"], "the handshake failed"),
                    self.refused,
                )

    def close(self) -> None:
        """Stop monitoring and close the monitor socket."""
        try:
            self._sock.disable_monitor()
        except Exception:  # the socket may be closed already
            pass
        self.socket.close(linger=0)


class ZMQStreamHandler(Handler):
    """Publishes every entry on a ZeroMQ socket, for :func:`mimir.stream.subscribe`.

    ``emit`` formats the record (the formatter's JSON line), gives it the next
    sequence number (1, 2, 3 ... per handler; an entry dropped anywhere leaves a gap
    that clients see) and appends the line to a buffer of at most ``queue_size``
    entries. It never waits for the network: a background thread, which owns every
    socket, takes the whole buffer at once and publishes it. When the buffer is full
    the entry is dropped, counted in ``dropped``, and the first drop of a streak is
    reported through :meth:`handleError`. ``sent + dropped`` equals the number of
    entries logged once the handler is closed.

    Arguments:
        address: where entries are published (an XPUB socket). The default binds
            the loopback interface only. Port ``*`` or ``0`` picks a free port;
            :attr:`address` tells the endpoint actually bound.
        replay_address: where the newest ``replay`` entries are served to clients
            that join late (a ROUTER socket). Not bound when ``replay=0``
            (:attr:`replay_address` is then None).
        replay: how many of the newest entries to keep for replay.
        queue_size: entries waiting to be published before new ones are dropped. The
            default absorbs bursts of several seconds of a fast training loop (the
            publishing thread gets the GIL back only every few milliseconds while
            the loop runs) at about 100 bytes of memory per waiting entry.
        linger: seconds :meth:`close` waits for slow subscribers before
            discarding what they have not received (ZeroMQ's LINGER).
        hwm: messages queued per subscriber (ZeroMQ's SNDHWM) before ZeroMQ drops
            entries for that subscriber alone; the subscriber sees a gap. A message
            carries the entries logged since the previous one, up to about 64 kB.
        heartbeat: seconds without an entry after which a heartbeat is published,
            so that clients know the publisher is alive and what it last sent.
        curve_server_secret_key: path to a secret key file made by
            :func:`zmq.auth.create_certificates`: encrypt with CURVE.
        curve_authorized_keys: directory of client public key files: only clients
            holding one of these keys may connect (needs
            ``curve_server_secret_key``). Denials are logged on the ``zmq.auth``
            logger at WARNING.
        level: the handler's level.

    Binding anything but loopback without ``curve_authorized_keys`` warns: the
    stream is then readable by anyone who can reach the port.

    In a child process made by ``fork()`` the handler publishes nothing (the sockets
    and the thread belong to the parent): its entries are counted as dropped and
    reported once. Create a new handler in the child to stream from it.

    After :meth:`close` (yours, or one by other code: ``dictConfig``, ``fileConfig``
    and ``logging.shutdown`` close every handler), the next entry binds the same
    addresses again and is published under the same run id and the next sequence
    number, the replay kept: clients reconnect by themselves and see no restart.
    """

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5557",
        replay_address: str = "tcp://127.0.0.1:5556",
        replay: int = 0,
        queue_size: int = 1_000_000,
        linger: float = 1.0,
        hwm: int = 1000,
        heartbeat: float = 1.0,
        curve_server_secret_key: str | os.PathLike[str] | None = None,
        curve_authorized_keys: str | os.PathLike[str] | None = None,
        level: int | str = logging.NOTSET,
    ) -> None:
        for name, value in (("replay", replay), ("queue_size", queue_size), ("hwm", hwm)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if replay < 0:
            raise ValueError(f"replay must be >= 0 (0: no replay), got {replay}")
        if queue_size < 1 or hwm < 1:
            raise ValueError("queue_size and hwm must be positive")
        if not linger >= 0:
            raise ValueError(f"linger must be >= 0 seconds, got {linger!r}")
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be > 0 seconds, got {heartbeat!r}")
        if curve_authorized_keys is not None and curve_server_secret_key is None:
            raise ValueError("curve_authorized_keys needs curve_server_secret_key")
        zmq = import_zmq()
        # What close() needs, set before the handler is registered with logging (which
        # closes it at exit even if this constructor fails).
        self._lock = threading.Lock()
        self._life_lock = threading.RLock()  # close() and reopening
        self._closed = False
        self._cannot_reopen = False
        self._forked = False
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._monitors: list[HandshakeMonitor] = []
        self._auth: Any = None
        self._pub: Any = None
        self._router: Any = None
        self._context: Any = None
        super().__init__(level)
        self.replay = replay
        self._hwm = hwm
        self._curve_server_secret_key = curve_server_secret_key
        self._curve_authorized_keys = curve_authorized_keys
        self.queue_size = queue_size
        self.linger = float(linger)
        self.heartbeat = float(heartbeat)
        #: Random hex string naming this run of the publisher (new in a forked child).
        self.run_id = uuid.uuid4().hex
        #: Entries handed to the publishing socket.
        self.sent = 0
        #: Entries thrown away: queue full, closed, forked child, or a failed send.
        self.dropped = 0
        #: Malformed messages ignored: replay requests, and messages other than
        #: subscriptions sent to the publishing socket.
        self.bad_requests = 0
        #: Replay requests answered.
        self.replays = 0
        self.address: str | None = None
        self.replay_address: str | None = None
        # The entries waiting for the sender: their JSON lines, each ending in b"\n",
        # back to back in _pending; _count of them, numbered _seq + 1 to _seq + _count.
        # The _lost entries dropped since come after them (drops happen only when no
        # more entries fit). The sender swaps the bytearray out whole, under _lock, and
        # moves _seq on: nothing is done per entry but appending the line.
        self._pending = bytearray()
        self._seq = 0
        self._count = 0
        self._lost = 0
        # Entries _pending may hold: queue_size, 0 once closed, forked or stopped.
        self._room = queue_size
        self._swapped_last = 0  # seq of the last entry the sender took from _pending
        self._last_published = 0  # seq of the last entry handed to the socket
        # Whether the sender waits for a wake-up (it looks for entries every
        # _ACTIVE_POLL seconds by itself while they keep coming).
        self._idle = True
        # The newest entries as published: (first seq, count, lines) per message,
        # trimmed to the last `replay` entries lazily (see _trim_ring).
        self._ring: deque[tuple[int, int, bytes]] = deque()
        self._ring_count = 0  # entries held in _ring
        self._refused_before_close = 0
        self._stopped = False
        self._dropping = False
        self._processed = 0  # highest seq the sender has dealt with (sent or dropped)
        try:
            keys = self._open(zmq, address, replay_address)
        except BaseException:
            self._closed = True  # never reopened: nothing can use this handler
            raise
        if curve_authorized_keys is None:
            wide = [a for a in (self.address, self.replay_address) if a and not is_loopback(a)]
            if wide:
                how = (
                    "CURVE encrypts it, but any client may connect: pass curve_authorized_keys"
                    if keys
                    else "pass curve_server_secret_key and curve_authorized_keys"
                )
                warnings.warn(
                    f"Mímir stream bound to {', '.join(wide)}: the entries are readable by "
                    f"anyone who can reach the port ({how}, or bind 127.0.0.1 and use an "
                    "SSH tunnel)",
                    stacklevel=2,
                )
        self._start_thread()
        _fork.reset_after_fork(self)

    # -- set-up -------------------------------------------------------------------

    def _open(self, zmq: Any, address: str, replay_address: str) -> tuple[bytes, bytes] | None:
        """Make the wake-up pipe, context and sockets, and bind; release all on failure."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._context = zmq.Context()
        try:
            keys = load_server_keys(zmq, self._curve_server_secret_key)
            if self._curve_authorized_keys is not None:
                self._auth = start_authenticator(self._context, self._curve_authorized_keys)
            self._pub = self._socket(zmq, zmq.XPUB, keys)
            self._pub.setsockopt(zmq.SNDHWM, self._hwm)
            self._pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # hear every subscription
            self._pub.setsockopt(zmq.RCVHWM, 1000)
            self._pub.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_SIZE)  # subscriptions are tiny
            self.address = bind_endpoint(zmq, self._pub, address, "publish")
            if self.replay:
                self._router = self._socket(zmq, zmq.ROUTER, keys)
                self._router.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_SIZE)
                self._router.setsockopt(zmq.RCVHWM, 100)
                self._router.setsockopt(zmq.SNDHWM, 2)  # replies per client, whole ones
                self._router.setsockopt(zmq.ROUTER_MANDATORY, 0)
                self.replay_address = bind_endpoint(zmq, self._router, replay_address, "publish")
            if keys is not None:
                denials = logging.getLogger("mimir.stream")
                self._monitors = [
                    HandshakeMonitor(zmq, sock, where, denials)
                    for sock, where in (
                        (self._pub, self.address),
                        (self._router, self.replay_address),
                    )
                    if sock is not None
                ]
        except BaseException:
            self._release()
            raise
        return keys

    def _start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"mimir-stream-{id(self):x}", daemon=True
        )
        self._thread.start()

    def _reopen(self) -> bool:
        """Bind the same addresses again after close(); False (reported) if that fails."""
        with self._life_lock:
            if not self._closed:
                return True  # another thread reopened it
            thread = self._thread
            if thread is not None and thread.is_alive():
                return False  # close() gave up waiting for it: its sockets are still in use
            try:
                self._open(import_zmq(), self.address or "", self.replay_address or "")
            except Exception:
                self._cannot_reopen = True  # entries are dropped from now on
                self.report(f"{self!r}: could not bind its addresses again after close()")
                return False
            with self._lock:
                self._closed = self._stopped = self._dropping = False
                self._room = self.queue_size
                self._idle = True
            self._start_thread()
            _fork.reset_after_fork(self)
            return True

    def _socket(self, zmq: Any, kind: int, keys: tuple[bytes, bytes] | None) -> Any:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)  # until close(), which sets the real one
        if keys is not None:
            sock.curve_publickey, sock.curve_secretkey = keys
            sock.curve_server = True
        return sock

    # -- the caller's side ---------------------------------------------------------

    def add_line(self, line: bytes | str, record: logging.LogRecord | None = None) -> None:
        """Queue one entry, already encoded as one line of JSON.

        ``line`` is UTF-8 bytes ending in ``b"\\n"`` (as :class:`mimir.Logger` makes
        them), or text; a missing final newline is added. It must hold no other
        newline.
        """
        if not line or line[-1] != 10:  # 10: b"\\n"; text never equals it
            line = as_line(line)
        with self._lock:  # not acquire()/try: see BufferedHandler.add_line
            count = self._count
            if count < self._room:
                self._pending += line
                self._count = count + 1
                if count or not self._idle:
                    return
                # The first entry for an idle sender: wake it. Under the lock, because
                # the sender closes the pipe under it, once closed.
                self._idle = False
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass  # the pipe is full of wake-ups already
                return
            reopen = self._closed and not (self._forked or self._cannot_reopen)
        if reopen and self._reopen():  # closed by close(), dictConfig, logging.shutdown
            self.add_line(line, record)
            return
        with self._lock:
            self._lost += 1
            self.dropped += 1
            if self._dropping:
                return
            self._dropping = True
            why = self._drop_reason()
        self.report_dropped(f"{self!r}: {why}; entries are dropped (count in .dropped)", record)

    def _drop_reason(self) -> str:
        if self._forked:
            return (
                f"used in a forked child (pid {os.getpid()}): the sockets belong to the parent; "
                "create a new handler in the child to stream from it"
            )
        if self._cannot_reopen:
            return "closed, and its addresses could not be bound again"
        if self._closed:
            return "closed"
        if self._stopped:
            return "the publishing thread has stopped"
        return f"queue full ({self.queue_size} entries waiting to be published)"

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until every entry logged so far is handed to the socket (at most ``timeout`` s)."""
        if self._forked or self._thread is None or not self._thread.is_alive():
            return
        with self._lock:
            target = self._seq + self._count if self._count else self._swapped_last
        deadline = time.monotonic() + timeout
        while self._processed < target and time.monotonic() < deadline:
            time.sleep(0.0005)

    def close(self) -> None:
        """Publish what is queued, stop the thread, close sockets and context. Idempotent.

        Returns within about ``linger`` + 0.5 seconds even when a subscriber is stuck;
        entries that could not be published by then are counted in ``dropped``.
        """
        try:
            with self._life_lock:
                with self._lock:
                    closing = not self._closed
                    self._closed = True
                    self._room = 0
                if closing and not self._forked:
                    thread = self._thread
                    if thread is not None:
                        self._wake()
                        thread.join(self.linger + _CLOSE_DRAIN_SECONDS + 1.0)
                    if thread is None or not thread.is_alive():
                        self._release()
                    _fork.forget(self)
        finally:
            super().close()

    def _wake(self) -> None:
        with self._lock:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass

    @property
    def refused(self) -> int:
        """Connections refused during the CURVE handshake (see :class:`HandshakeMonitor`)."""
        return sum(monitor.refused for monitor in self._monitors) + self._refused_before_close

    def _release(self) -> None:
        """Close the pipe, sockets, authenticator and context (once, never in a child)."""
        with self._lock:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
        for monitor in self._monitors:
            self._refused_before_close += monitor.refused
            monitor.close()
        self._monitors = []
        linger = int(self.linger * 1000)
        for sock in (self._pub, self._router):
            if sock is not None and not sock.closed:
                sock.close(linger=linger)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def _after_fork_in_child(self) -> None:
        # Nothing of the parent's is used, closed or terminated here (pyzmq leaves
        # sockets and contexts made in another process alone when they are collected).
        self._forked = True
        self._lock = threading.Lock()
        self._life_lock = threading.RLock()
        self._pending = bytearray()
        self._count = self._room = self._lost = 0
        self._ring = deque()
        self._ring_count = 0
        self._dropping = False
        self._thread = None
        self._auth = self._pub = self._router = self._context = None
        self._monitors = []
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1
        self.run_id = uuid.uuid4().hex

    def __repr__(self) -> str:
        return f"<ZMQStreamHandler {self.address} ({logging.getLevelName(self.level)})>"

    # -- the sender thread -----------------------------------------------------------

    def _run(self) -> None:
        zmq = import_zmq()
        pub, router = self._pub, self._router
        header_entry = KIND_ENTRY + self.run_id.encode()
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(pub, zmq.POLLIN)
        if router is not None:
            poller.register(router, zmq.POLLIN)
        monitors = {monitor.socket: monitor for monitor in self._monitors}
        for monitor_socket in monitors:
            poller.register(monitor_socket, zmq.POLLIN)
        interval = self.heartbeat
        last_send = time.monotonic()
        active = False
        try:
            while True:
                # While entries flow, look for them every _ACTIVE_POLL s, unasked: the
                # caller then never makes a system call to wake this thread, and the
                # entries of that time go out together. Idle, wait to be woken.
                events = dict(
                    poller.poll(min(interval, _ACTIVE_POLL) * 1000 if active else interval * 1000)
                )
                if self._wake_r in events:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                if self._count:
                    if self._publish(zmq, pub, header_entry):
                        last_send = time.monotonic()
                    active = True
                elif active:
                    with self._lock:
                        if not self._count:
                            self._idle = True
                            active = False
                for monitor_socket, monitor in monitors.items():
                    if monitor_socket in events:
                        monitor.drain(zmq)
                if router in events:
                    self._serve(zmq, router)
                if pub in events:
                    self._welcome(zmq, pub)
                    last_send = time.monotonic()
                if self._closed:
                    break
                if time.monotonic() - last_send >= interval:
                    self._heartbeat(zmq, pub)
                    last_send = time.monotonic()
            deadline = time.monotonic() + _CLOSE_DRAIN_SECONDS
            while self._count and time.monotonic() < deadline:
                self._publish(zmq, pub, header_entry, deadline)
        except Exception:
            try:
                raise RuntimeError(f"{self!r}: the publishing thread failed; entries are dropped")
            except RuntimeError:
                self.report(f"{self!r}: the publishing thread failed; entries are dropped")
        finally:
            with self._lock:
                self._stopped = True
                self._room = 0
                self.dropped += self._count
                self._seq += self._count + self._lost
                self._pending = bytearray()
                self._count = self._lost = 0
                self._processed = self._seq
            self._release()

    def _publish(self, zmq: Any, pub: Any, header: bytes, deadline: float = 0.0) -> int:
        """Take the whole buffer and publish it in messages of about ``_BATCH_BYTES``.

        Returns how many entries were sent. Entries not sent (the socket refused them,
        or ``deadline`` passed) are counted as dropped.
        """
        with self._lock:
            data = self._pending
            seq = self._seq + 1
            left = self._count
            if not left:
                return 0
            self._pending = bytearray()
            self._count = 0
            self._swapped_last = seq + left - 1
            self._seq = self._swapped_last + self._lost
            self._lost = 0
            if self._room:
                self._dropping = False  # the next entry fits: a new streak is reported
        keep = self.replay > 0
        sent = 0
        try:
            end = len(data)
            view = memoryview(data)
            start = 0
            while start < end:
                if deadline and time.monotonic() >= deadline:
                    break
                if end - start <= _BATCH_BYTES:
                    stop = end
                else:  # cut after the last newline within the limit (or the first after)
                    stop = data.rfind(b"\n", start, start + _BATCH_BYTES) + 1
                    if stop <= start:
                        stop = data.find(b"\n", start + _BATCH_BYTES) + 1
                count = left if stop == end else data.count(b"\n", start, stop)
                chunk = bytes(view[start:stop]) if keep else view[start:stop]
                try:
                    pub.send(header, zmq.SNDMORE | zmq.NOBLOCK)
                    pub.send(RUN.pack(seq, count), zmq.SNDMORE | zmq.NOBLOCK)
                    pub.send(chunk, zmq.NOBLOCK)
                except zmq.Again:
                    with self._lock:
                        self.dropped += count
                else:
                    sent += count
                    self._last_published = seq + count - 1
                    if keep:
                        self._keep(seq, count, chunk)
                seq += count
                left -= count
                start = stop
        finally:
            self.sent += sent
            if left:
                with self._lock:
                    self.dropped += left
            self._processed = self._swapped_last
        return sent

    def _keep(self, seq: int, count: int, chunk: bytes) -> None:
        """Add a published message to the replay ring; drop the messages no longer needed."""
        ring = self._ring
        ring.append((seq, count, chunk))
        total = self._ring_count + count
        replay = self.replay
        while total - ring[0][1] >= replay:
            total -= ring.popleft()[1]
        self._ring_count = total

    def _trim_ring(self) -> None:
        """Cut the oldest message of the ring to the last ``replay`` entries in all."""
        extra = self._ring_count - self.replay
        if extra > 0:
            seq, count, data = self._ring[0]
            self._ring[0] = (seq + extra, count - extra, data[_line_offset(data, extra) :])
            self._ring_count -= extra

    def _serve(self, zmq: Any, router: Any) -> None:
        """Answer up to ``_REQUESTS_PER_TURN`` replay requests."""
        for _ in range(_REQUESTS_PER_TURN):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            # [identity, request] from a DEALER, [identity, b"", request] from a REQ.
            envelope = frames[:-1]
            request = frames[-1]
            if len(frames) not in (2, 3) or (len(frames) == 3 and frames[1]):
                request = b""
            after = 0
            if request == REQUEST:
                pass
            elif len(request) == len(REQUEST) + 8 and request.startswith(REQUEST):
                after = _SEQ.unpack_from(request, len(REQUEST))[0]
            else:
                self.bad_requests += 1
                continue
            self._trim_ring()
            ring = self._ring
            last = self._last_published
            first = ring[0][0] if ring else last + 1
            runs: list[list[int]] = []
            chunks = []
            for seq, count, data in ring:
                if seq + count - 1 <= after:
                    continue
                if seq <= after:  # the first entries are not wanted
                    skip = after - seq + 1
                    data = data[_line_offset(data, skip) :]
                    seq += skip
                    count -= skip
                if runs and runs[-1][0] + runs[-1][1] == seq:
                    runs[-1][1] += count
                else:
                    runs.append([seq, count])
                chunks.append(data)
            reply = [
                *envelope,
                KIND_REPLAY + self.run_id.encode(),
                _TWO_SEQS.pack(first, last),
                b"".join([RUN.pack(seq, count) for seq, count in runs]),
                b"".join(chunks),
            ]
            try:
                router.send_multipart(reply, zmq.NOBLOCK)
            except zmq.ZMQError:
                continue  # the requester is gone or not reading: nothing kept
            self.replays += 1

    def _welcome(self, zmq: Any, pub: Any) -> None:
        """Read (un)subscriptions; answer new subscribers with one heartbeat."""
        subscribed = False
        for _ in range(1000):
            try:
                frames = pub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            kind = frames[0][:1]
            if len(frames) != 1 or kind not in (b"\x00", b"\x01"):
                self.bad_requests += 1
            elif kind == b"\x01":
                subscribed = True
        if subscribed:
            self._heartbeat(zmq, pub)

    def _heartbeat(self, zmq: Any, pub: Any) -> None:
        try:
            pub.send_multipart(
                [KIND_HEARTBEAT + self.run_id.encode(), _SEQ.pack(self._last_published)],
                zmq.NOBLOCK,
            )
        except zmq.Again:
            pass
