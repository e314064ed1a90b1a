"""The engine: :class:`Gzlog`, one open log (open and validate, append, compress, recover).

The layout it writes is in :mod:`mimir.gzlog.format`, the compressed part is
spliced by :mod:`mimir.gzlog.deflate`, its files are handled by
:mod:`mimir.gzlog.files` and its lock by :mod:`mimir.gzlog.lock`. See the
package docstring for the protocol (durability, validation, recovery outcomes,
fault points).
"""

from __future__ import annotations

import errno
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import NoReturn

from mimir.gzlog.deflate import (
    flush_block_bit,
    inflate,
    next_dict,
    raw_deflate,
    skip_empty_stored,
)
from mimir.gzlog.errors import GzlogCorruptError, GzlogError, GzlogWarning, InvalidLog, warn
from mimir.gzlog.files import (
    LogFiles,
    append_line,
    fsync_dir,
    open_log,
    open_new_aux,
    pread,
    pwrite_all,
    pwritev_all,
    read_aux,
    set_aside,
    unlink,
    write_aux,
)
from mimir.gzlog.format import (
    APPEND_OP,
    COMPRESS_OP,
    DEFLATE_START,
    DICT_SIZE,
    EMPTY_LOG,
    HEADER,
    M32,
    MAX_APPEND,
    MAX_STORE,
    MAX_TAIL,
    NO_OP,
    OP_NAMES,
    REPLACE_OP,
    TRAILER,
    GzlogState,
    State,
    crc32_combine,
    stored_block_header,
)
from mimir.gzlog.lock import LogLock
from mimir.gzlog.validation import check_compressed, read_tail, stored_tail_from_gz, validate

__all__ = ["Gzlog", "Inspection", "InspectionResult"]

#: Most compressed bytes inflated to catch up with other processes' compressions
#: (beyond, one compression runs without a dictionary).
_CATCH_UP_MAX = 16 << 20
_WRITE_CHUNK = 1 << 18  # compressed bytes per write of a compression


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
        self._files = LogFiles.of(p)
        self._lock = LogLock(
            self._files,
            timeout=lock_timeout,
            warning_after=lock_warning_after,
            stale_after=stale_after,
        )
        self._hooks = hooks
        self._hook_counts: dict[str, int] = {}
        self._on_corrupt = on_corrupt
        self._closed = False
        self._broken: str | None = None
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._fd = -1
        self._crashed = False  # a fault point simulated the death of the process
        self._dirty = False
        self._s: State | None = None
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
                        except InvalidLog as e:
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
            fd = open_log(self._path, os.O_RDONLY)
            try:
                head = pread(fd, DEFLATE_START, 0)
            finally:
                os.close(fd)
        except OSError:
            head = b""
        if len(head) < DEFLATE_START or head[:16] != HEADER:
            return self._marked
        s = State(head)
        if s.op == APPEND_OP:
            return True
        n = len(piece)
        return (s.tlen, s.tcrc) == ((tlen + n) & M32, crc32_combine(tcrc, zlib.crc32(piece), n))

    def compress(self) -> None:
        """Compress the stored tail now, if there is one."""
        try:
            with self._locked():
                while True:
                    try:
                        self._load_checked(deep=False)
                        self._compress_tail()
                        return
                    except InvalidLog as e:
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
        fd = open_log(self._path, os.O_RDONLY)
        try:
            head = pread(fd, DEFLATE_START, 0)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if len(head) < DEFLATE_START or head[:16] != HEADER:
            raise GzlogError(errno.EINVAL, f"{self._path} is not a gzlog file")
        return State(head).public(size)

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

    def _fault_point(self, point: str) -> None:
        n = self._hook_counts[point] = self._hook_counts.get(point, 0) + 1
        try:
            self._hooks(point, n)
        except OSError:
            raise
        except BaseException:
            self._crashed = True
            raise

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
            self._lock.acquire()
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
                self._lock.release(leave_file=self._crashed)

    def _repair(self, op: int, status: str) -> None:
        line = f"{time.ctime()[:24]} {OP_NAMES[op]} recovery: {status}"
        self._repair_lines.append(line)
        append_line(self._files.repairs, line)

    # --- loading, validation ---

    def _load_checked(self, *, deep: bool, create: bool = True, recover: bool = True) -> None:
        try:
            self._load(deep=deep, create=create, recover=recover)
        except InvalidLog as e:
            self._move_aside(str(e))

    def _load(self, *, deep: bool, create: bool, recover: bool) -> None:
        try:
            fd = open_log(self._path, os.O_RDWR)
        except FileNotFoundError:
            if not create:
                raise
            self._create_new()
            fd = open_log(self._path, os.O_RDWR)
        self._fd = fd
        self._dirty = False
        st = os.fstat(fd)
        if st.st_size == 0 and create:
            os.close(fd)
            self._fd = -1
            self._create_new()
            fd = self._fd = open_log(self._path, os.O_RDWR)
            st = os.fstat(fd)
        head = pread(fd, DEFLATE_START, 0)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, head)
        if not deep and key == self._cache:
            self._s = State(head)
            return
        self._cache = None
        s = validate(fd, st.st_size, head)
        verified = deep or s.op != NO_OP
        if verified:
            self._known = (s.ccrc, s.clen, check_compressed(fd, s), s.end_bit())
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

    def _move_aside(self, reason: str) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        dest = set_aside(self._path)
        fsync_dir(self._files.dir)
        self._cache = None
        self._s = None
        self._known = None
        msg = f"gzlog: {self._path} failed validation ({reason}); it was moved to {dest}"
        if self._on_corrupt == "new":
            warn(GzlogWarning(msg + "; a new, empty log was started", reason=reason, moved_to=dest))
            self._load(deep=False, create=True, recover=True)
            return
        self._broken = msg + "; open a new Gzlog to start a new log"
        raise GzlogCorruptError(msg, reason=reason, moved_to=dest)

    def _create_new(self) -> None:
        # A dictionary left by an earlier log of the same name must never be used.
        unlink(self._files.dict)
        tmp = self._files.new
        fd = open_new_aux(tmp, os.O_TRUNC)
        try:
            pwrite_all(fd, EMPTY_LOG, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self._path)
        fsync_dir(self._files.dir)
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
        have = read_aux(self._files.dict, DICT_SIZE + 1)
        if not k[2]:
            if have is not None:
                unlink(self._files.dict)
            return
        if have != k[2]:
            write_aux(self._files.temp, k[2])
            os.rename(self._files.temp, self._files.dict)
            fsync_dir(self._files.dir)

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
        bit = s.end_bit()
        if k is not None:
            if (k[0], k[1]) == (s.ccrc, s.clen):
                self._known = (s.ccrc, s.clen, k[2], bit)
                return k[2] or None
            caught = self._catch_up(k)
            if caught is not None:
                return caught or None
        self._known = None
        if 0 < s.clen <= DICT_SIZE:
            d = read_aux(self._files.dict, DICT_SIZE + 1)
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
        end = s.end_bit()
        if not start < end or (end - start) >> 3 > _CATCH_UP_MAX:
            return None
        start = skip_empty_stored(self._fd, start, end)
        try:
            crc, total, tail = inflate(self._fd, s, start, zdict or None)
        except InvalidLog:
            return None
        if (clen + total) & M32 != s.clen or crc32_combine(ccrc, crc, total) != s.ccrc:
            return None
        new = next_dict(zdict, tail)
        self._known = (s.ccrc, s.clen, new, end)
        return new

    # --- writing P.gz ---

    def _maybe_fault_point(self, point: str) -> None:
        if self._hooks is not None:
            self._fault_point(point)

    def _mark(self, op: int) -> None:
        """The commit point: one 35-byte state write, fsync before and after."""
        self._lock.check()
        fd = self._fd
        if self._dirty:
            os.fsync(fd)
        if self._hooks is not None:
            self._fault_point("state.pre")
        if os.pwrite(fd, self._s.pack(op), 16) != 35:
            raise GzlogError(errno.EIO, f"gzlog: short state write to {self._path}")
        if op == APPEND_OP:
            self._marked = True
        os.fsync(fd)
        self._dirty = False
        self._s.op = op
        if self._hooks is not None:
            self._fault_point("state.post")

    def _write_last(self, final: bool) -> None:
        """C's log_last: rewrite the last stored block's header and LEN/NLEN."""
        s = self._s
        back = s.back if s.last == s.first else 8
        n = 2 if back > 8 else 1
        prev = 0
        if back != 8:
            b = pread(self._fd, 1, s.last - n)
            if len(b) != 1:
                raise GzlogError(errno.EIO, f"gzlog: short read from {self._path}")
            prev = b[0]
        self._dirty = True
        pwrite_all(self._fd, stored_block_header(prev, back, final, s.stored), s.last - n)

    def _append_piece(self, data: bytes | memoryview) -> None:
        self._marked = False
        write_aux(self._files.add, data)
        fsync_dir(self._files.dir)
        hooked = self._hooks is not None
        if hooked:
            self._fault_point("append.add_written")
        self._mark(APPEND_OP)
        if hooked:
            self._fault_point("append.marked")
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
            b = pread(fd, 1, hpos)
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
            bufs.append(stored_block_header(0, 8, i + n == total, n))
            bufs.append(mv[i : i + n])
            stored = n
            i += n
        tcrc = zlib.crc32(data, s.tcrc) if total else s.tcrc
        tlen = (s.tlen + total) & M32
        bufs.append(TRAILER.pack(tcrc, tlen))
        self._dirty = True
        pwritev_all(fd, bufs, s.last + 4 + s.stored)
        if hooked and total:
            self._fault_point("append.data")
        pwrite_all(fd, stored_block_header(prev, back, last == s.last, first_len), hpos)
        if hooked:
            self._fault_point("append.block")
        if recovery:  # else the file ended at the old trailer: the writes extended it
            os.ftruncate(fd, last + 4 + stored + 8)
        s.last, s.stored, s.tcrc, s.tlen = last, stored, tcrc, tlen
        if hooked:
            self._fault_point("append.trailer")
        self._mark(NO_OP)
        if hooked:
            self._fault_point("append.committed")
        with suppress(OSError):  # committed; a leftover P.add is ignored while op is 0
            os.unlink(self._files.add)
        if hooked:
            self._fault_point("append.add_unlinked")
        self._remember()

    def _compress_tail(self) -> None:
        s = self._s
        if s.last == s.first and s.stored == 0:
            return
        hooked = self._hooks is not None
        data = read_tail(self._fd, self._s)
        self._lock.check()
        write_aux(self._files.add, data)
        if hooked:
            self._fault_point("compress.add_written")
        zdict = self._choose_dict()
        newdict = next_dict(zdict, data)
        write_aux(self._files.temp, newdict)
        fsync_dir(self._files.dir)
        if hooked:
            self._fault_point("compress.temp_written")
        s.last = s.first
        s.stored = 0
        self._mark(COMPRESS_OP)
        if hooked:
            self._fault_point("compress.marked")
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
            b = pread(fd, 1, start)
            if len(b) != 1:
                raise GzlogError(errno.EIO, f"gzlog: short read from {self._path}")
            lead = stored_block_header(b[0], s.back, False, 0)
        out = lead + raw_deflate(data, zdict, self.compression_level)
        self._lock.check()
        # The partial flush ends with an empty static block (bits 0,1,0 + seven 0s);
        # its second bit is the last 1-bit. Its first bit (h) is where the new first
        # stored block's header goes.
        h = flush_block_bit(out)
        if h < len(lead) * 8 or (out[h >> 3] >> (h & 7)) & 1:
            raise GzlogError(errno.EIO, "gzlog: unexpected deflate output (no partial flush)")
        nf = (h + 10) // 8  # new first, relative to start
        nb = nf * 8 - h  # new back, 3..10
        cut = h >> 3  # the byte holding the header's first bit: bits below h are kept
        mv = memoryview(out)
        for off in range(0, cut, _WRITE_CHUNK):
            self._dirty = True
            pwrite_all(fd, mv[off : min(off + _WRITE_CHUNK, cut)], start + off)
            if hooked:
                self._fault_point("compress.chunk")
        if hooked:
            self._fault_point("compress.deflated")
        tail = stored_block_header(out[cut], nb, True, 0) + TRAILER.pack(s.tcrc, s.tlen)
        pwrite_all(fd, tail, start + cut)
        os.ftruncate(fd, start + cut + len(tail))
        self._dirty = True
        if hooked:
            self._fault_point("compress.trailer")
        s.first = s.last = start + nf
        s.back = nb
        s.stored = 0
        s.ccrc, s.clen = s.tcrc, s.tlen
        self._known = (s.ccrc, s.clen, newdict, s.end_bit())
        self._mark(REPLACE_OP)
        if hooked:
            self._fault_point("replace.marked")
        self._finish_replace(keep_dict=False)

    def _cut_back(self) -> None:
        """Compress recovery without data: end the log after its compressed part."""
        s, fd = self._s, self._fd
        unlink(self._files.temp)  # it holds the lost tail: must never become P.dict
        fsync_dir(self._files.dir)
        s.tcrc, s.tlen = s.ccrc, s.clen
        s.last = s.first
        s.stored = 0
        self._write_last(True)
        pwrite_all(fd, TRAILER.pack(s.tcrc, s.tlen), s.first + 4)
        os.ftruncate(fd, s.first + 12)
        self._maybe_fault_point("compress.trailer")
        self._mark(REPLACE_OP)
        self._maybe_fault_point("replace.marked")
        self._finish_replace(keep_dict=True)

    def _finish_replace(self, *, keep_dict: bool) -> None:
        """Step 5 after the replace mark: drop P.add, P.temp -> P.dict, mark done."""
        hooked = self._hooks is not None
        unlink(self._files.add)
        if hooked:
            self._fault_point("replace.add_unlinked")
        try:
            os.rename(self._files.temp, self._files.dict)
        except FileNotFoundError:
            if not keep_dict:
                # The rename may have happened already, or P.temp was removed and
                # P.dict is stale: either way it is not provably right.
                unlink(self._files.dict)
        if hooked:
            self._fault_point("replace.renamed")
        fsync_dir(self._files.dir)
        if hooked:
            self._fault_point("replace.dir_synced")
        self._mark(NO_OP)
        if hooked:
            self._fault_point("replace.committed")
        self._remember()

    # --- recovery ---

    def _recover(self) -> None:
        s = self._s
        op = s.op
        self._repair(op, "start")
        try:
            if op == APPEND_OP:
                # The state marked for an append describes the log before it (the
                # state write is the commit point): redo it from step 3, as gzlog.c
                # does, even if the log already ends with the same bytes.
                data = read_aux(self._files.add)
                if data:
                    self._repair(op, "loaded .add file")
                else:
                    self._repair(op, "missing .add file!")
                    warn(
                        f"gzlog: {self._path}: an interrupted append was rolled back "
                        f"because {self._files.add} is missing or empty; the data of that "
                        f"append is lost"
                    )
                self._do_append(data or b"")
            elif op == COMPRESS_OP:
                length = (s.tlen - s.clen) & M32
                data = read_aux(self._files.add)
                ok = (
                    data is not None
                    and len(data) == length
                    and crc32_combine(s.ccrc, zlib.crc32(data), length) == s.tcrc
                )
                if ok:
                    self._repair(op, "loaded .add file")
                else:
                    self._repair(op, "missing .add file!" if not data else "damaged .add file!")
                    data = stored_tail_from_gz(self._fd, s, length)
                    if data is not None:
                        self._repair(op, "read the stored tail back from the .gz file")
                if data:
                    zdict = self._choose_dict()
                    newdict = next_dict(zdict, data)
                    write_aux(self._files.temp, newdict)
                    fsync_dir(self._files.dir)
                    self._deflate(data, zdict, newdict)
                else:
                    self._repair(op, f"lost {length} bytes of the stored tail")
                    warn(
                        f"gzlog: {self._path}: an interrupted compression could not be "
                        f"redone ({self._files.add} missing or damaged, tail overwritten); "
                        f"{length} bytes of data were lost"
                    )
                    self._cut_back()
            else:
                self._finish_replace(keep_dict=False)
        except OSError:
            self._repair(op, "failure")
            raise
        self._repair(op, "complete")


@dataclass(frozen=True)
class InspectionResult:
    """What :meth:`Inspection.check` found: the damage (None if valid), the recovery
    steps taken, and the file's first 51 bytes and size as left afterwards."""

    error: str | None
    recovered: list[str]
    head: bytes
    size: int


class Inspection(Gzlog):
    """A log examined by :func:`~mimir.gzlog.check` and :func:`~mimir.gzlog.recover`.

    Unlike :class:`Gzlog`, constructing it touches nothing: no lock, no new log,
    no validation. A damaged file is reported by :meth:`check`, not moved.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float | None = None,
        lock_warning_after: float = 2.0,
    ):
        self._setup(path, lock_timeout, 300.0, None, "raise", "full", lock_warning_after)

    def check(self, *, recover: bool) -> InspectionResult:
        """Validate fully under the lock (recovering an interrupted operation if
        ``recover``); a missing file raises ``FileNotFoundError``."""
        error = None
        with self._locked():
            try:
                self._load(deep=True, create=False, recover=recover)
            except InvalidLog as e:
                error = str(e)
            head = pread(self._fd, DEFLATE_START, 0)
            size = os.fstat(self._fd).st_size
            return InspectionResult(error, list(self._repair_lines), head, size)

    def recover(self) -> list[str]:
        """Validate fully and recover; a damaged file is moved aside and
        :class:`GzlogCorruptError` raised. Returns the recovery steps taken."""
        with self._locked():
            self._load_checked(deep=True, create=False)
            return list(self._repair_lines)
