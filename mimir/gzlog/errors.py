"""Exceptions and warnings of the gzlog engine, and how its warnings are issued."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

__all__ = [
    "GzlogCorruptError",
    "GzlogError",
    "GzlogLockWaitWarning",
    "GzlogWarning",
    "InvalidLog",
    "warn",
]


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


class InvalidLog(Exception):
    """Inside the engine: the file failed validation (the message says what and where)."""


_PACKAGE_DIR = os.path.dirname(__file__)
_CONTEXTLIB_FILE = contextlib.__file__


def _outside_stacklevel() -> int:
    """The ``stacklevel`` for a warning issued by :func:`warn` that names the first caller
    outside this package (and outside :mod:`contextlib`, whose frames a ``with`` adds)."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None and (
        os.path.dirname(frame.f_code.co_filename) == _PACKAGE_DIR
        or frame.f_code.co_filename == _CONTEXTLIB_FILE
    ):
        frame = frame.f_back
        level += 1
    return level


def warn(msg: str | GzlogWarning, category: type[GzlogWarning] = GzlogWarning) -> None:
    """Issue a :class:`GzlogWarning` attributed to the first caller outside the engine."""
    warnings.warn(msg, category, stacklevel=_outside_stacklevel())
