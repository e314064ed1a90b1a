"""The files of a gzlog: their names, careful I/O on them, and the log file itself.

For ``run.jsonl.gz`` (base ``P = run.jsonl``): ``P.gz`` the log, ``P.add``,
``P.dict``, ``P.temp``, ``P.lock``, ``P.lock.new``, ``P.lock.k``, ``P.repairs``
and ``P.gz.new`` (see the package docstring). Auxiliary files are opened with
O_NOFOLLOW: a symbolic link there is replaced when written, ignored when read.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from contextlib import suppress
from dataclasses import dataclass

from mimir.gzlog.errors import GzlogError, warn

__all__ = [
    "HOST",
    "LOOP_ERRNOS",
    "NOFOLLOW",
    "NO_LINK_ERRNOS",
    "LogFiles",
    "append_line",
    "file_kind",
    "fsync_dir",
    "open_log",
    "open_new_aux",
    "pread",
    "pwrite_all",
    "pwritev_all",
    "read_aux",
    "read_small",
    "set_aside",
    "unlink",
    "write_aux",
]

HOST = socket.gethostname()
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
LOOP_ERRNOS = {errno.ELOOP, errno.EMLINK}
NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV}
_IOV_MAX = 1000  # buffers per pwritev call (Linux allows 1024)


@dataclass(frozen=True)
class LogFiles:
    """The names of a log's files, from the name of the ``.gz`` file."""

    gz: str
    add: str
    dict: str
    temp: str
    lock: str
    lock_new: str
    lock_k: str
    repairs: str
    new: str
    dir: str

    @classmethod
    def of(cls, path: str) -> LogFiles:
        """The files of the log ``path`` (which ends with ``.gz``)."""
        base = path[:-3]
        return cls(
            gz=path,
            add=base + ".add",
            dict=base + ".dict",
            temp=base + ".temp",
            lock=base + ".lock",
            lock_new=base + ".lock.new",
            lock_k=base + ".lock.k",
            repairs=base + ".repairs",
            new=path + ".new",
            dir=os.path.dirname(os.path.abspath(path)),
        )


def pread(fd: int, n: int, off: int) -> bytes:
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


def pwrite_all(fd: int, data: bytes | memoryview, off: int) -> None:
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, off)
        if n <= 0:
            raise GzlogError(errno.EIO, "short write")
        mv = mv[n:]
        off += n


def pwritev_all(fd: int, bufs: list[bytes | memoryview], off: int) -> None:
    """Write the buffers back to back at off, with as few system calls as possible."""
    for j in range(0, len(bufs), _IOV_MAX):
        group = bufs[j : j + _IOV_MAX]
        want = sum(len(b) for b in group)
        n = os.pwritev(fd, group, off)
        if n < want:  # short write: finish the rest plainly
            pwrite_all(fd, memoryview(b"".join(group))[n:], off + n)
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


def open_log(path: str, flags: int) -> int:
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


def fsync_dir(directory: str) -> None:
    """Make the directory's entries durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink(path: str) -> None:
    """Remove a file; a missing one is fine."""
    with suppress(FileNotFoundError):
        os.unlink(path)


def open_new_aux(path: str, flags: int) -> int:
    """Open an auxiliary file for writing, replacing (never following) a symlink."""
    flags |= os.O_WRONLY | os.O_CREAT | NOFOLLOW
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno not in LOOP_ERRNOS:
            raise
        os.unlink(path)  # the link itself, not its target
        fd = os.open(path, flags | os.O_EXCL, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GzlogError(errno.EINVAL, f"gzlog: {path} is not a regular file")
    return fd


def write_aux(path: str, data: bytes | memoryview, *, sync: bool = True) -> None:
    """Replace an auxiliary file's content (fsynced unless ``sync`` is false)."""
    fd = open_new_aux(path, os.O_TRUNC)
    try:
        pwrite_all(fd, data, 0)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_aux(path: str, limit: int | None = None) -> bytes | None:
    """Content of an auxiliary file, or None if missing, a symlink or not a file (warned)."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in LOOP_ERRNOS:
            warn(f"gzlog: ignoring {path}: it is a symbolic link")
            return None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            warn(f"gzlog: ignoring {path}: not a regular file")
            return None
        n = st.st_size if limit is None else min(st.st_size, limit)
        return pread(fd, n, 0)
    finally:
        os.close(fd)


def read_small(path: str) -> bytes:
    """The first 256 bytes of a small file (a lock file), not following a symlink."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    try:
        return os.read(fd, 256)
    finally:
        os.close(fd)


def append_line(path: str, line: str) -> None:
    """Append one line to a history file (``P.repairs``); a failure is not an error."""
    try:
        fd = open_new_aux(path, os.O_APPEND)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # as in the C program, a missing history line is not an error


def set_aside(path: str) -> str:
    """Give ``path`` a new name ``<path>.corrupt-<time>[-i]`` that did not exist; return it.

    The name is taken exclusively, so nothing there (a file, a planted symlink)
    is ever replaced or followed: a hard link is made (``link`` fails on any
    existing name) and ``path`` unlinked. Where hard links are unsupported, the
    name is reserved with an O_CREAT|O_EXCL|O_NOFOLLOW placeholder and ``path``
    renamed over it (a rename replaces the entry; it never follows a link).
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    i = 0
    while True:
        dest = f"{path}.corrupt-{stamp}" + (f"-{i}" if i else "")
        i += 1
        try:
            os.link(path, dest, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in NO_LINK_ERRNOS:
                raise
            try:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            os.rename(path, dest)
            return dest
        os.unlink(path)
        return dest
