"""Handlers that buffer JSON lines in memory and write them in batches off the caller's thread."""

from __future__ import annotations

import atexit
import functools
import logging
import sys
import threading
import weakref
from collections import deque

from mimir import _fork
from mimir._handler import Handler, report_lost_at_close

__all__ = ["BufferedHandler"]


class BufferedHandler(Handler):
    """Base of the file handlers: ``emit`` appends to a buffer, a thread writes batches.

    ``emit`` only formats the record (once, cached by the formatter) and appends
    the line to an in-memory buffer. A daemon thread, started on the first entry, writes
    everything buffered every ``flush_interval`` seconds, or sooner once
    ``flush_bytes`` have accumulated. :meth:`flush` and :meth:`close` write what is
    buffered on the calling thread; :func:`logging.shutdown` calls them at
    interpreter exit. With ``flush_interval=0`` every entry is written before
    ``emit`` returns and no thread is started.

    A failed write is reported once (through :meth:`handleError`, and counted in
    ``failures``), kept, and retried at the next flush. If writes keep failing and
    the buffer reaches ``max_buffer_bytes``, new entries are dropped, counted in
    ``dropped`` and reported, rather than stalling the caller or exhausting memory.
    Entries still unwritten when :meth:`close` gives up are counted in ``dropped``
    too, and reported as lost: every entry logged is, at all times, in exactly one
    of ``written``, ``dropped`` and :attr:`pending_entries`.

    In a forked child the buffer starts empty: the parent writes its own entries.

    After :meth:`close` (yours, or one by other code: ``logging.config.dictConfig``,
    ``fileConfig`` and ``logging.shutdown`` close every handler), the next entry
    reopens the output and is written, as :class:`logging.FileHandler` does in
    append mode: nothing is ever written through a closed descriptor. Every open
    handler is closed at interpreter exit by a hook of its own, so entries are
    written even when other code has emptied :mod:`logging`'s list of handlers.

    Subclasses implement :meth:`write_batch`, :meth:`close_output` and
    :meth:`reopen_output`.
    """

    def __init__(
        self,
        flush_interval: float = 1.0,
        flush_bytes: int = 1 << 20,
        max_buffer_bytes: int = 256 << 20,
        level: int | str = logging.NOTSET,
    ) -> None:
        if not flush_interval >= 0:
            raise ValueError(f"flush_interval must be >= 0 seconds, got {flush_interval!r}")
        if flush_bytes < 1 or max_buffer_bytes < 1:
            raise ValueError("flush_bytes and max_buffer_bytes must be positive")
        super().__init__(level)
        self.flush_interval = float(flush_interval)
        self.flush_bytes = int(flush_bytes)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self.dropped = 0
        self.written = 0
        # Lines are copied into one bytearray: keeping each encoder output alive
        # until the flush would fragment the allocator and slow every encode down.
        # Callers append to it without a lock (one "+=", atomic under the GIL and
        # for KeyboardInterrupt); only _commit takes bytes out, from the front.
        self._pending = bytearray()
        self._batches: deque[bytearray] = deque()  # taken from _pending, not yet written
        self._retained = 0  # bytes taken from _pending and not yet written
        # Lock order: _life_lock > _io_lock > _buffer_lock. The stdlib's self.lock, taken
        # around emit only when the handler has filters (see Handler.handle), comes first.
        self._buffer_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Held by close() and by the reopening of a closed handler, never by writes.
        self._life_lock = threading.RLock()
        self._closing = False
        self._closed = False
        self._forked = False
        self._write_failing = False
        self._last_error: BaseException | None = None  # of the failing write, if any
        self._dropping = False
        self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)
        _fork.reset_after_fork(self)

    # -- the caller's side ------------------------------------------------------

    def add_line(self, line: bytes, record: logging.LogRecord | None = None) -> None:
        """Buffer one encoded entry, ending with its newline, for the next batch."""
        pending = self._pending
        if len(pending) + self._retained >= self.max_buffer_bytes:
            self._drop(record, line.count(b"\n"))
            return
        pending += line  # no lock: see __init__
        if len(pending) < self.flush_bytes and self._thread is not None:
            return
        if self._thread is None:
            self._first_line()
        elif not self._wake.is_set():
            self._wake.set()

    def _first_line(self) -> None:
        """Start the flush thread, or write at once when ``flush_interval`` is 0.

        Also the first line after :meth:`close`: it reopens the output first.
        """
        if self._closed or self._closing:
            with self._life_lock:  # waits for a close() in progress to finish
                if self._closed:
                    self._reopen()
        if not self.flush_interval:
            self._commit()
            return
        with self._buffer_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._flush_loop, name=f"mimir-flush-{id(self):x}", daemon=True
            )
        self._thread.start()
        mp_util = sys.modules.get("multiprocessing.util")
        if self._forked and mp_util is not None:
            # Children of multiprocessing leave through os._exit, skipping
            # logging.shutdown: its own exit hook writes what the child buffered.
            mp_util.Finalize(self, self.flush, exitpriority=100)

    def _drop(self, record: logging.LogRecord | None, count: int) -> None:
        """Count ``count`` dropped entries; report the first drop since writes last succeeded."""
        with self._buffer_lock:
            self.dropped += count
            if self._dropping:
                return
            self._dropping = True
        self.report_dropped(
            f"{self!r}: buffer full ({len(self._pending)} bytes waiting to be written);"
            " dropping entries until writes succeed again (count in .dropped)",
            record,
        )

    def flush(self) -> None:
        """Write everything buffered so far, on the calling thread."""
        self._commit()

    @property
    def unwritten(self) -> int:
        """Bytes of entries buffered or kept for a retry, not yet written."""
        return len(self._pending) + self._retained

    @property
    def pending_entries(self) -> int:
        """Entries logged but neither written nor dropped yet (buffered, or kept for a retry)."""
        with self._buffer_lock:
            return self._pending.count(b"\n") + sum(b.count(b"\n") for b in self._batches)

    def close(self) -> None:
        """Write what is buffered, stop the thread, and release the output. Idempotent.

        An entry logged afterwards reopens the output (see the class docstring).
        """
        try:
            with self._life_lock:
                if not self._closed:
                    self._closing = True
                    thread = self._thread
                    if thread is not None and thread is not threading.current_thread():
                        self._wake.set()
                        thread.join()
                    self._thread = None
                    self._commit()
                    self._closed = True
                    with self._io_lock:
                        try:
                            self.close_output()
                        finally:
                            self._give_up_unwritten()
                    _fork.forget(self)
                    atexit.unregister(self._exit_hook)
        finally:
            super().close()

    def abandon(self) -> None:
        """For a subclass constructor that failed: never write, reopen or close anything.

        The handler is already registered with :mod:`logging` (which closes it at
        exit); this makes that close a no-op.
        """
        self._closed = True
        atexit.unregister(self._exit_hook)
        _fork.forget(self)

    def _reopen(self) -> None:
        """Open the output again after :meth:`close` (life lock held)."""
        with self._io_lock:
            self.reopen_output()
        self._closing = False
        self._closed = False
        _fork.reset_after_fork(self)
        atexit.register(self._exit_hook)

    # -- writing ----------------------------------------------------------------

    def _commit(self) -> None:
        """Write every line emitted before this call, in order, retrying earlier failures."""
        with self._buffer_lock:
            pending = self._pending
            taken = len(pending)
            if taken:
                # Copy, then cut from the front: lines appended meanwhile stay.
                self._batches.append(pending[:taken])
                self._retained += taken
                del pending[:taken]
        with self._io_lock:
            batches = self._batches
            while batches:
                data = batches[0]
                size = len(data)
                count = data.count(b"\n")
                try:
                    self.write_batch(data)
                except Exception as error:
                    self._last_error = error
                    # write_batch may have cut from data what reached the output.
                    done = count - data.count(b"\n")
                    if done:
                        with self._buffer_lock:
                            self._retained -= size - len(data)
                        self.batch_written(done)
                        count -= done
                    if not self._write_failing:
                        self._write_failing = True
                        self.report(
                            f"{self!r}: could not write {count} entries; they are kept in memory"
                            " and the write is retried at the next flush"
                        )
                    return
                batches.popleft()
                with self._buffer_lock:
                    self._retained -= len(data)
                self.batch_written(count)
                self._write_failing = False
                self._dropping = False

    def _give_up_unwritten(self) -> None:
        """At close: count the batches that could not be written as dropped, and say so.

        Lines logged while close() ran stay buffered: their ``add_line`` reopens the
        output once close() is done.
        """
        with self._buffer_lock:
            lost = sum(b.count(b"\n") for b in self._batches)
            self._batches.clear()
            self._retained = 0
            self.dropped += lost
        if lost:
            report_lost_at_close(self.report, repr(self), lost, self._last_error)

    def _flush_loop(self) -> None:
        while not self._closing:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._commit()

    def _after_fork_in_child(self) -> None:
        self._pending = bytearray()
        self._batches = deque()
        self._retained = 0
        self._buffer_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._forked = True

    # -- for subclasses ---------------------------------------------------------

    def write_batch(self, data: bytes | bytearray) -> None:
        """Write ``data`` (complete lines) durably enough for this handler; raise on failure.

        A write that fails part-way may cut from the front of ``data`` (a bytearray)
        the lines that did reach the output: they are counted as written, and only
        the rest is kept for the retry.
        """
        raise NotImplementedError

    def batch_written(self, count: int) -> None:
        """Account for a batch of ``count`` entries that :meth:`write_batch` took."""
        self.written += count

    def close_output(self) -> None:
        """Release the output (called once per close, after the final write)."""

    def reopen_output(self) -> None:
        """Open the output again for entries logged after :meth:`close`."""
        raise NotImplementedError


def _close_at_exit(handler_ref: weakref.ref[BufferedHandler]) -> None:
    """Interpreter exit: close a handler that is still open (it writes what it holds)."""
    handler = handler_ref()
    if handler is not None:
        handler.close()
