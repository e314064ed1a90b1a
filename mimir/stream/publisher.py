"""Publish entries live over ZeroMQ, with the newest entries replayed to late joiners.

The wire protocol is :mod:`mimir.stream.protocol` (documented in
``docs/streaming.rst``); the queue and its accounting are the sender core shared
with :class:`~mimir.ZMQForwardHandler` (:mod:`mimir.stream._sender`);
:mod:`mimir.stream` is the client.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from typing import Any

from mimir import _fork
from mimir.stream._sender import ACTIVE_POLL, CLOSE_DRAIN_SECONDS, QueuedSender
from mimir.stream.protocol import (
    KIND_ENTRIES,
    MAX_REQUEST_SIZE,
    ProtocolError,
    decode_replay_request,
    decode_subscription,
    encode_announcement,
    encode_entries,
    encode_heartbeat,
    encode_replay_reply,
    line_offset,
    stream_header,
)
from mimir.stream.transport import (
    HandshakeMonitor,
    bind_endpoint,
    close_context,
    import_zmq,
    is_loopback,
    load_server_keys,
    received,
    server_socket,
    start_authenticator,
    warn_if_exposed,
)

__all__ = ["MAX_REQUEST_SIZE", "ZMQStreamHandler", "import_zmq", "is_loopback"]

# At most this many replay requests are answered per turn of the sender loop, so
# that a peer flooding the replay socket cannot stall the live stream.
_REQUESTS_PER_TURN = 16


class ZMQStreamHandler(QueuedSender):
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
            so that clients know the publisher is alive and what it last sent. Each
            heartbeat (and the one that greets a new subscriber) is preceded by an
            announcement of :attr:`replay_address`, from which a client given only
            :attr:`address` learns where to ask for the replay.
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

    _thread_role = "publishing"
    _thread_name = "stream"

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
        # What close() releases, set before the handler is registered with logging.
        self._cannot_reopen = False
        self._wake_r = self._wake_w = -1
        self._monitors: list[HandshakeMonitor] = []
        self._auth: Any = None
        self._pub: Any = None
        self._router: Any = None
        self._context: Any = None
        super().__init__(queue_size, linger, level)
        self.replay = replay
        self._hwm = hwm
        self._curve_server_secret_key = curve_server_secret_key
        self._curve_authorized_keys = curve_authorized_keys
        self.heartbeat = float(heartbeat)
        #: Random hex string naming this run of the publisher (new in a forked child).
        self.run_id = uuid.uuid4().hex
        #: Malformed messages ignored: replay requests, and messages other than
        #: subscriptions sent to the publishing socket.
        self.bad_requests = 0
        #: Replay requests answered.
        self.replays = 0
        self.address: str | None = None
        self.replay_address: str | None = None
        self._last_published = 0  # seq of the last entry handed to the socket
        # The newest entries as published: (first seq, count, lines) per message,
        # trimmed to the last `replay` entries lazily (see _trim_ring).
        self._ring: deque[tuple[int, int, bytes]] = deque()
        self._ring_count = 0  # entries held in _ring
        self._refused_before_close = 0
        try:
            keys = self._open(zmq, address, replay_address)
        except BaseException:
            self._closed = True  # never reopened: nothing can use this handler
            raise
        warn_if_exposed(
            "stream",
            (self.address, self.replay_address),
            "the entries are readable by anyone who can reach the port",
            "client",
            encrypted=keys is not None,
            authorized=curve_authorized_keys is not None,
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
            self._pub = server_socket(zmq, self._context, zmq.XPUB, keys)
            self._pub.setsockopt(zmq.SNDHWM, self._hwm)
            self._pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # hear every subscription
            self._pub.setsockopt(zmq.RCVHWM, 1000)
            self._pub.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_SIZE)  # subscriptions are tiny
            self.address = bind_endpoint(zmq, self._pub, address, "publish")
            if self.replay:
                self._router = server_socket(zmq, self._context, zmq.ROUTER, keys)
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

    def _open_again(self) -> bool:
        """Bind the same addresses again after close(); False (reported) if that fails."""
        try:
            self._open(import_zmq(), self.address or "", self.replay_address or "")
        except Exception:
            self._cannot_reopen = True  # entries are dropped from now on
            self.report(f"{self!r}: could not bind its addresses again after close()")
            return False
        return True

    def _can_reopen(self) -> bool:
        return not (self._forked or self._cannot_reopen)

    # -- the caller's side ---------------------------------------------------------

    def _drop_reason(self, size: int) -> str:
        if self._forked:
            return (
                f"used in a forked child (pid {os.getpid()}): the sockets belong to the parent; "
                "create a new handler in the child to stream from it"
            )
        if self._cannot_reopen:
            return "closed, and its addresses could not be bound again"
        return super()._drop_reason(size)

    def _destination(self) -> str:
        return "published"

    def _wake_locked(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until every entry logged so far is handed to the socket (at most ``timeout`` s)."""
        self._wait_processed(timeout)

    def close(self) -> None:
        """Publish what is queued, stop the thread, close sockets and context. Idempotent.

        Returns within about ``linger`` + 0.5 seconds even when a subscriber is stuck;
        entries that could not be published by then are counted in ``dropped``.
        """
        super().close()

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
        close_context(self._context, self._auth)
        self._auth = self._context = None

    def _after_fork_in_child(self) -> None:
        # Nothing of the parent's is used, closed or terminated here (pyzmq leaves
        # sockets and contexts made in another process alone when they are collected).
        super()._after_fork_in_child()
        self._forked = True
        self._room = 0
        self._ring = deque()
        self._ring_count = 0
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

    def _send_loop(self) -> None:
        zmq = import_zmq()
        pub, router = self._pub, self._router
        header_entry = stream_header(KIND_ENTRIES, self.run_id)
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
                # While entries flow, look for them every ACTIVE_POLL s, unasked: the
                # caller then never makes a system call to wake this thread, and the
                # entries of that time go out together. Idle, wait to be woken.
                events = dict(
                    poller.poll(min(interval, ACTIVE_POLL) * 1000 if active else interval * 1000)
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
            deadline = time.monotonic() + CLOSE_DRAIN_SECONDS
            while self._count and time.monotonic() < deadline:
                self._publish(zmq, pub, header_entry, deadline)
        except Exception:
            self._report_failure()
        finally:
            self._stop_queue()
            self._release()

    def _publish(self, zmq: Any, pub: Any, header: bytes, deadline: float = 0.0) -> int:
        """Take the whole queue and publish it in messages of about ``_batch_bytes``.

        Returns how many entries were sent. Entries not sent (the socket refused them,
        or ``deadline`` passed) are counted as dropped.
        """
        taken = self._take()
        if taken is None:
            return 0
        data, seq, left = taken
        keep = self.replay > 0
        view = memoryview(data)

        def send(seq: int, count: int, start: int, stop: int) -> bool:
            chunk = bytes(view[start:stop]) if keep else view[start:stop]
            try:
                pub.send_multipart(encode_entries(header, seq, count, chunk), zmq.NOBLOCK)
            except zmq.Again:
                return False
            self._last_published = seq + count - 1
            if keep:
                self._keep(seq, count, chunk)
            return True

        sent = self.sent
        left = self._send_batches(data, 0, seq, left, send, deadline)[2]
        if left:
            with self._lock:
                self.dropped += left
        self._processed = self._taken
        return self.sent - sent

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
            self._ring[0] = (seq + extra, count - extra, data[line_offset(data, extra) :])
            self._ring_count -= extra

    def _serve(self, zmq: Any, router: Any) -> None:
        """Answer up to ``_REQUESTS_PER_TURN`` replay requests."""
        for frames in received(zmq, router, _REQUESTS_PER_TURN):
            try:
                envelope, after = decode_replay_request(frames)
            except ProtocolError:
                self.bad_requests += 1
                continue
            self._trim_ring()
            ring = self._ring
            last = self._last_published
            first = ring[0][0] if ring else last + 1
            spans: list[list[int]] = []
            chunks = []
            for seq, count, data in ring:
                if seq + count - 1 <= after:
                    continue
                if seq <= after:  # the first entries are not wanted
                    skip = after - seq + 1
                    data = data[line_offset(data, skip) :]
                    seq += skip
                    count -= skip
                if spans and spans[-1][0] + spans[-1][1] == seq:
                    spans[-1][1] += count
                else:
                    spans.append([seq, count])
                chunks.append(data)
            reply = encode_replay_reply(envelope, self.run_id, first, last, spans, chunks)
            try:
                router.send_multipart(reply, zmq.NOBLOCK)
            except zmq.ZMQError:
                continue  # the requester is gone or not reading: nothing kept
            self.replays += 1

    def _welcome(self, zmq: Any, pub: Any) -> None:
        """Read (un)subscriptions; answer new subscribers with one heartbeat."""
        subscribed = False
        for frames in received(zmq, pub, 1000):
            try:
                subscribed = decode_subscription(frames) or subscribed
            except ProtocolError:
                self.bad_requests += 1
        if subscribed:
            self._heartbeat(zmq, pub)

    def _heartbeat(self, zmq: Any, pub: Any) -> None:
        """Announce the replay address, then send a heartbeat, to every subscriber.

        The announcement goes first so that a client that sees a heartbeat has seen
        the announcement sent just before it (same socket, same order).
        """
        try:
            pub.send_multipart(encode_announcement(self.run_id, self.replay_address), zmq.NOBLOCK)
        except zmq.Again:
            pass
        try:
            pub.send_multipart(encode_heartbeat(self.run_id, self._last_published), zmq.NOBLOCK)
        except zmq.Again:
            pass
