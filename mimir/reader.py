"""Reading logs back: ``mimir.load`` and ``mimir.open``."""

from __future__ import annotations

import gzip
import io
import json
import os
import time
import zlib
from collections.abc import Iterator
from typing import IO, Any

from mimir.gzlog import HEADER as GZLOG_HEADER

__all__ = ["LogReader", "MalformedLogError", "iter_lines", "load", "open_log"]


class MalformedLogError(ValueError):
    """A log holds something that is not a JSON entry; says which file and line."""

    def __init__(self, filename: str, lineno: int, reason: str) -> None:
        super().__init__(f"{filename}, line {lineno}: {reason}")
        self.filename = filename
        self.lineno = lineno


_SNAPSHOT_TRIES = 20


def _read_gzlog_snapshot(filename: str) -> bytes:
    """The bytes of a gzlog file, read while no Mímir writer is changing it.

    Mímir's writers hold an exclusive ``flock`` on ``P.lock.k`` during every
    append and compression; a shared lock on it (when it exists and is readable,
    waiting at most about a second) gives a consistent copy.
    """
    lock_fd = -1
    try:
        lock_fd = os.open(
            filename[:-3] + ".lock.k", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        )
    except (OSError, ValueError):
        pass
    try:
        if lock_fd >= 0:
            import fcntl

            deadline = time.monotonic() + 1.0
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break  # read anyway; the CRC check below catches a torn copy
                    time.sleep(0.002)
                except OSError:
                    break
        with io.open(filename, "rb") as file:  # noqa: UP020
            return file.read()
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)  # also drops the flock


def _verified_gzip(data: bytes) -> bool:
    """Whether ``data`` decompresses completely with a matching CRC and length."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as file:
            while file.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error):
        return False
    return True


def _open_binary(filename: str) -> IO[bytes]:
    raw = io.open(filename, "rb")  # noqa: SIM115, UP020 (returned open; this module has its own open)
    head = raw.peek(16)[:16]
    if head == GZLOG_HEADER and filename.endswith(".gz"):
        # A gzlog may be appended to or compressed in place while we read: read a
        # consistent copy (retrying a torn one) so that no entry is ever torn or invented.
        raw.close()
        data = b""
        for attempt in range(_SNAPSHOT_TRIES):
            data = _read_gzlog_snapshot(filename)
            if _verified_gzip(data):
                break
            time.sleep(min(0.001 * 2**attempt, 0.05))
        return gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")  # type: ignore[return-value]
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def _complete_lines(file: IO[bytes], path: str) -> Iterator[tuple[int, bytes]]:
    lineno = 0
    try:
        for line in file:
            lineno += 1
            if not line.endswith(b"\n"):
                return  # still being written
            if line.strip():
                yield lineno, line
    except EOFError:
        return  # compressed stream not finished yet: the complete lines were given
    except (gzip.BadGzipFile, zlib.error) as error:
        raise MalformedLogError(
            path, lineno + 1, f"damaged compressed data ({error}); `gzip -t` confirms"
        ) from error


def iter_lines(filename: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, line)`` for each complete, non-blank line of a log.

    Works on plain and gzip-compressed files, recognised by their content. A last
    line without its newline, or the end of a compressed stream that is still being
    written, is an entry not yet complete: it is left out.
    """
    path = os.fspath(filename)
    with _open_binary(path) as file:
        yield from _complete_lines(file, path)


class LogReader:
    """Iterates over the entries of a log, lazily; use as a context manager.

    >>> with mimir.open("run.jsonl") as entries:  # doctest: +SKIP
    ...     for entry in entries:
    ...         print(entry["training_error"])
    """

    def __init__(self, filename: str | os.PathLike[str], **json_kwargs: Any) -> None:
        self.filename = os.fspath(filename)
        self.json_kwargs = json_kwargs
        self._file: IO[bytes] | None = _open_binary(self.filename)

    def __iter__(self) -> Iterator[Any]:
        if self._file is None:
            raise ValueError(f"the log reader for {self.filename} is closed")
        loads = json.loads
        kwargs = self.json_kwargs
        for lineno, line in _complete_lines(self._file, self.filename):
            try:
                yield loads(line, **kwargs)
            except ValueError as error:
                raise MalformedLogError(
                    self.filename, lineno, f"not a JSON entry ({error}): {line[:80]!r}"
                ) from error

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_log(filename: str | os.PathLike[str], **json_kwargs: Any) -> LogReader:
    """Open a log (``.jsonl`` or ``.jsonl.gz``) to iterate over its entries lazily.

    ``json_kwargs`` go to :func:`json.loads` (``object_hook=``, ``parse_float=`` ...).
    A malformed line raises :class:`MalformedLogError` with the file and line number.
    """
    return LogReader(filename, **json_kwargs)


def load(filename: str | os.PathLike[str], **json_kwargs: Any) -> list[Any]:
    """Return all complete entries of a log as a list (see :func:`open_log`)."""
    with open_log(filename, **json_kwargs) as entries:
        return list(entries)
