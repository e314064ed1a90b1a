"""What every Mímir handler shares: failure counting and entry formatting."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from mimir._json import SerializationError
from mimir.formatter import JSONFormatter

__all__ = ["EntriesDropped", "Handler", "as_line", "report_lost_at_close"]

# Distinct encoding failures counted per handler; further ones share one count.
_MAX_FAILURE_KINDS = 16


class EntriesDropped(RuntimeError):
    """Entries were dropped: a buffer or queue was full, or the output is gone."""


def report_lost_at_close(
    report: Callable[[str], None], name: str, lost: int, last_error: BaseException | None
) -> None:
    """Say that ``lost`` entries kept for a retry were given up at close.

    ``report`` is called inside an ``except`` block whose exception is chained to
    ``last_error``, so that a handler's report shows the cause.
    """
    try:
        raise EntriesDropped(
            f"{name}: {lost} entries could not be written before close() and are lost"
            f" (last error: {last_error or 'unknown'}); counted in .dropped"
        ) from last_error
    except EntriesDropped as error:
        report(str(error))


def as_line(line: bytes | bytearray | memoryview | str) -> bytes:
    """``line`` as UTF-8 bytes ending in one newline (the form handlers queue)."""
    data = line.encode() if isinstance(line, str) else bytes(line)
    return data if data[-1:] == b"\n" else data + b"\n"


class Handler(logging.Handler):
    """Base class of Mímir's handlers.

    ``failures`` counts every error that went to :meth:`handleError`, which also
    prints it unless :data:`logging.raiseExceptions` is false: no failure is silent.
    An entry that cannot be encoded (:class:`~mimir.SerializationError`) is reported
    in full the first time its cause (exception type and message) is seen, then as
    one line with the count at the 2nd, 4th, 8th... occurrence, not a traceback per
    entry.
    Without a formatter of its own, a handler writes entries with a default
    :class:`~mimir.JSONFormatter`.
    """

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        # Told when the level, formatter or filters change, however they are set
        # (see mimir.Logger, whose direct path depends on them).
        self.on_change: Callable[[], None] | None = None
        super().__init__(level)
        self.failures = 0
        self._encoding_failures: dict[tuple[str, str], int] = {}
        self._default_formatter: JSONFormatter | None = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @property
    def level(self) -> int:  # type: ignore[override]
        """The handler's level; setting it (``setLevel`` or assignment) tells ``on_change``."""
        return self._level

    @level.setter
    def level(self, value: int) -> None:
        self._level = value
        self._changed()

    @property
    def formatter(self) -> logging.Formatter | None:  # type: ignore[override]
        """The handler's formatter; setting it (``setFormatter`` or assignment) tells
        ``on_change``."""
        return self._formatter

    @formatter.setter
    def formatter(self, value: logging.Formatter | None) -> None:
        self._formatter = value
        self._changed()

    def addFilter(self, filter: Any) -> None:
        """Add a filter, as the stdlib does, and tell ``on_change``."""
        super().addFilter(filter)
        self._changed()

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        """Filter and emit ``record``.

        Unlike :meth:`logging.Handler.handle`, no handler-wide lock is taken when there
        are no filters: Mímir's ``emit`` methods are safe to call from many threads.
        """
        if self.filters:
            return super().handle(record)
        self.emit(record)
        return record

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's entry as one JSON line with :meth:`add_line`; never raises.

        Handlers that move lines (files, streams, the forwarder) implement
        ``add_line(line, record)``, which :class:`mimir.Logger` also calls directly.
        """
        try:
            self.add_line(as_line(self.json_line(record)), record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def add_line(self, line: bytes, record: logging.LogRecord | None = None) -> None:
        """Queue one entry: UTF-8 JSON ending in one newline."""
        raise NotImplementedError

    def handleError(self, record: logging.LogRecord | None) -> None:
        """Count the failure, then report it as the standard library does.

        Repeated encoding failures of one cause are reported briefly (see the class).
        """
        self.failures += 1
        error = sys.exc_info()[1]
        if isinstance(error, SerializationError) and not self._first_of_its_kind(error):
            return
        super().handleError(record)  # type: ignore[arg-type]

    def _first_of_its_kind(self, error: SerializationError) -> bool:
        """Count ``error`` by cause; True the first time, else maybe print one short line."""
        cause = error.__cause__ or error
        key = (type(cause).__qualname__, str(error))
        counts = self._encoding_failures
        if key not in counts and len(counts) >= _MAX_FAILURE_KINDS:
            key = ("", "other encoding failures")
        count = counts[key] = counts.get(key, 0) + 1
        if count == 1 and key[0]:
            return True
        if count & (count - 1) == 0 and logging.raiseExceptions and sys.stderr is not None:
            try:
                cause_text = key[1] if len(key[1]) <= 160 else key[1][:157] + "..."
                sys.stderr.write(
                    f"--- Logging error: {self!r} could not encode {count} entries so far "
                    f"for the same cause, not written: {cause_text}\n"
                )
            except Exception:
                pass  # as logging.Handler.handleError: stderr itself may be gone
        return False

    def report(self, message: str) -> None:
        """Count and report a failure that happened away from any record (a background write).

        Must be called from an ``except`` block so that the traceback is printed.
        """
        self.handleError(logging.makeLogRecord({"msg": message, "name": "mimir"}))

    def report_dropped(self, message: str, record: logging.LogRecord | None = None) -> None:
        """Count and report dropped entries as an :class:`EntriesDropped` failure.

        With ``record`` (the entry being dropped) it goes to :meth:`handleError` as
        that record's failure; without, to :meth:`report`.
        """
        try:
            raise EntriesDropped(message)
        except EntriesDropped:
            if record is None:
                self.report(message)
            else:
                self.handleError(record)

    @property
    def json_formatter(self) -> JSONFormatter | None:
        """The formatter that builds entries, or None if a non-JSON formatter is set."""
        formatter = self.formatter
        if formatter is None:
            return self._fallback_formatter()
        return formatter if isinstance(formatter, JSONFormatter) else None

    def _fallback_formatter(self) -> JSONFormatter:
        if self._default_formatter is None:
            self._default_formatter = JSONFormatter()
        return self._default_formatter

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """The entry for ``record``: built by a JSON formatter, else ``{"message": text}``."""
        formatter = self.json_formatter
        if formatter is not None:
            return formatter.entry(record)
        return {"message": self.format(record)}

    def json_line(self, record: logging.LogRecord) -> str:
        """The entry for ``record`` as one line of JSON."""
        formatter = self.json_formatter
        if formatter is not None:
            return formatter.format(record)
        return self._fallback_formatter().encoder.encode({"message": self.format(record)})
