"""JSON encoding of entries.

Entries are encoded with orjson when the options allow it and with the standard
library's :mod:`json` otherwise; both paths give the same text for the same
entry. orjson writes NaN and infinities as ``null``, so any orjson output that
contains ``null`` is re-encoded by :mod:`json`, which writes ``NaN``,
``Infinity`` and ``-Infinity`` (read back by Python's :mod:`json` and by jq).
Logs are read back with :mod:`json` alone: orjson turns integers beyond 64 bits
into floats and refuses NaN.

Values JSON cannot represent are converted as python-json-logger converts them
(:func:`builtin_default`), so that no entry is lost for its values; numbers stay
numbers.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import importlib
import json
import numbers
import sys
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from pythonjsonlogger import defaults as _pjl

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency, kept optional for odd platforms
    orjson = None

__all__ = ["Encoder", "SerializationError", "builtin_default", "resolve_callable"]

_COMPACT = (",", ":")
_DATETIME_TYPES = (datetime.datetime, datetime.date, datetime.time)
# Written by orjson without asking default=, so converted first on the stdlib path too.
_ORJSON_NATIVE = (enum.Enum, uuid.UUID)
_JSON_KEY_TYPES = (str, int, float, bool, type(None))
# json.dumps options at their default values, which a json_serializer is not given.
_NEUTRAL = {
    "sort_keys": False,
    "separators": None,
    "allow_nan": True,
    "skipkeys": False,
    "check_circular": True,
}


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
    """Convert a value JSON cannot represent into one it can; never raises.

    Numbers stay numbers: NumPy arrays become lists, NumPy scalars, 0-d arrays and 0-d
    tensors (anything with ``.item()`` and ``ndim == 0``) Python numbers, without
    importing NumPy or torch; a :class:`~decimal.Decimal` or another real number
    becomes an int when it is integral, else a float. Sets become sorted lists (in
    iteration order if unsortable) and other mappings dicts. Everything else is
    converted as python-json-logger's ``JsonEncoder`` does: dates and times to ISO
    8601, exceptions to ``"Type: message"``, tracebacks to text, enums to their
    value(s), bytes to URL-safe base64, dataclasses to dicts, classes to their name,
    and anything else to ``str()``, else ``repr()``, else ``"__could_not_encode__"``.
    """
    try:
        return _convert(obj)
    except Exception:  # a broken __eq__, item(), property...: the last resort decides
        return _pjl.unknown_default(obj)


def _convert(obj: Any) -> Any:
    numpy = sys.modules.get("numpy")  # no array exists unless NumPy was imported
    if numpy is not None and isinstance(obj, (numpy.ndarray, numpy.generic)):
        return obj.tolist()
    if getattr(obj, "ndim", None) == 0:
        item = getattr(obj, "item", None)
        if callable(item):
            return item()
    if isinstance(obj, _DATETIME_TYPES):
        return _pjl.datetime_any(obj)
    if isinstance(obj, BaseException):
        return _pjl.exception_default(obj)
    if isinstance(obj, TracebackType):
        return _pjl.traceback_default(obj)
    if isinstance(obj, (enum.Enum, enum.EnumMeta)):
        return _pjl.enum_default(obj)
    if isinstance(obj, (bytes, bytearray)):
        return _pjl.bytes_default(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Shallow, unlike dataclasses.asdict (a deep copy): nested values are
        # converted by the encoder, which gives the same JSON without copying.
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    if isinstance(obj, type):
        return _pjl.type_default(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, decimal.Decimal):
        return _decimal_number(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return _pjl.unknown_default(obj)


def _decimal_number(value: decimal.Decimal) -> Any:
    """An int for an integral Decimal without a fraction (``Decimal("3")``), else a float."""
    if value.is_finite() and value.as_tuple().exponent >= 0:  # type: ignore[operator]
        return int(value)
    if value.is_snan():
        return str(value)  # float() refuses signalling NaNs
    return float(value)


def _json_key(key: Any) -> str:
    """``key`` as the string JSON needs: as :mod:`json` writes it, or its ``str()``."""
    if isinstance(key, str):
        return key
    if isinstance(key, _JSON_KEY_TYPES):
        return json.dumps(key)
    return str(_pjl.unknown_default(key))


def _with_json_keys(value: Any, containers: frozenset[int] = frozenset()) -> Any:
    """A copy of ``value`` whose dict keys are all strings (for keys JSON refuses)."""
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in containers:
            return value  # circular: the encoder reports it
        containers = containers | {id(value)}
    if isinstance(value, Mapping):
        return {_json_key(k): _with_json_keys(v, containers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_with_json_keys(item, containers) for item in value]
    return value


def _is_scalar(obj: Any) -> bool:
    """Whether ``obj`` is a number JSON does not know: a NumPy scalar, a 0-d array or tensor."""
    try:
        if getattr(obj, "ndim", None) != 0:
            return False
        numpy = sys.modules.get("numpy")
        return (numpy is not None and isinstance(obj, numpy.generic)) or callable(
            getattr(obj, "item", None)
        )
    except Exception:  # a property that raises: not a number we know
        return False


def _chain(*converters: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A ``default=`` that asks ``converters`` in turn, then :func:`builtin_default`.

    A converter passes a value on by raising :class:`TypeError` (the :mod:`json`
    convention) or by returning it unchanged; any other exception is an encoding
    failure. Enums and UUIDs are converted first, as orjson writes them natively,
    and so are scalar numbers (NumPy scalars, 0-d arrays and tensors), as
    :mod:`json` writes a float without asking: numbers stay numbers.
    """
    chain = tuple(convert for convert in converters if convert is not None)
    if not chain:
        return builtin_default

    def default(obj: Any) -> Any:
        if not isinstance(obj, _ORJSON_NATIVE) and not _is_scalar(obj):
            for convert in chain:
                try:
                    result = convert(obj)
                except TypeError:
                    continue
                if result is not obj:
                    return result
        return builtin_default(obj)

    return default


class Encoder:
    """Encodes one entry as one line of JSON text, honouring ``json.dumps`` options.

    Accepted options: ``default``, ``cls``, ``ensure_ascii`` (default ``False``),
    ``sort_keys``, ``separators`` (default compact), ``allow_nan``, ``skipkeys``,
    ``check_circular``, and ``serializer``, a ``json.dumps``-compatible function that
    replaces the built-in encoding. ``indent`` is refused: an entry must stay on one line.

    ``default`` (then ``cls``'s own ``default`` method) is asked first about values
    JSON cannot represent; what it passes on (by raising :class:`TypeError`) is
    converted by :func:`builtin_default`. Keys JSON refuses are written as strings.
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
        serializer: Callable[..., Any] | str | None = None,
    ) -> None:
        if indent is not None:
            raise ValueError(
                "indent= is not supported: every entry must be written as one line of JSON; "
                "pretty-print when reading instead (for example `mimir cat FILE | jq .`)"
            )
        user_default = resolve_callable(default, "default")
        if user_default is not None and not callable(user_default):
            raise TypeError(f"default= must be a callable, got {type(user_default).__name__}")
        user_cls = resolve_callable(cls, "cls")
        base = user_cls or json.JSONEncoder
        if not (isinstance(base, type) and issubclass(base, json.JSONEncoder)):
            raise TypeError(f"cls= must be a json.JSONEncoder subclass, got {base!r}")
        serializer = resolve_callable(serializer, "json_serializer")
        if serializer is json.dumps:
            serializer = None
        if serializer is not None and not callable(serializer):
            raise TypeError(f"json_serializer= must be a callable, got {type(serializer).__name__}")
        given_separators = separators
        if separators is None:
            separators = _COMPACT
        separators = tuple(separators)
        if len(separators) != 2 or any("\n" in s or "\r" in s for s in separators):
            raise ValueError(
                f"separators= must be two strings without newlines, got {separators!r}"
            )
        self.user_default = user_default
        self.user_cls = user_cls
        self.serializer = serializer
        self._skipkeys = skipkeys
        cls_default = None
        if base.default is not json.JSONEncoder.default:

            def cls_default(obj: Any) -> Any:
                return base.default(self._stdlib, obj)

        self.default: Callable[[Any], Any] = _chain(user_default, cls_default)
        options = dict(
            skipkeys=skipkeys,
            check_circular=check_circular,
            allow_nan=allow_nan,
            sort_keys=sort_keys,
            separators=separators,
            default=self.default,
        )
        self._stdlib = base(ensure_ascii=ensure_ascii, **options)
        self._stdlib_ascii = base(ensure_ascii=True, **options)
        if serializer is not None:
            # What python-json-logger passes, plus the options given explicitly.
            self._serializer_options: dict[str, Any] = dict(
                default=self.default, cls=user_cls, indent=None, ensure_ascii=ensure_ascii
            )
            explicit = {
                "sort_keys": sort_keys,
                "separators": given_separators,
                "allow_nan": allow_nan,
                "skipkeys": skipkeys,
                "check_circular": check_circular,
            }
            self._serializer_options.update(
                (name, value) for name, value in explicit.items() if value != _NEUTRAL[name]
            )
        # orjson gives identical text only for these option values.
        self._orjson_option: int | None = None
        self._orjson_line_option: int | None = None
        if (
            orjson is not None
            and user_cls is None
            and serializer is None
            and not ensure_ascii
            and separators == _COMPACT
            and allow_nan
            and not skipkeys
        ):
            self._orjson_option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
            if sort_keys:
                self._orjson_option |= orjson.OPT_SORT_KEYS
            self._orjson_line_option = self._orjson_option | orjson.OPT_APPEND_NEWLINE

    def encode(self, entry: Any) -> str:
        """Return ``entry`` as JSON text on one line, or raise :class:`SerializationError`."""
        option = self._orjson_option
        if option is not None:
            try:
                data = orjson.dumps(entry, default=self.default, option=option)
            except (TypeError, RecursionError):
                # Integers beyond 64 bits, non-string keys, deep nesting, lone surrogates,
                # or a default= that failed: the standard library decides.
                pass
            else:
                if b"null" not in data:  # NaN/Infinity became null: re-encode below.
                    return data.decode()
        if self.serializer is not None:
            return self._encode_custom(entry)
        return self._encode_stdlib(entry)

    def orjson_line_arguments(self) -> tuple[Callable[[Any], Any], int] | None:
        """``(default, option)`` for ``orjson.dumps`` giving :meth:`encode_line`'s bytes.

        For callers on a hot path that call orjson themselves. Its output is only
        valid if it contains no ``null`` (else call :meth:`encode_line`). None when
        these options need the standard library.
        """
        if self._orjson_line_option is None:
            return None
        return self.default, self._orjson_line_option

    def encode_line(self, entry: Any) -> bytes:
        """Like :meth:`encode`, as UTF-8 bytes ending with a newline (what files take)."""
        option = self._orjson_line_option
        if option is not None:
            try:
                data = orjson.dumps(entry, default=self.default, option=option)
            except (TypeError, RecursionError):
                pass
            else:
                if b"null" not in data:
                    return data
        return (self.encode(entry) + "\n").encode()

    def _encode_stdlib(self, entry: Any) -> str:
        text = self._stdlib_text(self._stdlib, entry)
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:  # a lone surrogate: escape it so the file stays UTF-8
                text = self._stdlib_text(self._stdlib_ascii, entry)
        return text

    def _stdlib_text(self, encoder: json.JSONEncoder, entry: Any) -> str:
        """Encode with ``encoder``; keys JSON refuses (tuples, mixed when sorting) as strings."""
        try:
            return encoder.encode(entry)
        except RecursionError:
            raise
        except Exception as error:
            if isinstance(error, TypeError) and not self._skipkeys:
                try:
                    return encoder.encode(_with_json_keys(entry))
                except RecursionError:
                    raise
                except Exception:
                    pass
            raise SerializationError(describe_failure(entry, encoder, error)) from error

    def _encode_custom(self, entry: Any) -> str:
        """Encode with the user's ``json_serializer``; its output is made one line."""
        try:
            text = self.serializer(entry, **self._serializer_options)  # type: ignore[misc]
        except RecursionError:
            raise
        except Exception as error:
            raise SerializationError(
                f"cannot write entry as JSON: json_serializer={self.serializer!r} raised "
                f"{type(error).__name__}: {error}"
            ) from error
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode()
        if "\n" in text or "\r" in text:
            # Raw line breaks in valid JSON are whitespace between tokens.
            text = text.replace("\r", "").replace("\n", "")
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
        f"JSON: {type(error).__name__}: {error}. The default= (or cls=) given failed on it: "
        "make it return a JSON-ready value, or raise TypeError to leave the value to "
        "Mímir's own conversions."
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
            except Exception:
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
    except Exception:
        if id(value) in containers:  # default= keeps wrapping this value
            return path, value
        containers = containers | {id(value)}
        try:
            converted = encoder.default(value)
        except Exception:
            return path, value
        if isinstance(converted, (Mapping, list, tuple)):
            found = _find_unencodable(converted, encoder, path, containers)
            return found if found[0] is not None else (path, value)
        return path, value  # default= gave back something that cannot be encoded either
    return None, None
