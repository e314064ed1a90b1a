"""The lock protocol of a gzlog, and what readers and ``mimir check`` learn from it.

A writer first takes an exclusive ``flock`` on ``P.lock.k`` (created once,
never deleted), then creates ``P.lock`` exclusively with the content
``"host pid"``, for compatibility with zlib's gzlog.c; see the package
docstring for the rules (staging in ``P.lock.new``, takeover of a dead
process's or a stale lock, waiting with one warning, touching while held).
Readers take a shared ``flock`` on ``P.lock.k`` for a consistent copy.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import stat
import time
from collections.abc import Callable

from mimir.gzlog.errors import GzlogError, GzlogLockWaitWarning, warn
from mimir.gzlog.files import (
    HOST,
    LOOP_ERRNOS,
    NO_LINK_ERRNOS,
    NOFOLLOW,
    LogFiles,
    read_small,
    unlink,
    write_aux,
)

__all__ = ["LogLock", "describe_lock_holder", "read_snapshot", "writer_active"]

_TOUCH_EVERY = 1.0  # seconds between touches of P.lock while it is held
_SNAPSHOT_WAIT = 1.0  # seconds a reader waits for a writer before reading anyway


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


class LogLock:
    """The lock of one log, taken and released around each operation of the engine.

    ``timeout`` bounds each wait (``None``: no bound) with :class:`GzlogError`
    (``ETIMEDOUT``); a wait longer than ``warning_after`` seconds issues one
    :class:`GzlogLockWaitWarning` naming the holder; a lock file of another host,
    or zlib's empty one, is taken over when untouched for ``stale_after`` seconds.
    """

    def __init__(
        self,
        files: LogFiles,
        *,
        timeout: float | None,
        warning_after: float,
        stale_after: float,
    ):
        self._files = files
        self.timeout = timeout
        self.warning_after = warning_after
        self.stale_after = stale_after
        self._kfd = -1
        self._lock_id: tuple[int, int] | None = None
        self._touched = 0.0  # time.monotonic() of the last touch of P.lock

    def acquire(self) -> None:
        """Take the lock: the kernel lock on ``P.lock.k``, then ``P.lock``; wait as needed."""
        wait = _LockWait(time.monotonic(), self.timeout)
        try:
            kfd = os.open(self._files.lock_k, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
        except OSError as e:
            if e.errno in LOOP_ERRNOS:
                raise GzlogError(
                    e.errno, f"gzlog: refusing symlinked lock file {self._files.lock_k}"
                ) from None
            raise
        try:
            while True:
                try:
                    fcntl.flock(kfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self._pause(wait, kfd)
            owner = f"{HOST} {os.getpid()}\n".encode()
            staged = False
            try:
                while True:
                    if not staged:
                        write_aux(self._files.lock_new, owner, sync=False)
                        staged = True
                    if self._create_file(owner):
                        break
                    if self._abandoned():
                        unlink(self._files.lock)
                        continue
                    self._pause(wait, -1)
            finally:
                if staged:
                    unlink(self._files.lock_new)
            st = os.lstat(self._files.lock)
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
            who, since, when, advice = self._holder(kfd, waited)
            raise GzlogError(
                errno.ETIMEDOUT,
                f"gzlog: timed out after {self.timeout:g} s waiting for the lock of "
                f"{self._files.gz}: it is held by {who} ({since}); {when}. {advice}",
            )
        if not wait.warned and waited >= self.warning_after:
            wait.warned = True
            who, since, when, _ = self._holder(kfd, waited)
            warn(
                f"gzlog: waiting {waited:.1f} s so far for the lock of {self._files.gz}: it is "
                f"held by {who} ({since}); {when}",
                GzlogLockWaitWarning,
            )
        delay = wait.delay
        if wait.deadline is not None:
            delay = min(delay, wait.deadline - now)
        if not wait.warned:
            delay = min(delay, max(0.0, wait.start + self.warning_after - now))
        time.sleep(max(delay, 0.0))
        wait.delay = min(wait.delay * 2, 0.05)

    def _holder(self, kfd: int, waited: float) -> tuple[str, str, str, str]:
        """Who holds the lock we wait for: (who, since when, when it goes stale, advice)."""
        content, age = self._file_info()
        words = content.split() if content is not None else []
        if kfd >= 0:  # the kernel lock on P.lock.k: a live Mímir process holds it
            pid = _flock_holder(kfd)
            if pid is None and len(words) == 2 and words[0] == HOST:
                pid = words[1]  # its P.lock names it (normally created right after the flock)
            if pid is not None:
                who = f"host {HOST} pid {pid}, a Mímir process holding {self._files.lock_k}"
            else:
                who = f"another Mímir process on this host holding {self._files.lock_k}"
            if age is not None and len(words) == 2 and words == [HOST, str(pid)]:
                since = f"{self._files.lock} last touched {int(age)} s ago"
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
        left = math.ceil(max(0.0, self.stale_after - age))
        since = f"{self._files.lock}, last touched {int(age)} s ago"
        when = (
            f"taken over in {left} s if its owner does not touch it "
            f"(a lock untouched for {self.stale_after:g} s is stale)"
        )
        advice = (
            f"If no process uses the log any more, delete {self._files.lock}; otherwise wait, "
            f"or pass a larger lock_timeout (None waits until the lock is released or stale)."
        )
        return who, since, when, advice

    def _file_info(self) -> tuple[str | None, float | None]:
        """P.lock's content (None if missing or not a regular file) and its age in seconds."""
        try:
            st = os.lstat(self._files.lock)
        except OSError:
            return None, None
        age = max(0.0, time.time() - st.st_mtime)
        if not stat.S_ISREG(st.st_mode):
            return None, age
        try:
            return read_small(self._files.lock).decode("utf-8", "replace"), age
        except OSError:
            return None, age

    def _create_file(self, owner: bytes) -> bool:
        """Create P.lock exclusively, already holding its content; False if it exists.

        The content is staged in P.lock.new and hard-linked into place, so a
        process killed at any moment never leaves an empty (ownerless) P.lock.
        """
        try:
            os.link(self._files.lock_new, self._files.lock, follow_symlinks=False)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in NO_LINK_ERRNOS:
                raise
        try:  # a file system without hard links: create, then write
            fd = os.open(self._files.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, owner)
        finally:
            os.close(fd)
        return True

    def _abandoned(self) -> bool:
        """Whether an existing P.lock may be taken over (we hold the kernel lock)."""
        try:
            st = os.lstat(self._files.lock)
        except FileNotFoundError:
            return True
        if stat.S_ISREG(st.st_mode):
            try:
                words = read_small(self._files.lock).split()
            except OSError:
                words = []
            # Written by Mímir on this host: its owner does not hold the kernel
            # lock (we do), so it is dead or gone.
            if len(words) == 2 and words[0].decode("utf-8", "replace") == HOST:
                return True
        return time.time() - st.st_mtime > self.stale_after

    def release(self, *, leave_file: bool = False) -> None:
        """Drop the lock: unlink ``P.lock`` if still ours (unless ``leave_file``: a process
        that died mid-operation leaves it), then the kernel lock."""
        kfd, self._kfd = self._kfd, -1
        try:
            if not leave_file and self._lock_id is not None:
                try:
                    st = os.lstat(self._files.lock)
                    if (st.st_ino, st.st_mtime_ns) == self._lock_id:
                        os.unlink(self._files.lock)
                except OSError:
                    pass
        finally:
            self._lock_id = None
            if kfd >= 0:
                os.close(kfd)

    def check(self) -> None:
        """Raise unless P.lock is still ours; touch it (at most every second: the
        lock goes stale for others after ``stale_after`` seconds, 300 by default)."""
        try:
            st = os.lstat(self._files.lock)
        except FileNotFoundError:
            st = None
        if st is None or (st.st_ino, st.st_mtime_ns) != self._lock_id:
            raise GzlogError(errno.ENOLCK, f"gzlog: lost the lock {self._files.lock}")
        now = time.monotonic()
        if now - self._touched >= _TOUCH_EVERY:
            os.utime(self._files.lock, follow_symlinks=False)
            st = os.lstat(self._files.lock)
            self._lock_id = (st.st_ino, st.st_mtime_ns)
            self._touched = now


# --- for readers and `mimir check` ---


def writer_active(path: str) -> bool:
    """Whether a Mímir writer holds the kernel lock of the log ``path`` right now."""
    try:
        fd = os.open(LogFiles.of(path).lock_k, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def describe_lock_holder(path: str) -> str | None:
    """Who holds the lock of the log ``path``, as far as its lock file says; None if none.

    For ``mimir check``: ``"host H pid P, running, lock 3 s old"``, a lock left
    behind by a dead writer, or one of unknown owner (zlib's gzlog.c).
    """
    lock = LogFiles.of(path).lock
    try:
        st = os.lstat(lock)
        with open(lock, "rb") as file:
            words = file.read(256).decode("utf-8", "replace").split()
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"unknown ({error.strerror})"
    age = f"{max(0.0, time.time() - st.st_mtime):.0f} s old"
    if len(words) == 2 and not writer_active(path):
        return (
            f"host {words[0]} pid {words[1]}, left behind (no Mímir writer holds the lock:"
            f" a dead writer's, taken over), lock {age}"
        )
    if len(words) != 2 or not words[1].isdigit():
        return f"unknown owner (e.g. zlib's gzlog.c), lock {age}"
    host, pid = words[0], int(words[1])
    alive = ""
    if host == HOST:
        try:
            os.kill(pid, 0)
            alive = ", running"
        except ProcessLookupError:
            alive = ", no such process (a dead writer's lock: it is taken over)"
        except PermissionError:
            alive = ", running"
    return f"host {host} pid {pid}{alive}, lock {age}"


def read_snapshot(path: str, read: Callable[[], bytes]) -> tuple[bytes, bool]:
    """``read()`` (the bytes of the log ``path``), called while no Mímir writer changes it.

    Mímir's writers hold an exclusive ``flock`` on ``P.lock.k`` during every
    append and compression; a shared lock on it (when it exists and is readable,
    waiting at most about a second) gives a consistent copy. The flag says
    whether no writer can have been at work during the read: the shared lock was
    held (or there is no ``P.lock.k``) and there was no ``P.lock`` (which zlib's
    gzlog.c holds while it writes) before or after it.
    """
    files = LogFiles.of(path)
    lock_fd = -1
    locked = False
    try:
        lock_fd = os.open(files.lock_k, os.O_RDONLY | NOFOLLOW)
    except (OSError, ValueError):
        locked = True  # no Mímir writer has ever locked this log
    try:
        if lock_fd >= 0:
            deadline = time.monotonic() + _SNAPSHOT_WAIT
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    locked = True
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break  # read anyway; the check of the data catches a torn copy
                    time.sleep(0.002)
                except OSError:
                    break
        quiet = locked and not _foreign_lock(files.lock)
        data = read()
        return data, quiet and not _foreign_lock(files.lock)
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)  # also drops the flock


def _foreign_lock(lock: str) -> bool:
    """Whether the lock file ``lock`` exists and may belong to a writer at work.

    Called while holding the shared kernel lock, which no Mímir writer at work
    leaves free: a ``P.lock`` naming this host is then a dead Mímir writer's.
    Any other (zlib's gzlog.c writes an empty one) may be a live writer's.
    """
    try:
        words = read_small(lock).split()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return not (len(words) == 2 and words[0] == HOST.encode())
