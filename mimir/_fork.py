"""Let objects drop what belongs to the parent process after a ``fork()``."""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in the child after every fork, while obj lives."""
    _registered.add(obj)


def forget(obj: ForkAware) -> None:
    """Stop calling ``obj`` after forks (it was closed)."""
    _registered.discard(obj)


def _after_fork_in_child() -> None:
    for obj in list(_registered):
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
