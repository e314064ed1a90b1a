"""Plain line-delimited JSON files."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
import warnings

from mimir._buffered import BufferedHandler
from mimir.gzlog import file_kind

__all__ = ["JSONLFileHandler", "open_for_append", "require_directory"]

_CHUNK = 1 << 16


def _start_of_last_line(filename: str, size: int) -> int:
    """Offset just after the last newline among the first ``size`` bytes (0 if none)."""
    with open(filename, "rb") as file:
        end = size
        while end > 0:
            start = max(0, end - _CHUNK)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


def require_directory(path: str) -> None:
    """Raise a :class:`FileNotFoundError` saying what to do if ``path``'s directory is missing."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            2,
            f"cannot create log file: directory {directory!r} does not exist; create it first",
            path,
        )


def not_a_regular_file(path: str, mode: int) -> OSError:
    """The error for a log path that names something other than a regular file."""
    return OSError(
        errno.EINVAL,
        f"cannot open log file {path!r}: it is {file_kind(mode)}, not a regular file;"
        " give the path of a regular file (or of one to create)",
        path,
    )


def open_for_append(filename: str | os.PathLike[str]) -> int:
    """Open ``filename`` for appending (created if missing) and return the descriptor.

    Raises an :class:`OSError` whose message says what to fix when the directory
    does not exist, the file cannot be written, or the path names something other
    than a regular file (a FIFO is refused at once, never waited on).
    """
    path = os.fspath(filename)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        require_directory(path)
        raise
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO with no reader, a directory
            raise not_a_regular_file(path, os.stat(path).st_mode) from None
        raise type(error)(
            error.errno,
            f"cannot open log file for appending ({error.strerror}); "
            "check the path and its permissions",
            path,
        ) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_a_regular_file(path, mode)
    os.set_blocking(fd, True)
    return fd


def _create_exclusive(prefix: str) -> tuple[str, int]:
    """Create a new file named ``prefix`` (or ``prefix-N``), never following a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for n in range(1000):
        name = prefix if n == 0 else f"{prefix}-{n}"
        try:
            return name, os.open(name, flags, 0o644)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name to move a torn line to", prefix)


class JSONLFileHandler(BufferedHandler):
    """Appends entries to a plain ``.jsonl`` file, one JSON object per line.

    Entries are buffered in memory and written in batches (one system call per
    batch) by a background thread at least every ``flush_interval`` seconds, and
    on :meth:`flush`, :meth:`close` and interpreter exit. An existing file is
    appended to, never truncated (but for a torn last line left by a crash, which is
    moved aside with a warning). A missing directory or an unwritable path is an
    :class:`OSError` at construction. If a write fails half-way, the file is cut
    back to its last complete line and the batch is retried, so the file never
    holds a partial entry of its own making.

    Other processes may append to the same file: each batch is one ``O_APPEND``
    write of complete lines.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        flush_interval: float = 1.0,
        flush_bytes: int = 1 << 20,
        max_buffer_bytes: int = 256 << 20,
        level: int | str = logging.NOTSET,
    ) -> None:
        self.filename = os.path.abspath(os.fspath(filename))
        self._fd = open_for_append(self.filename)
        try:
            super().__init__(flush_interval, flush_bytes, max_buffer_bytes, level)
        except BaseException:
            os.close(self._fd)
            raise
        try:
            self._terminate_torn_line()
        except BaseException:
            self.abandon()
            os.close(self._fd)
            self._fd = -1
            raise

    def _terminate_torn_line(self) -> None:
        """Deal with a last line that lacks its newline before appending after it.

        A complete JSON value (a file written by another tool) just gets its newline.
        Anything else is a write cut short by a crash: it is moved to
        ``<filename>.torn-<time>`` and cut from the log, with a warning, so that the
        log stays readable and nothing is thrown away.
        """
        size = os.fstat(self._fd).st_size
        start = _start_of_last_line(self.filename, size)
        if start == size:
            return  # empty, or ends with a newline
        with open(self.filename, "rb") as file:
            file.seek(start)
            fragment = file.read(size - start)
        try:
            json.loads(fragment)
        except (ValueError, RecursionError):
            aside, fd = _create_exclusive(f"{self.filename}.torn-{time.strftime('%Y%m%dT%H%M%S')}")
            with open(fd, "wb") as file:
                file.write(fragment)
                file.flush()
                os.fsync(file.fileno())
            os.ftruncate(self._fd, start)
            warnings.warn(
                f"{self.filename} ended with an incomplete entry of {len(fragment)} bytes "
                f"(a write cut short by a crash?); it was moved to {aside}",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            os.write(self._fd, b"\n")

    def write_batch(self, data: bytearray) -> None:
        """Append ``data`` with as few writes as possible; undo a partial write on failure."""
        fd = self._fd
        start = os.fstat(fd).st_size
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
        except OSError:
            if written and os.fstat(fd).st_size == start + written:
                os.ftruncate(fd, start)  # nobody else appended meanwhile: remove our fragment
            raise

    def close_output(self) -> None:
        """Close the file."""
        os.close(self._fd)
        self._fd = -1

    def reopen_output(self) -> None:
        """Open the file again, for appending (an entry came after close())."""
        self._fd = open_for_append(self.filename)

    def __repr__(self) -> str:
        return f"<JSONLFileHandler {self.filename}>"
