"""The structured-record formatter: what an entry and its JSON line look like."""

from __future__ import annotations

import datetime
import enum
import json
import logging
import math
import shutil
import subprocess
import sys
import uuid
from typing import Any

import numpy
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonjsonlogger.json import JsonFormatter

import mimir
from mimir import JSONFormatter, JSONLFileHandler, MemoryHandler, SerializationError

# Option sets that take the orjson path and the stdlib json path of the encoder.
ORJSON_OPTIONS: list[dict[str, Any]] = [
    {},
    {"sort_keys": True},
    {"check_circular": False},
    {"default": str},
]
STDLIB_OPTIONS: list[dict[str, Any]] = [
    {"ensure_ascii": True},
    {"separators": (", ", ": ")},
    {"cls": json.JSONEncoder},
    {"skipkeys": True},
    {"allow_nan": False},
    {"cls": "json.JSONEncoder", "sort_keys": True, "ensure_ascii": True},
]
ALL_OPTIONS = ORJSON_OPTIONS + STDLIB_OPTIONS
OPTION_IDS = [repr(options) for options in ALL_OPTIONS]

# Keys an entry may use although LogRecord has attributes of the same name.
CLASHING_KEYS = [
    "name",
    "msg",
    "args",
    "message",
    "levelname",
    "levelno",
    "created",
    "filename",
    "pathname",
    "module",
    "lineno",
    "funcName",
    "exc_info",
    "exc_text",
    "stack_info",
    "thread",
    "process",
    "asctime",
    "taskName",
    "msecs",
]


def record_for(msg: Any, *args: Any, **extra: Any) -> logging.LogRecord:
    """A record as logging.Logger.info would make it."""
    logger = logging.Logger("mimir-test-formatter")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, msg, args or None, None, extra=extra or None
    )


def nan_aware_equal(a: Any, b: Any, ordered: bool = True) -> bool:
    """Deep equality in which NaN equals NaN, number types must match, and key order counts."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if ordered and list(a) != list(b):
            return False
        return a.keys() == b.keys() and all(nan_aware_equal(a[k], b[k], ordered) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(
            nan_aware_equal(x, y, ordered) for x, y in zip(a, b, strict=True)
        )
    return a == b


def _join_surrogates(text: str) -> str:
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def as_json_reads_it(value: Any, sort_keys: bool = False) -> Any:
    """What a JSON reader can get back for ``value`` (keys sorted first if ``sort_keys``).

    JSON escapes a high and a low surrogate that follow each other as one astral
    character, so two lone surrogates in a row read back as that character.
    """
    if isinstance(value, str):
        return _join_surrogates(value)
    if isinstance(value, dict):
        items = sorted(value.items()) if sort_keys else value.items()
        result = {}
        for key, item in items:
            result[_join_surrogates(key)] = as_json_reads_it(item, sort_keys)
        return result
    if isinstance(value, list):
        return [as_json_reads_it(item, sort_keys) for item in value]
    return value


# -- strategies -------------------------------------------------------------------------

characters = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(min_codepoint=0x10000),  # astral plane
    st.sampled_from(["\n", "\r", "\t", '"', "\\", "\x00", "\u2028"]),
)
texts = st.text(characters, max_size=12)
keys = st.one_of(texts, st.sampled_from(CLASHING_KEYS))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-(2**63)),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)
entries = st.dictionaries(keys, values, max_size=8)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


# -- the entry ------------------------------------------------------------------------


def test_is_a_python_json_logger_formatter():
    """JSONFormatter extends python-json-logger's JsonFormatter."""
    assert issubclass(JSONFormatter, JsonFormatter)
    assert isinstance(JSONFormatter(), logging.Formatter)


def test_mapping_message_becomes_exactly_that_mapping():
    """A mapping message is written as that mapping, same keys and order, nothing added."""
    line = JSONFormatter().format(record_for({"iteration": 7, "b": 1, "a": [0.5, None]}))
    assert line == '{"iteration":7,"b":1,"a":[0.5,null]}'


def test_keys_clashing_with_record_attributes_pass_through():
    """Entry keys named like LogRecord attributes are written unchanged."""
    entry = {key: f"value of {key}" for key in CLASHING_KEYS}
    entry["created"] = 0
    entry["args"] = [1, 2]
    entry["exc_info"] = None
    parsed = json.loads(JSONFormatter().format(record_for(entry)))
    assert parsed == entry
    assert list(parsed) == list(entry)


def test_keys_clashing_with_record_attributes_through_a_real_logger(stdlib_logger):
    """A mapping logged with Logger.info keeps keys such as name/msg/message/levelname as given."""
    handler = MemoryHandler(10)
    stdlib_logger.addHandler(handler)
    entry = {"name": "n", "msg": "m", "message": "x", "levelname": "L", "filename": "f"}
    stdlib_logger.info(entry)
    assert handler[-1] == entry
    assert list(handler[-1]) == list(entry)


def test_extra_fields_are_merged_into_mapping_entries():
    """extra= fields are added after the entry's own keys."""
    entry = JSONFormatter().entry(record_for({"loss": 0.5}, run="a", epoch=3))
    assert entry == {"loss": 0.5, "run": "a", "epoch": 3}


def test_plain_records_become_message_plus_extra():
    """A record with a text message becomes {"message": ..., **extra}."""
    line = JSONFormatter().format(record_for("hello %s", "world", run="a"))
    assert json.loads(line) == {"message": "hello world", "run": "a"}


def test_exc_info_is_included_as_text_on_one_line():
    """An exception's traceback goes under "exc_info" as text, and the line stays one line."""
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        record = logging.Logger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = JSONFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed"
    assert "Traceback" in entry["exc_info"]
    assert "ZeroDivisionError" in entry["exc_info"]


def test_exc_info_is_added_to_mapping_entries():
    """A mapping logged with exc_info keeps its keys and gains "exc_info"."""
    try:
        raise KeyError("boom")
    except KeyError:
        record = logging.Logger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, {"step": 1}, None, sys.exc_info()
        )
    entry = JSONFormatter().entry(record)
    assert entry["step"] == 1
    assert "KeyError" in entry["exc_info"]


@pytest.mark.parametrize(
    ("kwargs", "expected_keys"),
    [
        ({"fmt": "%(levelname)s"}, ["levelname", "loss"]),
        ({"fmt": "%(levelname)s %(name)s"}, ["levelname", "name", "loss"]),
        ({"static_fields": {"run": "r1"}}, ["run", "loss"]),
        ({"fmt": "%(levelname)s", "rename_fields": {"levelname": "level"}}, ["level", "loss"]),
        ({"timestamp": True}, ["loss", "timestamp"]),
    ],
)
def test_configured_fields_are_added_to_mapping_entries(kwargs, expected_keys):
    """Fields configured with fmt/static_fields/rename_fields/timestamp are added, nothing else."""
    entry = json.loads(JSONFormatter(**kwargs).format(record_for({"loss": 0.5})))
    assert sorted(entry) == sorted(expected_keys)
    assert entry["loss"] == 0.5
    if "levelname" in entry or "level" in entry:
        assert entry.get("levelname", entry.get("level")) == "INFO"
    if "timestamp" in entry:
        assert datetime.datetime.fromisoformat(entry["timestamp"]).year >= 2024
    if "run" in entry:
        assert entry["run"] == "r1"


def test_configured_fields_are_added_to_plain_records():
    """A text record with fmt fields gets those fields and its message."""
    entry = JSONFormatter("%(levelname)s %(message)s").entry(record_for("hi"))
    assert entry == {"levelname": "INFO", "message": "hi"}


def test_entry_returns_the_dict_and_format_the_line():
    """entry() gives the dict and format() its JSON line, each built once per record."""
    formatter = JSONFormatter()
    record = record_for({"a": 1, "b": [1, 2]})
    entry = formatter.entry(record)
    line = formatter.format(record)
    assert entry == {"a": 1, "b": [1, 2]}
    assert json.loads(line) == entry
    assert formatter.entry(record) is entry
    assert formatter.format(record) is line


def test_two_formatters_do_not_share_a_cached_line():
    """A second formatter with other options encodes the same record its own way."""
    record = record_for({"b": 1, "a": 2})
    assert JSONFormatter().format(record) == '{"b":1,"a":2}'
    assert JSONFormatter(sort_keys=True).format(record) == '{"a":2,"b":1}'


class Opaque:
    """A value only a default= function can write."""


def test_entry_is_encoded_once_for_three_handlers(stdlib_logger, tmp_path, closing):
    """One record shared by three handlers calls default= once (encoded once)."""
    calls = []

    def default(obj: Any) -> Any:
        calls.append(obj)
        return "opaque"

    formatter = JSONFormatter(default=default)
    handlers = [
        closing(JSONLFileHandler(tmp_path / "a.jsonl", flush_interval=0)),
        closing(JSONLFileHandler(tmp_path / "b.jsonl", flush_interval=0)),
        closing(MemoryHandler(10)),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        stdlib_logger.addHandler(handler)
    stdlib_logger.info({"x": Opaque()})
    assert len(calls) == 1
    for name in ("a.jsonl", "b.jsonl"):
        assert (tmp_path / name).read_text() == '{"x":"opaque"}\n'


def test_jsonify_is_called_once_for_three_handlers(stdlib_logger, tmp_path, closing):
    """A formatter subclass sees one jsonify_log_record call per record with three handlers."""

    class Counting(JSONFormatter):
        calls = 0

        def jsonify_log_record(self, log_data):
            type(self).calls += 1
            return super().jsonify_log_record(log_data)

    formatter = Counting()
    for index in range(3):
        handler = closing(JSONLFileHandler(tmp_path / f"{index}.jsonl", flush_interval=0))
        handler.setFormatter(formatter)
        stdlib_logger.addHandler(handler)
    stdlib_logger.info({"loss": 0.25})
    stdlib_logger.info({"loss": 0.5})
    assert Counting.calls == 2
    for index in range(3):
        assert (tmp_path / f"{index}.jsonl").read_text() == '{"loss":0.25}\n{"loss":0.5}\n'


def test_mimir_logger_encodes_each_entry_once(log_path):
    """mimir.Logger with a file and a memory ring calls its default= once per entry."""
    calls = []

    def default(obj: Any) -> Any:
        calls.append(obj)
        return "opaque"

    with mimir.Logger(filename=log_path, maxlen=5, formatter=None, default=default) as logger:
        logger.log({"x": Opaque()})
        logger.log({"x": Opaque()})
    assert len(calls) == 2
    assert mimir.load(log_path) == [{"x": "opaque"}, {"x": "opaque"}]


# -- numbers, NaN and friends ---------------------------------------------------------


class ZeroDim:
    """Looks like a 0-d tensor: .item() and ndim == 0."""

    ndim = 0

    def item(self):
        return 1.25


class OneDim:
    """Looks like a 1-element vector: .item() works but ndim == 1."""

    ndim = 1

    def item(self):
        return 1.25


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (numpy.float32(0.5), 0.5),
        (numpy.float64(0.25), 0.25),
        (numpy.float16(1.5), 1.5),
        (numpy.int8(-3), -3),
        (numpy.int64(2**62), 2**62),
        (numpy.uint64(2**64 - 1), 2**64 - 1),
        (numpy.bool_(True), True),
        (numpy.array(2.5), 2.5),
        (numpy.array(7), 7),
        (ZeroDim(), 1.25),
    ],
    ids=repr,
)
@pytest.mark.parametrize("options", [{}, {"ensure_ascii": True}], ids=["orjson", "stdlib"])
def test_numpy_scalars_and_zero_dim_arrays_stay_numbers(value, expected, options):
    """NumPy scalars, 0-d arrays and .item()/ndim==0 objects are written as JSON numbers."""
    parsed = json.loads(JSONFormatter(**options).format(record_for({"v": value})))["v"]
    assert parsed == expected
    assert type(parsed) is type(expected)


def test_one_element_vectors_are_not_silently_unwrapped():
    """An object with .item() but ndim 1 is not a number: it is written as its str()."""
    value = json.loads(JSONFormatter().format(record_for({"v": OneDim()})))["v"]
    assert isinstance(value, str)
    assert "OneDim" in value


def test_common_python_values_are_written():
    """Dates, enums and UUIDs are written as ISO strings, values and strings."""

    class Colour(enum.Enum):
        RED = "red"

    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID(int=5)
    for options in ({}, {"ensure_ascii": True}):
        entry = json.loads(
            JSONFormatter(**options).format(
                record_for({"t": moment, "d": moment.date(), "c": Colour.RED, "u": ident})
            )
        )
        assert entry == {
            "t": moment.isoformat(),
            "d": "2024-05-06",
            "c": "red",
            "u": str(ident),
        }


@pytest.mark.parametrize("options", ALL_OPTIONS[:-2], ids=OPTION_IDS[:-2])
def test_nan_and_infinities_are_written_as_javascript_literals(options):
    """NaN and ±Inf are written as NaN/Infinity/-Infinity, which Python's json reads back."""
    line = JSONFormatter(**options).format(
        record_for({"a": math.nan, "b": math.inf, "c": -math.inf, "d": numpy.float32("nan")})
    )
    assert "NaN" in line
    assert "-Infinity" in line
    parsed = json.loads(line)
    assert math.isnan(parsed["a"])
    assert math.isnan(parsed["d"])
    assert parsed["b"] == math.inf
    assert parsed["c"] == -math.inf


def test_allow_nan_false_refuses_nan():
    """With allow_nan=False a NaN is a SerializationError naming its key."""
    with pytest.raises(SerializationError, match=r"entry\['loss'\]"):
        JSONFormatter(allow_nan=False).format(record_for({"loss": math.nan}))


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_parses_every_line(tmp_path, closing):
    """jq reads every line Mímir writes, NaN and infinities included."""
    path = tmp_path / "odd.jsonl"
    handler = closing(JSONLFileHandler(path, flush_interval=0))
    logger = logging.Logger("mimir-test-jq")
    logger.addHandler(handler)
    odd_entries = [
        {"nan": math.nan},
        {"inf": math.inf, "ninf": -math.inf},
        {"nested": {"values": [math.nan, 1, -math.inf]}},
        {"big": 2**80, "neg": -(2**70)},
        {"text": "line\nbreak\r\ttab \u2028 \x00"},
        # jq 1.6 rejects an escaped lone *high* surrogate (jq 1.7 reads it as U+FFFD);
        # Mímir keeps lone surrogates so that Python reads back what was logged.
        {"astral": "\U0001f600", "lone_low": "\udc80", "\udfffkey": 1},
        {"é": "ünïcødé"},
        {"numpy": numpy.float32(0.5), "zero_dim": numpy.array(3)},
        {"status": "null"},
    ]
    for entry in odd_entries:
        logger.info(entry)
    handler.close()
    data = path.read_bytes()
    data.decode("utf-8")  # the file stays valid UTF-8, lone surrogates included
    assert len(mimir.load(path)) == len(odd_entries)
    result = subprocess.run(
        ["jq", "-c", "."], input=data, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(odd_entries)


# -- errors -----------------------------------------------------------------------------


def refuse_opaque(obj: Any) -> Any:
    """A default= that fails on Opaque values (and leaves others to Mímir)."""
    if isinstance(obj, Opaque):
        raise ValueError("no Opaque here")
    raise TypeError(type(obj).__name__)


def test_serialization_error_names_key_path_type_and_default():
    """A value default= fails on raises SerializationError (a TypeError) naming path and type."""
    with pytest.raises(SerializationError) as info:
        JSONFormatter(default=refuse_opaque).format(
            record_for({"iteration": 1, "data": [Opaque(), 2]})
        )
    message = str(info.value)
    assert isinstance(info.value, TypeError)
    assert "entry['data'][0]" in message
    assert "Opaque" in message
    assert "no Opaque here" in message
    assert "default=" in message


def test_keys_json_refuses_are_written_as_strings():
    """A tuple key (which JSON refuses) is written as its str(), the other keys unchanged."""
    line = JSONFormatter().format(record_for({"ok": 1, (1, 2): "tuple key"}))
    assert json.loads(line) == {"ok": 1, "(1, 2)": "tuple key"}


def test_skipkeys_drops_bad_keys():
    """skipkeys=True drops keys that cannot be written instead of failing."""
    line = JSONFormatter(skipkeys=True).format(record_for({"ok": 1, (1, 2): "tuple key"}))
    assert json.loads(line) == {"ok": 1}


def test_circular_entry_raises_serialization_error():
    """An entry that contains itself is a SerializationError, not a RecursionError."""
    entry: dict[str, Any] = {"a": []}
    entry["a"].append(entry)
    with pytest.raises(SerializationError):
        JSONFormatter().format(record_for(entry))


def test_what_default_returns_is_converted_too():
    """What default= returns goes through the built-in conversions (a set becomes a list)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Opaque):
            return {"inner": {2, 1}}
        raise TypeError(f"cannot convert {type(obj).__name__}")

    line = JSONFormatter(default=default).format(record_for({"x": Opaque()}))
    assert json.loads(line) == {"x": {"inner": [1, 2]}}


def test_default_that_fails_inside_what_it_returned_is_reported():
    """A default= failing on a value inside its own result names that nested path."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Refused):
            raise ValueError("refused")
        if isinstance(obj, Opaque):
            return {"inner": [Refused()]}
        raise TypeError(type(obj).__name__)

    with pytest.raises(SerializationError, match=r"entry\['x'\]\['inner'\]\[0\]"):
        JSONFormatter(default=default).format(record_for({"x": Opaque()}))


class Refused(Opaque):
    """A value the test's default= refuses."""


def test_indent_is_refused():
    """indent= is refused: an entry must stay on one line."""
    with pytest.raises(ValueError, match="indent"):
        JSONFormatter(indent=2)


def test_separators_with_newlines_are_refused():
    """Separators containing a newline are refused."""
    with pytest.raises(ValueError, match="separators"):
        JSONFormatter(separators=(",\n", ":"))


def test_default_and_cls_accept_import_paths():
    """default= and cls= may be dotted import paths (for dictConfig)."""
    formatter = JSONFormatter(default="mimir.serialization.serialize_numpy", cls="json.JSONEncoder")
    entry = json.loads(formatter.format(record_for({"w": numpy.eye(2)})))
    assert entry["w"]["shape"] == [2, 2]
    with pytest.raises(ValueError, match="could not be imported"):
        JSONFormatter(default="mimir.serialization.no_such_function")
    with pytest.raises(ValueError, match="import path"):
        JSONFormatter(default="nodots")


def test_bad_default_and_cls_are_refused():
    """A non-callable default= or a cls= that is no JSONEncoder is a TypeError."""
    with pytest.raises(TypeError, match="default"):
        JSONFormatter(default=42)
    with pytest.raises(TypeError, match="cls"):
        JSONFormatter(cls=dict)


# -- text -------------------------------------------------------------------------------


def test_utf8_by_default_and_escapes_with_ensure_ascii():
    """Non-ASCII text is written as UTF-8 by default and escaped with ensure_ascii=True."""
    record = record_for({"name": "Mímir"})
    assert JSONFormatter().format(record) == '{"name":"Mímir"}'
    assert JSONFormatter(ensure_ascii=True).format(record) == '{"name":"M\\u00edmir"}'


def test_lone_surrogates_are_escaped_so_lines_stay_utf8():
    """A lone surrogate is written escaped, so the line encodes as UTF-8 and reads back equal."""
    entry = {"s": "a\ud800b", "\udfff": "k"}
    line = JSONFormatter().format(record_for(entry))
    line.encode("utf-8")
    assert json.loads(line) == entry


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=OPTION_IDS)
def test_no_raw_newline_in_a_line(options):
    """Newlines in keys and values are escaped: one entry, one line."""
    line = JSONFormatter(**options).format(
        record_for({"multi\nline": "a\nb\rc", "list": ["\n", {"\r\n": "x"}]})
    )
    assert "\n" not in line
    assert "\r" not in line


# -- the two encoders -------------------------------------------------------------------

RICH_ENTRY = {
    "iteration": 7,
    "training_error": 0.3125,
    "tiny": 5e-324,
    "huge_float": 1.7976931348623157e308,
    "neg_zero": -0.0,
    "int64_max": 2**63 - 1,
    "uint64_max": 2**64 - 1,
    "text": "Mímir \U0001f600 \u2028",
    "nested": {"norms": {"w": 1.5, "b": [0.25, None, True, False]}, "empty": {}},
    "empty_list": [],
    "name": "clashing key",
    "message": "another clashing key",
}


@pytest.mark.parametrize("options", ALL_OPTIONS, ids=OPTION_IDS)
def test_every_option_set_gives_the_same_parsed_entry(options):
    """Each option set (orjson path or stdlib path) writes an entry that parses back equal."""
    line = JSONFormatter(**options).format(record_for(RICH_ENTRY))
    ordered = not options.get("sort_keys")
    assert nan_aware_equal(json.loads(line), json.loads(json.dumps(RICH_ENTRY)), ordered)
    reference = JSONFormatter().format(record_for(RICH_ENTRY))
    assert json.loads(line) == json.loads(reference)


@pytest.mark.parametrize(
    "entry",
    [
        {"big": 2**64, "bigger": -(2**100)},
        {1: "int key", 2: "another", 10: "and another"},
        {"nan": math.nan, "inf": [math.inf, -math.inf]},
        {"lone": "\udc80"},
        {"deep": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]},
    ],
    ids=["big-ints", "non-str-keys", "nan", "lone-surrogate", "deep"],
)
@pytest.mark.parametrize("options", ALL_OPTIONS[:-2], ids=OPTION_IDS[:-2])
def test_values_orjson_cannot_write_give_the_stdlib_result(entry, options):
    """Values that send the encoder to the stdlib path parse back as json.dumps would write them."""
    line = JSONFormatter(**options).format(record_for(entry))
    expected = json.loads(json.dumps(entry, sort_keys=bool(options.get("sort_keys"))))
    assert nan_aware_equal(json.loads(line), expected)


@pytest.mark.parametrize("options", ALL_OPTIONS[:-2], ids=OPTION_IDS[:-2])
def test_mixed_non_str_keys_are_written_as_json_dumps_does(options):
    """Float, None and bool keys become JSON strings the way json.dumps writes them."""
    entry = {1: "int key", 2.5: "float key", None: "none key", False: "bool key"}
    line = JSONFormatter(**options).format(record_for(entry))
    # json.dumps cannot sort mixed keys: Mímir sorts them as the strings they become.
    expected = {json.dumps(key): value for key, value in entry.items()}
    assert json.loads(line) == expected
    if options.get("sort_keys"):
        assert list(json.loads(line)) == sorted(expected)


def test_orjson_is_used_when_options_allow(monkeypatch):
    """orjson encodes entries with the default options and is skipped for ensure_ascii=True."""
    calls = []
    real_dumps = orjson.dumps

    def spy(*args, **kwargs):
        calls.append(args)
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(orjson, "dumps", spy)
    assert JSONFormatter().format(record_for({"a": 1})) == '{"a":1}'
    assert len(calls) == 1
    assert JSONFormatter(ensure_ascii=True).format(record_for({"a": 1})) == '{"a":1}'
    assert JSONFormatter(separators=(", ", ": ")).format(record_for({"a": 1})) == '{"a": 1}'
    assert len(calls) == 1


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries)
def test_property_round_trip_through_a_line(entry):
    """Any nested entry goes formatter -> one UTF-8 line -> json.loads unchanged (NaN-aware)."""
    line = JSONFormatter().format(record_for(entry))
    assert "\n" not in line
    line.encode("utf-8")
    assert nan_aware_equal(json.loads(line), as_json_reads_it(entry))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries)
@pytest.mark.parametrize("options", ALL_OPTIONS, ids=OPTION_IDS)
def test_property_round_trip_for_every_option_set(options, entry):
    """Every option set round-trips arbitrary entries to the same parsed value."""
    if options.get("allow_nan") is False and not _finite(entry):
        with pytest.raises(SerializationError):
            JSONFormatter(**options).format(record_for(entry))
        return
    line = JSONFormatter(**options).format(record_for(entry))
    assert "\n" not in line
    expected = as_json_reads_it(entry, sort_keys=bool(options.get("sort_keys")))
    assert nan_aware_equal(json.loads(line), expected)
