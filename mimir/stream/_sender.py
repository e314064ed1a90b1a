"""The sender core of the ZeroMQ handlers: a line queue that a background thread sends.

:class:`QueuedSender` is what :class:`~mimir.ZMQStreamHandler` and
:class:`~mimir.ZMQForwardHandler` share; each keeps only its sockets and its thread's
loop. The caller's side (:meth:`~QueuedSender.add_line`) appends the entry's JSON
line to one ``bytearray`` under a lock and gives it the next sequence number; the
sender thread swaps the whole buffer out at once (:meth:`~QueuedSender._take`) and
sends it in messages of about ``_batch_bytes`` cut at newlines
(:meth:`~QueuedSender._send_batches`). What does not fit is dropped and counted,
the first drop of a streak reported; a dropped entry takes its sequence number in
order too, so the receiver sees the gap where the entry was. ``sent + dropped``
equals the entries logged once the handler is closed. After
:meth:`~QueuedSender.close` (by the user, ``dictConfig`` or ``logging.shutdown``)
the next entry reopens the handler: same run id, next sequence number.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mimir import _fork
from mimir._handler import Handler, as_line
from mimir.stream.protocol import batch_end, line_offset

__all__ = ["QueuedSender"]

# While entries keep coming, the sender thread takes them every this many seconds,
# unasked (the caller then makes no system call to wake it).
ACTIVE_POLL = 0.002
# How long close() lets the sender thread send what is still queued before the rest
# is counted as dropped.
CLOSE_DRAIN_SECONDS = 0.5

# send(seq, count, start, stop): hand data[start:stop], ``count`` entries numbered
# from ``seq``, to ZeroMQ; False if it refused them.
SendBatch = Callable[[int, int, int, int], bool]


class QueuedSender(Handler):
    """A handler whose entries a background thread sends; see the module.

    Subclasses set the class attributes, implement :meth:`_send_loop` (the thread: take,
    send, and call :meth:`_stop_queue` when it ends) and :meth:`_wake_locked`, and
    may override the hooks (:meth:`_open_again`, :meth:`_release`, :meth:`_can_reopen`,
    :meth:`_on_thread_started`, :meth:`_destination`).
    """

    #: What the thread does, in messages and its name ("publishing", "sending").
    _thread_role = "sending"
    #: Name of the thread: ``mimir-<_thread_name>-<id>``.
    _thread_name = "sender"
    #: An entry this long or longer is dropped (the receiver would refuse it).
    _max_line = 1 << 62
    #: Who refuses an entry of ``_max_line`` bytes, in the drop report.
    _receiver = "the receiver"
    #: A message carries up to this many bytes of lines (cut at a newline).
    _batch_bytes = 64 << 10
    #: A batch ZeroMQ refused is kept and retried (True) or dropped (False).
    _retry_refused = False

    def __init__(self, queue_size: int, linger: float, level: int | str) -> None:
        # What close() needs, set before the handler is registered with logging (which
        # closes it at exit even if a subclass's constructor fails).
        self._lock = threading.Lock()
        self._life_lock = threading.RLock()  # close() and reopening
        self._closed = False
        self._forked = False  # a child that must not use its parent's sockets
        self._thread: threading.Thread | None = None
        self.queue_size = queue_size
        self.linger = float(linger)
        #: Entries handed to ZeroMQ.
        self.sent = 0
        #: Entries thrown away: queue full, closed, too big, or not sent by close().
        self.dropped = 0
        self._reset_queue()
        super().__init__(level)

    def _reset_queue(self) -> None:
        """An empty queue, numbered from 1."""
        # The entries waiting for the sender: their JSON lines, each ending in b"\n",
        # back to back in _pending; _count of them, numbered from _seq + 1 in the order
        # they were logged, together with the entries dropped among and after them:
        # _holes lists those as [i, n], n entries dropped after the first i of _pending
        # (a drop while _pending is empty just moves _seq on). The sender swaps the
        # bytearray out whole, under _lock, or only up to the first hole, and moves _seq
        # on: nothing is done per entry but appending the line.
        self._pending = bytearray()
        self._seq = 0
        self._count = 0
        self._holes: list[list[int]] = []
        # Entries _pending may hold: queue_size, 0 once closed, forked or stopped.
        self._room = 0 if self._closed else self.queue_size
        self._taken = 0  # seq of the last entry the sender took from _pending
        self._processed = 0  # seq of the last entry the sender dealt with (sent or dropped)
        # Whether the sender waits for a wake-up (it looks for entries by itself while
        # they keep coming).
        self._idle = True
        self._stalled = False  # ZeroMQ refused the last batch, which is retried
        self._stopped = False  # the sender thread has ended
        self._dropping = False  # a drop was reported, and no entry fitted since

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
            fits = len(line) < self._max_line
            if count < self._room and fits:
                self._pending += line
                self._count = count + 1
                if count or not self._idle:
                    return
                # The first entry for an idle sender: wake it (under the lock: the
                # stream's sender closes its wake-up pipe under it).
                self._idle = False
                if self._thread is not None:
                    self._wake_locked()
                    return
                start = True
                reopen = False
            else:
                start = False
                # Closed by close(), dictConfig or logging.shutdown: send again.
                reopen = fits and self._closed and self._can_reopen()
        if start:
            self._start_thread()
        elif reopen and self._reopen():
            self.add_line(line, record)
        else:
            self._drop(record, len(line))

    def _drop(self, record: logging.LogRecord | None, size: int) -> None:
        """Count a dropped entry; report the first of a streak through handleError."""
        with self._lock:
            self.dropped += 1
            count = self._count
            if not count:
                self._seq += 1  # numbered before the next entry queued
            else:  # an entry too long while others are queued, or the queue full
                holes = self._holes
                if holes and holes[-1][0] == count:
                    holes[-1][1] += 1
                else:
                    holes.append([count, 1])
            if self._dropping:
                return
            self._dropping = True
            why = self._drop_reason(size)
        self.report_dropped(f"{self!r}: {why}; entries are dropped (count in .dropped)", record)

    def _drop_reason(self, size: int) -> str:
        if self._closed:
            return "closed"
        if size >= self._max_line:
            return f"an entry of {size} bytes is larger than {self._receiver} accepts"
        if self._stopped:
            return f"the {self._thread_role} thread has stopped"
        return f"queue full ({self.queue_size} entries waiting to be {self._destination()})"

    def _destination(self) -> str:
        """What happens to the entries waiting, in the queue-full report."""
        return "sent"

    def _can_reopen(self) -> bool:
        """Whether an entry logged after close() reopens the handler (called under _lock)."""
        return not self._forked

    def _reopen(self) -> bool:
        """After close(): send again (same run id, next sequence number); False if not now."""
        with self._life_lock:
            with self._lock:
                if not self._closed:
                    return True  # another thread reopened it
                thread = self._thread
            if thread is not None and thread.is_alive():
                return False  # close() gave up waiting for it: it still owns its sockets
            if not self._open_again():
                return False
            with self._lock:
                self._closed = self._stopped = self._dropping = False
                self._room = self.queue_size
                self._idle = True
                self._thread = None
            # Started here, under _life_lock: a close() racing with the reopening
            # then finds the thread and waits for it.
            self._start_thread()
            _fork.reset_after_fork(self)
            return True

    def _open_again(self) -> bool:
        """Make again what close() released, for :meth:`_reopen`; False (reported) on failure."""
        return True

    def _start_thread(self) -> None:
        """Start the sender thread, woken at once (if not started already)."""
        with self._lock:
            if self._thread is not None:
                return
            thread = self._thread = threading.Thread(
                target=self._send_loop, name=f"mimir-{self._thread_name}-{id(self):x}", daemon=True
            )
            self._wake_locked()
        thread.start()
        self._on_thread_started()

    def _on_thread_started(self) -> None:
        """Called after the sender thread started, in the caller's thread."""

    def _wake_locked(self) -> None:
        """Wake the sender thread (called under ``_lock``)."""
        raise NotImplementedError

    def _wake_sender(self) -> None:
        with self._lock:
            self._wake_locked()

    def _wait_processed(self, timeout: float) -> None:
        """Wait until every entry queued so far is sent or dropped (at most ``timeout`` s).

        Returns at once while ZeroMQ refuses a batch that is retried.
        """
        thread = self._thread
        if self._forked or thread is None or not thread.is_alive():
            return
        with self._lock:
            count = self._count
            # The number of the last entry queued: holes before it count, after it not.
            target = (
                self._seq + count + sum(n for i, n in self._holes if i < count)
                if count
                else self._taken
            )
        self._wake_sender()
        deadline = time.monotonic() + timeout
        while (
            self._processed < target
            and not self._stalled
            and time.monotonic() < deadline
            and thread.is_alive()
        ):
            time.sleep(0.0005)

    def close(self) -> None:
        """Send what is queued, stop the thread, release the sockets. Idempotent."""
        try:
            with self._life_lock:
                with self._lock:
                    closing = not self._closed
                    self._closed = True
                    self._room = 0
                    thread = self._thread
                if closing and not self._forked:
                    if thread is not None and thread is not threading.current_thread():
                        self._wake_sender()
                        thread.join(self.linger + CLOSE_DRAIN_SECONDS + 1.0)
                    if thread is None or not thread.is_alive():
                        self._release()
                    _fork.forget(self)
        finally:
            super().close()

    def _release(self) -> None:
        """Release what the handler holds outside its thread, once it has stopped."""

    def _after_fork_in_child(self) -> None:
        # Nothing of the parent's (sockets, context, thread) is used or closed here;
        # the entries it queued are the parent's to send.
        self._lock = threading.Lock()
        self._life_lock = threading.RLock()
        self._thread = None
        self._pending = bytearray()
        self._count = 0
        self._holes = []
        self._dropping = False

    # -- the sender thread -----------------------------------------------------------

    def _send_loop(self) -> None:
        raise NotImplementedError

    def _take(self) -> tuple[bytearray, int, int] | None:
        """Swap the queue out: (its lines, the seq of its first entry, its count), or None.

        Entries with consecutive numbers are taken: up to the first entry dropped
        among them, if any; those queued after it are taken next time.
        """
        with self._lock:
            count = self._count
            if not count:
                return None
            data = self._pending
            first = self._seq + 1
            skipped = 0
            holes = self._holes
            if holes:
                kept, skipped = holes.pop(0)
                if kept < count:  # entries were queued after the hole: they stay
                    cut = line_offset(data, kept)
                    self._pending = data[cut:]
                    del data[cut:]
                    for hole in holes:
                        hole[0] -= kept
                else:
                    self._pending = bytearray()
                self._count = count - kept
                count = kept
            else:
                self._pending = bytearray()
                self._count = 0
            self._taken = first + count - 1
            self._seq = self._taken + skipped
            if self._room:
                self._dropping = False  # the next entry fits: a new streak is reported
        return data, first, count

    def _send_batches(
        self,
        data: bytearray,
        start: int,
        seq: int,
        left: int,
        send: SendBatch,
        deadline: float = 0.0,
    ) -> tuple[int, int, int]:
        """Send ``data[start:]`` (``left`` entries from ``seq``) in batches; return what is left.

        A batch ZeroMQ refused is dropped (and counted), or, with ``_retry_refused``,
        kept: sending stops there. Stops too when ``deadline`` (monotonic) passes.
        Returns (start, seq, left) of what was not sent. If ``send`` raises, what was
        not sent is counted as dropped.
        """
        end = len(data)
        limit = self._batch_bytes
        try:
            while start < end:
                if deadline and time.monotonic() >= deadline:
                    break
                stop = batch_end(data, start, end, limit)
                count = left if stop == end else data.count(b"\n", start, stop)
                if send(seq, count, start, stop):
                    self._stalled = False
                    self.sent += count
                elif self._retry_refused:
                    self._stalled = True
                    break
                else:
                    with self._lock:
                        self.dropped += count
                seq += count
                left -= count
                start = stop
        except BaseException:  # the socket failed: what is left is dropped
            with self._lock:
                self.dropped += left
            raise
        return start, seq, left

    def _stop_queue(self, unsent: int = 0) -> int:
        """The sender thread ends: what is queued, and ``unsent`` more, counts as dropped.

        No entry is queued after this (until a reopen). Returns how many were dropped.
        """
        with self._lock:
            self._stopped = True
            self._room = 0
            lost = self._count + unsent
            self.dropped += lost
            self._seq += self._count + sum(n for _, n in self._holes)
            self._pending = bytearray()
            self._count = 0
            self._holes = []
            self._processed = self._seq
        return lost

    def _report_failure(self) -> None:
        """Report that the sender thread failed (from its ``except`` block)."""
        self.report(f"{self!r}: the {self._thread_role} thread failed; entries are dropped")
