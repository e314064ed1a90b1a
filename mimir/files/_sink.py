"""Appending to a gzlog from this process, and the sink interface of compressed logs.

* :class:`GzlogAppender` is the write path of one log: opening it, verifying it before
  the first append, moving a damaged log aside, splitting batches into appends of
  whole lines, and knowing what reached the log when an append fails. It raises on
  failure; its owner keeps the unwritten lines and retries.
* :class:`Sink` is what a :class:`~mimir.GzlogFileHandler` hands batches to when it
  does not write them itself: append, sync, compress, close, and the entries
  written, dropped and pending. It never raises for a failed write: failures go to
  a ``report`` callback, the lines are kept and retried.
* :class:`GzlogSink` is that interface in this process, on a :class:`GzlogAppender`;
  the writer process runs one (``mimir.files._writer_process``), whose client in the
  logging process offers the same interface.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable
from typing import Protocol

from mimir._handler import EntriesDropped, report_lost_at_close
from mimir.gzlog import MAX_APPEND, Gzlog, GzlogCorruptError, GzlogError, GzlogState, GzlogWarning
from mimir.reader import iter_lines

__all__ = ["GzlogAppender", "GzlogSink", "Sink", "log_name"]

Report = Callable[[str], None]


def log_name(filename: str) -> str:
    """How messages name a compressed log: as the handler writing it, in any process."""
    return f"<GzlogFileHandler {filename}>"


class Sink(Protocol):
    """Where a compressed log's batches go: counts, never a raise for a failed write."""

    @property
    def written(self) -> int:
        """Entries written to the log so far."""
        ...

    @property
    def dropped(self) -> int:
        """Entries given up: the kept lines were too many, or close() could not write them."""
        ...

    @property
    def pending(self) -> int:
        """Entries appended and neither written nor dropped yet."""
        ...

    def append(self, data: bytes | bytearray) -> None:
        """Take complete lines to write; a failure is reported, the lines kept for a retry."""
        ...

    def sync(self) -> None:
        """Write (or retry) everything appended so far."""
        ...

    def compress(self) -> None:
        """Sync, then compress the log's uncompressed tail."""
        ...

    def close(self) -> None:
        """Sync, compress the tail, release the log; what is still unwritten is dropped."""
        ...


def _readable_entries(path: str) -> int:
    """How many entries of the (damaged) log at ``path`` can still be read.

    A strict read gives the readable part, then raises at the damage: no warning
    filters are touched, so other threads' warnings are left alone.
    """
    count = 0
    try:
        for _ in iter_lines(path):
            count += 1
    except (OSError, ValueError):  # DamagedLogError is a ValueError
        pass
    return count


def _piece_end(data: bytes | bytearray, start: int, limit: int) -> int:
    """End of the longest run of whole lines from ``start`` of at most ``limit`` bytes.

    A single line longer than the limit makes a run of its own.
    """
    end = data.rfind(b"\n", start, start + max(1, limit)) + 1
    if end <= start:  # one line longer than the limit: it goes whole
        end = data.find(b"\n", start + max(1, limit) - 1) + 1 or len(data)
    return end


class GzlogAppender:
    """The write path of one gzlog in this process; raises on failure.

    Opening checks the header and the uncompressed tail only; the whole log is
    verified before the first append (or by :meth:`verify`). A damaged log is never
    appended to: it is moved aside whole, a :class:`~mimir.gzlog.GzlogWarning` says
    where and how many of its entries are readable, and a new log starts. ``report``
    is told, from an ``except`` block, of a failure that :meth:`write` does not raise.
    Not thread-safe.
    """

    def __init__(
        self,
        filename: str,
        *,
        compression_level: int,
        lock_timeout: float | None,
        report: Report,
    ) -> None:
        self.filename = filename
        self.compression_level = compression_level
        self.lock_timeout = lock_timeout
        self._report = report
        self.gzlog = self._open()
        self._verified = False  # the whole log is verified before this process appends
        self._failing = False  # a write failed and none fully succeeded since

    @property
    def failing(self) -> bool:
        """Whether a write failed (raised, or reported) and none fully succeeded since."""
        return self._failing

    @property
    def room(self) -> int:
        """Bytes that still fit in the log's uncompressed tail."""
        return self.gzlog.room

    def state(self) -> GzlogState:
        """The log's current gzlog state (``stored_bytes`` is the uncompressed tail)."""
        return self.gzlog.state()

    def _open(self) -> Gzlog:
        """Open the log quickly (header and uncompressed tail checked), creating it if needed."""
        for _ in range(2):
            try:
                return Gzlog(
                    self.filename,
                    on_corrupt="raise",
                    verify="quick",
                    compression_level=self.compression_level,
                    lock_timeout=self.lock_timeout,
                )
            except GzlogCorruptError as error:
                self._moved_aside(error)  # then start a new log in its place
        raise GzlogError(f"{self.filename} was damaged twice while it was being opened")

    def _moved_aside(self, error: GzlogCorruptError) -> None:
        """Warn that the damaged log went to ``error.moved_to``, with its readable entries."""
        readable = _readable_entries(error.moved_to) if error.moved_to else 0
        if readable:
            kept = (
                f"{readable} of its entries are still readable (mimir.load(path, errors='partial'))"
            )
        else:
            kept = (
                "none of its entries can be verified any more (zcat may still recover text from it)"
            )
        warnings.warn(
            f"{self.filename} is damaged ({error.reason}), so nothing was appended to it:"
            f" it was moved whole to {error.moved_to}; {kept}; a new log was started",
            GzlogWarning,
            stacklevel=2,
        )

    def verify(self) -> None:
        """Verify the whole log now; a damaged one is moved aside and a new log started."""
        try:
            self.gzlog.verify()
        except GzlogCorruptError as error:
            self._moved_aside(error)
            self.gzlog = self._open()
        self._verified = True

    def write(self, data: bytes | bytearray) -> None:
        """Append ``data`` as gzlog appends of whole lines; on failure keep only the rest.

        Each append fills the log's uncompressed tail up to its 1 MiB limit (the
        engine compresses the tail first when the next lines do not fit). If an
        append fails, the bytes the engine reports as committed (in the log, or
        redone by its recovery) are removed from ``data`` (a bytearray, the batch
        kept for the retry) before the error propagates, so a retry never writes
        an entry twice and never skips one. If every line is committed and a later
        step failed (a compression, an fsync after the commit), nothing is raised:
        the first such failure of a streak is reported.
        """
        if not self._verified:
            self.verify()
        gz = self.gzlog
        done = 0
        total = len(data)
        while done < total:
            end = data.rfind(b"\n", done, done + gz.room) + 1
            if end <= done:  # not even one line fits: the engine compresses first
                end = _piece_end(data, done, MAX_APPEND)
            if isinstance(data, bytes):
                piece = data if done == 0 and end == total else data[done:end]
            else:
                with memoryview(data) as view:  # one copy, released before any resize
                    piece = bytes(view[done:end])
            try:
                gz.append(piece)
            except GzlogError as error:
                done += error.committed
                first = not self._failing
                self._failing = True
                if done == total:
                    # Every entry is in the log (or will be once the log is recovered).
                    if first:
                        self._report(
                            f"{log_name(self.filename)}: the entries were written but the log"
                            f" could not be finished ({error}); it is repaired at the next write"
                        )
                    return
                if done and isinstance(data, bytearray):
                    del data[:done]  # what reached the log is not retried
                raise
            done = end
        self._failing = False

    def compress(self) -> None:
        """Compress the log's uncompressed tail now."""
        self.gzlog.compress()

    def close(self, *, compress: bool) -> None:
        """Release the log, first compressing its tail if ``compress``.

        A failed compression is reported (unless writes are already failing): the
        log stays valid.
        """
        try:
            if compress:
                self.gzlog.compress()
        except Exception:
            if not self._failing:
                self._report(
                    f"{log_name(self.filename)}: could not compress the log's tail at close"
                    " (the log stays valid)"
                )
        finally:
            self.gzlog.close()


class GzlogSink:
    """The :class:`Sink` interface in this process: appends on the caller's thread.

    Lines that could not be written are kept, in order, and retried at the next
    :meth:`append` or :meth:`sync`; the first failure of a streak is reported. Once
    ``max_buffer_bytes`` are kept, further lines are dropped and counted (reported
    once per streak); what :meth:`close` cannot write is dropped and reported too.
    Not thread-safe.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        report: Report,
        compression_level: int = 4,
        lock_timeout: float | None = None,
        max_buffer_bytes: int = 256 << 20,
    ) -> None:
        self.filename = os.path.abspath(os.fspath(filename))
        self.max_buffer_bytes = max_buffer_bytes
        self._report = report
        self.appender = GzlogAppender(
            self.filename,
            compression_level=compression_level,
            lock_timeout=lock_timeout,
            report=report,
        )
        self.written = 0
        self.dropped = 0
        self._kept: deque[bytearray] = deque()  # lines not written yet, oldest first
        self._kept_bytes = 0
        self._reported = False  # this streak of failed writes was reported
        self._dropping = False  # this streak of drops was reported
        self._last_error: BaseException | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Entries appended and neither written nor dropped yet."""
        return sum(batch.count(b"\n") for batch in self._kept)

    @property
    def unwritten(self) -> int:
        """Bytes kept for a retry."""
        return self._kept_bytes

    @property
    def room(self) -> int:
        """Bytes that still fit in the log's uncompressed tail."""
        return self.appender.room

    def verify(self) -> None:
        """Verify the whole log now (done anyway before the first append)."""
        self.appender.verify()

    def append(self, data: bytes | bytearray) -> None:
        """Write complete lines after those kept; a failure keeps them for a retry.

        A bytearray is taken over as it is (no copy): the caller must not change it.
        """
        if self._kept_bytes >= self.max_buffer_bytes:
            self._drop(data.count(b"\n"))
            return
        self._kept.append(data if isinstance(data, bytearray) else bytearray(data))
        self._kept_bytes += len(data)
        self.sync()

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self._dropping:
            return
        self._dropping = True
        message = (
            f"{log_name(self.filename)}: buffer full ({self._kept_bytes} bytes waiting to be"
            " written); dropping entries until writes succeed again (count in .dropped)"
        )
        try:
            raise EntriesDropped(message)
        except EntriesDropped:
            self._report(message)

    def sync(self) -> None:
        """Write the kept lines, in order; stop at the first failure (reported once)."""
        kept = self._kept
        appender = self.appender
        while kept:
            data = kept[0]
            size = len(data)
            count = data.count(b"\n")
            repeated = appender.failing
            try:
                appender.write(data)
            except Exception as error:
                self._last_error = error
                if isinstance(error, GzlogError) and repeated:
                    self._reported = True  # the streak was reported by the appender
                if size > len(data):  # the lines that reached the log are written
                    self._kept_bytes -= size - len(data)
                    self.written += count - data.count(b"\n")
                if not self._reported:
                    self._reported = True
                    self._report(
                        f"{log_name(self.filename)}: could not write {count} entries; they are"
                        " kept in memory and the write is retried at the next flush"
                    )
                return
            kept.popleft()
            self._kept_bytes -= size
            self.written += count
            self._reported = False
            self._dropping = False

    def compress(self) -> None:
        """Sync, then compress the log's uncompressed tail (a failure raises)."""
        self.sync()
        self.appender.compress()

    def close(self) -> None:
        """Sync, compress the tail, release the log; unwritten lines are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.sync()
        try:
            self.appender.close(compress=not self._kept)
        finally:
            self._give_up_kept()

    def _give_up_kept(self) -> None:
        lost = self.pending
        self._kept.clear()
        self._kept_bytes = 0
        self.dropped += lost
        if lost:
            report_lost_at_close(self._report, log_name(self.filename), lost, self._last_error)
