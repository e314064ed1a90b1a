"""Follow a run live: the client of :class:`mimir.stream.publisher.ZMQStreamHandler`.

:func:`subscribe` gives an iterator of entries (dicts): first the newest entries the
publisher kept for replay, then the live ones, with no gap and no duplicate
between the two; the replay address is given, or learned from the publisher's
announcement on the stream. Gaps (entries a slow client lost) and publisher
restarts are detected from the sequence numbers and run ids, counted and reported.
:func:`follow` calls a function for each entry from a thread. The wire protocol
is described in ``docs/streaming.rst``.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from mimir.stream.protocol import (
    KIND_ANNOUNCE,
    KIND_ENTRIES,
    KIND_HEARTBEAT,
    ProtocolError,
    Span,
    decode_replay_reply,
    decode_stream,
    encode_replay_request,
)
from mimir.stream.transport import (
    client_curve_keys,
    client_socket,
    import_zmq,
    reachable_address,
    received,
)

__all__ = [
    "Follower",
    "PublisherRestartWarning",
    "StreamGapWarning",
    "StreamWarning",
    "Subscription",
    "follow",
    "subscribe",
]

# Resend the replay request after this long without a reply; give up after _REPLAY_GIVE_UP.
_REPLAY_RESEND = 1.0
_REPLAY_GIVE_UP = 5.0
# Without a replay address given, wait this long at most for the publisher's
# announcement of one (it comes with the heartbeat that greets each new subscriber),
# or until a second heartbeat without one: then the publisher does not announce (it
# predates announcements) and the client follows live entries only.
_ANNOUNCE_WAIT = 2.0


class StreamWarning(UserWarning):
    """Base of the warnings a :class:`Subscription` gives."""


class StreamGapWarning(StreamWarning):
    """Entries were lost between the publisher and this client (one warning per gap)."""


class PublisherRestartWarning(StreamWarning):
    """The publisher started a new run (its run id changed, or its sequence went back)."""


class Subscription(Iterator[dict[str, Any]]):
    """An iterator of the entries published by a :class:`~mimir.ZMQStreamHandler`.

    Made by :func:`subscribe`; see there. Close it (or use it in a ``with`` block)
    to release its sockets.

    Attributes:
        first_seq: the sequence number of the first entry this client could get
            (None until known). Earlier entries were no longer kept for replay.
        last_seq: the sequence number of the last entry returned (0 before any).
        run_id: the publisher's run id (None until the first message).
        gaps: how many gaps were seen: spans of entries that were lost, including
            the entries before ``first_seq`` when replay is used.
        missed: how many entries those gaps held in total.
        restarts: how many times the publisher was seen to start a new run.
        replayed: how many entries came from the replay.
        replay_last: the publisher's last published sequence number when it
            answered the replay request (None without replay).
        replay_address: where the replay is asked for: the address given, or the
            one the publisher announced (None until known, and without replay).
        bad_messages: messages ignored because they did not follow the protocol.
    """

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5557",
        replay_address: str | None = None,
        *,
        replay: bool = True,
        timeout: float | None = None,
        on_gap: Callable[[int, int], Any] | None = None,
        curve_server_public_key: Any = None,
        curve_client_secret_key: Any = None,
        context: Any = None,
        hwm: int = 10_000,
    ) -> None:
        zmq = self._zmq = import_zmq()
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
        if not replay and replay_address is not None:
            raise ValueError(
                "replay=False follows live entries only: give no replay_address with it"
            )
        if curve_client_secret_key is not None and curve_server_public_key is None:
            raise ValueError("curve_client_secret_key needs curve_server_public_key")
        self.address = address
        self.replay_address = replay_address
        self.timeout = timeout
        self.on_gap = on_gap
        self.first_seq: int | None = None
        self.last_seq = 0
        self.run_id: str | None = None
        self.gaps = 0
        self.missed = 0
        self.restarts = 0
        self.replayed = 0
        self.replay_last: int | None = None
        self.bad_messages = 0
        self._ready: deque[Span] = deque()  # spans to deliver, the first from _ready_pos
        self._ready_pos = 0
        self._run_id: bytes | None = None  # run id of the current run, as in the header
        self._syncing = False  # waiting for the replay reply
        self._anchor = 0  # first seq the live stream covers, while syncing
        self._buffer: list[Span] = []  # live entries while syncing
        self._asked_at = 0.0
        self._sync_started = 0.0
        self._expected = 0  # next seq, once synced (0: not synced)
        self._report_start = replay_address is not None
        # Where the replay comes from: "given" (replay_address), "announced" (learned
        # from the stream, for each run), or "off" (live entries only).
        self._replay_from = "given" if replay_address is not None else "announced"
        if not replay:
            self._replay_from = "off"
        self._announced: tuple[bytes, str | None] | None = None  # (run, address) last heard
        self._awaiting = False  # waiting for the current run's announcement
        self._await_until = 0.0
        self._quiet_heartbeats = 0  # heartbeats of the current run without an announcement
        self._closed = True
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._sub = self._dealer = None
        self._poller = zmq.Poller()
        try:
            self._keys = client_curve_keys(zmq, curve_server_public_key, curve_client_secret_key)
            self._sub = client_socket(zmq, self._context, zmq.SUB, self._keys)
            self._sub.setsockopt(zmq.RCVHWM, hwm)
            self._sub.connect(address)
            self._sub.setsockopt(zmq.SUBSCRIBE, b"")
            self._poller.register(self._sub, zmq.POLLIN)
            if replay_address is not None:
                self._connect_dealer(replay_address)
        except BaseException:
            self._closed = False
            self.close()
            raise
        self._closed = False

    def _connect_dealer(self, address: str) -> None:
        """Make the DEALER that asks for the replay, connected to ``address`` (replacing any)."""
        zmq = self._zmq
        if self._dealer is not None:
            self._poller.unregister(self._dealer)
            self._dealer.close(linger=0)
            self._dealer = None
        dealer = client_socket(zmq, self._context, zmq.DEALER, self._keys)
        try:
            dealer.setsockopt(zmq.SNDHWM, 4)
            dealer.connect(address)
        except BaseException:
            dealer.close(linger=0)
            raise
        self._dealer = dealer
        self._poller.register(dealer, zmq.POLLIN)
        self.replay_address = address

    # -- iteration ------------------------------------------------------------------

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict[str, Any]:
        """The next entry. Raises :class:`TimeoutError` after ``timeout`` s without one."""
        return self._next(None)

    def _next(self, stop: threading.Event | None) -> dict[str, Any]:
        if self._closed:
            raise ValueError("the subscription is closed")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self._ready:
            if stop is not None and stop.is_set():
                raise StopIteration
            self._pump(deadline, 0.1 if stop is not None else None)
        first, lines = self._ready[0]
        pos = self._ready_pos
        if pos + 1 < len(lines):
            self._ready_pos = pos + 1
        else:
            self._ready.popleft()
            self._ready_pos = 0
        self.last_seq = first + pos
        return json.loads(lines[pos])

    def sync(self, timeout: float | None = None) -> None:
        """Wait until the subscription is live and the replay received.

        Entries published after this returns are certain to reach this client
        (unless it falls behind). Entries that arrived meanwhile are kept for
        iteration. Raises :class:`TimeoutError` after ``timeout`` seconds (default:
        the subscription's ``timeout``).
        """
        if self._closed:
            raise ValueError("the subscription is closed")
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._syncing or not self._expected:
            self._pump(deadline, None)

    def _pump(self, deadline: float | None, slice_: float | None) -> None:
        """Wait for messages (at most until ``deadline``, or ``slice_`` s) and handle them."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            if self._awaiting:  # never wait for an announcement beyond the timeout
                self._no_announcement()
                return
            raise TimeoutError(
                f"nothing from {self.address} within {self.timeout} s"
                + ("" if self._run_id else " (no message at all: is the publisher running?)")
            )
        wait = float("inf") if deadline is None else deadline - now
        if self._awaiting:
            wait = min(wait, self._await_until - now)
        elif self._syncing:
            wait = min(wait, self._asked_at + _REPLAY_RESEND - now)
        if slice_ is not None:
            wait = min(wait, slice_)
        events = dict(self._poller.poll(None if wait == float("inf") else max(0, wait) * 1000))
        if self._sub in events:
            self._read_live()
        if self._dealer is not None and self._dealer in events:
            self._read_replay()
        if self._awaiting:
            if time.monotonic() >= self._await_until:
                self._no_announcement()
        elif self._syncing and time.monotonic() - self._asked_at >= _REPLAY_RESEND:
            self._ask_replay()

    def _read_live(self) -> None:
        for frames in received(self._zmq, self._sub, 1000):
            try:
                kind, run, payload = decode_stream(frames)
            except ProtocolError:
                self.bad_messages += 1
                continue
            if kind == KIND_ANNOUNCE:
                self._announced = (run, payload)
                if self._awaiting and run == self._run_id:
                    self._use_announcement(payload)
                continue
            if kind == KIND_HEARTBEAT:
                if run != self._run_id:
                    self._new_run(run, kind, payload, [])
                elif self._awaiting:
                    # The announcement goes out just before each heartbeat: a second
                    # heartbeat without one means the publisher does not announce.
                    self._quiet_heartbeats += 1
                    if self._quiet_heartbeats >= 2:
                        self._no_announcement()
                elif not self._syncing and payload >= self._expected:
                    self._gap(self._expected, payload)  # entries this client never got
                    self._expected = payload + 1
                continue
            spans = payload
            if run != self._run_id:
                self._new_run(run, kind, spans[0][0], spans)
            elif self._syncing:
                self._buffer.extend(spans)
            else:
                for index, (seq, lines) in enumerate(spans):
                    if seq < self._expected:
                        self._restart(f"sequence went back from {self._expected - 1} to {seq}")
                        self._start(run, KIND_ENTRIES, seq, spans[index:])
                        break
                    self._accept(seq, lines)

    def _new_run(self, run: bytes, kind: bytes, seq: int, spans: list[Span]) -> None:
        if self._run_id is not None:
            self._restart(f"run id changed from {self._run_id.decode()} to {run.decode()}")
        self._start(run, kind, seq, spans)

    def _start(self, run: bytes, kind: bytes, seq: int, spans: list[Span]) -> None:
        """The first message of a run: ask for the replay, or start live."""
        self._run_id = run
        self.run_id = run.decode("ascii", "replace")
        self._anchor = seq if kind == KIND_ENTRIES else seq + 1
        self._buffer = list(spans)
        if self._replay_from == "off":
            self._finish_sync([])
            return
        self._syncing = True
        if self._replay_from == "given":
            self._sync_started = time.monotonic()
            self._ask_replay()
        elif self._announced is not None and self._announced[0] == run:
            self._use_announcement(self._announced[1])
        else:  # the announcement comes with the heartbeat greeting this subscriber
            self._awaiting = True
            self._await_until = time.monotonic() + _ANNOUNCE_WAIT
            self._quiet_heartbeats = 1 if kind == KIND_HEARTBEAT else 0

    def _use_announcement(self, announced: str | None) -> None:
        """Ask for the replay at the address the publisher announced (None: it keeps none)."""
        self._awaiting = False
        if announced is None:
            self._finish_sync([])
            return
        address = reachable_address(announced, self.address)
        if self._dealer is None or address != self.replay_address:
            try:
                self._connect_dealer(address)
            except self._zmq.ZMQError as error:
                warnings.warn(
                    f"cannot connect to the replay address {address} announced by "
                    f"{self.address} ({error}); following live entries only",
                    StreamWarning,
                    stacklevel=6,
                )
                self._finish_sync([])
                return
        self._report_start = True
        self._sync_started = time.monotonic()
        self._ask_replay()

    def _no_announcement(self) -> None:
        """The publisher announced no replay address in time: follow live entries only."""
        self._awaiting = False
        warnings.warn(
            f"the publisher at {self.address} announced no replay address (is it older "
            "than this client?); following live entries only (pass its replay_address to "
            "replay, or replay=False not to wait for the announcement)",
            StreamWarning,
            stacklevel=5,
        )
        self._finish_sync([])

    def _ask_replay(self) -> None:
        zmq = self._zmq
        if time.monotonic() - self._sync_started > _REPLAY_GIVE_UP:
            warnings.warn(
                f"no replay from {self.replay_address} within {_REPLAY_GIVE_UP} s; "
                "following live entries only",
                StreamWarning,
                stacklevel=4,
            )
            self._report_start = False
            self._finish_sync([])
            return
        self._asked_at = time.monotonic()
        try:
            self._dealer.send(encode_replay_request(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet: asked again in _REPLAY_RESEND s

    def _read_replay(self) -> None:
        for frames in received(self._zmq, self._dealer, 100):
            try:
                run, _, last, entries = decode_replay_reply(frames)
            except ProtocolError:
                self.bad_messages += 1
                continue
            if not self._syncing or run != self._run_id:
                continue  # an answer to an earlier request, or from an earlier run
            self.replay_last = last
            self._finish_sync(entries)

    def _finish_sync(self, replayed: list[Span]) -> None:
        """Join the replay (entries before the anchor) and the live entries buffered."""
        self._syncing = False
        anchor = self._anchor
        head = []
        for first, lines in replayed:
            if first >= anchor:
                break
            if first + len(lines) > anchor:
                lines = lines[: anchor - first]
            head.append((first, lines))
            self.replayed += len(lines)
        merged = head + self._buffer
        self._buffer = []
        first = merged[0][0] if merged else anchor
        self.first_seq = first
        self._expected = first
        if self._report_start and first > 1:
            self._gap(1, first - 1)
        self._report_start = True  # after a restart, a missing start is always reported
        for seq, lines in merged:
            if seq < self._expected:  # already delivered: skip those entries
                lines = lines[self._expected - seq :]
                seq = self._expected
            if lines:
                self._accept(seq, lines)

    def _accept(self, seq: int, lines: list[bytes]) -> None:
        """Deliver a run of entries, numbered from ``seq`` (not below ``_expected``)."""
        if seq > self._expected:
            self._gap(self._expected, seq - 1)
        self._expected = seq + len(lines)
        self._ready.append((seq, lines))

    def _gap(self, first: int, last: int) -> None:
        self.gaps += 1
        self.missed += last - first + 1
        count = last - first + 1
        warnings.warn(
            f"{count} entr{'y' if count == 1 else 'ies'} lost from {self.address} "
            f"(sequence numbers {first} to {last})",
            StreamGapWarning,
            stacklevel=5,
        )
        if self.on_gap is not None:
            self.on_gap(first, last)

    def _restart(self, why: str) -> None:
        self.restarts += 1
        warnings.warn(
            f"the publisher at {self.address} restarted ({why})",
            PublisherRestartWarning,
            stacklevel=5,
        )
        self._syncing = False
        self._awaiting = False
        self._buffer = []
        self._report_start = True

    # -- life cycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close the sockets (and the context, if this object made it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sock in (self._sub, self._dealer):
            if sock is not None:
                sock.close(linger=0)
        if self._own_context and self._context is not None:
            self._context.term()
        self._context = None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mimir.stream.Subscription {self.address} last_seq={self.last_seq}>"


def subscribe(
    address: str = "tcp://127.0.0.1:5557",
    replay_address: str | None = None,
    *,
    replay: bool = True,
    timeout: float | None = None,
    on_gap: Callable[[int, int], Any] | None = None,
    curve_server_public_key: Any = None,
    curve_client_secret_key: Any = None,
    context: Any = None,
    hwm: int = 10_000,
) -> Subscription:
    """Follow the entries published at ``address``, as an iterator of dicts.

    Example::

        with mimir.stream.subscribe("tcp://127.0.0.1:5557") as entries:
            for entry in entries:
                print(entry["training_error"])

    The entries the publisher kept for replay come first, then the live ones:
    nothing missing between the two and nothing twice. The replay is asked for at
    ``replay_address`` when given; otherwise at the address the publisher announces
    on the stream (it does so with the heartbeat that greets each new subscriber;
    an address bound on every interface, ``0.0.0.0``, is reached on the host of
    ``address``). ``first_seq`` tells the first sequence number it could get; when
    the run had logged more entries than the publisher keeps, the missing start is
    reported as a gap. With ``replay=False``, or when the publisher keeps no replay,
    only live entries are returned, from the first one received. A publisher that
    announces nothing within 2 seconds (or ``timeout``, if shorter), or in two
    heartbeats (one older than this client), is followed live, with a
    :class:`StreamWarning`.

    Every gap (entries the publisher dropped, or that this client was too slow to
    receive: ZeroMQ drops them for a client that stops reading) is counted in
    ``gaps`` and ``missed``, warned about with :class:`StreamGapWarning`, and passed
    to ``on_gap(first_missing, last_missing)`` if given. A publisher restart (new
    run id) is counted in ``restarts`` and warned about with
    :class:`PublisherRestartWarning`; the client then follows the new run.

    Arguments:
        address: the publisher's ``address``.
        replay_address: the publisher's ``replay_address``; None (the default): the
            one it announces. Give it when the client reaches the replay socket
            another way than the publisher sees it (an SSH tunnel to other ports).
        replay: False for live entries only (then give no ``replay_address``).
        timeout: seconds to wait for an entry before :class:`TimeoutError` (which
            leaves the subscription usable); None waits forever.
        on_gap: called with the first and last missing sequence numbers of a gap.
        curve_server_public_key: the server's public key (key file made by
            :func:`zmq.auth.create_certificates`, or the 40-character Z85 key),
            when the publisher uses CURVE.
        curve_client_secret_key: this client's secret key file, when the publisher
            only accepts known clients; without it a throw-away key pair is used.
        context: a :class:`zmq.Context` to use; by default one is made and
            terminated on :meth:`~Subscription.close`.
        hwm: messages ZeroMQ buffers for this client before dropping (RCVHWM); a
            message holds the entries logged since the previous one (at most about 64 kB).
    """
    return Subscription(
        address,
        replay_address,
        replay=replay,
        timeout=timeout,
        on_gap=on_gap,
        curve_server_public_key=curve_server_public_key,
        curve_client_secret_key=curve_client_secret_key,
        context=context,
        hwm=hwm,
    )


class Follower:
    """Calls a function with each entry of a stream, from a thread. Made by :func:`follow`.

    Attributes:
        subscription: the :class:`Subscription` read (for its counters).
        error: the exception that stopped the thread (raised by the callback or a
            :class:`TimeoutError`), or None.
    """

    def __init__(self, subscription: Subscription, callback: Callable[[dict[str, Any]], Any]):
        self.subscription = subscription
        self.callback = callback
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow_loop, name="mimir-follow", daemon=True)
        self._thread.start()

    def _follow_loop(self) -> None:
        subscription = self.subscription
        try:
            while not self._stop.is_set():
                try:
                    entry = subscription._next(self._stop)
                except StopIteration:
                    break
                self.callback(entry)
        except BaseException as error:
            self.error = error
        finally:
            subscription.close()

    @property
    def running(self) -> bool:
        """Whether the thread is still following the stream."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop following and close the subscription; raise what stopped it early, if anything."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def follow(
    address: str,
    callback: Callable[[dict[str, Any]], Any],
    replay_address: str | None = None,
    **options: Any,
) -> Follower:
    """Call ``callback(entry)`` for each entry of the stream, from a background thread.

    Takes the options of :func:`subscribe`: the replay comes from ``replay_address``,
    or from the address the publisher announces when it is None;
    ``replay=False`` follows live entries only. Returns a :class:`Follower`; call its
    :meth:`~Follower.stop` to end. For live plots, hand the entries to the plotting
    library's own thread-safe mechanism (for Bokeh, ``doc.add_next_tick_callback``).
    """
    subscription = subscribe(address, replay_address, **options)
    return Follower(subscription, callback)
