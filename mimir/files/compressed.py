"""Compressed line-delimited JSON files in the crash-safe gzlog format (``.jsonl.gz``)."""

from __future__ import annotations

import logging
import os
import warnings

from mimir._buffered import BufferedHandler
from mimir.files._sink import GzlogAppender, log_name
from mimir.files._writer_process import WriterProcess, WriterProcessError
from mimir.files.plain import require_directory
from mimir.gzlog import Gzlog, GzlogError, GzlogState

__all__ = ["GzlogFileHandler"]


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

    Before its first append, the writer verifies the whole log (the compressed part
    against the CRC and length in its header, and ``P.dict`` against the last 32 KiB
    of that data), away from the training loop: the constructor only checks the
    header and the uncompressed tail. A damaged log is never appended to: it is moved
    aside whole to ``<filename>.corrupt-<time>``, a :class:`~mimir.gzlog.GzlogWarning`
    says where and how many of its entries are still readable, and a new log starts.

    ``compression_level`` is zlib's (1..9). The default, 4, compresses metrics logs
    within a few percent of ``gzip -6`` at about twice the speed of level 6, so
    that the writer keeps up with fast training loops on small machines; any
    level reads back the same.

    ``lock_timeout`` bounds, in seconds, how long the constructor and each write wait
    for the log's lock while another process holds it (``None``, the default: wait,
    with a warning naming the holder after 2 s); past it they fail with a
    :class:`~mimir.gzlog.GzlogError` that says who holds the lock.
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
        lock_timeout: float | None = None,
    ) -> None:
        path = os.path.abspath(os.fspath(filename))
        if not path.endswith(".gz"):
            raise ValueError(
                f"a compressed log's filename must end with '.gz' (e.g. 'run.jsonl.gz'), "
                f"got {os.fspath(filename)!r}"
            )
        require_directory(path)
        if lock_timeout is not None and not lock_timeout >= 0:
            raise ValueError(f"lock_timeout must be >= 0 seconds or None, got {lock_timeout!r}")
        self.filename = path
        self.lock_timeout = lock_timeout
        self._compression_level = compression_level
        self._log = self._open_log()  # written here when there is no writer process
        super().__init__(flush_interval, flush_bytes, max_buffer_bytes, level)
        self._writer: WriterProcess | None = None
        self._writer_written = 0  # the writer's counts already added to .written
        self._writer_dropped = 0  # and to .dropped
        self._handed_over = False  # the last batch went to the writer process
        self._use_writer = bool(writer_process and self.flush_interval)
        if self._use_writer:
            try:
                self._start_writer()
            except BaseException:
                self.abandon()
                self._log.close(compress=False)
                raise

    def _start_writer(self) -> None:
        """Start the writer process; without one, warn and write from this process."""
        try:
            self._writer = WriterProcess(
                self.filename,
                flush_interval=self.flush_interval,
                max_buffer_bytes=self.max_buffer_bytes,
                compression_level=self._compression_level,
                lock_timeout=self.lock_timeout,
                report=self.report,
            )
        except OSError as error:
            warnings.warn(
                f"{self!r}: could not start the writer process ({error}); the log is"
                " written from a thread of this process instead",
                RuntimeWarning,
                stacklevel=3,
            )
        self._writer_written = self._writer_dropped = 0

    def reopen_output(self) -> None:
        """Open the log again (and a writer process) for entries logged after close()."""
        self._log = self._open_log()
        if self._use_writer:
            self._start_writer()

    def _open_log(self) -> GzlogAppender:
        """Open the log quickly (header and uncompressed tail checked), creating it if needed."""
        return GzlogAppender(
            self.filename,
            compression_level=self._compression_level,
            lock_timeout=self.lock_timeout,
            report=self.report,
        )

    @property
    def _gzlog(self) -> Gzlog:
        """The engine this process writes with (faults are injected into it in tests)."""
        return self._log.gzlog

    def verify(self) -> None:
        """Verify the whole log now; a damaged one is moved aside and a new log started.

        Done automatically once before the first append of each process (in the
        writer process when there is one), so calling it is never necessary.
        Raises :class:`~mimir.gzlog.GzlogError` if the log cannot be read.
        """
        self._log.verify()

    def write_batch(self, data: bytes | bytearray) -> None:
        """Hand ``data`` to the writer process, or append it here; on failure keep the rest.

        Here, a failed append leaves in ``data`` only what did not reach the log (see
        :meth:`GzlogAppender.write <mimir.files._sink.GzlogAppender.write>`), so a retry
        never writes an entry twice and never skips one.
        """
        self._handed_over = False
        if self._writer is not None:
            try:
                self._writer.append(data)
                self._handed_over = True
                return
            except WriterProcessError:
                self._writer_failed()  # then write this batch here
            finally:
                self._take_writer_counts()
        log = self._log
        repeated = log.failing
        try:
            log.write(data)
        except GzlogError:
            if repeated:
                self._write_failing = True  # this failure streak was already reported
            raise

    def batch_written(self, count: int) -> None:
        """Count a batch as written, unless the writer process took it: it counts its own."""
        if not self._handed_over:
            self.written += count

    def _take_writer_counts(self) -> None:
        """Add what the writer process wrote and dropped since the last call (I/O lock held)."""
        writer = self._writer
        if writer is None:
            return
        with self._buffer_lock:  # callers count their drops under it too
            self.written += writer.written - self._writer_written
            self.dropped += writer.dropped - self._writer_dropped
        self._writer_written = writer.written
        self._writer_dropped = writer.dropped

    @property
    def pending_entries(self) -> int:
        """Entries logged but neither written nor dropped yet, the writer process's included."""
        writer = self._writer
        if writer is None:
            return super().pending_entries
        not_taken = writer.written - self._writer_written + writer.dropped - self._writer_dropped
        return super().pending_entries + writer.pending + not_taken

    def flush(self) -> None:
        """Write everything buffered so far; with a writer process, wait until it has."""
        super().flush()
        self._ask_writer("sync")

    def compress(self) -> None:
        """Commit what is buffered, then compress the log's uncompressed tail now."""
        super().flush()
        if not self._ask_writer("compress"):
            with self._io_lock:
                self._log.compress()

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
        self._take_writer_counts()
        return True

    def _writer_failed(self) -> None:
        """The writer process keeps dying: report it and write from this process from now on."""
        self._take_writer_counts()
        self.report(
            f"{self!r}: the writer process keeps exiting; the log is written from a thread"
            " of this process from now on"
        )
        self._writer = None

    def state(self) -> GzlogState:
        """The log's current gzlog state (``stored_bytes`` is the uncompressed tail)."""
        return self._log.state()

    @property
    def writer_pid(self) -> int | None:
        """The pid of the writer process, or None (no writer process, or closed)."""
        return self._writer.pid if self._writer is not None else None

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        if self._writer is not None:
            self._writer.forget()  # the child's first batch starts a writer of its own

    def close_output(self) -> None:
        """Have the writer process close the log, or compress its tail here; then release it.

        The tail is not compressed while entries are still unwritten (writes failing).
        """
        compress = False
        try:
            if self._writer_does("close"):
                self._writer = None
            else:
                compress = not self._batches
        except Exception:
            if not self._log.failing:
                self.report(
                    f"{self!r}: could not compress the log's tail at close (the log stays valid)"
                )
        finally:
            self._log.close(compress=compress)

    def __repr__(self) -> str:
        return log_name(self.filename)
