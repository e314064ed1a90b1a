"""Cheap log records for entries logged through :meth:`mimir.Logger.log`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from mimir import _fork

__all__ = ["EntryRecord", "EntryRecordFactory"]


class EntryRecord(logging.LogRecord):
    """A :class:`~logging.LogRecord` whose message is an entry (a mapping).

    Built by :class:`EntryRecordFactory` without the caller lookup and attribute
    set-up that make :meth:`logging.Logger.makeRecord` the most expensive part of a
    logging call; ``pathname``, ``lineno`` and ``funcName`` are therefore empty. It
    never carries ``extra`` fields.
    """


class EntryRecordFactory:
    """Makes :class:`EntryRecord` objects for one logger name at one level."""

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

    def __call__(self, entry: Mapping[str, Any]) -> EntryRecord:
        """Return a record carrying ``entry`` as its message."""
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
