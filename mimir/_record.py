"""Cheap log records for entries logged through :meth:`mimir.Logger.log`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from mimir import _fork

__all__ = ["ENTRY_MARK", "EntryRecord", "EntryRecordFactory"]

#: Attribute set on a record that a factory installed with
#: :func:`logging.setLogRecordFactory` made for :meth:`mimir.Logger.log`: like an
#: :class:`EntryRecord`, it carries no ``extra`` fields, so the attributes the factory
#: adds reach an entry only when a formatter asks for them. The leading underscore
#: keeps it out of python-json-logger's "extra" fields.
ENTRY_MARK = "_mimir_logged_entry"


class EntryRecord(logging.LogRecord):
    """A :class:`~logging.LogRecord` whose message is an entry (a mapping).

    Built by :class:`EntryRecordFactory` without the caller lookup and attribute
    set-up that make :meth:`logging.Logger.makeRecord` the most expensive part of a
    logging call; ``pathname``, ``lineno`` and ``funcName`` are therefore empty. It
    never carries ``extra`` fields.
    """


class EntryRecordFactory:
    """Makes the records of :meth:`mimir.Logger.log` for one logger name at one level.

    With logging's default record factory they are :class:`EntryRecord` objects,
    built from a template. When another factory is installed with
    :func:`logging.setLogRecordFactory` (to add a run or request id to every record,
    say), whenever that was, the records are that factory's, made with the
    arguments :meth:`logging.Logger.makeRecord` gives it and marked with
    :data:`ENTRY_MARK`.
    """

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        self.name = name
        self.level = level
        self._template: dict[str, Any] | None = None
        self._start_time = 0.0  # when logging was loaded, as records count relativeCreated
        _fork.reset_after_fork(self)

    def _after_fork_in_child(self) -> None:
        self._template = None  # process id and name changed

    def _make_template(self) -> dict[str, Any]:
        probe = logging.LogRecord(self.name, self.level, "", 0, "", None, None, None, None)
        self._start_time = probe.created - probe.relativeCreated / 1000
        template = dict(probe.__dict__)
        template.update(pathname="", filename="", module="", funcName=None, lineno=0)
        self._template = template
        return template

    def __call__(self, entry: Mapping[str, Any]) -> logging.LogRecord:
        """Return a record carrying ``entry`` as its message."""
        factory = logging.getLogRecordFactory()
        if factory is not logging.LogRecord:
            record = factory(self.name, self.level, "", 0, entry, None, None, None, None)
            record.__dict__[ENTRY_MARK] = True
            return record
        created = time.time()
        attributes = (self._template or self._make_template()).copy()
        attributes["msg"] = entry
        attributes["created"] = created
        attributes["msecs"] = (created - int(created)) * 1000
        attributes["relativeCreated"] = (created - self._start_time) * 1000
        thread = threading.current_thread()
        attributes["thread"] = thread.ident
        attributes["threadName"] = thread.name
        record = EntryRecord.__new__(EntryRecord)
        record.__dict__ = attributes
        return record
