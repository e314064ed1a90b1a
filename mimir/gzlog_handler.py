"""Compressed line-delimited JSON files in the crash-safe gzlog format (``.jsonl.gz``)."""

from __future__ import annotations

import logging
import os
import warnings

from mimir._buffered import BufferedHandler
from mimir._gzlog_writer import WriterProcess, WriterProcessError
from mimir.gzlog import MAX_APPEND, Gzlog, GzlogError, GzlogState
from mimir.jsonl import require_directory

__all__ = ["GzlogFileHandler"]


def _piece_end(data: bytes | bytearray, start: int, limit: int) -> int:
    """End of the longest run of whole lines from ``start`` of at most ``limit`` bytes.

    A single line longer than the limit makes a run of its own.
    """
    end = data.rfind(b"\n", start, start + max(1, limit)) + 1
    if end <= start:  # one line longer than the limit: it goes whole
        end = data.find(b"\n", start + max(1, limit) - 1) + 1 or len(data)
    return end


class GzlogFileHandler(BufferedHandler):
    """Appends entries to a gzip-compressed ``.jsonl.gz`` log in the gzlog format.

    After every batch the file is a complete gzip file that ``zcat``, ``gzip -t``,
    Python's :mod:`gzip`, pandas and :func:`mimir.load` read, even while it is
    being written. Entries are buffered in memory and handed on as a batch at
    least every ``flush_interval`` seconds (or once ``flush_bytes`` are waiting);
    each batch becomes durable gzlog appends of whole lines (at most 1 MiB each,
    fsynced), and when the uncompressed tail reaches 1 MiB it is compressed in
    place. :meth:`flush` returns once everything logged before it is committed;
    :meth:`close` commits, then compresses the remaining tail, so a closed log is
    fully compressed. With ``flush_interval=0`` every entry is durable before
    ``emit`` returns.

    A crash (even ``kill -9``) at any moment loses at most the batch in flight,
    never an acknowledged entry, and never leaves a partial line; the next opener
    repairs the file. The gzlog lock is held only during an append, so several
    processes can log to the same file. A failed write is reported once through
    :meth:`handleError` and retried at the next flush without duplicating what
    reached the file.

    The appends and compressions run in a small writer process started with the
    handler (``writer_process=True``, the default): a thread of the logging process
    would have to win back the GIL from the training loop after each of its many
    system calls, and fall behind a fast loop. The handler's thread hands it each
    batch through a pipe. If the logging process dies, the writer still writes
    what it received, then exits; a writer that dies is reported and replaced.
    ``writer_process=False`` does the same work on the handler's thread instead
    (as ``flush_interval=0`` does on the caller's), and so does the handler if
    the writer cannot be started (with a :class:`RuntimeWarning`).

    ``compression_level`` is zlib's (1..9). The default, 4, compresses metrics logs
    within a few percent of ``gzip -6`` at about twice the speed of level 6, so
    that the writer keeps up with fast training loops on small machines; any
    level reads back the same.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        flush_interval: float = 1.0,
        flush_bytes: int = 1 << 20,
        max_buffer_bytes: int = 256 << 20,
        level: int | str = logging.NOTSET,
        compression_level: int = 4,
        writer_process: bool = True,
    ) -> None:
        path = os.path.abspath(os.fspath(filename))
        if not path.endswith(".gz"):
            raise ValueError(
                f"a compressed log's filename must end with '.gz' (e.g. 'run.jsonl.gz'), "
                f"got {os.fspath(filename)!r}"
            )
        require_directory(path)
        self.filename = path
        self._gzlog = Gzlog(
            path, on_corrupt="new", verify="quick", compression_level=compression_level
        )
        self._failing = False  # a failure was reported and no write succeeded since
        super().__init__(flush_interval, flush_bytes, max_buffer_bytes, level)
        self._writer: WriterProcess | None = None
        self._writer_dropped = 0  # the writer's drops already added to .dropped
        if writer_process and self.flush_interval:
            try:
                self._writer = WriterProcess(
                    path,
                    flush_interval=self.flush_interval,
                    max_buffer_bytes=self.max_buffer_bytes,
                    compression_level=compression_level,
                    report=self.report,
                )
            except OSError as error:
                warnings.warn(
                    f"{self!r}: could not start the writer process ({error}); the log is"
                    " written from a thread of this process instead",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def write_batch(self, data: bytes | bytearray) -> None:
        """Append ``data`` as gzlog appends of whole lines; on failure keep only the rest.

        Each append fills the log's uncompressed tail up to its 1 MiB limit (the
        engine compresses the tail first when the next lines do not fit). If an
        append fails, the bytes the engine reports as committed (in the log, or
        redone by its recovery) are removed from ``data`` (a bytearray, the batch
        kept for the retry) before the error propagates, so a retry never writes
        an entry twice and never skips one.
        """
        if self._writer is not None:
            try:
                self._writer.send(data)
                return
            except WriterProcessError:
                self._writer_failed()  # then write this batch here
        gz = self._gzlog
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
                    # Every entry is in the log (or will be once the log is recovered);
                    # a later step failed (a compression, an fsync after the commit).
                    if first:
                        self.report(
                            f"{self!r}: the entries were written but the log could not be"
                            f" finished ({error}); it is repaired at the next write"
                        )
                    return
                if not first:
                    self._write_failing = True  # this failure streak was already reported
                if done and isinstance(data, bytearray):
                    del data[:done]  # what reached the log is not retried
                raise
            done = end
        self._failing = False

    def flush(self) -> None:
        """Write everything buffered so far; with a writer process, wait until it has."""
        super().flush()
        self._ask_writer("sync")

    def compress(self) -> None:
        """Commit what is buffered, then compress the log's uncompressed tail now."""
        super().flush()
        if not self._ask_writer("compress"):
            with self._io_lock:
                self._gzlog.compress()

    def _ask_writer(self, request: str) -> bool:
        """Have the writer process do ``request`` (sync, compress or close); False if none."""
        with self._io_lock:
            return self._writer_does(request)

    def _writer_does(self, request: str) -> bool:
        """:meth:`_ask_writer` for callers that hold the I/O lock."""
        writer = self._writer
        if writer is None:
            return False
        try:
            getattr(writer, request)()
        except WriterProcessError:
            self._writer_failed()
            return False  # the caller does it here
        except Exception:
            self.report(f"{self!r}: the writer process failed to {request}")
        with self._buffer_lock:  # callers count their drops under it too
            self.dropped += writer.dropped - self._writer_dropped
        self._writer_dropped = writer.dropped
        return True

    def _writer_failed(self) -> None:
        """The writer process keeps dying: report it and write from this process from now on."""
        self.report(
            f"{self!r}: the writer process keeps exiting; the log is written from a thread"
            " of this process from now on"
        )
        self._writer = None

    def state(self) -> GzlogState:
        """The log's current gzlog state (``stored_bytes`` is the uncompressed tail)."""
        return self._gzlog.state()

    @property
    def writer_pid(self) -> int | None:
        """The pid of the writer process, or None (no writer process, or closed)."""
        return self._writer.pid if self._writer is not None else None

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        if self._writer is not None:
            self._writer.forget()  # the child's first batch starts a writer of its own

    def close_output(self) -> None:
        """Compress the stored tail (unless writes are failing), then close the engine."""
        try:
            if self._writer_does("close"):
                self._writer = None
            elif not self._batches:
                self._gzlog.compress()
        except Exception:
            if not self._failing:
                self.report(
                    f"{self!r}: could not compress the log's tail at close (the log stays valid)"
                )
        finally:
            self._gzlog.close()

    def __repr__(self) -> str:
        return f"<GzlogFileHandler {self.filename}>"
