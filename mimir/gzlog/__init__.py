"""The gzlog file-format engine: crash-safe appends to one ``.gz`` file.

This package implements the on-disk format and recovery protocol of zlib's
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

Map of the package
------------------
Each module imports only those listed above it; nothing here imports the rest
of Mímir, nor :mod:`logging`.

=================  ==========================================================
``errors``         :class:`GzlogError` and the other exceptions and warnings
``format``         the layout: header, the 35-byte state, stored block
                   headers, sizes, CRC-32 combination (no I/O)
``files``          the names of a log's files, careful I/O on them, moving a
                   damaged log aside
``deflate``        reading the compressed part back and splicing a
                   compressed tail into it
``validation``     the checks before anything is written: header, state,
                   stored blocks, CRCs, trailer, the compressed part
``lock``           the lock protocol; what readers and ``mimir check`` learn
                   from the lock (:func:`read_snapshot`,
                   :func:`describe_lock_holder`, :func:`writer_active`)
``engine``         :class:`Gzlog`: open and validate, append, compress,
                   recover, verify
``inspection``     :func:`check`, :func:`recover`, and the state as readers
                   see it (:func:`parse_state`, :func:`pending_operation`)
=================  ==========================================================
"""

from mimir.gzlog.engine import Gzlog
from mimir.gzlog.errors import (
    GzlogCorruptError,
    GzlogError,
    GzlogLockWaitWarning,
    GzlogWarning,
)
from mimir.gzlog.files import file_kind
from mimir.gzlog.format import (
    DEFLATE_START,
    EMPTY_LOG,
    HEADER,
    MAX_APPEND,
    MAX_TAIL,
    GzlogState,
    crc32_combine,
)
from mimir.gzlog.inspection import check, parse_state, pending_operation, recover
from mimir.gzlog.lock import describe_lock_holder, read_snapshot, writer_active

__all__ = [
    "DEFLATE_START",
    "EMPTY_LOG",
    "HEADER",
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
    "describe_lock_holder",
    "file_kind",
    "parse_state",
    "pending_operation",
    "read_snapshot",
    "recover",
    "writer_active",
]
