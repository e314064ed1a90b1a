"""An in-memory ring of the most recent entries."""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from mimir._handler import Handler

__all__ = ["MemoryHandler"]


class MemoryHandler(Handler, Sequence):
    """Keeps the last ``maxlen`` entries in memory, as dicts, readable as a sequence.

    ``handler[-1]`` is the newest entry; slices, ``len()`` and iteration work as on a
    list. ``maxlen=0`` keeps nothing and ``maxlen=None`` keeps everything (as with
    :class:`collections.deque`).
    Reading is safe while other threads log: every read works on a consistent
    snapshot.

    Unlike the standard library's :class:`logging.handlers.MemoryHandler`, which
    buffers *records* until it flushes them to a target handler and then empties
    itself, this handler has no target: it is the store, it keeps the newest
    entries by dropping the oldest, and it holds entries (what the formatter built
    from each record), not records.
    """

    def __init__(self, maxlen: int | None = 1000, level: int | str = logging.NOTSET) -> None:
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int)):
            raise TypeError(f"maxlen must be an int or None, got {type(maxlen).__name__}")
        if maxlen is not None and maxlen < 0:
            raise ValueError(
                f"maxlen must be >= 0 (0 keeps nothing) or None (keeps all), got {maxlen}"
            )
        super().__init__(level)
        self.maxlen = maxlen
        self._ring: deque[dict[str, Any]] = deque(
            maxlen=None if maxlen is None else min(maxlen, sys.maxsize)
        )
        # add_entry(entry): add an entry that is already built (used by mimir.Logger.log).
        self.add_entry: Callable[[dict[str, Any]], None] = self._ring.append

    def emit(self, record: logging.LogRecord) -> None:
        """Add the record's entry to the ring."""
        if self.maxlen == 0:
            return
        try:
            self._ring.append(self.entry(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the entries currently held, oldest first."""
        return list(self._ring.copy())

    def clear(self) -> None:
        """Forget every entry held."""
        self._ring.clear()

    def __len__(self) -> int:
        return len(self._ring)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return self.snapshot()[index]
        try:
            return self._ring[index]
        except IndexError:
            raise IndexError(
                f"entry index {index} out of range: {len(self._ring)} entries held "
                f"(maxlen={self.maxlen})"
            ) from None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._ring.copy())

    def __reversed__(self) -> Iterator[dict[str, Any]]:
        return reversed(self._ring.copy())

    def __bool__(self) -> bool:
        return True  # a handler is truthy even when empty, as the stdlib assumes

    def __repr__(self) -> str:
        return f"<MemoryHandler {len(self._ring)}/{self.maxlen} entries>"
