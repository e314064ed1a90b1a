"""Reading logs back: ``mimir.load`` and ``mimir.open``.

Readers tell a log that is being written from one that is damaged or truncated,
and never give out a line that is not in the log:

* a plain ``.jsonl`` may end in a torn line (a write in progress): it is left out;
* a gzip file (a gzlog, which is one at every moment, or any other) must be
  complete. Its data is checked (the CRC-32 and length of every member) before
  any line of it is given out. A stream that ends early, bad data, a checksum
  that does not match, bytes after the end or a damaged header raise
  :class:`DamagedLogError` after the readable prefix: what a cut file holds up
  to the cut, and of a damaged file only the data a checksum covers.
  ``errors="partial"`` returns that prefix with a :class:`PartialReadWarning`
  instead;
* anything but a regular file (FIFO, device, socket, directory) is refused at
  once, without blocking.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import sys
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from mimir.gzlog import DEFLATE_START as GZLOG_HEAD_SIZE
from mimir.gzlog import HEADER as GZLOG_HEADER
from mimir.gzlog import file_kind, parse_state, read_snapshot

try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - orjson is a dependency, kept optional for odd platforms
    _orjson_loads = None

__all__ = [
    "DamagedLogError",
    "LogReader",
    "MalformedLogError",
    "PartialReadWarning",
    "iter_lines",
    "load",
    "loads_line",
    "open_log",
    "open_regular_file",
    "parse_line",
]

_ERRORS = ("strict", "partial")
_GZIP_MAGIC = b"\x1f\x8b"
_READ = 1 << 16  # compressed bytes read at a time
_OUT = 1 << 20  # at most this much decompressed data per zlib call
_KEEP = 64 << 20  # decompressed data kept from the checking pass (more: decompressed again)
_PLAIN_READ = 1 << 20
_SNAPSHOT_TRIES = 20


class MalformedLogError(ValueError):
    """A log holds something that is not a JSON entry; says which file and line."""

    def __init__(self, filename: str, lineno: int, reason: str) -> None:
        super().__init__(f"{filename}, line {lineno}: {reason}")
        self.filename = filename
        self.lineno = lineno


class DamagedLogError(MalformedLogError):
    """A log is damaged or truncated: its data cannot all be read, or not trusted.

    The message names the file, the place (a byte offset in the file where known)
    and how many entries could be read before it. Attributes: ``filename``,
    ``offset`` (byte offset in the file, or None), ``lineno`` (the first line that
    could not be read), ``entries_read`` (entries before it, which
    ``errors="partial"`` returns) and ``reason``.
    """

    def __init__(
        self,
        filename: str,
        reason: str,
        *,
        offset: int | None = None,
        lineno: int = 1,
        entries_read: int = 0,
    ) -> None:
        if entries_read:
            comes, them = ("comes", "it") if entries_read == 1 else ("come", "them")
            read = (
                f"{_entries(entries_read)} (up to line {lineno - 1:,}) {comes} before it:"
                f" errors='partial' returns {them}"
            )
        else:
            read = "no entry could be read before it"
        ValueError.__init__(self, f"{filename}: {reason}; {read}")
        self.filename = filename
        self.reason = reason
        self.offset = offset
        self.lineno = lineno
        self.entries_read = entries_read

    def __reduce__(self) -> tuple[Any, ...]:
        keywords = {"offset": self.offset, "lineno": self.lineno, "entries_read": self.entries_read}
        return (_rebuild_damaged, (self.filename, self.reason, keywords))


def _rebuild_damaged(filename: str, reason: str, keywords: dict[str, Any]) -> DamagedLogError:
    return DamagedLogError(filename, reason, **keywords)


class PartialReadWarning(UserWarning):
    """``errors="partial"`` left out the damaged or missing end of a log.

    ``error`` is the :class:`DamagedLogError` that ``errors="strict"`` raises.
    """

    def __init__(self, message: str, error: DamagedLogError) -> None:
        super().__init__(message)
        self.error = error


def _entries(count: int) -> str:
    return f"{count:,} {'entry' if count == 1 else 'entries'}"


def _check_errors(errors: str) -> None:
    if errors not in _ERRORS:
        raise ValueError(f"errors must be 'strict' or 'partial', not {errors!r}")


# -- opening -------------------------------------------------------------------------------


def _not_regular(path: str, mode: int) -> OSError:
    message = f"{path} is {file_kind(mode)}, not a regular file; nothing was read"
    return IsADirectoryError(message) if stat.S_ISDIR(mode) else OSError(message)


def open_regular_file(filename: str | os.PathLike[str]) -> IO[bytes]:
    """Open a file for reading bytes; anything but a regular file is refused at once.

    The file is opened without blocking (a FIFO without a writer would block an
    ordinary open forever) and checked on the open descriptor, so that nothing
    swapped in under the name after a check is read. A FIFO, device, socket or
    directory raises :class:`OSError` (:class:`IsADirectoryError` for a directory).
    """
    path = os.fspath(filename)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket cannot be opened
            try:
                mode = os.stat(path).st_mode
            except OSError:
                raise error from None
            if not stat.S_ISREG(mode):
                raise _not_regular(path, mode) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        os.set_blocking(fd, True)
        return io.open(fd, "rb")  # noqa: UP020 (this module defines its own open)
    except BaseException:
        os.close(fd)
        raise


# -- checking and decompressing gzip data ----------------------------------------------------


class _Damage(Exception):
    """Where and why a gzip stream cannot be read further (internal)."""

    def __init__(self, reason: str, offset: int | None, truncated: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.truncated = truncated  # the input just ran out: what came before is genuine


@dataclass
class _Scan:
    """What a checking pass over gzip data found."""

    produced: int = 0  # bytes of data decompressed before the failure (all, without one)
    verified: int = 0  # of those, bytes a checksum vouches for
    failure: _Damage | None = None
    kept: list[bytes] | None = field(default_factory=list)  # the data, while small enough
    kept_size: int = 0

    @property
    def readable(self) -> int:
        """Bytes of data that can be given out: a cut file's prefix, else the checked part."""
        if self.failure is None or self.failure.truncated:
            return self.produced
        return self.verified


def _zlib_message(error: zlib.error) -> str:
    return str(error).split(": ", 1)[-1]


def _error_position(backup: Any, data: bytes, member: _Member) -> int:
    """Index of the byte of ``data`` at which zlib reports the error (``backup``: the state
    before it); the data decompressed before that byte goes to ``member``."""
    position = 0
    step = 4096
    while position < len(data):
        trial = backup.copy()
        try:
            out = trial.decompress(data[position : position + step])
        except zlib.error:
            if step == 1:
                return position
            step = 1
            continue
        member.take(out)
        backup = trial
        position += step
    return max(len(data) - 1, 0)


def _damage_reason(error: zlib.error, at: int, verified_note: str) -> str:
    text = _zlib_message(error)
    if text in ("incorrect data check", "incorrect length check"):
        what = "CRC-32" if "data" in text else "length"
        return (
            f"damaged: the data does not match the {what} in its gzip trailer (at byte {at:,})"
            f"{verified_note}"
        )
    if "header" in text or "unknown compression method" in text:
        return f"damaged gzip header (at byte {at:,}: {text}){verified_note}"
    return f"damaged compressed data at byte {at:,} ({text}){verified_note}"


def _verified_note(member_verified: int, members: int) -> str:
    if member_verified:
        return (
            f"; the first {member_verified:,} bytes of data match the checksum in the gzlog"
            " header, nothing after them can be verified"
        )
    earlier = " (the gzip members before it are intact)" if members else ""
    return f"; no entry of this gzip member can be verified{earlier}"


_MAX_RATIO = 1032  # deflate never expands data more than this


def _ran_out(
    end: int, size: int, tail: bytes, guess_cut: bool, member_verified: int, members: int
) -> _Damage:
    """The damage of a gzip member of ``size`` bytes whose data breaks off at the end of the file.

    A cut file is truncated: what came before the cut is genuine. But a bit flip
    can also make zlib read garbage up to the end of a complete file; such a file
    still ends with the 8-byte trailer of its member, whose length field is then
    no more than deflate can expand ``size`` bytes to. An end that looks like that
    is taken for damage, so that no garbage is ever given out (a cut file mistaken
    for it only gives fewer entries).
    """
    if guess_cut and size >= 20 and int.from_bytes(tail[-4:], "little") <= _MAX_RATIO * size:
        return _Damage(
            f"damaged: the compressed data breaks off at byte {end:,}, the end of the file,"
            " which ends like a complete gzip member (not a file cut short)"
            + _verified_note(member_verified, members),
            end,
            truncated=False,
        )
    return _Damage(
        f"truncated: the compressed data ends early, at byte {end:,} (the end of the file:"
        " a copy or transfer cut short?)",
        end,
        truncated=True,
    )


def _only_zeros(first: bytes, file: IO[bytes]) -> bool:
    """Whether ``first`` and the rest of ``file`` are zero bytes (padding gzip allows)."""
    data = first
    while data:
        if data.strip(b"\0"):
            return False
        data = file.read(_READ)
    return True


class _Member:
    """The data of one gzip member as it is decompressed: its length, and the checkpoints
    it passed."""

    def __init__(self, scan: _Scan, checkpoints: Sequence[tuple[int, int]]) -> None:
        self.scan = scan
        self.checks = [(length, crc) for length, crc in checkpoints if length > 0]
        self.crc = 0
        self.length = 0  # bytes of data so far
        self.verified = 0  # of those, vouched for by a checkpoint

    def take(self, out: bytes) -> None:
        if not out:
            return
        if self.checks:
            for length, expected in self.checks:
                if self.length < length <= self.length + len(out) and (
                    zlib.crc32(out[: length - self.length], self.crc) == expected
                ):
                    self.verified = max(self.verified, length)
            self.crc = zlib.crc32(out, self.crc)
        self.length += len(out)
        scan = self.scan
        if scan.kept is not None:
            scan.kept_size += len(out)
            if scan.kept_size > _KEEP:
                scan.kept = None
            else:
                scan.kept.append(out)


def _scan_gzip(
    file: IO[bytes], checkpoints: Sequence[tuple[int, int]] = (), guess_cut: bool = True
) -> _Scan:
    """Decompress all of ``file`` (one or more gzip members) to check it, keeping no more
    than ``_KEEP`` bytes of the data.

    ``checkpoints``: ``(length, crc)`` pairs that vouch for the first ``length``
    bytes of the first member's data (a gzlog header's ``clen/ccrc`` and
    ``tlen/tcrc``), so that a damaged gzlog's intact part stays readable.
    ``guess_cut``: tell a cut file from a damaged one by its end (see
    :func:`_ran_out`); a gzlog is told by its header instead.
    """
    scan = _Scan()
    read = file.read
    start = 0  # file offset of the member being read
    pending = read(_READ)
    members = 0
    while True:
        while len(pending) < 2 and (more := read(_READ)):
            pending += more
        if members and not pending:
            return scan
        if pending[:2] != _GZIP_MAGIC:
            if members and _only_zeros(pending, file):
                return scan
            if _GZIP_MAGIC.startswith(pending):  # empty, or just b"\x1f"
                what = "the file is empty" if not start + len(pending) else "the file ends"
                scan.failure = _Damage(
                    f"truncated: {what} where a gzip member should start (at byte {start:,})",
                    start + len(pending),
                    truncated=True,
                )
            elif members:
                scan.failure = _Damage(
                    f"damaged: unexpected bytes after the end of the compressed data, at byte"
                    f" {start:,} (not a gzip member)",
                    start,
                    truncated=False,
                )
            else:
                scan.failure = _Damage(
                    "not a gzip file: it does not start with the gzip magic bytes 1f 8b"
                    " (a compressed log always does)",
                    0,
                    truncated=False,
                )
            return scan
        decompressor = zlib.decompressobj(31)
        member = _Member(scan, () if members else checkpoints)
        fed = 0  # bytes of this member consumed
        data, pending = pending, b""
        tail = data[-8:]  # the last bytes read: the trailer, if the member is complete
        need_input = False
        while True:
            if not data and need_input:
                data = read(_READ)
                if not data:
                    scan.produced = scan.verified + member.length
                    scan.verified += member.verified
                    scan.failure = _ran_out(
                        start + fed, fed, tail, guess_cut, member.verified, members
                    )
                    return scan
                tail = (tail + data)[-8:]
            backup = decompressor.copy()
            try:
                out = decompressor.decompress(data, _OUT)
            except zlib.error as error:
                at = start + fed + _error_position(backup, data, member)
                scan.produced = scan.verified + member.length
                scan.verified += member.verified
                note = _verified_note(member.verified, members)
                scan.failure = _Damage(_damage_reason(error, at, note), at, truncated=False)
                return scan
            fed += len(data) - len(decompressor.unconsumed_tail) - len(decompressor.unused_data)
            member.take(out)
            if decompressor.eof:
                scan.verified += member.length
                scan.produced = scan.verified
                start += fed
                pending = decompressor.unused_data
                members += 1
                break
            data = decompressor.unconsumed_tail
            need_input = len(out) < _OUT  # else zlib may hold more output: call again


def _decompress(file: IO[bytes], limit: int) -> Iterator[bytes]:
    """The first ``limit`` bytes of data of a gzip file that :func:`_scan_gzip` checked."""
    left = limit
    file.seek(0)
    decompressor = zlib.decompressobj(31)
    data = b""
    need_input = True
    while left > 0:
        if not data and need_input:
            data = file.read(_READ)
            if not data:
                break
        requested = min(_OUT, left)
        try:
            out = decompressor.decompress(data, requested)
        except zlib.error:
            break
        if out:
            left -= len(out)
            yield out
        if decompressor.eof:
            data = decompressor.unused_data
            decompressor = zlib.decompressobj(31)
            need_input = True
            continue
        data = decompressor.unconsumed_tail
        need_input = len(out) < requested
    if left > 0:
        raise _Damage("the file changed while it was read; read it again", None, truncated=False)


# -- gzlog snapshots --------------------------------------------------------------------------


def _scan_gzlog(data: bytes) -> _Scan:
    """Check a gzlog snapshot; its header tells a cut file from a damaged one."""
    if data[:16] != GZLOG_HEADER:  # replaced by something else since it was opened
        return _scan_gzip(io.BytesIO(data))
    state = parse_state(data)
    if state is None:
        scan = _Scan()
        scan.failure = _Damage(
            f"truncated: the file is {len(data):,} bytes, less than the"
            f" {GZLOG_HEAD_SIZE}-byte header of a gzlog",
            len(data),
            truncated=True,
        )
        return scan
    checksums = ((state.clen, state.ccrc), (state.tlen, state.tcrc))
    scan = _scan_gzip(io.BytesIO(data), checksums, guess_cut=False)
    failure = scan.failure
    if failure is None:
        return scan
    expected = state.expected_size
    if failure.truncated and len(data) < expected:
        failure.reason = (
            f"truncated: the file is {len(data):,} bytes, its gzlog header says {expected:,}"
            " (a copy or transfer cut short?)"
        )
    elif failure.truncated:
        failure.truncated = False
        failure.reason = (
            f"damaged: the compressed data ends early, at byte {len(data):,}, although the"
            f" file is as long as its gzlog header says{_verified_note(scan.verified, 0)}"
        )
    operation = state.op_name
    if operation != "none":
        article = "an" if operation == "append" else "a"
        failure.reason = (
            f"a writer was interrupted during {article} {operation} ({failure.reason});"
            " `mimir check` on the file finishes the operation (so does the next writer)"
        )
    return scan


def _read_whole(filename: str) -> bytes:
    """The whole content of a regular file."""
    with open_regular_file(filename) as file:
        return file.read()


def _gzlog_snapshot(filename: str) -> tuple[bytes, _Scan]:
    """A consistent copy of a gzlog and its check, retrying a copy torn by a writer at work."""
    previous: bytes | None = None
    scan = _Scan()
    data = b""
    for attempt in range(_SNAPSHOT_TRIES):
        data, quiet = read_snapshot(filename, lambda: _read_whole(filename))
        if data != previous:
            scan = _scan_gzlog(data)
            previous = data
        if scan.failure is None or quiet:
            break
        time.sleep(min(0.001 * 2**attempt, 0.05))
    return data, scan


# -- lines --------------------------------------------------------------------------------------


class _Opened:
    """A log opened for reading: a plain file, a gzip file, or a checked gzlog snapshot."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.scan: _Scan | None = None
        file = open_regular_file(path)
        try:
            head = file.read(16)
            file.seek(0)
        except BaseException:
            file.close()
            raise
        self.compressed = head[:2] == _GZIP_MAGIC or path.endswith(".gz")
        if head == GZLOG_HEADER and path.endswith(".gz"):
            # A gzlog may be appended to or compressed in place while we read: read a
            # consistent copy (retrying a torn one) so that no entry is torn or invented.
            file.close()
            data, self.scan = _gzlog_snapshot(path)
            file = io.BytesIO(data)
        elif head == GZLOG_HEADER:
            # A gzlog under another name (moved aside as .corrupt-<time>, a backup):
            # nobody writes it, but its header still vouches for its compressed part.
            with file:
                data = file.read()
            self.scan = _scan_gzlog(data)
            file = io.BytesIO(data)
        self.file: IO[bytes] = file

    def data(self) -> Iterator[bytes]:
        """The readable data, in pieces; then :class:`_Damage` if there is more that is not."""
        if not self.compressed:
            read = self.file.read
            while chunk := read(_PLAIN_READ):
                yield chunk
            return
        scan = self.scan if self.scan is not None else _scan_gzip(self.file)
        if scan.failure is not None and scan.failure.truncated and scan.readable > scan.verified:
            _distrust_garbage(scan)
        left = scan.readable
        if scan.kept is not None:
            for piece in scan.kept:
                if left <= 0:
                    break
                yield piece[:left] if len(piece) > left else piece
                left -= len(piece)
        else:
            yield from _decompress(self.file, left)
        if scan.failure is not None:
            raise scan.failure

    def close(self) -> None:
        self.file.close()
        self.scan = None


def _distrust_garbage(scan: _Scan) -> None:
    """Shorten the unchecked prefix of a cut gzip file to its JSON lines.

    No checksum vouches for the data before a cut. A cut file's data is genuine,
    but garbage that happens to start like gzip data is not: the unchecked lines
    are given out only as far as each is a JSON object or array, as log lines are.
    Too much data to keep in memory is not looked at.
    """
    if scan.kept is None or scan.failure is None:
        return
    data = b"".join(scan.kept)[: scan.produced]
    scan.kept = [data]
    position = data.rfind(b"\n", 0, scan.verified) + 1  # the first line not checked
    end = data.rfind(b"\n") + 1
    for line in data[position:end].split(b"\n")[:-1]:
        stripped = line.strip()
        if stripped:
            try:
                json.loads(stripped)
                good = stripped[:1] in (b"{", b"[")
            except (ValueError, RecursionError):
                good = False
            if not good:
                scan.produced = position
                scan.failure.reason += (
                    f"; byte {position:,} of the data before the cut does not start a JSON"
                    " line, so nothing from there on can be trusted"
                )
                return
        position += len(line) + 1


def _warn(warning: Warning) -> None:
    """Issue ``warning`` for the first caller outside this module."""
    frame = sys._getframe(0)
    level = 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(warning, stacklevel=level)


def _lines(opened: _Opened, errors: str, torn: bool) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` for each complete, non-blank line that can be read."""
    lineno = entries = 0
    parts: list[bytes] = []  # the start of a line not complete yet
    try:
        for chunk in opened.data():
            if b"\n" not in chunk:
                parts.append(chunk)
                continue
            if parts:
                parts.append(chunk)
                chunk = b"".join(parts)
                parts = []
            lines = chunk.split(b"\n")
            rest = lines.pop()
            for line in lines:
                lineno += 1
                if line.strip():
                    entries += 1
                    yield lineno, line + b"\n"
            if rest:
                parts.append(rest)
    except _Damage as damage:
        error = DamagedLogError(
            opened.path,
            damage.reason,
            offset=damage.offset,
            lineno=lineno + 1,
            entries_read=entries,
        )
        if errors == "strict":
            raise error from None
        _warn(
            PartialReadWarning(
                f"{opened.path}: read {_entries(entries)} and left out the rest: {damage.reason}",
                error,
            )
        )
        return
    finally:
        opened.close()
    if torn and parts:
        yield lineno + 1, b"".join(parts)


def iter_lines(
    filename: str | os.PathLike[str], errors: str = "strict", *, torn: bool = False
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line number, line)`` for each complete, non-blank line of a log.

    Plain and gzip-compressed files are recognised by their content (a name ending
    in ``.gz`` must be gzip). A last line without its newline is an entry still
    being written: it is left out, unless ``torn`` is true (then it comes last,
    without a newline). The lines of a gzip file are given out only once its
    checksums are checked; a damaged or truncated file raises
    :class:`DamagedLogError` after its readable lines (``errors="strict"``), or
    ends there with a :class:`PartialReadWarning` (``errors="partial"``).
    """
    _check_errors(errors)
    return _iter_lines(os.fspath(filename), errors, torn)


def _iter_lines(path: str, errors: str, torn: bool) -> Iterator[tuple[int, bytes]]:
    yield from _lines(_Opened(path), errors, torn)


def _malformed(filename: str, lineno: int, line: bytes, error: BaseException) -> MalformedLogError:
    if isinstance(error, RecursionError):
        reason = "not a JSON entry (nested too deeply to parse)"
    else:
        reason = f"not a JSON entry ({error})"
    return MalformedLogError(filename, lineno, f"{reason}: {line[:80]!r}")


#: orjson reads integers of 2**63 and more as floats: lines holding such a float are
#: read again by :mod:`json`, which keeps the integer exact.
_INT63 = float(1 << 63)


def loads_line(line: bytes) -> Any:
    """``json.loads(line)``, the same values, faster: orjson where it gives them.

    orjson refuses NaN and the infinities (which Mímir writes as ``NaN``,
    ``Infinity``): such lines are read by :mod:`json`; so are those where orjson
    gives a float of 2**63 or more at the top level, which may be an integer of more
    than 64 bits that :mod:`json` reads exactly. Errors are those of :mod:`json`.
    """
    if _orjson_loads is not None:
        try:
            entry = _orjson_loads(line)
        except ValueError:
            return json.loads(line)
        if type(entry) is dict:
            for value in entry.values():
                if type(value) is float and not -_INT63 < value < _INT63:
                    return json.loads(line)
        return entry
    return json.loads(line)


def parse_line(line: bytes, filename: str = "<log>", lineno: int = 0, **json_kwargs: Any) -> Any:
    """The entry of one line of a log; :class:`MalformedLogError` if it is not JSON.

    Deep nesting is a :class:`MalformedLogError` too, never a ``RecursionError``.
    """
    try:
        return json.loads(line, **json_kwargs)
    except (ValueError, RecursionError) as error:
        raise _malformed(filename, lineno, line, error) from error


# -- entries ------------------------------------------------------------------------------------


class LogReader:
    """Iterates over the entries of a log, lazily; use as a context manager.

    >>> with mimir.open("run.jsonl") as entries:  # doctest: +SKIP
    ...     for entry in entries:
    ...         print(entry["training_error"])

    The file is opened (and a FIFO or device refused) when the reader is made.
    A damaged or truncated log gives its readable entries, then raises
    :class:`DamagedLogError`, or with ``errors="partial"`` stops there with a
    :class:`PartialReadWarning`.
    """

    def __init__(
        self, filename: str | os.PathLike[str], errors: str = "strict", **json_kwargs: Any
    ) -> None:
        _check_errors(errors)
        self.filename = os.fspath(filename)
        self.errors = errors
        self.json_kwargs = json_kwargs
        self._lines: Iterator[tuple[int, bytes]] | None = None
        self._opened = _Opened(self.filename)
        self._lines = _lines(self._opened, errors, False)

    def __iter__(self) -> Iterator[Any]:
        lines = self._lines
        if lines is None:
            raise ValueError(f"the log reader for {self.filename} is closed")
        loads = json.loads
        kwargs = self.json_kwargs
        for lineno, line in lines:
            try:
                yield loads(line, **kwargs)
            except (ValueError, RecursionError) as error:
                raise _malformed(self.filename, lineno, line, error) from error

    def close(self) -> None:
        """Close the file."""
        lines, self._lines = getattr(self, "_lines", None), None
        if lines is not None:
            lines.close()  # type: ignore[attr-defined]
            self._opened.close()  # if it was never iterated

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_log(
    filename: str | os.PathLike[str], errors: str = "strict", **json_kwargs: Any
) -> LogReader:
    """Open a log (``.jsonl`` or ``.jsonl.gz``) to iterate over its entries lazily.

    ``json_kwargs`` go to :func:`json.loads` (``object_hook=``, ``parse_float=`` ...).
    A malformed line raises :class:`MalformedLogError` with the file and line number.
    A damaged or truncated log yields the entries that can be read, then raises
    :class:`DamagedLogError`; with ``errors="partial"`` it stops there and issues a
    :class:`PartialReadWarning` saying what was left out and why.
    """
    return LogReader(filename, errors, **json_kwargs)


def load(filename: str | os.PathLike[str], errors: str = "strict", **json_kwargs: Any) -> list[Any]:
    """Return all complete entries of a log as a list (see :func:`open_log`).

    A damaged or truncated log raises :class:`DamagedLogError` (its
    ``entries_read`` says how many entries come before the damage);
    ``errors="partial"`` returns those entries with a :class:`PartialReadWarning`.
    """
    with open_log(filename, errors, **json_kwargs) as entries:
        return list(entries)
