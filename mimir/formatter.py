"""The structured-record formatter: turns a :class:`logging.LogRecord` into an entry."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pythonjsonlogger.core import merge_record_extra
from pythonjsonlogger.json import JsonFormatter

from mimir._json import Encoder
from mimir._record import ENTRY_MARK, EntryRecord

__all__ = ["JSONFormatter"]

# Attribute under which a formatter caches its work on a record, so that an entry
# is built and encoded once however many handlers share the formatter. The leading
# underscore keeps it out of python-json-logger's "extra" fields.
_CACHE = "_mimir_entry"

# Positions in the cached list.
_TOKEN, _SIZE, _MSG, _ARGS, _ENTRY, _LINE = range(6)


class JSONFormatter(JsonFormatter):
    """Formats each record as one line of JSON: the entry.

    * A record whose message is a mapping (``mimir.Logger.log(entry)``, or
      ``logging.getLogger("x").info({"loss": 0.3})``) becomes that mapping, keys and
      order unchanged, plus only the fields you configure and any ``extra=`` fields.
    * Any other record becomes ``{"message": ..., **extra}`` plus the configured
      fields, as with python-json-logger; exceptions are included as text under
      ``exc_info``.

    Fields are configured as in python-json-logger (``fmt="%(asctime)s %(levelname)s"``,
    ``rename_fields``, ``static_fields``, ``timestamp``, ``defaults``, ``prefix``,
    ``reserved_attrs``, ``exc_info_as_array`` ...). The ``json.dumps`` options
    ``default``, ``cls``, ``ensure_ascii`` (default ``False``: UTF-8 out), ``sort_keys``,
    ``separators`` (default compact), ``allow_nan``, ``skipkeys`` and ``check_circular``
    are honoured, and so are python-json-logger's names ``json_default``,
    ``json_encoder``, ``json_ensure_ascii`` and ``json_serializer``. ``default``,
    ``cls`` and ``json_serializer`` may be import paths, for dictConfig. ``indent``
    and ``json_indent`` are refused: an entry is one line.

    Values JSON cannot represent are converted as python-json-logger converts them,
    except that numbers stay numbers (NumPy arrays become lists, NumPy scalars,
    ``Decimal`` and 0-d tensors numbers); ``default``/``cls`` are asked first. NaN
    and infinities are written as ``NaN``/``Infinity``/``-Infinity``. An entry that
    still cannot be written (a ``default`` that fails, a circular reference, NaN with
    ``allow_nan=False``) raises :class:`mimir.SerializationError` naming its key path.

    The entry (a dict) and its JSON line are cached on the record, so several
    handlers sharing one formatter encode each record once; the cache is rebuilt
    when a filter has since added an attribute or replaced ``msg`` or ``args``. The
    record itself is changed only as the stdlib formatters change it (``message``,
    ``asctime``). The customisation hooks of python-json-logger (``add_fields``,
    ``process_log_record``, ``jsonify_log_record``, ``serialize_log_record``) are
    called as usual.
    """

    def __init__(
        self,
        fmt: str | Sequence[str] | None = None,
        datefmt: str | None = None,
        style: str = "%",
        validate: bool = True,
        *,
        default: Callable[[Any], Any] | str | None = None,
        cls: type | str | None = None,
        ensure_ascii: bool | None = None,
        sort_keys: bool = False,
        separators: Sequence[str] | None = None,
        allow_nan: bool = True,
        skipkeys: bool = False,
        check_circular: bool = True,
        indent: Any = None,
        json_default: Callable[[Any], Any] | str | None = None,
        json_encoder: type | str | None = None,
        json_serializer: Callable[..., Any] | str | None = None,
        json_indent: Any = None,
        json_ensure_ascii: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if json_indent is not None:
            raise ValueError(
                "json_indent= is not supported: every entry must be written as one line of "
                "JSON; pretty-print when reading instead (for example `mimir cat FILE | jq .`)"
            )
        default = _one_of("default", default, "json_default", json_default)
        cls = _one_of("cls", cls, "json_encoder", json_encoder)
        ensure_ascii = _one_of("ensure_ascii", ensure_ascii, "json_ensure_ascii", json_ensure_ascii)
        self.encoder = Encoder(
            default=default,
            cls=cls,
            ensure_ascii=bool(ensure_ascii),
            sort_keys=sort_keys,
            separators=separators,
            allow_nan=allow_nan,
            skipkeys=skipkeys,
            check_circular=check_circular,
            indent=indent,
            serializer=json_serializer,
        )
        super().__init__(
            fmt,
            datefmt,
            style,
            validate,
            json_default=self.encoder.user_default,
            json_encoder=self.encoder.user_cls,
            json_serializer=self.encoder.serializer or json.dumps,
            json_ensure_ascii=bool(ensure_ascii),
            **kwargs,
        )
        # Identifies this formatter's work cached on records; unlike the formatter
        # itself it can be pickled with a record (then it matches nothing).
        self._cache_token = object()
        fields = list(fmt) if _is_field_sequence(fmt) else self.parse()
        self._skip = frozenset(fields) | frozenset(self.reserved_attrs)
        # Fields added to structured entries: only what the user asked for.
        self._entry_fields = [field for field in fields if field != "message"]
        # Ordinary records always carry their message.
        self._message_fields = fields if "message" in fields else ["message", *fields]
        self._needs_asctime = "asctime" in fields
        # With nothing configured, a structured entry is copied as it is.
        self._plain = not (
            self._entry_fields
            or self.defaults
            or self.static_fields
            or self.rename_fields
            or self.timestamp
            or self.rename_fields_keep_missing
            or self.prefix
            or self.encoder.serializer is not None
        )

    @property
    def plain(self) -> bool:
        """Whether a structured entry (a mapping message) is written exactly as logged.

        True when no field, default, renaming, prefix, timestamp or serializer is
        configured: the line is then the mapping itself, keys unchanged.
        """
        return self._plain

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the entry for ``record`` as a dict (built once per record)."""
        attributes = record.__dict__
        cached = attributes.get(_CACHE)
        if (
            cached is not None
            and cached[_TOKEN] is self._cache_token
            and cached[_SIZE] == len(attributes)
            and cached[_MSG] is record.msg
            and cached[_ARGS] is record.args
        ):
            return cached[_ENTRY]
        return self._build(record)[_ENTRY]

    def format(self, record: logging.LogRecord) -> str:
        """Return the entry for ``record`` as one line of JSON (encoded once per record)."""
        attributes = record.__dict__
        cached = attributes.get(_CACHE)
        if not (
            cached is not None
            and cached[_TOKEN] is self._cache_token
            and cached[_SIZE] == len(attributes)
            and cached[_MSG] is record.msg
            and cached[_ARGS] is record.args
        ):
            cached = self._build(record)
        line = cached[_LINE]
        if line is None:
            line = cached[_LINE] = self.serialize_log_record(cached[_ENTRY])
        return line

    def _build(self, record: logging.LogRecord) -> list[Any]:
        """Build the entry for ``record`` and cache it there, keyed to the record's state."""
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
        attributes = record.__dict__
        cache = [self._cache_token, 0, msg, record.args, log_data, None]
        attributes[_CACHE] = cache
        # Counted with the cache in place: a later attribute (a filter's) changes it.
        cache[_SIZE] = len(attributes)
        return cache

    def _add_exception_fields(
        self, record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> dict[str, Any]:
        """Add the traceback and stack as python-json-logger does, leaving the record as is."""
        if record.exc_info and not message_dict.get("exc_info"):
            message_dict["exc_info"] = self.formatException(record.exc_info)
        if not message_dict.get("exc_info") and record.exc_text:
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
            # Logger.log records carry no extras: EntryRecord, or marked (another factory's)
            if type(record) is not EntryRecord and ENTRY_MARK not in record.__dict__:
                merge_record_extra(record, log_data, reserved=self._skip)
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
        if type(record) is not EntryRecord and ENTRY_MARK not in record_dict:
            merge_record_extra(
                record, log_data, reserved=self._skip, rename_fields=self.rename_fields
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


def _one_of(name: str, value: Any, pjl_name: str, pjl_value: Any) -> Any:
    """The value of ``name=`` or of its python-json-logger spelling; refuse both at once."""
    if value is not None and pjl_value is not None:
        raise TypeError(f"give {name}= or {pjl_name}=, not both (they mean the same)")
    return value if value is not None else pjl_value


def _is_field_sequence(fmt: Any) -> bool:
    """Whether ``fmt`` is a list of field names rather than a format string."""
    return fmt is not None and not isinstance(fmt, str) and isinstance(fmt, Sequence)
