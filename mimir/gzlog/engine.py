"""The gzlog file-format engine: crash-safe appends to one ``.gz`` file.

This module implements the on-disk format and recovery protocol of zlib's
``examples/gzlog.c`` (version 2.3), as described in ``gzlog-format.md``, in
pure Python. It is a file format, not a logging component: it knows nothing
about records, lines or JSON, only about bytes.

After every completed operation the ``.gz`` file is a complete, valid gzip
file. Appends are written as stored deflate blocks; when the stored tail
reaches 1 MiB it is compressed in place, with the last 32 KiB of earlier data
as preset dictionary. Every step can be interrupted; the next opener finishes
or rolls back the interrupted operation.

Python's :mod:`zlib` has no ``deflatePrime``, and deflate pads the stored
blocks it emits for incompressible data to byte boundaries counted from the
start of its output. So a compression whose data would begin off a byte
boundary first writes an empty, non-final stored block where the old first
stored block's header began (the earlier bits of that byte are kept); the
compressed data then begins on the byte boundary after it. It inflates to
nothing, and the C program never reads the compressed part.

Files, for ``Gzlog("run.jsonl.gz")`` (base ``P = run.jsonl``):

=================  ==========================================================
``P.gz``           the log
``P.add``          bytes of the operation in progress
``P.dict``         last (up to) 32 KiB of the compressed data
``P.temp``         the next dictionary, during a compression
``P.lock``         the gzlog lock (exclusive create, content ``"host pid"``)
``P.lock.new``     the content of ``P.lock``, staged and hard-linked into place
``P.lock.k``       Mímir's kernel lock (``fcntl.flock``), never deleted
``P.repairs``      one line per recovery step, as the C program writes them
``P.gz.new``       scratch file used only while creating a new, empty log
=================  ==========================================================

Locking
-------
An operation first takes an exclusive ``flock`` on ``P.lock.k``, a sibling
file that is created once and never deleted (flocking ``P.lock`` itself does
not work: a waiter could end up holding a lock on an unlinked inode after the
owner deletes and a third process re-creates the file). Holding that kernel
lock, it then creates ``P.lock`` exclusively, for compatibility with the C
program: ``"host pid"`` is written to ``P.lock.new`` and hard-linked to
``P.lock`` (``link`` fails if it exists, like O_CREAT|O_EXCL, and a process
killed at any moment never leaves an empty, ownerless ``P.lock``; where hard
links are not supported, O_CREAT|O_EXCL|O_NOFOLLOW and a write). On release,
``P.lock`` is unlinked (only if it is still ours) before the kernel lock is
dropped. So a ``P.lock`` that names this host while we hold the kernel lock
can only be left over by a dead process, and is taken over at once. Any other
``P.lock`` (the C program's empty one, another host's) is stale once its
mtime is older than ``stale_after`` seconds (300, as in the C program).
Waiting polls with sleeps of 2 to 50 ms up to ``lock_timeout`` seconds
(``None``: forever). A wait longer than ``lock_warning_after`` seconds (2)
issues one :class:`GzlogWarning` naming the holder (``host H pid P``, an empty
lock file as zlib's gzlog leaves, or another Mímir process holding
``P.lock.k``), how long ago the lock was last touched, and when it will be
taken over (never, for the kernel lock of a live process); the timeout raises
:class:`GzlogError` (``ETIMEDOUT``) saying the same and what to do. The lock
is held only inside one call (``append``,
``compress``, opening), so several processes can share one log. Before every
state write the lock file is checked to be ours (inode and mtime), and
touched when its last touch is a second old or more.

Durability
----------
``P.add`` and ``P.temp`` are fsynced, and the directory too, before the state
is marked for an append or a compression; ``P.gz`` is fsynced before and after
every 35-byte state write (the commit point); the directory is fsynced after
``P.temp`` is renamed to ``P.dict`` and before the state says the operation
is over. The unlink of ``P.add`` after a committed append is not followed by
a directory fsync: a resurrected ``P.add`` is ignored while no operation is
marked. Auxiliary files are opened with O_NOFOLLOW: a symbolic link there is
never followed (``P.add``/``P.temp``/``P.repairs`` symlinks are replaced by
regular files while we hold the lock, ``P.dict``/``P.add`` symlinks are
ignored when reading, a symlinked ``P.lock.k`` is refused).

After any error during an operation the in-memory state is dropped; the next
call re-reads and validates the file, recovering if needed. Between calls, the
state is re-read under the lock every time; the stored tail is re-validated
whenever the file's header, size, inode, mtime or ctime differ from what this
instance last committed. Nothing is ever
committed from a failed write: the state write is the only commit point.

Validation
----------
Before anything is written, the file is validated: the 16-byte header, the
reserved flag bits, the pointers (``first``, ``last`` inside the file, the
stored blocks exactly 16389 bytes apart, ``stored <= 16384``), every stored
block header (BFINAL, BTYPE, zero padding, LEN/NLEN), the CRC and length of
the stored tail combined with ``ccrc``/``clen`` against ``tcrc``/``tlen``,
the trailer and the file size. On open (``verify="full"``, the default),
before any recovery and in :func:`check`, the compressed part is also
inflated up to the exact bit where the first stored block begins, and its
CRC and length are compared with ``ccrc``/``clen``: this also proves ``back``
right. A file that fails is renamed to ``P.gz.corrupt-<time>`` (its bytes
untouched) and :class:`GzlogCorruptError` is raised, or with
``on_corrupt="new"`` a :class:`GzlogWarning` is issued and a new, empty log
is started; both carry ``moved_to``. Nothing is ever appended to a file that
failed validation. The new name is taken exclusively: the file is hard-linked
to it (``link`` fails on any existing name, a symlink included) and then
unlinked; where hard links are unsupported, the name is reserved by an
O_CREAT|O_EXCL|O_NOFOLLOW placeholder that the rename then replaces (a rename
replaces a directory entry, it never follows a symlink).

``P.gz`` must be a regular file: a FIFO, device, socket or directory there is
refused at once with :class:`GzlogError` (it is opened with O_NONBLOCK, after
a ``stat``, and checked again with ``fstat``). A symbolic link at ``P.gz`` is
followed (a log may be symlinked on purpose) but its target must be a regular
file; if that log fails validation, the link itself is moved aside and the
new log is a regular file at ``P.gz``.

Recovery outcomes (interrupted operation, auxiliary files tampered with)
-----------------------------------------------------------------------
* append, ``P.add`` intact: the append is redone from step 3, exactly as
  gzlog.c does; the batch is wholly present. The 35-byte state write is the
  commit point, so a state marked for an append always describes the log
  before that append, even when the log already ends with the same bytes (a
  repeated identical line is appended again, never skipped). If ``P.add`` is
  larger than the stored tail may grow (zlib's gzlog.c writes up to about
  3.3 MB per append), the tail is compressed right after the recovered append,
  so the tail is back within :data:`MAX_TAIL` when the recovering call returns.
* append, ``P.add`` missing or empty: the log is restored to its state before
  the append, that batch is lost (:class:`GzlogWarning`). A *truncated*
  ``P.add`` cannot be detected (the format stores no checksum of it); its
  bytes are appended as found. A crash cannot truncate it: it is fsynced
  before the append is marked.
* compress, ``P.add`` missing, truncated or damaged (it is checked against
  ``tcrc``/``tlen``): the stored tail is read back from ``P.gz`` if it has
  not been overwritten yet (nothing lost); otherwise the log is cut back to
  its compressed part and the tail is lost (warning giving the byte count).
  ``P.temp`` is always rewritten from the data, so a missing or truncated
  ``P.temp`` costs nothing.
* replace, ``P.temp`` missing: ``P.dict`` may be stale, so it is deleted.
* A dictionary is used only when it is proven to be the last 32 KiB of the
  compressed data now in the file: the one recovered by a full verification
  (on open, :meth:`Gzlog.verify`, before every recovery), or the one this
  instance produced by its own last compression, with ``ccrc``/``clen`` of the
  file equal to those it was proven for. If other processes compressed since,
  only their new compressed bytes are inflated (from the bit where ours ended,
  with our dictionary) and checked against the new ``ccrc``/``clen``; if that
  fails, or the proof is missing, or ``P.dict`` merely has the right size
  (another run's, an older backup's, the one gzlog.c leaves after a compress
  recovery whose ``P.add`` was gone), the compression runs without one: that
  costs ratio, never correctness. A ``P.dict`` shorter than 32 KiB that holds
  the whole compressed data (its CRC and length are ``ccrc``/``clen``) is
  proven too. After every full verification, ``P.dict`` is rewritten when it
  differs from the verified dictionary (or deleted when nothing is compressed).

Atomicity: one :meth:`Gzlog.append` call of at most 1 MiB is one gzlog append,
wholly present or wholly absent after a crash. Larger calls are split into
appends of 1 MiB, each atomic (the C program's limit of 204 pending stored
blocks forbids larger single appends).

Fault injection
---------------
``hooks`` (a callable, default ``None``; no cost when unused) is called as
``hooks(point, pass_no)`` at each of these points, ``pass_no`` counting from 1
per point and per :class:`Gzlog` instance. An ``OSError`` raised by the hook
behaves like a failed system call; any other exception is treated as the
death of the process at that point (``P.lock`` is left behind).

* ``state.pre`` / ``state.post``: just before / after every state write;
* ``append.add_written`` (``P.add`` and directory fsynced), ``append.marked``
  (C's bail 8), ``append.data`` (after the one write of the data, the headers
  of the blocks it opens and the trailer; bail 1), ``append.block`` (after the
  update of the previous last block's header, bail 2), ``append.trailer``
  (file truncated after the trailer, in a recovery),
  ``append.committed`` (final state written), ``append.add_unlinked``;
* ``compress.add_written``, ``compress.temp_written`` (and directory
  fsynced), ``compress.marked`` (bail 7), ``compress.chunk`` (after each
  chunk of compressed data), ``compress.deflated`` (bail 5),
  ``compress.trailer`` (bail 6);
* ``replace.marked``, ``replace.add_unlinked`` (bail 3),
  ``replace.renamed`` (bail 4, before the directory fsync),
  ``replace.dir_synced``, ``replace.committed``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import socket
import stat
import struct
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import NoReturn

__all__ = [
    "EMPTY_LOG",
    "MAX_APPEND",
    "MAX_TAIL",
    "Gzlog",
    "GzlogCorruptError",
    "GzlogError",
    "GzlogLockWaitWarning",
    "GzlogState",
    "GzlogWarning",
    "check",
    "crc32_combine",
    "file_kind",
    "recover",
]

#: The fixed 16-byte gzip header of a gzlog file (FEXTRA with one 'ap' subfield).
HEADER = bytes((0x1F, 0x8B, 8, 4, 0, 0, 0, 0, 0, 0xFF, 39, 0, 0x61, 0x70, 35, 0))
_STATE = struct.Struct("<QQIIIIHB")  # first last ccrc clen tcrc tlen stored flags
_TRAILER = struct.Struct("<II")
_LENS = struct.Struct("<HH")
_DATA = 51  # offset of the deflate stream
#: A new, empty log: exactly 64 bytes.
EMPTY_LOG = HEADER + _STATE.pack(52, 52, 0, 0, 0, 0, 0, 5) + b"\x01\x00\x00\xff\xff" + bytes(8)

MAX_STORE = 16384  # data bytes per stored block
_SPAN = MAX_STORE + 5  # distance between the LEN fields of two consecutive full blocks
TRIGGER = 1024  # compress when the stored tail reaches this many KiB
DICT_SIZE = 32768
#: Largest single gzlog append: a longer :meth:`Gzlog.append` is split into
#: appends of this size, each atomic on its own.
MAX_APPEND = 1 << 20
#: Largest uncompressed (stored) tail: an append that would make it longer
#: compresses the tail first.
MAX_TAIL = TRIGGER << 10
_M32 = 0xFFFFFFFF
_WRITE_CHUNK = 1 << 18
_READ_CHUNK = 1 << 17  # compressed bytes read per step of an inflate
#: Most compressed bytes inflated to catch up with other processes' compressions
#: (beyond, one compression runs without a dictionary).
_CATCH_UP_MAX = 16 << 20
_MAX_OUT = 1 << 19  # inflate output per call: large fresh buffers cost page faults

NO_OP, APPEND_OP, COMPRESS_OP, REPLACE_OP = 0, 1, 2, 3
_OP_NAMES = ("none", "append", "compress", "replace")

_HOST = socket.gethostname()
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_LOOP_ERRNOS = {errno.ELOOP, errno.EMLINK}
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV}


class GzlogError(OSError):
    """An operation on a gzlog failed.

    ``committed`` is, for a failed :meth:`Gzlog.append`, exactly how many bytes
    of that call's data are in the log, or will be once the log is recovered
    (an append whose state was marked before the failure is redone by the next
    opener or call, with the data saved in ``P.add``). Retrying with
    ``data[committed:]`` therefore neither duplicates nor loses anything. It is 0
    for the other operations.
    """

    committed: int = 0


class GzlogCorruptError(GzlogError):
    """The file failed validation (``reason``); it was moved aside to ``moved_to``."""

    def __init__(self, message: str, *, reason: str = "", moved_to: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.moved_to = moved_to


class GzlogWarning(UserWarning):
    """Something was repaired or lost, or a lock wait is long; the log itself is valid.

    With ``on_corrupt="new"``, the warning that a damaged log was moved aside
    carries ``moved_to`` (the new name of the damaged file) and ``reason``.
    """

    def __init__(self, *args: object, reason: str = "", moved_to: str | None = None):
        super().__init__(*args)
        self.reason = reason
        self.moved_to = moved_to


class GzlogLockWaitWarning(GzlogWarning):
    """A wait for a log's lock is taking long; says who holds it and until when."""


class _Invalid(Exception):
    """Internal: the file failed validation (message says what and where)."""


@dataclass(frozen=True)
class GzlogState:
    """The 35-byte state of a gzlog plus derived sizes."""

    first: int
    last: int
    ccrc: int
    clen: int
    tcrc: int
    tlen: int
    stored: int
    back: int
    op: int
    file_size: int

    @property
    def op_name(self) -> str:
        """``"none"``, ``"append"``, ``"compress"`` or ``"replace"``."""
        return _OP_NAMES[self.op]

    @property
    def stored_bytes(self) -> int:
        """Length of the uncompressed (stored) tail."""
        return (self.last - self.first) // _SPAN * MAX_STORE + self.stored

    @property
    def compressed_bytes(self) -> int:
        """File bytes spanned by the compressed part of the deflate stream."""
        return max(0, (self.first * 8 - self.back + 7) // 8 - _DATA)


# --- CRC-32 combination (GF(2) polynomial arithmetic, as in zlib 1.2.12+) ---

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    m = 1 << 31
    p = 0
    while m:
        if a & m:
            p ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _make_x2n() -> list[int]:
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _make_x2n()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of A+B from crc32(A), crc32(B) and len(B), like zlib's crc32_combine."""
    p = 1 << 31  # x^0
    k = 3
    n = len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1 & _M32) ^ (crc2 & _M32)


# --- small I/O helpers ---


def _pread(fd: int, n: int, off: int) -> bytes:
    """Read up to n bytes at off (fewer only at end of file)."""
    parts = []
    while n > 0:
        b = os.pread(fd, n, off)
        if not b:
            break
        parts.append(b)
        n -= len(b)
        off += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _pwrite_all(fd: int, data: bytes | memoryview, off: int) -> None:
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, off)
        if n <= 0:
            raise GzlogError(errno.EIO, "short write")
        mv = mv[n:]
        off += n


_TOUCH_EVERY = 1.0  # seconds between touches of P.lock while it is held
_IOV_MAX = 1000  # buffers per pwritev call (Linux allows 1024)


def _pwritev_all(fd: int, bufs: list[bytes | memoryview], off: int) -> None:
    """Write the buffers back to back at off, with as few system calls as possible."""
    for j in range(0, len(bufs), _IOV_MAX):
        group = bufs[j : j + _IOV_MAX]
        want = sum(len(b) for b in group)
        n = os.pwritev(fd, group, off)
        if n < want:  # short write: finish the rest plainly
            _pwrite_all(fd, memoryview(b"".join(group))[n:], off + n)
        off += want


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def file_kind(mode: int) -> str:
    """What an ``st_mode`` that is not a regular file names, for messages ("a socket")."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _require_regular(path: str, st: os.stat_result) -> None:
    """Raise GzlogError unless st is a regular file: a log is never a FIFO, device, ..."""
    if stat.S_ISREG(st.st_mode):
        return
    kind = file_kind(st.st_mode)
    code = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
    raise GzlogError(
        code,
        f"gzlog: {path} is {kind}, not a regular file; refusing to use it as a log "
        f"(remove it or choose another file name)",
    )


def _open_log(path: str, flags: int) -> int:
    """Open the .gz file itself, refusing at once anything but a regular file.

    ``stat`` first (no open of a FIFO or device at all), then the open with
    O_NONBLOCK (a FIFO swapped in meanwhile cannot block it) and ``fstat``. A
    symbolic link is followed: a log may be symlinked on purpose.
    """
    _require_regular(path, os.stat(path))
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        _require_regular(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _skip_empty_stored(fd: int, bit: int, end_bit: int) -> int:
    """The bit after an empty, non-final stored block at ``bit`` (byte-aligned), else bit.

    Our compressions that begin off a byte boundary begin with one: inflating from
    the byte after it needs no shift of the data (a shifted stream cannot inflate
    deflate's own stored blocks, whose padding counts from the true byte boundaries).
    """
    if not bit & 7:
        return bit
    pad_end = (bit + 3 + 7) & ~7  # the byte boundary after the 3 header bits
    if pad_end + 32 > end_bit:
        return bit
    head = _pread(fd, (pad_end >> 3) - (bit >> 3) + 4, bit >> 3)
    if len(head) < 5 or head[-4:] != b"\x00\x00\xff\xff":
        return bit
    if int.from_bytes(head[:-4], "little") >> (bit & 7):  # BFINAL, BTYPE, padding: all 0
        return bit
    return pad_end + 32


def _deflate_bits(fd: int, start_bit: int, end_bit: int) -> Iterator[bytes]:
    """The deflate bits of the file from ``start_bit`` to ``end_bit``, as a raw stream.

    Bit positions count from the file's start (bit 0 of byte 0). The bytes are
    shifted so that ``start_bit`` becomes bit 0 (no shift in the common case of a
    byte-aligned start), and a final empty stored block is added after
    ``end_bit`` so that a complete stream must end exactly there.
    """
    k = start_bit & 7
    base = start_bit >> 3
    nbits = end_bit - start_bit
    whole = nbits >> 3
    j = 0
    while j < whole:
        n = min(_READ_CHUNK, whole - j)
        want = n + (1 if k else 0)
        raw = _pread(fd, want, base + j)
        if len(raw) != want:
            raise _Invalid("file ends inside the compressed data")
        if k:
            raw = (int.from_bytes(raw, "little") >> k).to_bytes(want, "little")[:n]
        yield raw
        j += n
    r = nbits & 7
    rest = _pread(fd, (k + r + 7) // 8, base + whole) if k + r else b""
    if len(rest) != (k + r + 7) // 8:
        raise _Invalid("file ends inside the compressed data")
    bits = (int.from_bytes(rest, "little") >> k) & ((1 << r) - 1)
    bits |= 1 << r  # BFINAL=1, BTYPE=00: an empty, final stored block, then LEN/NLEN
    yield bits.to_bytes((r + 10) // 8, "little") + b"\x00\x00\xff\xff"


def _hdr(prev: int, back: int, final: bool, length: int) -> bytes:
    """The bytes that C's log_last writes for a stored block.

    The block's 3-bit header begins ``back`` bits before its LEN field; the
    bits of ``prev`` (the byte holding the header's first bit) below it belong
    to earlier data and are kept.
    """
    mask = 0x80 >> ((back - 1) & 7)
    b = (prev & (mask - 1)) | (mask if final else 0)
    lens = _LENS.pack(length, length ^ 0xFFFF)
    return (bytes((b, 0)) if back > 8 else bytes((b,))) + lens


class _S:
    """Mutable in-memory copy of the state."""

    __slots__ = ("back", "ccrc", "clen", "first", "last", "op", "stored", "tcrc", "tlen")

    def __init__(self, buf: bytes):
        (self.first, self.last, self.ccrc, self.clen, self.tcrc, self.tlen, self.stored, flags) = (
            _STATE.unpack_from(buf, 16)
        )
        self.back = 3 + (flags & 7)
        self.op = (flags >> 3) & 3

    def pack(self, op: int) -> bytes:
        return _STATE.pack(
            self.first,
            self.last,
            self.ccrc,
            self.clen,
            self.tcrc,
            self.tlen,
            self.stored,
            (self.back - 3) | (op << 3),
        )

    def tail_len(self) -> int:
        return (self.last - self.first) // _SPAN * MAX_STORE + self.stored

    def due(self) -> bool:
        return ((self.last - self.first) >> 10) + (self.stored >> 10) >= TRIGGER

    def public(self, size: int) -> GzlogState:
        return GzlogState(
            self.first,
            self.last,
            self.ccrc,
            self.clen,
            self.tcrc,
            self.tlen,
            self.stored,
            self.back,
            self.op,
            size,
        )


def _next_dict(zdict: bytes | None, data: bytes) -> bytes:
    if len(data) >= DICT_SIZE or not zdict:
        return data[-DICT_SIZE:]
    return zdict[-(DICT_SIZE - len(data)) :] + data


_SPLIT = 1 << 18  # data of a compression above this size is deflated in two halves at once


def _deflate_part(
    data: memoryview, zdict: bytes | None, level: int, flush: int = zlib.Z_PARTIAL_FLUSH
) -> bytes:
    """Raw deflate (window 15, memory level 8) ending with a partial (or ``flush``) flush."""
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict=zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush(flush)


_SYNC_MARK = b"\x00\x00\xff\xff"  # LEN/NLEN of the empty stored block a sync flush ends with


def _raw_deflate(data: bytes, zdict: bytes | None, level: int) -> bytes:
    """Raw deflate of ``data`` with preset dictionary ``zdict``, ending in a partial flush.

    The output must be placed at a byte boundary of the file: deflate pads the
    *stored* blocks it emits for incompressible data to byte boundaries counted
    from the start of its output. Large data is deflated as two halves on two
    threads (zlib releases the GIL), as pigz does: the first half ends with a sync
    flush (an empty stored block, so it ends on a byte boundary), the second half
    is primed with the 32 KiB before it and follows byte for byte: one valid stream.
    """
    view = memoryview(data)
    if len(data) <= _SPLIT:
        return _deflate_part(view, zdict, level)
    half = len(data) // 2
    first: list[bytes] = []
    helper = threading.Thread(
        target=lambda: first.append(_deflate_part(view[:half], zdict, level, zlib.Z_SYNC_FLUSH)),
        name="mimir-gzlog-deflate",
    )
    helper.start()
    second = _deflate_part(view[half:], bytes(view[half - DICT_SIZE : half]), level)
    helper.join()
    if not first or not first[0].endswith(_SYNC_MARK):
        raise GzlogError(errno.EIO, "gzlog: unexpected deflate output (no sync flush)")
    return first[0] + second


def _flush_block_bit(out: bytes) -> int:
    """Bit position of the empty static block that a partial flush ends ``out`` with.

    That block is 3 header bits 0,1,0 then seven 0 bits: its second bit is the last
    1-bit of the output. -1 if there is no 1-bit at all.
    """
    top = len(out) - 1
    while top >= 0 and not out[top]:
        top -= 1
    return top * 8 + out[top].bit_length() - 2 if top >= 0 else -1


def _outside_stacklevel() -> int:
    """The ``stacklevel`` for warnings.warn called here that names our first outside caller."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename in (__file__, contextlib.__file__):
        frame = frame.f_back
        level += 1
    return level


class _LockWait:
    """Progress of one wait for the lock: start, deadline, whether it warned, next sleep."""

    __slots__ = ("deadline", "delay", "start", "warned")

    def __init__(self, start: float, timeout: float | None):
        self.start = start
        self.deadline = None if timeout is None else start + timeout
        self.warned = False
        self.delay = 0.002


def _flock_holder(fd: int) -> str | None:
    """Pid of the process holding a flock on fd's file, from Linux's /proc/locks, if known."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":  # "->" marks a blocked waiter
            continue
        dev = fields[5].split(":")
        try:
            key = (int(dev[0], 16), int(dev[1], 16), int(dev[2]))
        except (ValueError, IndexError):
            continue
        if key == want and fields[4].isdigit() and int(fields[4]) > 0:
            return fields[4]
    return None


class Gzlog:
    """An open gzlog: one .gz file plus its auxiliary files.

    ``path`` is the ``.gz`` file itself. The constructor takes the lock, creates
    the 64-byte empty log if the file is missing (or empty), else validates it
    and recovers an interrupted operation, then releases the lock.

    ``verify="full"`` also inflates the compressed part on open (time
    proportional to the log); ``"quick"`` checks the state, the stored tail
    and the trailer only. ``on_corrupt="raise"`` moves a damaged file aside and
    raises :class:`GzlogCorruptError`; ``"new"`` moves it aside, warns and
    starts a new log. ``compression_level`` (zlib's 1..9, default 6 as in zlib's
    gzlog.c) only trades speed for size: any level reads back the same.

    ``lock_timeout`` bounds each wait for the lock (``None``: no bound), ending it
    with :class:`GzlogError` (``ETIMEDOUT``); a wait longer than
    ``lock_warning_after`` seconds issues one :class:`GzlogWarning` that names
    the holder. ``stale_after`` is the age (seconds since its last touch) at
    which a lock file of another host, or zlib's empty one, is taken over.
    """

    compression_level = 6  # also for the recoveries run by check() and recover()

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float | None = None,
        stale_after: float = 300.0,
        hooks: Callable[[str, int], object] | None = None,
        on_corrupt: str = "raise",
        verify: str = "full",
        compression_level: int = 6,
        lock_warning_after: float = 2.0,
    ):
        if not 1 <= compression_level <= 9:
            raise ValueError(f"compression_level must be 1..9, got {compression_level!r}")
        self.compression_level = compression_level
        self._setup(path, lock_timeout, stale_after, hooks, on_corrupt, verify, lock_warning_after)
        try:
            with self._locked():
                self._load_checked(deep=verify == "full")
        except OSError as e:
            self._raise(e, "open", 0)

    # --- set-up ---

    def _setup(
        self, path, lock_timeout, stale_after, hooks, on_corrupt, verify, lock_warning_after=2.0
    ) -> None:
        p = os.fspath(path)
        if not isinstance(p, str):
            p = os.fsdecode(p)
        if not p.endswith(".gz") or len(p) <= 3:
            raise ValueError(f"gzlog path must end with '.gz', got {p!r}")
        if on_corrupt not in ("raise", "new"):
            raise ValueError(f"on_corrupt must be 'raise' or 'new', got {on_corrupt!r}")
        if verify not in ("full", "quick"):
            raise ValueError(f"verify must be 'full' or 'quick', got {verify!r}")
        if lock_timeout is not None and not lock_timeout >= 0:
            raise ValueError("lock_timeout must be >= 0 or None")
        if not lock_warning_after >= 0:
            raise ValueError("lock_warning_after must be >= 0")
        self._path = p
        base = p[:-3]
        self._add = base + ".add"
        self._dict = base + ".dict"
        self._temp = base + ".temp"
        self._lock = base + ".lock"
        self._lock_new = base + ".lock.new"
        self._klock = base + ".lock.k"
        self._repairs = base + ".repairs"
        self._dir = os.path.dirname(os.path.abspath(p))
        self._lock_timeout = lock_timeout
        self._lock_warning_after = lock_warning_after
        self._stale_after = stale_after
        self._hooks = hooks
        self._hook_counts: dict[str, int] = {}
        self._on_corrupt = on_corrupt
        self._closed = False
        self._broken: str | None = None
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._fd = -1
        self._kfd = -1
        self._lock_id: tuple[int, int] | None = None
        self._touched = 0.0  # time.monotonic() of the last touch of P.lock
        self._crashed = False
        self._dirty = False
        self._s: _S | None = None
        self._cache: tuple | None = None
        # The proven dictionary: (ccrc, clen, last 32 KiB of the compressed data, bit
        # position in the file where that compressed data ends).
        self._known: tuple[int, int, bytes, int] | None = None
        self._repair_lines: list[str] = []
        self._inflight: tuple[int, int, memoryview] | None = None  # piece being appended
        self._marked = False  # the in-flight piece's append mark was written

    @property
    def path(self) -> str:
        """The ``.gz`` file."""
        return self._path

    # --- public operations ---

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Append data durably (one gzlog append per MiB), compressing when due.

        A call of at most :data:`MAX_APPEND` bytes is one gzlog append: after a
        crash it is wholly present or wholly absent. The stored tail never
        exceeds :data:`MAX_TAIL` bytes: if the data would not fit, the tail is
        compressed first. On failure, :attr:`GzlogError.committed` says how much
        of ``data`` is (or will be, after recovery) in the log.
        """
        if not isinstance(data, bytes):
            data = bytes(data)  # a private copy: the caller may reuse its buffer
        total = len(data)
        if not total:
            return
        mv = memoryview(data)  # pieces are zero-copy slices of it
        pos = 0
        try:
            with self._locked():
                try:
                    while True:
                        try:
                            self._load_checked(deep=False)
                            s = self._s
                            if s.due():
                                self._compress_tail()
                            while pos < total:
                                piece = mv[pos : pos + MAX_APPEND]
                                if s.tail_len() + len(piece) > MAX_TAIL:
                                    self._compress_tail()
                                self._inflight = (s.tcrc, s.tlen, piece)
                                self._append_piece(piece)
                                pos += len(piece)
                                self._inflight = None
                                if s.due():
                                    self._compress_tail()
                            return
                        except _Invalid as e:
                            self._move_aside(str(e))  # raises, or starts a new log
                except OSError:
                    if self._inflight is not None and self._piece_landed(*self._inflight):
                        pos += len(self._inflight[2])
                    raise
                finally:
                    self._inflight = None
        except OSError as e:
            self._raise(e, "append to", pos)

    def _piece_landed(self, tcrc: int, tlen: int, piece: memoryview) -> bool:
        """After a failure inside the append of ``piece`` (lock still held): is it in the log?

        Decided from the state on disk, which the next opener recovers from: an
        append still marked is redone from ``P.add`` (fsynced before the mark),
        and a state that already includes the piece has committed it (or the
        compression after it was started). If the state cannot be read, the
        in-memory progress decides.
        """
        try:
            fd = _open_log(self._path, os.O_RDONLY)
            try:
                head = _pread(fd, _DATA, 0)
            finally:
                os.close(fd)
        except OSError:
            head = b""
        if len(head) < _DATA or head[:16] != HEADER:
            return self._marked
        s = _S(head)
        if s.op == APPEND_OP:
            return True
        n = len(piece)
        return (s.tlen, s.tcrc) == ((tlen + n) & _M32, crc32_combine(tcrc, zlib.crc32(piece), n))

    def compress(self) -> None:
        """Compress the stored tail now, if there is one."""
        try:
            with self._locked():
                while True:
                    try:
                        self._load_checked(deep=False)
                        self._compress_tail()
                        return
                    except _Invalid as e:
                        self._move_aside(str(e))
        except OSError as e:
            self._raise(e, "compress", 0)

    def verify(self) -> None:
        """Validate the whole log now, as a ``verify="full"`` open does.

        Inflates the compressed part and checks it against ``ccrc``/``clen``,
        checks the stored tail, recovers an interrupted operation, and rewrites
        ``P.dict`` if it differs from the last 32 KiB of the compressed data. A
        damaged file is handled as ``on_corrupt`` says (moved aside, then raised
        or replaced by a new log). Writers call it once before their first append
        when they opened with ``verify="quick"``.
        """
        try:
            with self._locked():
                self._load_checked(deep=True)
        except OSError as e:
            self._raise(e, "verify", 0)

    @property
    def room(self) -> int:
        """Bytes an append can add before the stored tail must be compressed (no I/O).

        As of this instance's last operation: another process may have appended
        since, in which case :meth:`append` compresses first as needed. Callers
        that split their data (e.g. at line ends) use it to fill the tail up to
        :data:`MAX_TAIL` without crossing it.
        """
        s = self._s
        if s is None:
            return MAX_TAIL
        return max(0, MAX_TAIL - s.tail_len())

    def state(self) -> GzlogState:
        """Re-read the state from disk (without the lock, without validation)."""
        fd = _open_log(self._path, os.O_RDONLY)
        try:
            head = _pread(fd, _DATA, 0)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if len(head) < _DATA or head[:16] != HEADER:
            raise GzlogError(errno.EINVAL, f"{self._path} is not a gzlog file")
        return _S(head).public(size)

    def close(self) -> None:
        """Forget the log (idempotent). No compression happens here."""
        self._closed = True
        self._s = None
        self._cache = None
        self._known = None

    def __enter__(self) -> Gzlog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Gzlog {self._path!r}{' closed' if self._closed else ''}>"

    # --- errors and hooks ---

    def _raise(self, e: OSError, what: str, committed: int) -> NoReturn:
        """Re-raise e as a GzlogError carrying ``committed``."""
        if isinstance(e, GzlogError):
            e.committed = committed
            raise e
        msg = f"gzlog: {what} {self._path} failed: {e.strerror or e}"
        if e.filename:
            msg += f" ({e.filename})"
        err = GzlogError(e.errno, msg)
        err.committed = committed
        raise err from e

    def _hit(self, point: str) -> None:
        n = self._hook_counts[point] = self._hook_counts.get(point, 0) + 1
        try:
            self._hooks(point, n)
        except OSError:
            raise
        except BaseException:
            self._crashed = True
            raise

    def _warn(self, msg: str | GzlogWarning, category: type[GzlogWarning] = GzlogWarning) -> None:
        """Issue a GzlogWarning attributed to the first caller outside this module."""
        warnings.warn(msg, category, stacklevel=_outside_stacklevel())

    # --- locking ---

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._closed:
            raise ValueError(f"I/O operation on closed Gzlog {self._path!r}")
        if self._pid != os.getpid():  # forked: fresh mutex, no inherited cache
            self._pid = os.getpid()
            self._mutex = threading.Lock()
            self._cache = None
        with self._mutex:
            if self._broken:
                raise GzlogError(errno.EINVAL, self._broken)
            self._crashed = False
            self._repair_lines = []
            self._acquire()
            try:
                yield
            except BaseException:
                self._cache = None
                self._s = None
                raise
            finally:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                self._release()

    def _acquire(self) -> None:
        wait = _LockWait(time.monotonic(), self._lock_timeout)
        try:
            kfd = os.open(self._klock, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno in _LOOP_ERRNOS:
                raise GzlogError(
                    e.errno, f"gzlog: refusing symlinked lock file {self._klock}"
                ) from None
            raise
        try:
            while True:
                try:
                    fcntl.flock(kfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self._pause(wait, kfd)
            owner = f"{_HOST} {os.getpid()}\n".encode()
            staged = False
            try:
                while True:
                    if not staged:
                        self._write_aux(self._lock_new, owner, sync=False)
                        staged = True
                    if self._create_lock(owner):
                        break
                    if self._lock_abandoned():
                        self._unlink(self._lock)
                        continue
                    self._pause(wait, -1)
            finally:
                if staged:
                    self._unlink(self._lock_new)
            st = os.lstat(self._lock)
            self._lock_id = (st.st_ino, st.st_mtime_ns)
            self._touched = time.monotonic()
        except BaseException:
            os.close(kfd)  # also drops the flock
            raise
        self._kfd = kfd

    def _pause(self, wait: _LockWait, kfd: int) -> None:
        """One poll interval of a lock wait: warn once after a while, time out, sleep.

        ``kfd`` is the descriptor of ``P.lock.k`` while the kernel lock is what we
        wait for, -1 while we wait for ``P.lock``.
        """
        now = time.monotonic()
        waited = now - wait.start
        if wait.deadline is not None and now >= wait.deadline:
            who, since, when, advice = self._lock_holder(kfd, waited)
            raise GzlogError(
                errno.ETIMEDOUT,
                f"gzlog: timed out after {self._lock_timeout:g} s waiting for the lock of "
                f"{self._path}: it is held by {who} ({since}); {when}. {advice}",
            )
        if not wait.warned and waited >= self._lock_warning_after:
            wait.warned = True
            who, since, when, _ = self._lock_holder(kfd, waited)
            self._warn(
                f"gzlog: waiting {waited:.1f} s so far for the lock of {self._path}: it is "
                f"held by {who} ({since}); {when}",
                GzlogLockWaitWarning,
            )
        delay = wait.delay
        if wait.deadline is not None:
            delay = min(delay, wait.deadline - now)
        if not wait.warned:
            delay = min(delay, max(0.0, wait.start + self._lock_warning_after - now))
        time.sleep(max(delay, 0.0))
        wait.delay = min(wait.delay * 2, 0.05)

    def _lock_holder(self, kfd: int, waited: float) -> tuple[str, str, str, str]:
        """Who holds the lock we wait for: (who, since when, when it goes stale, advice)."""
        content, age = self._lock_file_info()
        words = content.split() if content is not None else []
        if kfd >= 0:  # the kernel lock on P.lock.k: a live Mímir process holds it
            pid = _flock_holder(kfd)
            if pid is None and len(words) == 2 and words[0] == _HOST:
                pid = words[1]  # its P.lock names it (normally created right after the flock)
            if pid is not None:
                who = f"host {_HOST} pid {pid}, a Mímir process holding {self._klock}"
            else:
                who = f"another Mímir process on this host holding {self._klock}"
            if age is not None and len(words) == 2 and words == [_HOST, str(pid)]:
                since = f"{self._lock} last touched {int(age)} s ago"
            else:
                since = f"held for at least {waited:.1f} s"
            when = (
                "a kernel lock never goes stale while its process lives: the wait ends when "
                "that process finishes its operation or exits"
            )
            advice = (
                "Let that process finish (or stop it), or pass a larger lock_timeout "
                "(None waits for as long as it takes)."
            )
            return who, since, when, advice
        if content is None:
            who = "a lock file that is not a readable regular file"
        elif not content.strip():
            who = "an empty lock file, as zlib's gzlog leaves"
        elif len(words) == 2:
            who = f"host {words[0]} pid {words[1]}"
        else:
            who = f"a lock file of unknown owner ({content[:40]!r})"
        age = 0.0 if age is None else age
        left = math.ceil(max(0.0, self._stale_after - age))
        since = f"{self._lock}, last touched {int(age)} s ago"
        when = (
            f"taken over in {left} s if its owner does not touch it "
            f"(a lock untouched for {self._stale_after:g} s is stale)"
        )
        advice = (
            f"If no process uses the log any more, delete {self._lock}; otherwise wait, "
            f"or pass a larger lock_timeout (None waits until the lock is released or stale)."
        )
        return who, since, when, advice

    def _lock_file_info(self) -> tuple[str | None, float | None]:
        """P.lock's content (None if missing or not a regular file) and its age in seconds."""
        try:
            st = os.lstat(self._lock)
        except OSError:
            return None, None
        age = max(0.0, time.time() - st.st_mtime)
        if not stat.S_ISREG(st.st_mode):
            return None, age
        try:
            fd = os.open(self._lock, os.O_RDONLY | _NOFOLLOW)
            try:
                return os.read(fd, 256).decode("utf-8", "replace"), age
            finally:
                os.close(fd)
        except OSError:
            return None, age

    def _create_lock(self, owner: bytes) -> bool:
        """Create P.lock exclusively, already holding its content; False if it exists.

        The content is staged in P.lock.new and hard-linked into place, so a
        process killed at any moment never leaves an empty (ownerless) P.lock.
        """
        try:
            os.link(self._lock_new, self._lock, follow_symlinks=False)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in _NO_LINK_ERRNOS:
                raise
        try:  # a file system without hard links: create, then write
            fd = os.open(self._lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, owner)
        finally:
            os.close(fd)
        return True

    def _lock_abandoned(self) -> bool:
        """Whether an existing P.lock may be taken over (we hold the kernel lock)."""
        try:
            st = os.lstat(self._lock)
        except FileNotFoundError:
            return True
        if stat.S_ISREG(st.st_mode):
            try:
                fd = os.open(self._lock, os.O_RDONLY | _NOFOLLOW)
                try:
                    words = os.read(fd, 256).split()
                finally:
                    os.close(fd)
            except OSError:
                words = []
            # Written by Mímir on this host: its owner does not hold the kernel
            # lock (we do), so it is dead or gone.
            if len(words) == 2 and words[0].decode("utf-8", "replace") == _HOST:
                return True
        return time.time() - st.st_mtime > self._stale_after

    def _release(self) -> None:
        kfd, self._kfd = self._kfd, -1
        try:
            if not self._crashed and self._lock_id is not None:
                try:
                    st = os.lstat(self._lock)
                    if (st.st_ino, st.st_mtime_ns) == self._lock_id:
                        os.unlink(self._lock)
                except OSError:
                    pass
        finally:
            self._lock_id = None
            if kfd >= 0:
                os.close(kfd)

    def _check_lock(self) -> None:
        """Raise unless P.lock is still ours; touch it (at most every second: the
        lock goes stale for others after ``stale_after`` seconds, 300 by default)."""
        try:
            st = os.lstat(self._lock)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_ino, st.st_mtime_ns) != self._lock_id:
            raise GzlogError(errno.ENOLCK, f"gzlog: lost the lock {self._lock}")
        now = time.monotonic()
        if now - self._touched >= _TOUCH_EVERY:
            os.utime(self._lock, follow_symlinks=False)
            st = os.lstat(self._lock)
            self._lock_id = (st.st_ino, st.st_mtime_ns)
            self._touched = now

    # --- auxiliary files ---

    def _fsync_dir(self) -> None:
        fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _unlink(path: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(path)

    def _open_new_aux(self, path: str, flags: int) -> int:
        """Open an auxiliary file for writing, replacing (never following) a symlink."""
        flags |= os.O_WRONLY | os.O_CREAT | _NOFOLLOW
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            if e.errno not in _LOOP_ERRNOS:
                raise
            os.unlink(path)  # the link itself, not its target
            fd = os.open(path, flags | os.O_EXCL, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise GzlogError(errno.EINVAL, f"gzlog: {path} is not a regular file")
        return fd

    def _write_aux(self, path: str, data: bytes, *, sync: bool = True) -> None:
        fd = self._open_new_aux(path, os.O_TRUNC)
        try:
            _pwrite_all(fd, data, 0)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _read_aux(self, path: str, limit: int | None = None) -> bytes | None:
        """Content of an auxiliary file, or None if missing, a symlink or not a file."""
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno in _LOOP_ERRNOS:
                self._warn(f"gzlog: ignoring {path}: it is a symbolic link")
                return None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._warn(f"gzlog: ignoring {path}: not a regular file")
                return None
            n = st.st_size if limit is None else min(st.st_size, limit)
            return _pread(fd, n, 0)
        finally:
            os.close(fd)

    def _repair(self, op: int, status: str) -> None:
        line = f"{time.ctime()[:24]} {_OP_NAMES[op]} recovery: {status}"
        self._repair_lines.append(line)
        try:
            fd = self._open_new_aux(self._repairs, os.O_APPEND)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # as in the C program, a missing history line is not an error

    # --- loading, validation ---

    def _load_checked(self, *, deep: bool, create: bool = True, recover: bool = True) -> None:
        try:
            self._load(deep=deep, create=create, recover=recover)
        except _Invalid as e:
            self._move_aside(str(e))

    def _load(self, *, deep: bool, create: bool, recover: bool) -> None:
        try:
            fd = _open_log(self._path, os.O_RDWR)
        except FileNotFoundError:
            if not create:
                raise
            self._create_new()
            fd = _open_log(self._path, os.O_RDWR)
        self._fd = fd
        self._dirty = False
        st = os.fstat(fd)
        if st.st_size == 0 and create:
            os.close(fd)
            self._fd = -1
            self._create_new()
            fd = self._fd = _open_log(self._path, os.O_RDWR)
            st = os.fstat(fd)
        head = _pread(fd, _DATA, 0)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, head)
        if not deep and key == self._cache:
            self._s = _S(head)
            return
        self._cache = None
        s = self._validate(fd, st.st_size, head)
        verified = deep or s.op != NO_OP
        if verified:
            self._verify_compressed(fd, s)
        self._s = s
        if s.op != NO_OP:
            if not recover:
                return
            self._recover()
            if self._s.tail_len() > MAX_TAIL:
                # A recovered append of a big P.add (zlib's gzlog.c writes up to about
                # 3.3 MB at once): bring the tail back within its bound right away.
                self._compress_tail()
        if verified:
            self._fix_dict()
        self._remember()

    def _remember(self) -> None:
        st = os.fstat(self._fd)
        self._cache = (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            HEADER + self._s.pack(NO_OP),
        )

    def _validate(self, fd: int, size: int, head: bytes) -> _S:
        if size < _DATA or len(head) < _DATA:
            raise _Invalid(f"file is {size} bytes long, too short for a gzlog header")
        if head[:16] != HEADER:
            bad = next(i for i in range(16) if head[i] != HEADER[i])
            raise _Invalid(f"bytes 0-15 are not the gzlog gzip header (byte {bad} differs)")
        flags = head[50]
        if flags & 0xE0:
            raise _Invalid(f"reserved bits set in the state's flag byte (offset 50: 0x{flags:02x})")
        s = _S(head)
        where = f"first={s.first} last={s.last} stored={s.stored} back={s.back} op={s.op}"
        if s.first * 8 - s.back < _DATA * 8:
            raise _Invalid(f"first stored block starts before the deflate data ({where})")
        if s.last < s.first or (s.last - s.first) % _SPAN:
            raise _Invalid(f"last stored block pointer is inconsistent ({where})")
        if s.stored > MAX_STORE:
            raise _Invalid(f"stored block length over {MAX_STORE} ({where})")
        end = s.last + 4 + s.stored
        if s.op in (NO_OP, REPLACE_OP) and size != end + 8:
            raise _Invalid(f"file size {size} differs from {end + 8} given by the state ({where})")
        if s.op == APPEND_OP and size < end:
            raise _Invalid(f"file size {size} is shorter than the state says ({where})")
        if s.op in (COMPRESS_OP, REPLACE_OP) and (s.last != s.first or s.stored):
            raise _Invalid(f"state of a compression has a stored tail ({where})")
        if s.op == COMPRESS_OP:
            if not (s.tlen - s.clen) & _M32:
                raise _Invalid(f"compression marked with nothing to compress ({where})")
            if size < s.first:
                raise _Invalid(f"file size {size} is shorter than the state says ({where})")
            return s
        if s.op == REPLACE_OP and (s.tcrc != s.ccrc or s.tlen != s.clen):
            raise _Invalid(f"state of a finished compression has inconsistent CRCs ({where})")
        tail = self._walk(fd, s, s.last, s.stored, check_last=s.op != APPEND_OP)
        if tail is None:
            raise _Invalid(f"a stored block header is damaged ({where})")
        n = len(tail)
        if (s.clen + n) & _M32 != s.tlen or crc32_combine(s.ccrc, zlib.crc32(tail), n) != s.tcrc:
            raise _Invalid(f"CRC or length of the stored tail ({n} bytes) do not match the state")
        if s.op != APPEND_OP and _pread(fd, 8, end) != _TRAILER.pack(s.tcrc, s.tlen):
            raise _Invalid(f"gzip trailer at offset {end} does not match the state")
        return s

    @staticmethod
    def _walk(fd: int, s: _S, last: int, stored: int, *, check_last: bool) -> bytes | None:
        """Data of the stored blocks from s.first to last, or None if a header is wrong."""
        n0 = 2 if s.back > 8 else 1
        base = s.first - n0
        region = _pread(fd, last + 4 + stored - base, base)
        if len(region) != last + 4 + stored - base:
            return None
        mv = memoryview(region)
        parts = []
        pos, back = s.first, s.back
        while True:
            is_last = pos == last
            r = pos - base
            nb = 2 if back > 8 else 1
            length = stored if is_last else MAX_STORE
            if not is_last or check_last:
                actual = region[r - nb : r + 4]
                if actual != _hdr(actual[0], back, is_last, length):
                    return None
            parts.append(mv[r + 4 : r + 4 + length])
            if is_last:
                return b"".join(parts)
            pos += _SPAN
            back = 8

    def _verify_compressed(self, fd: int, s: _S) -> None:
        """Inflate the compressed part up to the first stored block; check ccrc/clen.

        Also proves ``back`` right, and makes the last 32 KiB of that data the
        known dictionary.
        """
        crc, total, tail = self._inflate(fd, s, _DATA * 8, None)
        if total & _M32 != s.clen or crc != s.ccrc:
            raise _Invalid(
                f"compressed data ({total} bytes, crc {crc:08x}) does not match the state "
                f"(clen={s.clen}, ccrc={s.ccrc:08x})"
            )
        self._known = (s.ccrc, s.clen, tail, s.first * 8 - s.back)

    @staticmethod
    def _inflate(fd: int, s: _S, start_bit: int, zdict: bytes | None) -> tuple[int, int, bytes]:
        """Inflate the deflate data from ``start_bit`` up to the first stored block.

        Returns the CRC-32 and length of the output and its last 32 KiB; raises
        :class:`_Invalid` if the data is damaged or does not end exactly where the
        first stored block's header begins.
        """
        d = zlib.decompressobj(-15, zdict=zdict) if zdict else zlib.decompressobj(-15)
        end_bit = s.first * 8 - s.back
        crc = total = 0
        tail = b""
        try:
            for chunk in _deflate_bits(fd, start_bit, end_bit):
                if d.eof:  # the stream ended inside the compressed part
                    raise _Invalid(
                        f"deflate stream ends before offset {end_bit >> 3} (first={s.first})"
                    )
                buf = chunk
                while True:
                    out = d.decompress(buf, _MAX_OUT)
                    if out:
                        crc = zlib.crc32(out, crc)
                        total += len(out)
                        if len(out) >= DICT_SIZE:
                            tail = out[-DICT_SIZE:]
                        else:
                            tail = (tail + out)[-DICT_SIZE:]
                    buf = d.unconsumed_tail
                    if d.eof or (not buf and len(out) < _MAX_OUT):
                        break
        except zlib.error as e:
            raise _Invalid(f"compressed data is damaged ({e}; first={s.first})") from None
        if not d.eof or d.unused_data:
            raise _Invalid(
                f"compressed data does not end where the first stored block begins "
                f"(first={s.first}, back={s.back})"
            )
        return crc, total, tail

    def _move_aside(self, reason: str) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        dest = self._set_aside()
        self._fsync_dir()
        self._cache = None
        self._s = None
        self._known = None
        msg = f"gzlog: {self._path} failed validation ({reason}); it was moved to {dest}"
        if self._on_corrupt == "new":
            self._warn(
                GzlogWarning(msg + "; a new, empty log was started", reason=reason, moved_to=dest)
            )
            self._load(deep=False, create=True, recover=True)
            return
        self._broken = msg + "; open a new Gzlog to start a new log"
        raise GzlogCorruptError(msg, reason=reason, moved_to=dest)

    def _set_aside(self) -> str:
        """Give P.gz a new name ``P.gz.corrupt-<time>[-i]`` that did not exist; return it.

        The name is taken exclusively, so nothing there (a file, a planted symlink)
        is ever replaced or followed: a hard link is made (``link`` fails on any
        existing name) and P.gz unlinked. Where hard links are unsupported, the
        name is reserved with an O_CREAT|O_EXCL|O_NOFOLLOW placeholder and P.gz
        renamed over it (a rename replaces the entry; it never follows a link).
        """
        stamp = time.strftime("%Y%m%dT%H%M%S")
        i = 0
        while True:
            dest = f"{self._path}.corrupt-{stamp}" + (f"-{i}" if i else "")
            i += 1
            try:
                os.link(self._path, dest, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno not in _NO_LINK_ERRNOS:
                    raise
                try:
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
                except FileExistsError:
                    continue
                os.close(fd)
                os.rename(self._path, dest)
                return dest
            os.unlink(self._path)
            return dest

    def _create_new(self) -> None:
        # A dictionary left by an earlier log of the same name must never be used.
        self._unlink(self._dict)
        tmp = self._path + ".new"
        fd = self._open_new_aux(tmp, os.O_TRUNC)
        try:
            _pwrite_all(fd, EMPTY_LOG, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self._path)
        self._fsync_dir()
        self._known = (0, 0, b"", 52 * 8 - 8)

    def _fix_dict(self) -> None:
        """After a full verification: make P.dict the verified dictionary.

        A P.dict of another run, of a newer state of this run (an older backup
        restored), or the one gzlog.c leaves after a compress recovery that lost
        its tail, is rewritten here, so that the C program finds the right one too.
        """
        k, s = self._known, self._s
        if k is None or (k[0], k[1]) != (s.ccrc, s.clen):
            return
        have = self._read_aux(self._dict, DICT_SIZE + 1)
        if not k[2]:
            if have is not None:
                self._unlink(self._dict)
            return
        if have != k[2]:
            self._write_aux(self._temp, k[2])
            os.rename(self._temp, self._dict)
            self._fsync_dir()

    def _choose_dict(self) -> bytes | None:
        """The preset dictionary for the next compression, only if it is proven.

        Proven means: the last 32 KiB of the compressed data now in the file. The
        known dictionary (full verification, or this instance's own compression)
        counts when ``ccrc``/``clen`` still match, or after catching up with the
        compressions of other processes (:meth:`_catch_up`); a short ``P.dict``
        counts if it is the whole compressed data. Else None: a compression
        without a dictionary costs ratio, never correctness.
        """
        s, k = self._s, self._known
        bit = s.first * 8 - s.back
        if k is not None:
            if (k[0], k[1]) == (s.ccrc, s.clen):
                self._known = (s.ccrc, s.clen, k[2], bit)
                return k[2] or None
            caught = self._catch_up(k)
            if caught is not None:
                return caught or None
        self._known = None
        if 0 < s.clen <= DICT_SIZE:
            d = self._read_aux(self._dict, DICT_SIZE + 1)
            if d is not None and len(d) == s.clen and zlib.crc32(d) == s.ccrc:
                self._known = (s.ccrc, s.clen, d, bit)
                return d
        return None

    def _catch_up(self, k: tuple[int, int, bytes, int]) -> bytes | None:
        """The dictionary after other processes' compressions, from the known one.

        Their compressed data starts at the bit where the known compressed data
        ended; only it is inflated (with the known dictionary) and its CRC and
        length combined with the known ones must give ``ccrc``/``clen``. None if
        that fails or would read more than :data:`_CATCH_UP_MAX` bytes.
        """
        s = self._s
        ccrc, clen, zdict, start = k
        end = s.first * 8 - s.back
        if not start < end or (end - start) >> 3 > _CATCH_UP_MAX:
            return None
        start = _skip_empty_stored(self._fd, start, end)
        try:
            crc, total, tail = self._inflate(self._fd, s, start, zdict or None)
        except _Invalid:
            return None
        if (clen + total) & _M32 != s.clen or crc32_combine(ccrc, crc, total) != s.ccrc:
            return None
        new = _next_dict(zdict, tail)
        self._known = (s.ccrc, s.clen, new, end)
        return new

    # --- writing P.gz ---

    def _hook(self, point: str) -> None:
        if self._hooks is not None:
            self._hit(point)

    def _mark(self, op: int) -> None:
        """The commit point: one 35-byte state write, fsync before and after."""
        self._check_lock()
        fd = self._fd
        if self._dirty:
            os.fsync(fd)
        if self._hooks is not None:
            self._hit("state.pre")
        if os.pwrite(fd, self._s.pack(op), 16) != 35:
            raise GzlogError(errno.EIO, f"gzlog: short state write to {self._path}")
        if op == APPEND_OP:
            self._marked = True
        os.fsync(fd)
        self._dirty = False
        self._s.op = op
        if self._hooks is not None:
            self._hit("state.post")

    def _write_last(self, final: bool) -> None:
        """C's log_last: rewrite the last stored block's header and LEN/NLEN."""
        s = self._s
        back = s.back if s.last == s.first else 8
        n = 2 if back > 8 else 1
        prev = 0
        if back != 8:
            b = _pread(self._fd, 1, s.last - n)
            if len(b) != 1:
                raise GzlogError(errno.EIO, f"gzlog: short read from {self._path}")
            prev = b[0]
        self._dirty = True
        _pwrite_all(self._fd, _hdr(prev, back, final, s.stored), s.last - n)

    def _append_piece(self, data: bytes | memoryview) -> None:
        self._marked = False
        self._write_aux(self._add, data)
        self._fsync_dir()
        hooked = self._hooks is not None
        if hooked:
            self._hit("append.add_written")
        self._mark(APPEND_OP)
        if hooked:
            self._hit("append.marked")
        self._do_append(data, recovery=False)

    def _do_append(self, data: bytes | memoryview, *, recovery: bool = True) -> None:
        """Steps 3-6 of an append (also the append recovery).

        The new bytes (data, the headers of the blocks it opens, the trailer) go
        out in one vectored write, then the last block's header is rewritten: a
        few system calls and one CRC pass per append, whatever its size.
        """
        s, fd = self._s, self._fd
        hooked = self._hooks is not None
        total = len(data)
        back = s.back if s.last == s.first else 8
        hpos = s.last - (2 if back > 8 else 1)
        prev = 0
        if back != 8:  # the header's first byte also holds bits of earlier data
            b = _pread(fd, 1, hpos)
            if len(b) != 1:
                raise GzlogError(errno.EIO, f"gzlog: short read from {self._path}")
            prev = b[0]
        mv = memoryview(data)
        put = min(MAX_STORE - s.stored, total)
        first_len = s.stored + put
        bufs: list[bytes | memoryview] = [mv[:put]] if put else []
        last, stored, i = s.last, first_len, put
        while i < total:  # open new blocks: header byte right after the previous data
            n = min(MAX_STORE, total - i)
            last += 4 + stored + 1
            bufs.append(_hdr(0, 8, i + n == total, n))
            bufs.append(mv[i : i + n])
            stored = n
            i += n
        tcrc = zlib.crc32(data, s.tcrc) if total else s.tcrc
        tlen = (s.tlen + total) & _M32
        bufs.append(_TRAILER.pack(tcrc, tlen))
        self._dirty = True
        _pwritev_all(fd, bufs, s.last + 4 + s.stored)
        if hooked and total:
            self._hit("append.data")
        _pwrite_all(fd, _hdr(prev, back, last == s.last, first_len), hpos)
        if hooked:
            self._hit("append.block")
        if recovery:  # else the file ended at the old trailer: the writes extended it
            os.ftruncate(fd, last + 4 + stored + 8)
        s.last, s.stored, s.tcrc, s.tlen = last, stored, tcrc, tlen
        if hooked:
            self._hit("append.trailer")
        self._mark(NO_OP)
        if hooked:
            self._hit("append.committed")
        with suppress(OSError):  # committed; a leftover P.add is ignored while op is 0
            os.unlink(self._add)
        if hooked:
            self._hit("append.add_unlinked")
        self._remember()

    def _read_tail(self) -> bytes:
        s = self._s
        data = self._walk(self._fd, s, s.last, s.stored, check_last=True)
        if data is None:
            raise _Invalid("a stored block header is damaged")
        if crc32_combine(s.ccrc, zlib.crc32(data), len(data)) != s.tcrc:
            raise _Invalid(f"CRC of the stored tail ({len(data)} bytes) does not match the state")
        return data

    def _compress_tail(self) -> None:
        s = self._s
        if s.last == s.first and s.stored == 0:
            return
        hooked = self._hooks is not None
        data = self._read_tail()
        self._check_lock()
        self._write_aux(self._add, data)
        if hooked:
            self._hit("compress.add_written")
        zdict = self._choose_dict()
        newdict = _next_dict(zdict, data)
        self._write_aux(self._temp, newdict)
        self._fsync_dir()
        if hooked:
            self._hit("compress.temp_written")
        s.last = s.first
        s.stored = 0
        self._mark(COMPRESS_OP)
        if hooked:
            self._hit("compress.marked")
        self._deflate(data, zdict, newdict)

    def _deflate(self, data: bytes, zdict: bytes | None, newdict: bytes) -> None:
        """Steps 3-5 of a compression (also the compress recovery)."""
        s, fd = self._s, self._fd
        hooked = self._hooks is not None
        n = 2 if s.back > 8 else 1
        start = s.first - n
        if s.back == 8:  # the old first block's header begins on a byte boundary
            lead = b""
        else:
            # Python has no deflatePrime, and deflate's own stored blocks (for
            # incompressible data) are padded to byte boundaries counted from the start
            # of its output: so the output must start on a byte boundary of the file.
            # An empty, non-final stored block where the old first block's header
            # began gets there (the bits before it are kept); it inflates to nothing.
            b = _pread(fd, 1, start)
            if len(b) != 1:
                raise GzlogError(errno.EIO, f"gzlog: short read from {self._path}")
            lead = _hdr(b[0], s.back, False, 0)
        out = lead + _raw_deflate(data, zdict, self.compression_level)
        self._check_lock()
        # The partial flush ends with an empty static block (bits 0,1,0 + seven 0s);
        # its second bit is the last 1-bit. Its first bit (h) is where the new first
        # stored block's header goes.
        h = _flush_block_bit(out)
        if h < len(lead) * 8 or (out[h >> 3] >> (h & 7)) & 1:
            raise GzlogError(errno.EIO, "gzlog: unexpected deflate output (no partial flush)")
        nf = (h + 10) // 8  # new first, relative to start
        nb = nf * 8 - h  # new back, 3..10
        cut = h >> 3  # the byte holding the header's first bit: bits below h are kept
        mv = memoryview(out)
        for off in range(0, cut, _WRITE_CHUNK):
            self._dirty = True
            _pwrite_all(fd, mv[off : min(off + _WRITE_CHUNK, cut)], start + off)
            if hooked:
                self._hit("compress.chunk")
        if hooked:
            self._hit("compress.deflated")
        tail = _hdr(out[cut], nb, True, 0) + _TRAILER.pack(s.tcrc, s.tlen)
        _pwrite_all(fd, tail, start + cut)
        os.ftruncate(fd, start + cut + len(tail))
        self._dirty = True
        if hooked:
            self._hit("compress.trailer")
        s.first = s.last = start + nf
        s.back = nb
        s.stored = 0
        s.ccrc, s.clen = s.tcrc, s.tlen
        self._known = (s.ccrc, s.clen, newdict, s.first * 8 - s.back)
        self._mark(REPLACE_OP)
        if hooked:
            self._hit("replace.marked")
        self._finish_replace(keep_dict=False)

    def _cut_back(self) -> None:
        """Compress recovery without data: end the log after its compressed part."""
        s, fd = self._s, self._fd
        self._unlink(self._temp)  # it holds the lost tail: must never become P.dict
        self._fsync_dir()
        s.tcrc, s.tlen = s.ccrc, s.clen
        s.last = s.first
        s.stored = 0
        self._write_last(True)
        _pwrite_all(fd, _TRAILER.pack(s.tcrc, s.tlen), s.first + 4)
        os.ftruncate(fd, s.first + 12)
        self._hook("compress.trailer")
        self._mark(REPLACE_OP)
        self._hook("replace.marked")
        self._finish_replace(keep_dict=True)

    def _finish_replace(self, *, keep_dict: bool) -> None:
        """Step 5 after the replace mark: drop P.add, P.temp -> P.dict, mark done."""
        hooked = self._hooks is not None
        self._unlink(self._add)
        if hooked:
            self._hit("replace.add_unlinked")
        try:
            os.rename(self._temp, self._dict)
        except FileNotFoundError:
            if not keep_dict:
                # The rename may have happened already, or P.temp was removed and
                # P.dict is stale: either way it is not provably right.
                self._unlink(self._dict)
        if hooked:
            self._hit("replace.renamed")
        self._fsync_dir()
        if hooked:
            self._hit("replace.dir_synced")
        self._mark(NO_OP)
        if hooked:
            self._hit("replace.committed")
        self._remember()

    # --- recovery ---

    def _stored_tail_from_gz(self, length: int) -> bytes | None:
        """During a compress recovery: the stored tail, if P.gz still holds it intact."""
        s = self._s
        nblocks = (length + MAX_STORE - 1) // MAX_STORE
        last = s.first + (nblocks - 1) * _SPAN
        stored = length - (nblocks - 1) * MAX_STORE
        size = os.fstat(self._fd).st_size
        if last + 4 + stored > size:
            return None
        data = self._walk(self._fd, s, last, stored, check_last=True)
        if data is None or crc32_combine(s.ccrc, zlib.crc32(data), length) != s.tcrc:
            return None
        return data

    def _recover(self) -> None:
        s = self._s
        op = s.op
        self._repair(op, "start")
        try:
            if op == APPEND_OP:
                # The state marked for an append describes the log before it (the
                # state write is the commit point): redo it from step 3, as gzlog.c
                # does, even if the log already ends with the same bytes.
                data = self._read_aux(self._add)
                if data:
                    self._repair(op, "loaded .add file")
                else:
                    self._repair(op, "missing .add file!")
                    self._warn(
                        f"gzlog: {self._path}: an interrupted append was rolled back "
                        f"because {self._add} is missing or empty; the data of that "
                        f"append is lost"
                    )
                self._do_append(data or b"")
            elif op == COMPRESS_OP:
                length = (s.tlen - s.clen) & _M32
                data = self._read_aux(self._add)
                ok = (
                    data is not None
                    and len(data) == length
                    and crc32_combine(s.ccrc, zlib.crc32(data), length) == s.tcrc
                )
                if ok:
                    self._repair(op, "loaded .add file")
                else:
                    self._repair(op, "missing .add file!" if not data else "damaged .add file!")
                    data = self._stored_tail_from_gz(length)
                    if data is not None:
                        self._repair(op, "read the stored tail back from the .gz file")
                if data:
                    zdict = self._choose_dict()
                    newdict = _next_dict(zdict, data)
                    self._write_aux(self._temp, newdict)
                    self._fsync_dir()
                    self._deflate(data, zdict, newdict)
                else:
                    self._repair(op, f"lost {length} bytes of the stored tail")
                    self._warn(
                        f"gzlog: {self._path}: an interrupted compression could not be "
                        f"redone ({self._add} missing or damaged, tail overwritten); "
                        f"{length} bytes of data were lost"
                    )
                    self._cut_back()
            else:
                self._finish_replace(keep_dict=False)
        except OSError:
            self._repair(op, "failure")
            raise
        self._repair(op, "complete")

    # --- tools ---

    @classmethod
    def _tool(cls, path, lock_timeout: float | None, lock_warning_after: float) -> Gzlog:
        g = cls.__new__(cls)
        g._setup(path, lock_timeout, 300.0, None, "raise", "full", lock_warning_after)
        return g


def check(
    path: str | os.PathLike[str],
    *,
    recover: bool = True,
    lock_timeout: float | None = None,
    lock_warning_after: float = 2.0,
) -> dict:
    """Validate a gzlog fully (under its lock) and report its state.

    An interrupted operation is recovered when ``recover`` is true. A damaged
    file is reported (``valid`` false, ``error`` says why), not moved.
    Raises ``FileNotFoundError`` if the file does not exist, :class:`GzlogError`
    if it is not a regular file (a FIFO, device, socket or directory). Lock
    waits are bounded and reported as in :class:`Gzlog`.
    """
    g = Gzlog._tool(path, lock_timeout, lock_warning_after)
    report: dict = {"path": g.path, "valid": True, "error": None, "recovered": []}
    with g._locked():
        try:
            g._load(deep=True, create=False, recover=recover)
        except _Invalid as e:
            report["valid"] = False
            report["error"] = str(e)
        report["recovered"] = list(g._repair_lines)
        fd = g._fd
        head = _pread(fd, _DATA, 0)
        size = os.fstat(fd).st_size
    if len(head) == _DATA and head[:16] == HEADER:
        st = _S(head).public(size)
        report.update(
            first=st.first,
            last=st.last,
            ccrc=st.ccrc,
            clen=st.clen,
            tcrc=st.tcrc,
            tlen=st.tlen,
            stored=st.stored,
            back=st.back,
            op=st.op_name,
            stored_bytes=st.stored_bytes if report["valid"] else None,
            compressed_bytes=st.compressed_bytes,
        )
    report["file_size"] = size
    return report


def recover(
    path: str | os.PathLike[str],
    *,
    lock_timeout: float | None = None,
    lock_warning_after: float = 2.0,
) -> list[str]:
    """Validate a gzlog and finish or roll back an interrupted operation.

    Returns the lines added to ``P.repairs`` (empty if nothing was
    interrupted). A damaged file is moved aside and :class:`GzlogCorruptError`
    raised; a file that is not a regular file raises :class:`GzlogError`.
    """
    g = Gzlog._tool(path, lock_timeout, lock_warning_after)
    with g._locked():
        g._load_checked(deep=True, create=False)
        return list(g._repair_lines)
