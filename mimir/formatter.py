"""The structured-record formatter: turns a :class:`logging.LogRecord` into an entry."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pythonjsonlogger.core import merge_record_extra
from pythonjsonlogger.json import JsonFormatter

from mimir._json import Encoder
from mimir._record import EntryRecord

__all__ = ["JSONFormatter"]

# Attributes under which a formatter caches its work on a record, so that an entry
# is built and encoded once however many handlers share the formatter. Leading
# underscores keep them out of python-json-logger's "extra" fields.
_ENTRY_CACHE = "_mimir_entry"
_LINE_CACHE = "_mimir_line"


class JSONFormatter(JsonFormatter):
    """Formats each record as one line of JSON: the entry.

    * A record whose message is a mapping (``mimir.Logger.log(entry)``, or
      ``logging.getLogger("x").info({"loss": 0.3})``) becomes that mapping, keys and
      order unchanged, plus only the fields you configure and any ``extra=`` fields.
    * Any other record becomes ``{"message": ..., **extra}`` plus the configured
      fields, as with python-json-logger; exceptions are included as text under
      ``exc_info``.

    Fields are configured as in python-json-logger (``fmt="%(asctime)s %(levelname)s"``,
    ``rename_fields``, ``static_fields``, ``timestamp`` ...). The ``json.dumps`` options
    ``default``, ``cls``, ``ensure_ascii`` (default ``False``: UTF-8 out), ``sort_keys``,
    ``separators`` (default compact), ``allow_nan``, ``skipkeys`` and ``check_circular``
    are honoured. ``default`` and ``cls`` may be import paths, for dictConfig.

    NumPy scalars, 0-d arrays and 0-d tensors are written as numbers; NaN and
    infinities as ``NaN``/``Infinity``/``-Infinity``. A value that cannot be
    written raises :class:`mimir.SerializationError` naming its key path.

    The entry (a dict) and its JSON line are cached on the record, so several
    handlers sharing one formatter encode each record once. The customisation
    hooks of python-json-logger (``add_fields``, ``process_log_record``,
    ``jsonify_log_record``, ``serialize_log_record``) are called as usual.
    """

    def __init__(
        self,
        fmt: str | Sequence[str] | None = None,
        datefmt: str | None = None,
        style: str = "%",
        validate: bool = True,
        *,
        default: Any = None,
        cls: Any = None,
        ensure_ascii: bool = False,
        sort_keys: bool = False,
        separators: Sequence[str] | None = None,
        allow_nan: bool = True,
        skipkeys: bool = False,
        check_circular: bool = True,
        indent: Any = None,
        **kwargs: Any,
    ) -> None:
        self.encoder = Encoder(
            default=default,
            cls=cls,
            ensure_ascii=ensure_ascii,
            sort_keys=sort_keys,
            separators=separators,
            allow_nan=allow_nan,
            skipkeys=skipkeys,
            check_circular=check_circular,
            indent=indent,
        )
        super().__init__(
            fmt,
            datefmt,
            style,
            validate,
            json_default=self.encoder.user_default,
            json_ensure_ascii=ensure_ascii,
            **kwargs,
        )
        self._skip_fields.update((_ENTRY_CACHE, _LINE_CACHE))
        # Identifies this formatter's work cached on records; unlike the formatter
        # itself it can be pickled with a record (then it matches nothing).
        self._cache_token = object()
        required = list(self._required_fields)
        # Fields added to structured entries: only what the user asked for.
        self._entry_fields = [field for field in required if field != "message"]
        # Ordinary records always carry their message.
        self._message_fields = required if "message" in required else ["message", *required]
        self._needs_asctime = "asctime" in required
        # With nothing configured, a structured entry is copied as it is.
        self._plain = not (
            self._entry_fields
            or self.defaults
            or self.static_fields
            or self.rename_fields
            or self.timestamp
            or self.rename_fields_keep_missing
        )

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the entry for ``record`` as a dict (built once per record)."""
        cached = record.__dict__.get(_ENTRY_CACHE)
        if cached is not None and cached[0] is self._cache_token:
            return cached[1]
        msg = record.msg
        if isinstance(msg, Mapping):
            message_dict: Mapping[str, Any] = msg
        else:
            record.message = record.getMessage()
            message_dict = {}
        if record.exc_info or record.exc_text or record.stack_info:
            message_dict = self._add_exception_fields(record, dict(message_dict))
        if self._needs_asctime:
            record.asctime = self.formatTime(record, self.datefmt)
        log_data: dict[str, Any] = {}
        self.add_fields(log_data, record, message_dict)
        log_data = self.process_log_record(log_data)
        record.__dict__[_ENTRY_CACHE] = (self._cache_token, log_data)
        return log_data

    def format(self, record: logging.LogRecord) -> str:
        """Return the entry for ``record`` as one line of JSON (encoded once per record)."""
        cached = record.__dict__.get(_LINE_CACHE)
        if cached is not None and cached[0] is self._cache_token:
            return cached[1]
        line = self.serialize_log_record(self.entry(record))
        record.__dict__[_LINE_CACHE] = (self._cache_token, line)
        return line

    def _add_exception_fields(
        self, record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> dict[str, Any]:
        if not message_dict.get("exc_info"):
            if record.exc_info and not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            if record.exc_text:
                message_dict["exc_info"] = record.exc_text
        if record.stack_info and not message_dict.get("stack_info"):
            message_dict["stack_info"] = self.formatStack(record.stack_info)
        return message_dict

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: Mapping[str, Any],
    ) -> None:
        """Fill ``log_data`` with the configured fields, the message or mapping, and extras."""
        structured = isinstance(record.msg, Mapping)
        if structured and self._plain:
            log_data.update(message_dict)
            if type(record) is not EntryRecord:  # Logger.log records carry no extras
                merge_record_extra(record, log_data, reserved=self._skip_fields)
            return
        rename = self.rename_fields.get
        for field in self.defaults:
            log_data[rename(field, field)] = self.defaults[field]
        record_dict = record.__dict__
        for field in self._entry_fields if structured else self._message_fields:
            log_data[rename(field, field)] = record_dict.get(field)
        for data in (self.static_fields, message_dict):
            for key, value in data.items():
                log_data[rename(key, key)] = value
        if type(record) is not EntryRecord:
            merge_record_extra(
                record, log_data, reserved=self._skip_fields, rename_fields=self.rename_fields
            )
        if self.timestamp:
            key = self.timestamp if isinstance(self.timestamp, str) else "timestamp"
            log_data[rename(key, key)] = datetime.fromtimestamp(record.created, tz=timezone.utc)
        if self.rename_fields_keep_missing:
            for field in self.rename_fields.values():
                log_data.setdefault(field, None)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """Encode ``log_data`` as one line of JSON with the configured options."""
        return self.encoder.encode(log_data)
