"""Checking and repairing a log, and what readers need to read one safely.

:func:`check` and :func:`recover` (the functions ``mimir check`` builds on) run
the engine's full validation under the lock; :func:`parse_state` and
:func:`pending_operation` decode a log's state for readers, without the lock.
"""

from __future__ import annotations

import os

from mimir.gzlog.engine import Inspection
from mimir.gzlog.files import open_log, pread
from mimir.gzlog.format import DEFLATE_START, HEADER, GzlogState, State, operation_of

__all__ = ["check", "parse_state", "pending_operation", "recover"]


def parse_state(data: bytes, file_size: int | None = None) -> GzlogState | None:
    """The state in the first 51 bytes of ``data`` (a whole file, or its head).

    None if ``data`` does not start with a gzlog's header and state. No
    validation: the numbers are as the file says. ``file_size`` defaults to
    ``len(data)``.
    """
    if len(data) < DEFLATE_START or data[:16] != HEADER:
        return None
    return State(data).public(len(data) if file_size is None else file_size)


def pending_operation(path: str | os.PathLike[str]) -> str:
    """The operation the state of the log ``path`` marks as in progress, read without
    the lock: ``"none"``, ``"append"``, ``"compress"`` or ``"replace"``."""
    fd = open_log(os.fspath(path), os.O_RDONLY)
    try:
        return operation_of(pread(fd, DEFLATE_START, 0))
    finally:
        os.close(fd)


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
    log = Inspection(path, lock_timeout=lock_timeout, lock_warning_after=lock_warning_after)
    found = log.check(recover=recover)
    valid = found.error is None
    report: dict = {
        "path": log.path,
        "valid": valid,
        "error": found.error,
        "recovered": found.recovered,
    }
    st = parse_state(found.head, found.size)
    if st is not None:
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
            stored_bytes=st.stored_bytes if valid else None,
            compressed_bytes=st.compressed_bytes,
        )
    report["file_size"] = found.size
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
    log = Inspection(path, lock_timeout=lock_timeout, lock_warning_after=lock_warning_after)
    return log.recover()
