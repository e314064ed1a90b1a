"""Receive the entries of many processes (:class:`~mimir.ZMQForwardHandler`) into one log.

The wire protocol is described in ``docs/multiprocess.rst``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mimir.stream.protocol import (
    MAX_FORWARD_HEADER,
    MAX_MESSAGE_BYTES,
    ProtocolError,
    decode_forward,
    decode_identity,
    line_offset,
)
from mimir.stream.publisher import ZMQStreamHandler
from mimir.stream.transport import (
    HandshakeMonitor,
    bind_endpoint,
    check_address,
    close_context,
    import_zmq,
    load_server_keys,
    received,
    server_socket,
    start_authenticator,
    warn_if_exposed,
)

__all__ = ["Collector", "SenderStats"]

log = logging.getLogger("mimir.stream.collector")

# Messages queued by ZeroMQ per sender before it stops reading from that sender.
_RCVHWM = 16
# Gaps remembered per sender (the counters keep counting beyond).
_MAX_GAPS_KEPT = 100
# How long stop() keeps taking messages ZeroMQ already received.
_DRAIN_SECONDS = 1.0
_POLL_MS = 50
_QUIET_MS = 50
# With max_senders reached, a sender silent this long (seconds) is forgotten.
_EVICT_AFTER = 60.0


@dataclass
class SenderStats:
    """What the collector knows of one sender (one run of a :class:`ZMQForwardHandler`)."""

    #: The sender's identity as added to its entries: host, pid, and name if it has one.
    source: dict[str, Any]
    #: The sender's run id (new for every handler, and in every forked child).
    run: str
    #: Entries received and written.
    received: int = 0
    #: Sequence number of the last entry received (0: none yet).
    last_seq: int = 0
    #: Number of gaps: spans of entries that never arrived.
    gaps: int = 0
    #: Entries in those gaps.
    missed: int = 0
    #: Entries received twice (dropped).
    duplicates: int = 0
    #: Entries dropped because they were not JSON objects.
    bad_entries: int = 0
    #: The first ``100`` gaps, as (first, last) sequence numbers, both missing.
    missing: list[tuple[int, int]] = field(default_factory=list)
    #: time.monotonic() of the last message.
    last_seen: float = 0.0


class Collector:
    """Receives the entries of many :class:`~mimir.ZMQForwardHandler`\\ s into one log.

    Every entry is written to ``filename`` (a crash-safe compressed log when the name
    ends in ``.gz``, plain ``.jsonl`` otherwise) and, with ``stream``, published
    live as by :class:`~mimir.stream.publisher.ZMQStreamHandler` (the ``replay`` newest
    kept for late joiners, served at ``replay_address``). The sender's identity is
    added to each entry under ``source_key``, e.g.
    ``"source": {"host": "gpu3", "pid": 4242, "name": "rank3"}``.

    Entries are numbered 1, 2, 3 ... by each sender: the collector reports every
    gap (entries dropped by the sender, lost in transit or sent while the collector
    was down) with a warning on the ``mimir.stream.collector`` logger, and counts them per
    sender (:attr:`senders`) and in all (:attr:`gaps`, :attr:`missed`). A sender
    first heard of at sequence number N > 1 (the collector restarted, or started
    late) has missed 1 .. N-1. A process that makes a new handler with the same
    host, pid and name is reported as restarted (:attr:`restarts`).

    What arrives is parsed as the frames of the protocol and as JSON only: a
    malformed message (or entry) is dropped and counted in :attr:`bad_messages`
    (:attr:`bad_entries`); ZeroMQ disconnects a peer that sends a frame larger than
    ``max_message_bytes``.

    The socket binds the loopback interface by default; binding a wider one warns
    unless ``curve_authorized_keys`` is given (see :class:`ZMQStreamHandler` for
    the CURVE arguments, which the stream uses too).

    :meth:`run` receives until :meth:`stop`, SIGINT or SIGTERM; :meth:`start` runs
    it in a thread. Either way, at the end everything received is written and the
    log is closed.

    Arguments:
        bind: where to receive (a PULL socket); port 0 or ``*`` picks a free port,
            :attr:`address` tells the endpoint bound.
        filename: the log; None writes no file (with ``stream``, say).
        stream: publish every entry (with its source) at this address.
        replay: newest entries kept for stream clients that join late.
        source_key: the key under which the sender's identity is added.
        max_message_bytes: largest frame accepted (ZeroMQ cuts the peer off).
        curve_server_secret_key: the collector's ``.key_secret`` file: CURVE.
        curve_authorized_keys: directory of the senders' public keys.
        replay_address: where replay is served (default: the stream's host, a free
            port; see :attr:`replay_address`).
        flush_interval: seconds between commits of the log.
        max_senders: senders tracked at once; beyond it, the sender silent longest
            (a minute at least) is forgotten to make room, else the newcomer's
            messages are dropped and counted.
    """

    def __init__(
        self,
        bind: str = "tcp://127.0.0.1:5555",
        filename: str | os.PathLike[str] | None = None,
        stream: str | None = None,
        replay: int = 0,
        source_key: str = "source",
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        curve_server_secret_key: str | os.PathLike[str] | None = None,
        curve_authorized_keys: str | os.PathLike[str] | None = None,
        replay_address: str | None = None,
        flush_interval: float = 1.0,
        max_senders: int = 10_000,
    ) -> None:
        check_address(bind, "tcp://127.0.0.1:5555")
        if not isinstance(source_key, str) or not source_key:
            raise ValueError(f"source_key must be a non-empty str, got {source_key!r}")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise TypeError("max_message_bytes must be an int")
        if max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be at least 1024, got {max_message_bytes}")
        if curve_authorized_keys is not None and curve_server_secret_key is None:
            raise ValueError("curve_authorized_keys needs curve_server_secret_key")
        zmq = import_zmq()
        self.source_key = source_key
        self.max_message_bytes = max_message_bytes
        self.max_senders = max_senders
        #: Entries received and written.
        self.received = 0
        #: Gaps seen, over all senders.
        self.gaps = 0
        #: Entries in those gaps.
        self.missed = 0
        #: Entries received twice, dropped.
        self.duplicates = 0
        #: Messages dropped: malformed frames, an unknown kind, a bad identity.
        self.bad_messages = 0
        #: Lines of otherwise good messages dropped: not a JSON object.
        self.bad_entries = 0
        self._traceback_shown = False
        #: New handlers from a host, pid and name already heard from.
        self.restarts = 0
        #: Connections refused during the handshake (CURVE: no keys, a wrong server
        #: key, a client key not authorized), each logged (at most 5 a second).
        self._refused_before_close = 0
        #: One :class:`SenderStats` per sender, by run id.
        self.senders: dict[str, SenderStats] = {}
        self._by_header: dict[bytes, tuple[SenderStats, bytes, bytes]] = {}
        self._processes: set[tuple[Any, ...]] = set()
        self._stop = threading.Event()
        self._done = threading.Event()  # run() has finished (the log is closed)
        self._running = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self._auth: Any = None
        self._sock: Any = None
        self._monitor: Any = None
        self.file: Any = None
        self.stream: ZMQStreamHandler | None = None
        self._context = zmq.Context()
        try:
            keys = load_server_keys(zmq, curve_server_secret_key)
            if curve_authorized_keys is not None:
                self._auth = start_authenticator(self._context, curve_authorized_keys)
            sock = self._sock = server_socket(zmq, self._context, zmq.PULL, keys)
            sock.setsockopt(zmq.RCVHWM, _RCVHWM)
            sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            self._monitor = HandshakeMonitor(zmq, sock, bind, log)
            #: The endpoint bound (with the port chosen when 0 or * was asked).
            self.address: str = bind_endpoint(zmq, sock, bind, "collect")
            if filename is not None:
                name = os.fspath(filename)
                if name.endswith(".gz"):
                    from mimir.files.compressed import GzlogFileHandler

                    self.file = GzlogFileHandler(name, flush_interval=flush_interval)
                else:
                    from mimir.files.plain import JSONLFileHandler

                    self.file = JSONLFileHandler(name, flush_interval=flush_interval)
            if stream is not None:
                if replay_address is None and replay:
                    if not stream.startswith("tcp://"):
                        raise ValueError("with replay, give replay_address for a non-tcp stream")
                    replay_address = stream.rpartition(":")[0] + ":*"
                self.stream = ZMQStreamHandler(
                    stream,
                    replay_address or "",
                    replay=replay,
                    curve_server_secret_key=curve_server_secret_key,
                    curve_authorized_keys=curve_authorized_keys,
                )
        except BaseException:
            self._release()
            raise
        warn_if_exposed(
            "collector",
            (self.address,),
            "anyone who can reach the port can write to the log",
            "sender",
            encrypted=keys is not None,
            authorized=curve_authorized_keys is not None,
            stacklevel=2,
        )

    # -- set-up -------------------------------------------------------------------

    @property
    def refused(self) -> int:
        """Connections refused during the CURVE handshake."""
        if self._monitor is not None:
            return self._monitor.refused
        return self._refused_before_close

    @property
    def stream_address(self) -> str | None:
        """Where entries are republished, or None without ``stream``."""
        return self.stream.address if self.stream is not None else None

    @property
    def replay_address(self) -> str | None:
        """Where the newest entries are replayed, or None."""
        return self.stream.replay_address if self.stream is not None else None

    # -- running ----------------------------------------------------------------------

    def run(self, handle_signals: bool = True) -> None:
        """Receive until :meth:`stop` (or SIGINT/SIGTERM), then write everything and close.

        Signals are caught only when called from the main thread.
        """
        if self._running or self._closed:
            raise RuntimeError("the collector is already running, or closed")
        self._running = True
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            try:
                self.close()
            finally:
                self._done.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop.set()

    def start(self) -> Collector:
        """Span :meth:`run` in a background thread; return self."""
        if self._thread is not None:
            raise RuntimeError("the collector is already running")
        self._thread = threading.Thread(
            target=self.run, args=(False,), name=f"mimir-collector-{id(self):x}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop receiving, write what was received, close the log. Idempotent."""
        self._stop.set()
        if not self._running:
            self.close()
        elif self._thread is not threading.current_thread():
            # run() (in start()'s thread, or in one of the caller's) closes the log itself:
            # the socket belongs to the thread that runs it.
            self._done.wait(timeout)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _loop(self) -> None:
        zmq = import_zmq()
        sock = self._sock
        if sock is None:
            return
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        monitor = self._monitor
        if monitor is not None:
            poller.register(monitor.socket, zmq.POLLIN)
        stop = self._stop
        while not stop.is_set():
            try:
                events = dict(poller.poll(_POLL_MS))
            except zmq.ZMQError as error:
                if error.errno == errno.EINTR:
                    continue
                raise
            if sock in events:
                self._receive(zmq, sock, 1000)
            if monitor is not None and monitor.socket in events:
                monitor.drain(zmq)
        # Take what is already on its way: until nothing has come for _QUIET_MS (or
        # _DRAIN_SECONDS have passed while it keeps coming).
        deadline = time.monotonic() + _DRAIN_SECONDS
        while time.monotonic() < deadline:
            try:
                if not poller.poll(_QUIET_MS):
                    break
            except zmq.ZMQError as error:
                if error.errno != errno.EINTR:
                    raise
                continue
            self._receive(zmq, sock, 100)

    def _receive(self, zmq: Any, sock: Any, most: int) -> int:
        """Handle up to ``most`` messages already received; return how many there were."""
        done = 0
        for frames in received(zmq, sock, most):
            done += 1
            try:
                self._handle(frames)
            except Exception as error:  # never let one message stop the collector
                self._bad(f"{type(error).__name__}: {error}", traceback=True)
        return done

    # -- one message ----------------------------------------------------------------------

    def _bad(self, why: str, *, traceback: bool = False) -> None:
        """Count a dropped message; say so at the 1st, 2nd, 4th, 8th... (a traceback once)."""
        self.bad_messages += 1
        if self.bad_messages & (self.bad_messages - 1) == 0:
            log.warning(
                "mimir collector: dropped a malformed message (%s; %d so far)",
                why,
                self.bad_messages,
                exc_info=traceback and not self._traceback_shown,
            )
            self._traceback_shown = self._traceback_shown or traceback

    def _handle(self, frames: list[bytes]) -> None:
        try:
            header, first, count, data = decode_forward(frames, MAX_FORWARD_HEADER)
        except ProtocolError as error:
            return self._bad(str(error))
        known = self._by_header.get(header)
        if known is None:
            known = self._new_sender(header)
            if known is None:
                return None
        sender, fragment, tail = known
        sender.last_seen = time.monotonic()
        expected = sender.last_seq + 1
        if first < expected:  # already received: keep what is new only
            skip = min(expected - first, count)
            sender.duplicates += skip
            self.duplicates += skip
            if skip == count:
                return None
            data = data[line_offset(data, skip) :]
            first += skip
            count -= skip
        elif first > expected:
            self._gap(sender, expected, first - 1)
        sender.last_seq = first + count - 1
        out, written = self._with_source(sender, data, count, fragment, tail)
        if not written:
            return None
        sender.received += written
        self.received += written
        if self.file is not None:
            self.file.add_line(out)
        if self.stream is not None:
            add = self.stream.add_line
            start = 0
            find = out.find
            while True:
                end = find(b"\n", start) + 1
                if not end:
                    break
                add(out[start:end])
                start = end
        return None

    def _with_source(
        self, sender: SenderStats, data: bytes, count: int, fragment: bytes, tail: bytes
    ) -> tuple[bytes, int]:
        """``data``'s lines with the source added to each, and how many (bad lines dropped)."""
        loads = json.loads
        key = self.source_key
        try:
            objects = list(map(loads, data.decode("utf-8").split("\n")[:-1]))
        except (ValueError, RecursionError):  # also UnicodeDecodeError; deep nesting
            objects = None
        if (
            objects is not None
            and data.count(b"}\n") == count
            and all(type(o) is dict and o and key not in o for o in objects)
        ):
            # Every line is a non-empty JSON object whose text ends with "}" then the
            # newline (JSON text holds no raw newline elsewhere): add the key in one go.
            return data.replace(b"}\n", fragment), count
        out = bytearray()
        bad = 0
        for line in data.split(b"\n")[:-1]:
            try:
                entry = loads(line.decode("utf-8"))
            except (ValueError, RecursionError):
                bad += 1
                continue
            if type(entry) is not dict:
                bad += 1
                continue
            entry.pop(key, None)
            entry[key] = None  # last, so that its value is cut off and replaced
            out += json.dumps(entry, separators=(",", ":"), ensure_ascii=False)[:-5].encode()
            out += tail
        if bad:
            self.bad_entries += bad
            before = sender.bad_entries
            sender.bad_entries += bad
            if before.bit_length() != sender.bad_entries.bit_length():  # at 1, 2, 4, 8...
                log.warning(
                    "mimir collector: dropped malformed entries (not a JSON object) from %s;"
                    " %d from it so far",
                    sender.source,
                    sender.bad_entries,
                )
        return bytes(out), count - bad

    def _new_sender(self, header: bytes) -> tuple[SenderStats, bytes, bytes] | None:
        try:
            identity = decode_identity(header)
        except ProtocolError as error:
            self._bad(str(error))
            return None
        if len(self._by_header) >= self.max_senders and not self._evict():
            self._bad(f"more than {self.max_senders} senders at once")
            return None
        run = identity.pop("run")
        source = identity
        process = (source["host"], source["pid"], source.get("name"))
        if process in self._processes:
            self.restarts += 1
            log.warning(
                "mimir collector: %s started a new sender (run %s): its sequence starts over",
                _describe(source),
                run,
            )
        self._processes.add(process)
        sender = SenderStats(source=dict(source), run=run)
        self.senders[run] = sender
        encoded = json.dumps(source, separators=(",", ":"), ensure_ascii=False).encode()
        key = json.dumps(self.source_key, ensure_ascii=False).encode()
        fragment = b"," + key + b":" + encoded + b"}\n"
        tail = encoded + b"}\n"  # after a re-encoded entry cut just after its new key
        known = (sender, fragment, tail)
        self._by_header[header] = known
        return known

    def _evict(self) -> bool:
        """Forget the sender heard from least recently, if silent for ``_EVICT_AFTER`` s."""
        header, (oldest, _, _) = min(self._by_header.items(), key=lambda kv: kv[1][0].last_seen)
        if time.monotonic() - oldest.last_seen < _EVICT_AFTER:
            return False
        del self._by_header[header]
        del self.senders[oldest.run]
        if len(self._processes) > 10 * self.max_senders:  # what restarts are told from
            self._processes.clear()
        return True

    def _gap(self, sender: SenderStats, first: int, last: int) -> None:
        count = last - first + 1
        sender.gaps += 1
        sender.missed += count
        self.gaps += 1
        self.missed += count
        if len(sender.missing) < _MAX_GAPS_KEPT:
            sender.missing.append((first, last))
        if sender.received == 0 and first == 1:
            log.warning(
                "mimir collector: first heard of %s at entry %d: entries 1..%d missed"
                " (the collector started late or restarted)",
                _describe(sender.source),
                last + 1,
                last,
            )
        else:
            log.warning(
                "mimir collector: %d entries from %s missing (%d..%d)",
                count,
                _describe(sender.source),
                first,
                last,
            )

    # -- the end --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket, write and close the log, close the stream. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._release()

    def _release(self) -> None:
        try:
            if self._sock is not None:
                if self._monitor is not None:
                    self._refused_before_close = self._monitor.refused
                    self._monitor.close()
                    self._monitor = None
                self._sock.close(linger=0)
                self._sock = None
            close_context(self._context, self._auth)
            self._auth = self._context = None
        finally:
            try:
                if self.file is not None:
                    self.file.flush()
                    self.file.close()
            finally:
                if self.stream is not None:
                    self.stream.close()

    def __repr__(self) -> str:
        return f"<Collector {getattr(self, 'address', None)}>"


def _describe(source: dict[str, Any]) -> str:
    name = source.get("name")
    who = f"{name} " if name is not None else ""
    return f"{who}(pid {source.get('pid')} on {source.get('host')})"
