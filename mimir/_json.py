"""JSON encoding of entries.

Entries are encoded with orjson when the options allow it and with the standard
library's :mod:`json` otherwise; both paths give the same text for the same
entry. orjson writes NaN and infinities as ``null``, so any orjson output that
contains ``null`` is re-encoded by :mod:`json`, which writes ``NaN``,
``Infinity`` and ``-Infinity`` (read back by Python's :mod:`json` and by jq).
Logs are read back with :mod:`json` alone: orjson turns integers beyond 64 bits
into floats and refuses NaN.
"""

from __future__ import annotations

import datetime
import enum
import importlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency, kept optional for odd platforms
    orjson = None

__all__ = ["Encoder", "SerializationError", "resolve_callable"]

_COMPACT = (",", ":")
_DATETIME_TYPES = (datetime.datetime, datetime.date, datetime.time)


class SerializationError(TypeError):
    """An entry holds a value that cannot be written as JSON."""


def resolve_callable(value: Any, what: str) -> Any:
    """Return ``value``, importing it first if it is a dotted path such as ``"pkg.mod.func"``.

    dictConfig can only carry strings, so ``default=`` and ``cls=`` accept import paths.
    """
    if value is None or not isinstance(value, str):
        return value
    module_name, _, attribute = value.rpartition(".")
    if not module_name:
        raise ValueError(f"{what}={value!r} is not an import path such as 'package.module.name'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"{what}={value!r} could not be imported: {error}") from error


def builtin_default(obj: Any) -> Any:
    """Convert the non-JSON values every Mímir log accepts, or raise ``TypeError``.

    Numbers stay numbers: NumPy scalars, 0-d arrays and 0-d tensors (anything with
    ``.item()`` and no dimensions) become Python numbers, without importing NumPy or
    torch. Dates and times become ISO 8601 strings, enums their value, UUIDs strings.
    """
    item = getattr(obj, "item", None)
    if item is not None and callable(item) and getattr(obj, "ndim", 0) == 0:
        try:
            return item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, _DATETIME_TYPES):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class Encoder:
    """Encodes one entry as one line of JSON text, honouring ``json.dumps`` options.

    Accepted options: ``default``, ``cls``, ``ensure_ascii`` (default ``False``),
    ``sort_keys``, ``separators`` (default compact), ``allow_nan``, ``skipkeys``,
    ``check_circular``. ``indent`` is refused: an entry must stay on one line.
    """

    def __init__(
        self,
        *,
        default: Callable[[Any], Any] | str | None = None,
        cls: type[json.JSONEncoder] | str | None = None,
        ensure_ascii: bool = False,
        sort_keys: bool = False,
        separators: tuple[str, str] | list[str] | None = None,
        allow_nan: bool = True,
        skipkeys: bool = False,
        check_circular: bool = True,
        indent: Any = None,
    ) -> None:
        if indent is not None:
            raise ValueError(
                "indent= is not supported: every entry must be written as one line of JSON; "
                "pretty-print when reading instead (for example `mimir cat FILE | jq .`)"
            )
        user_default = resolve_callable(default, "default")
        if user_default is not None and not callable(user_default):
            raise TypeError(f"default= must be a callable, got {type(user_default).__name__}")
        base = resolve_callable(cls, "cls") or json.JSONEncoder
        if not (isinstance(base, type) and issubclass(base, json.JSONEncoder)):
            raise TypeError(f"cls= must be a json.JSONEncoder subclass, got {base!r}")
        if separators is None:
            separators = _COMPACT
        separators = tuple(separators)
        if len(separators) != 2 or any("\n" in s or "\r" in s for s in separators):
            raise ValueError(
                f"separators= must be two strings without newlines, got {separators!r}"
            )
        self.user_default = user_default

        def chained_default(obj: Any) -> Any:
            try:
                return builtin_default(obj)
            except TypeError:
                pass
            if user_default is not None:
                return user_default(obj)
            return base.default(self._stdlib, obj)  # cls's own default, or the TypeError

        options = dict(
            skipkeys=skipkeys,
            check_circular=check_circular,
            allow_nan=allow_nan,
            sort_keys=sort_keys,
            separators=separators,
            default=chained_default,
        )
        self._stdlib = base(ensure_ascii=ensure_ascii, **options)
        self._stdlib_ascii = base(ensure_ascii=True, **options)
        # orjson gives identical text only for these option values.
        self._orjson_option: int | None = None
        self._orjson_line_option: int | None = None
        if (
            orjson is not None
            and cls is None
            and not ensure_ascii
            and separators == _COMPACT
            and allow_nan
            and not skipkeys
        ):
            self._orjson_option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
            if sort_keys:
                self._orjson_option |= orjson.OPT_SORT_KEYS
            self._orjson_line_option = self._orjson_option | orjson.OPT_APPEND_NEWLINE
            self._orjson_default = self._make_orjson_default(user_default)

    @staticmethod
    def _make_orjson_default(user_default: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
        def orjson_default(obj: Any) -> Any:
            try:
                return builtin_default(obj)
            except TypeError:
                if user_default is None:
                    raise
            return user_default(obj)

        return orjson_default

    def encode(self, entry: Any) -> str:
        """Return ``entry`` as JSON text on one line, or raise :class:`SerializationError`."""
        option = self._orjson_option
        if option is not None:
            try:
                data = orjson.dumps(entry, default=self._orjson_default, option=option)
            except (TypeError, RecursionError):
                # Integers beyond 64 bits, non-string keys, deep nesting, lone surrogates,
                # or a genuinely unserializable value: the standard library decides.
                pass
            else:
                if b"null" not in data:  # NaN/Infinity became null: re-encode below.
                    return data.decode()
        return self._encode_stdlib(entry)

    def orjson_line_arguments(self) -> tuple[Callable[[Any], Any], int] | None:
        """``(default, option)`` for ``orjson.dumps`` giving :meth:`encode_line`'s bytes.

        For callers on a hot path that call orjson themselves. Its output is only
        valid if it contains no ``null`` (else call :meth:`encode_line`). None when
        these options need the standard library.
        """
        if self._orjson_line_option is None:
            return None
        return self._orjson_default, self._orjson_line_option

    def encode_line(self, entry: Any) -> bytes:
        """Like :meth:`encode`, as UTF-8 bytes ending with a newline (what files take)."""
        option = self._orjson_line_option
        if option is not None:
            try:
                data = orjson.dumps(entry, default=self._orjson_default, option=option)
            except (TypeError, RecursionError):
                pass
            else:
                if b"null" not in data:
                    return data
        return (self._encode_stdlib(entry) + "\n").encode()

    def _encode_stdlib(self, entry: Any) -> str:
        try:
            text = self._stdlib.encode(entry)
        except RecursionError:
            raise
        except (TypeError, ValueError) as error:
            raise SerializationError(describe_failure(entry, self._stdlib, error)) from error
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:  # a lone surrogate: escape it so the file stays UTF-8
                text = self._stdlib_ascii.encode(entry)
        return text


def describe_failure(entry: Any, encoder: json.JSONEncoder, error: Exception) -> str:
    """Say which value of ``entry`` could not be encoded, and what to do about it."""
    try:
        path, value = _find_unencodable(entry, encoder, "entry", set())
    except RecursionError:
        path = None
    if path is None:
        if isinstance(error, ValueError) and "Out of range float" in str(error):
            return (
                f"cannot write entry as JSON: {error}; NaN and infinities are refused because "
                "allow_nan=False was given"
            )
        return f"cannot write entry as JSON: {error}"
    if value is _CIRCULAR:
        return f"cannot write entry as JSON: {path} contains itself (a circular reference)"
    return (
        f"cannot write {path} (type {type(value).__module__}.{type(value).__qualname__}) as "
        f"JSON: {error}. Pass default= (a function that converts such values to JSON types, "
        "e.g. mimir.serialization.serialize_numpy for arrays) to mimir.Logger or JSONFormatter."
    )


_CIRCULAR = object()


def _find_unencodable(
    value: Any, encoder: json.JSONEncoder, path: str, containers: set[int]
) -> tuple[Any, Any]:
    """The path and value of the first thing in ``value`` that ``encoder`` refuses."""
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in containers:
            return path, _CIRCULAR
        containers = containers | {id(value)}
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _find_unencodable(item, encoder, f"{path}[{key!r}]", containers)
            if found[0] is not None:
                return found
        for key in value:
            try:
                encoder.encode({key: None})
            except (TypeError, ValueError):
                return f"key {key!r} of {path}", key
        return None, None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_unencodable(item, encoder, f"{path}[{index}]", containers)
            if found[0] is not None:
                return found
        return None, None
    try:
        encoder.encode(value)
    except (TypeError, ValueError):
        if id(value) in containers:  # default= keeps wrapping this value
            return path, value
        containers = containers | {id(value)}
        try:
            converted = encoder.default(value)
        except (TypeError, ValueError):
            return path, value
        if isinstance(converted, (Mapping, list, tuple)):
            found = _find_unencodable(converted, encoder, path, containers)
            return found if found[0] is not None else (path, value)
        return path, value  # default= gave back something that cannot be encoded either
    return None, None
