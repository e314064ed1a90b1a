"""mimir.JSONFormatter against python-json-logger's JsonFormatter, record by record (P7, P8).

Each comparison formats copies of one record with both formatters and compares the
parsed lines, key order included. The documented differences are normalised
explicitly: a mapping message adds no empty ``"message"`` (python-json-logger adds
``"message": ""``), and some values are written as numbers or lists where
python-json-logger writes their ``str()`` (see docs/formatter.rst).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import io
import json
import logging
import logging.config
import types
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

import mimir
from mimir import GzlogFileHandler, JSONFormatter, JSONLFileHandler, MemoryHandler
from mimir.console import ConsoleFormatter, ConsoleHandler

BACKENDS = [JsonFormatter, JSONFormatter]
BACKEND_IDS = ["python-json-logger", "mimir"]
# Each backend with the index of its expected value in the tables below.
BACKEND_INDEX = [
    pytest.param(JsonFormatter, 0, id="python-json-logger"),
    pytest.param(JSONFormatter, 1, id="mimir"),
]


# -- values -------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    """A dataclass with a nested value JSON cannot represent."""

    x: int
    when: datetime.date


class Colour(enum.Enum):
    """A plain enum."""

    RED = "red"
    BLOB = b"blob"


class WithStr:
    """An arbitrary object with a __str__."""

    def __str__(self) -> str:
        return "with-str"


class WithRepr:
    """An arbitrary object with only a __repr__."""

    def __repr__(self) -> str:
        return "WithRepr()"


class Broken:
    """An object whose str() and repr() both fail."""

    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


class Request:
    """A Django-style request: attributes, some of them not serializable, no JSON form."""

    def __init__(self) -> None:
        self.method = "GET"
        self.path = "/train"
        self.META = {"REMOTE_ADDR": "127.0.0.1"}
        self.user = WithRepr()

    def __repr__(self) -> str:
        return f"<Request: {self.method} {self.path!r}>"


def _traceback() -> types.TracebackType:
    try:
        raise ValueError("for a traceback")
    except ValueError as error:
        assert error.__traceback__ is not None
        return error.__traceback__


TRACEBACK = _traceback()

# Values both formatters write the same way.
SAME_VALUES: dict[str, Any] = {
    "bytes": b"some-bytes\xf0\xf1",
    "bytearray": bytearray(b"ab"),
    "dataclass": Point(1, datetime.date(2024, 5, 5)),
    "dataclass-class": Point,
    "enum": Colour.RED,
    "enum-of-bytes": Colour.BLOB,
    "enum-class": Colour,
    "datetime": datetime.datetime(2024, 5, 5, 16, 45, 30, 100),
    "datetime-tz": datetime.datetime(2024, 5, 5, 16, 45, tzinfo=datetime.timezone.utc),
    "date": datetime.date(2024, 5, 5),
    "time": datetime.time(16, 45, 30, 100),
    "exception": ValueError("bad value"),
    "exception-class": KeyError,
    "traceback": TRACEBACK,
    "uuid": uuid.UUID(int=12345),
    "object-with-str": WithStr(),
    "object-with-repr": WithRepr(),
    "broken-object": Broken(),
    "request": Request(),
    "complex": complex(3, 8),
    "nested": {"dates": [datetime.date(2020, 1, 1)], "raw": (b"x", Colour.RED)},
    "float-subclass-nan": float("nan"),
}

# Values Mímir writes as numbers or lists: (python-json-logger's value, Mímir's).
DIFFERENT_VALUES: dict[str, tuple[Any, Any, Any]] = {
    "decimal": (decimal.Decimal("1.25"), "1.25", 1.25),
    "integral-decimal": (decimal.Decimal("3"), "3", 3),
    "fraction": (fractions.Fraction(1, 4), "1/4", 0.25),
    "set": ({3, 1, 2}, "{1, 2, 3}", [1, 2, 3]),
    "frozenset": (frozenset({"b", "a"}), None, ["a", "b"]),
    "mapping-proxy": (types.MappingProxyType({"a": 1}), "{'a': 1}", {"a": 1}),
}


# -- helpers ------------------------------------------------------------------------------


def make_records(run: Callable[[logging.Logger], None]) -> list[logging.LogRecord]:
    """The records ``run`` logs through a stdlib logger, captured before any formatting."""
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.Logger("mimir-test-compat", logging.DEBUG)
    logger.addHandler(Capture())
    run(logger)
    return records


def copy_record(record: logging.LogRecord) -> logging.LogRecord:
    """A fresh record with the same attributes (so one formatter cannot affect the other)."""
    return logging.makeLogRecord(dict(record.__dict__))


def parse(line: str, prefix: str = "") -> Any:
    """The JSON object of one formatted line, after ``prefix``."""
    assert "\n" not in line
    assert line.startswith(prefix)
    return json.loads(line[len(prefix) :])


def without_empty_message(entry: dict[str, Any], key: str = "message") -> dict[str, Any]:
    """python-json-logger's entry for a mapping message, minus the documented empty message."""
    assert entry.get(key) == ""
    return {k: v for k, v in entry.items() if k != key}


def same(a: Any, b: Any) -> bool:
    """Equal JSON values, key order included, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def compare(
    records: list[logging.LogRecord],
    pjl: logging.Formatter,
    ours: JSONFormatter,
    prefix: str = "",
    message_key: str = "message",
) -> int:
    """Assert both formatters give the same entries for ``records``; return how many."""
    for record in records:
        expected = parse(pjl.format(copy_record(record)), prefix)
        got = parse(ours.format(copy_record(record)), prefix)
        if isinstance(record.msg, dict):
            expected = without_empty_message(expected, message_key)
        assert same(got, expected), (record.msg, got, expected)
    return len(records)


def ordinary_records(logger: logging.Logger) -> None:
    """Records of every shape: text, %-args, extra, mappings, exceptions, stacks."""
    logger.info("plain text")
    logger.warning("step %d of %s", 3, "ten")
    logger.info("with extra", extra={"user": "u1", "n": 5, "nested": {"a": [1, 2]}})
    logger.info({"loss": 0.5, "iteration": 3})
    logger.info({"loss": 0.25}, extra={"run": "a"})
    logger.info("Mímir is ünïcødé ✓")
    logger.info("stack", stack_info=True)
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("failed")
        logger.exception({"step": 1, "detail": "mapping with exc_info"})
        logger.error("failed with both", exc_info=True, stack_info=True)


def exc_text_record() -> logging.LogRecord:
    """A record whose traceback is only in exc_text (as after QueueHandler.prepare)."""
    try:
        raise RuntimeError("elsewhere")
    except RuntimeError:
        (record,) = make_records(lambda logger: logger.exception("queued"))
    logging.Formatter().format(record)
    record.exc_info = None
    return record


class Special:
    """A value only the test's json_default knows."""


def encode_special(obj: Any) -> Any:
    """A json_default in python-json-logger's style: TypeError for what it does not know."""
    if isinstance(obj, Special):
        return {"special": True}
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class SlashDates(JsonEncoder):
    """python-json-logger's documented extension point: another datetime format."""

    def format_datetime_obj(self, o: Any) -> str:
        return o.strftime("%Y/%m/%d")


class SpecialEncoder(json.JSONEncoder):
    """A plain json.JSONEncoder subclass that knows Special."""

    def default(self, o: Any) -> Any:
        if isinstance(o, Special):
            return "special"
        return super().default(o)


def sorted_dumps(obj: Any, **kwargs: Any) -> str:
    """A json.dumps-compatible serializer that sorts keys."""
    return json.dumps(obj, sort_keys=True, **kwargs)


KEEP_FUNC = [name for name in RESERVED_ATTRS if name not in ("funcName", "lineno")]

OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "percent-fmt": {"fmt": "%(levelname)s %(name)s %(message)s %(lineno)d"},
    "brace-fmt": {"fmt": "{levelname}{message}{asctime}", "style": "{"},
    "dollar-fmt": {"fmt": "$levelname ${message} $$literal", "style": "$"},
    "comma-fmt": {"fmt": "levelname,,message,filename,", "style": ","},
    "list-fmt": {"fmt": ["levelname", "message", "module"]},
    "tuple-fmt": {"fmt": ("message", "threadName")},
    "datefmt": {"fmt": "%(asctime)s %(message)s", "datefmt": "%Y-%m-%d"},
    "rename": {"fmt": "%(levelname)s %(message)s", "rename_fields": {"levelname": "level"}},
    "rename-message": {"rename_fields": {"message": "@message"}},
    "rename-keep-missing": {
        "rename_fields": {"missing": "new_field"},
        "rename_fields_keep_missing": True,
    },
    "static": {"static_fields": {"run": "r1", "host": "node-1"}},
    "defaults-field": {"defaults": {"region": "eu", "user": "nobody"}},
    "timestamp": {"timestamp": True},
    "timestamp-key": {"timestamp": "ts", "rename_fields": {"ts": "@ts"}},
    "exc-info-as-array": {"exc_info_as_array": True},
    "stack-info-as-array": {"stack_info_as_array": True},
    "rename-exc-info": {"fmt": "%(exc_info)s %(message)s", "rename_fields": {"exc_info": "trace"}},
    "reserved-attrs-subset": {"reserved_attrs": KEEP_FUNC},
    "no-reserved-attrs": {"reserved_attrs": []},
    "json-default": {"json_default": encode_special},
    "json-encoder-pjl-subclass": {"json_encoder": SlashDates},
    "json-encoder-plain": {"json_encoder": SpecialEncoder},
    "json-serializer": {"json_serializer": sorted_dumps},
    "ensure-ascii": {"json_ensure_ascii": True},
    "no-ensure-ascii": {"json_ensure_ascii": False},
}


def option_records(options: dict[str, Any]) -> list[logging.LogRecord]:
    """The records to compare under ``options``: every shape, plus values they can write."""

    def run(logger: logging.Logger) -> None:
        ordinary_records(logger)
        if "json_default" in options or options.get("json_encoder") is SpecialEncoder:
            # These replace python-json-logger's conversions: only Special can be written.
            logger.info("special", extra={"value": Special()})
            logger.info({"value": [Special()]})
        else:
            logger.info("dates", extra={"when": datetime.date(2024, 1, 2)})
        if options.get("json_encoder") is SlashDates:
            logger.info({"when": datetime.datetime(2024, 1, 2, 3, 4)})

    return [*make_records(run), exc_text_record()]


# -- python-json-logger's options -----------------------------------------------------------


@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_output_matches_python_json_logger(name):
    """With each python-json-logger option, every record gives the same entry in both."""
    options = OPTIONS[name]
    message_key = options.get("rename_fields", {}).get("message", "message")
    count = compare(
        option_records(options),
        JsonFormatter(**options),
        JSONFormatter(**options),
        message_key=message_key,
    )
    assert count >= 12


def test_prefix_matches_python_json_logger():
    """prefix= is written before the JSON of every line, as python-json-logger writes it."""
    assert compare(
        make_records(ordinary_records),
        JsonFormatter(prefix="LOG: "),
        JSONFormatter(prefix="LOG: "),
        prefix="LOG: ",
    )


def test_json_serializer_is_used():
    """json_serializer= writes the line: keys come out in its (sorted) order."""
    (record,) = make_records(lambda logger: logger.info({"b": 1, "a": 2}))
    line = JSONFormatter(json_serializer=sorted_dumps).format(record)
    assert line == '{"a": 2, "b": 1}'


def test_json_serializer_output_is_kept_on_one_line():
    """A serializer that indents has its line breaks removed: an entry is one line."""

    def indented(obj: Any, **kwargs: Any) -> str:
        kwargs["indent"] = 2
        return json.dumps(obj, **kwargs)

    (record,) = make_records(lambda logger: logger.info({"a": [1, 2], "b": "x\ny"}))
    line = JSONFormatter(json_serializer=indented).format(record)
    assert "\n" not in line
    assert json.loads(line) == {"a": [1, 2], "b": "x\ny"}


@pytest.mark.parametrize("class_", BACKENDS, ids=BACKEND_IDS)
def test_json_ensure_ascii_escapes_non_ascii(class_):
    """json_ensure_ascii=True escapes non-ASCII text in both formatters."""
    (record,) = make_records(lambda logger: logger.info("Привет"))
    line = class_(json_ensure_ascii=True).format(record)
    assert line.isascii()
    assert "\\u041f" in line
    assert json.loads(line)["message"] == "Привет"


@pytest.mark.parametrize(
    ("class_", "escaped"), [(JsonFormatter, True), (JSONFormatter, False)], ids=BACKEND_IDS
)
def test_default_ensure_ascii_differs_as_documented(class_, escaped):
    """By default python-json-logger escapes non-ASCII text and Mímir writes UTF-8."""
    (record,) = make_records(lambda logger: logger.info("Привет"))
    assert class_().format(record).isascii() is escaped


@pytest.mark.parametrize(
    ("class_", "expected"),
    [
        (JsonFormatter, '{"message": "hi", "n": 1}'),
        (JSONFormatter, '{"message":"hi","n":1}'),
    ],
    ids=BACKEND_IDS,
)
def test_separators_differ_as_documented(class_, expected):
    """python-json-logger writes ", "/": " separators, Mímir the compact form."""
    (record,) = make_records(lambda logger: logger.info("hi", extra={"n": 1}))
    assert class_().format(record) == expected


@pytest.mark.parametrize(
    ("class_", "expected"),
    [
        (JsonFormatter, {"levelname": "INFO"}),
        (JSONFormatter, {"message": "hi", "levelname": "INFO"}),
    ],
    ids=BACKEND_IDS,
)
def test_fmt_without_message_differs_as_documented(class_, expected):
    """A fmt without %(message)s: python-json-logger drops the message, Mímir keeps it first."""
    (record,) = make_records(lambda logger: logger.info("hi"))
    assert json.loads(class_("%(levelname)s").format(record)) == expected


@pytest.mark.parametrize(
    ("class_", "expected"),
    [(JsonFormatter, {"loss": 0.5, "message": ""}), (JSONFormatter, {"loss": 0.5})],
    ids=BACKEND_IDS,
)
def test_mapping_message_differs_as_documented(class_, expected):
    """A mapping message is the entry: Mímir adds no empty "message" key."""
    (record,) = make_records(lambda logger: logger.info({"loss": 0.5}))
    assert json.loads(class_().format(record)) == expected


@pytest.mark.parametrize("options", [{"json_indent": 2}, {"indent": 4}], ids=repr)
def test_indent_is_refused(options):
    """json_indent= is refused like indent=: an entry is one line."""
    with pytest.raises(ValueError, match="one line"):
        JSONFormatter(**options)


@pytest.mark.parametrize(
    "options",
    [
        {"default": str, "json_default": str},
        {"cls": json.JSONEncoder, "json_encoder": json.JSONEncoder},
        {"ensure_ascii": True, "json_ensure_ascii": True},
    ],
    ids=["default", "encoder", "ensure_ascii"],
)
def test_both_spellings_at_once_are_refused(options):
    """Giving an option under both its Mímir and its python-json-logger name is a TypeError."""
    with pytest.raises(TypeError, match="not both"):
        JSONFormatter(**options)


@pytest.mark.parametrize("class_", BACKENDS, ids=BACKEND_IDS)
def test_json_attributes_are_those_of_python_json_logger(class_):
    """json_default and json_ensure_ascii are readable as on python-json-logger's formatter."""
    formatter = class_(json_default=encode_special, json_ensure_ascii=False)
    assert formatter.json_default is encode_special
    assert formatter.json_ensure_ascii is False


def test_python_json_logger_dictconfig_loads():
    """A dictConfig written for python-json-logger loads with "()": "mimir.JSONFormatter"."""
    stream = io.StringIO()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "mimir.JSONFormatter",
                "fmt": "%(levelname)s %(message)s",
                "json_default": f"ext://{__name__}.encode_special",
                "json_ensure_ascii": False,
                "json_encoder": "ext://json.JSONEncoder",
                "rename_fields": {"levelname": "level"},
                "static_fields": {"service": "train"},
                "exc_info_as_array": True,
                "reserved_attrs": KEEP_FUNC,
                "timestamp": "ts",
            }
        },
        "handlers": {
            "out": {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
        },
        "loggers": {"mimir.test.compat": {"handlers": ["out"], "level": "INFO"}},
    }
    logging.config.dictConfig(config)
    logger = logging.getLogger("mimir.test.compat")
    logger.info("hi", extra={"value": Special()})
    entry = json.loads(stream.getvalue())
    assert entry["level"] == "INFO"
    assert entry["value"] == {"special": True}
    assert entry["service"] == "train"
    assert isinstance(entry["lineno"], int)
    assert "ts" in entry


# -- values JSON cannot represent -----------------------------------------------------------


def value_records(value: Any) -> list[logging.LogRecord]:
    """``value`` in extra=, nested in extra=, in a message mapping and nested in one."""

    def run(logger: logging.Logger) -> None:
        logger.info("top", extra={"value": value})
        logger.info("nested", extra={"value": {"in": [value, 1]}})
        logger.info({"value": value, "list": [value]})

    return make_records(run)


@pytest.mark.parametrize("name", list(SAME_VALUES))
def test_value_encoding_matches_python_json_logger(name):
    """Values JSON cannot represent are written as python-json-logger writes them."""
    assert compare(value_records(SAME_VALUES[name]), JsonFormatter(), JSONFormatter()) == 3


def placed_values(entries: list[dict[str, Any]]) -> list[Any]:
    """The logged value at each place :func:`value_records` put it."""
    top, nested, mapping = entries
    return [top["value"], nested["value"]["in"][0], mapping["value"], mapping["list"][0]]


@pytest.mark.parametrize(("class_", "index"), BACKEND_INDEX)
@pytest.mark.parametrize("name", list(DIFFERENT_VALUES))
def test_value_encoding_differs_as_documented(name, class_, index):
    """Numbers stay numbers and sets lists in Mímir, where python-json-logger writes str()."""
    value, *expected = DIFFERENT_VALUES[name]
    want = expected[index]
    entries = [json.loads(class_().format(record)) for record in value_records(value)]
    for got in placed_values(entries):
        if want is None:  # a set's str() has no fixed order: only its kind is checked
            assert isinstance(got, str)
        else:
            assert same(got, want)


NUMPY_CASES: dict[str, tuple[Callable[[Any], Any], Any, Any]] = {
    "int64": (lambda np: np.int64(5), "5", 5),
    "float32": (lambda np: np.float32(0.5), "0.5", 0.5),
    "float64": (lambda np: np.float64(0.25), 0.25, 0.25),
    "bool": (lambda np: np.bool_(True), "True", True),
    "0-d array": (lambda np: np.array(2.5), "2.5", 2.5),
    "1-d array": (lambda np: np.arange(3), "[0 1 2]", [0, 1, 2]),
    "2-d array": (lambda np: np.eye(2, dtype=np.float32), None, [[1.0, 0.0], [0.0, 1.0]]),
    "nan array": (lambda np: np.array([np.nan]), "[nan]", [float("nan")]),
}


@pytest.mark.parametrize(("class_", "index"), BACKEND_INDEX)
@pytest.mark.parametrize("name", list(NUMPY_CASES))
def test_numpy_values_differ_as_documented(name, class_, index):
    """NumPy arrays become lists and NumPy scalars numbers in Mímir; str() in python-json-logger."""
    np = pytest.importorskip("numpy")
    make, *expected = NUMPY_CASES[name]
    want = expected[index]
    (record,) = make_records(lambda logger: logger.info({"v": make(np)}, extra={"e": make(np)}))
    entry = json.loads(class_().format(record))
    for got in (entry["v"], entry["e"]):
        if want is None:
            assert isinstance(got, str)
        else:
            assert same(got, want)


def test_user_default_takes_precedence_over_built_in_conversions():
    """A user's default= is asked before the built-in conversions, as json_default is."""

    def as_tag(obj: Any) -> Any:
        if isinstance(obj, (decimal.Decimal, datetime.date, bytes)):
            return f"tag:{type(obj).__name__}"
        raise TypeError(type(obj).__name__)

    value = {"d": decimal.Decimal("1.5"), "t": datetime.date(2024, 1, 1), "b": b"x"}
    (record,) = make_records(lambda logger: logger.info(value))
    for formatter in (JSONFormatter(default=as_tag), JSONFormatter(json_default=as_tag)):
        assert json.loads(formatter.format(copy_record(record))) == {
            "d": "tag:Decimal",
            "t": "tag:date",
            "b": "tag:bytes",
        }


def test_user_default_passes_unknown_values_on():
    """What default= refuses with TypeError (or returns unchanged) is converted as usual."""
    (record,) = make_records(
        lambda logger: logger.info({"a": datetime.date(2024, 1, 1), "b": Special()})
    )
    for default in (encode_special, lambda obj: obj):
        entry = json.loads(JSONFormatter(default=default).format(copy_record(record)))
        assert entry["a"] == "2024-01-01"
    assert json.loads(JSONFormatter(default=encode_special).format(record))["b"] == {
        "special": True
    }


def test_keys_json_refuses_are_written_not_dropped():
    """A tuple key, which python-json-logger cannot write at all, becomes a string key."""
    (record,) = make_records(lambda logger: logger.info("m", extra={"cm": {(0, 1): 3}}))
    with pytest.raises(TypeError):
        JsonFormatter().format(copy_record(record))
    assert json.loads(JSONFormatter().format(record))["cm"] == {"(0, 1)": 3}


# -- records are not changed for the next handler ---------------------------------------------


def test_exc_info_as_array_leaves_the_record_usable_by_stdlib_formatters():
    """After exc_info_as_array formats a record, logging.Formatter still formats it."""
    try:
        raise ZeroDivisionError("division")
    except ZeroDivisionError:
        (record,) = make_records(lambda logger: logger.exception("boom"))
    entry = json.loads(JSONFormatter(exc_info_as_array=True).format(record))
    assert isinstance(entry["exc_info"], list)
    assert record.exc_text is None or isinstance(record.exc_text, str)
    text = logging.Formatter().format(record)
    assert text.startswith("boom\nTraceback")
    assert text.endswith("ZeroDivisionError: division")


def test_stack_info_as_array_leaves_the_record_usable_by_stdlib_formatters():
    """stack_info_as_array does not turn record.stack_info into a list."""
    (record,) = make_records(lambda logger: logger.info("here", stack_info=True))
    entry = json.loads(JSONFormatter(stack_info_as_array=True).format(record))
    assert isinstance(entry["stack_info"], list)
    assert isinstance(record.stack_info, str)
    assert "Stack (most recent call last)" in logging.Formatter().format(record)


class AddField(logging.Filter):
    """A filter that adds a field to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = "r-42"
        return True


class Redact(logging.Filter):
    """A filter that replaces the message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = "[redacted]"
        record.args = None
        return True


@pytest.mark.parametrize("class_", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("message", ["hello %s", {"loss": 0.5}], ids=["text", "mapping"])
def test_second_handler_filter_field_is_in_its_output(class_, message, tmp_path):
    """Two handlers share a formatter; only the second's filter adds a field, and it shows."""
    formatter = class_()
    first, second = io.StringIO(), io.StringIO()
    logger = logging.Logger("mimir-test-compat-filter", logging.INFO)
    for stream, filters in ((first, []), (second, [AddField()])):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        for filter_ in filters:
            handler.addFilter(filter_)
        logger.addHandler(handler)
    logger.info(message, "world")
    assert "request_id" not in json.loads(first.getvalue())
    assert json.loads(second.getvalue())["request_id"] == "r-42"


def test_second_handler_filter_that_replaces_the_message_is_seen():
    """A filter that replaces msg on the second handler changes that handler's entry."""
    formatter = JSONFormatter()
    memory, redacted = MemoryHandler(5), MemoryHandler(5)
    for handler in (memory, redacted):
        handler.setFormatter(formatter)
    redacted.addFilter(Redact())
    logger = logging.Logger("mimir-test-compat-redact", logging.INFO)
    logger.addHandler(memory)
    logger.addHandler(redacted)
    logger.info("secret %s", "token")
    assert memory[-1] == {"message": "secret token"}
    assert redacted[-1] == {"message": "[redacted]"}


def test_unchanged_record_is_encoded_once_for_several_handlers(tmp_path):
    """Without filters the line is built once and shared by every handler."""
    calls: list[Any] = []

    def default(obj: Any) -> Any:
        calls.append(obj)
        return "special"

    formatter = JSONFormatter(default=default)
    handlers = [MemoryHandler(5), logging.StreamHandler(io.StringIO())]
    handlers.append(logging.StreamHandler(io.StringIO()))
    logger = logging.Logger("mimir-test-compat-once", logging.INFO)
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.info({"v": Special()})
    assert len(calls) == 1


# -- through real handlers ----------------------------------------------------------------------


def awkward_values() -> list[Any]:
    """One value of every kind JSON cannot represent, NumPy ones included if installed."""
    values = [*SAME_VALUES.values(), *(case[0] for case in DIFFERENT_VALUES.values())]
    try:
        import numpy
    except ImportError:
        return values
    return [*values, numpy.arange(4), numpy.float32(0.5), numpy.int64(7), numpy.array(1.5)]


FILE_HANDLERS: dict[str, Callable[[Any], mimir.Handler]] = {
    "jsonl": lambda path: JSONLFileHandler(path, flush_interval=0),
    "gzlog": lambda path: GzlogFileHandler(path, flush_interval=0, writer_process=False),
}


@pytest.mark.parametrize("kind", list(FILE_HANDLERS))
def test_every_record_with_awkward_values_lands_in_the_file(kind, tmp_path, capfd):
    """50 records of values JSON cannot represent: all written, memory agrees, stderr quiet."""
    path = tmp_path / ("run.jsonl.gz" if kind == "gzlog" else "run.jsonl")
    file_handler = FILE_HANDLERS[kind](path)
    memory = MemoryHandler(100)
    console = ConsoleHandler()
    console.setFormatter(ConsoleFormatter())
    logger = logging.Logger("mimir-test-compat-files", logging.INFO)
    for handler in (file_handler, memory, console):
        logger.addHandler(handler)
    values = awkward_values()
    for i in range(50):
        value = values[i % len(values)]
        if i % 2:
            logger.info({"i": i, "value": value, "list": [value]})
        else:
            logger.info("record %d", i, extra={"i": i, "value": value})
    file_handler.close()
    written = mimir.load(path)
    assert [entry["i"] for entry in written] == list(range(50))
    encode = JSONFormatter().encoder.encode
    assert all(same(json.loads(encode(e)), w) for e, w in zip(memory, written, strict=True))
    assert file_handler.failures == 0
    out, err = capfd.readouterr()
    assert err.count("\n") <= 3
    assert "record 48" in out


def test_unencodable_entries_are_reported_once_per_cause(log_path, capfd):
    """A default= that fails is reported in full once, then by short counted lines."""

    def refuse(obj: Any) -> Any:
        if isinstance(obj, Special):
            raise ValueError("Special is not allowed")
        raise TypeError(type(obj).__name__)

    handler = JSONLFileHandler(log_path, flush_interval=0)
    handler.setFormatter(JSONFormatter(default=refuse))
    logger = logging.Logger("mimir-test-compat-failures", logging.INFO)
    logger.addHandler(handler)
    for i in range(50):
        logger.info({"i": i, "bad": Special()} if i % 5 else {"i": i})
    handler.close()
    assert [entry["i"] for entry in mimir.load(log_path)] == list(range(0, 50, 5))
    assert handler.failures == 40
    err = capfd.readouterr().err
    assert err.count("--- Logging error ---") == 1  # the 1st in full, with its traceback
    short = [line for line in err.splitlines() if "could not encode" in line]
    assert [line.split(" could not encode ")[1].split()[0] for line in short] == [
        "2",
        "4",
        "8",
        "16",
        "32",
    ]
    assert all("Special is not allowed" in line for line in short)
    lines = err.splitlines()
    first_report_end = next(i for i, line in enumerate(lines) if line.startswith("Arguments:"))
    assert lines[first_report_end + 1 :] == short
