"""Values JSON cannot represent, through mimir.Logger and the encoder's edge cases (P7)."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import logging
import subprocess
import sys
import uuid
from typing import Any

import pytest

import mimir
from mimir import JSONFormatter, JSONLFileHandler


class Colour(enum.Enum):
    """A plain enum."""

    RED = "red"


class Opaque:
    """An arbitrary object with no JSON form."""

    def __str__(self) -> str:
        return "opaque"


def record_for(msg: Any, **extra: Any) -> logging.LogRecord:
    """A record as logging.Logger.info would make it."""
    logger = logging.Logger("mimir-test-values")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, None, None, extra=extra)


ENTRY_VALUES = {
    "decimal": (decimal.Decimal("0.5"), 0.5),
    "date": (datetime.date(2024, 1, 2), "2024-01-02"),
    "enum": (Colour.RED, "red"),
    "uuid": (uuid.UUID(int=7), str(uuid.UUID(int=7))),
    "bytes": (b"\x00\x01", "AAE="),
    "set": ({2, 1}, [1, 2]),
    "object": (Opaque(), "opaque"),
    "exception": (KeyError("k"), "KeyError: 'k'"),
}


@pytest.mark.parametrize("path_name", ["run.jsonl", "run.jsonl.gz"])
def test_logger_log_writes_every_entry_with_awkward_values(tmp_path, path_name, capfd):
    """mimir.Logger.log (the fast path) writes entries of every value type, memory agrees."""
    path = tmp_path / path_name
    with mimir.Logger(filename=path, maxlen=100, formatter=None) as logger:
        for i, (value, _) in enumerate(ENTRY_VALUES.values()):
            logger.log({"i": i, "value": value})
        kept = list(logger)
    written = mimir.load(path)
    assert [entry["value"] for entry in written] == [want for _, want in ENTRY_VALUES.values()]
    assert [entry["i"] for entry in kept] == list(range(len(ENTRY_VALUES)))
    assert capfd.readouterr().err == ""


def test_distinct_causes_are_each_reported_in_full(log_path, capfd):
    """Two different encoding failures each get one full report."""

    def refuse(obj: Any) -> Any:
        raise ValueError(f"refused {type(obj).__name__}")

    handler = JSONLFileHandler(log_path, flush_interval=0)
    handler.setFormatter(JSONFormatter(default=refuse))
    logger = logging.Logger("mimir-test-values-causes", logging.INFO)
    logger.addHandler(handler)
    for _ in range(3):
        logger.info({"a": Opaque()})
        logger.info({"b": decimal.Decimal(1)})
    handler.close()
    err = capfd.readouterr().err
    assert handler.failures == 6
    assert err.count("--- Logging error ---") == 2
    assert err.count("could not encode 2 entries") == 2


def test_many_distinct_causes_share_one_count_after_a_limit(log_path, capfd):
    """Past 16 distinct causes, further failures are reported only as counted short lines."""

    def refuse(obj: Any) -> Any:
        raise ValueError(f"refused {obj.number}")

    class Numbered:
        def __init__(self, number: int) -> None:
            self.number = number

    handler = JSONLFileHandler(log_path, flush_interval=0)
    handler.setFormatter(JSONFormatter(default=refuse))
    logger = logging.Logger("mimir-test-values-limit", logging.INFO)
    logger.addHandler(handler)
    for number in range(100):
        logger.info({"x": Numbered(number)})
    handler.close()
    err = capfd.readouterr().err
    assert handler.failures == 100
    assert err.count("--- Logging error ---") == 16
    assert "other encoding failures" in err


def test_without_raise_exceptions_failures_are_counted_silently(log_path, capfd, monkeypatch):
    """With logging.raiseExceptions false nothing is printed, every failure is counted."""
    monkeypatch.setattr(logging, "raiseExceptions", False)
    handler = JSONLFileHandler(log_path, flush_interval=0)
    logger = logging.Logger("mimir-test-values-silent", logging.INFO)
    logger.addHandler(handler)
    circular: list[Any] = []
    circular.append(circular)
    for _ in range(5):
        logger.info({"loop": circular})
    handler.close()
    assert handler.failures == 5
    assert capfd.readouterr().err == ""


def test_a_circular_entry_is_still_a_serialization_error():
    """An entry that contains itself cannot be written: SerializationError names it."""
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(mimir.SerializationError, match="contains itself"):
        JSONFormatter().format(record_for({"c": circular}))


def test_json_serializer_returning_bytes_is_decoded():
    """A json_serializer returning bytes (orjson-style) gives a str line."""

    def to_bytes(obj: Any, **kwargs: Any) -> bytes:
        return json.dumps(obj, **kwargs).encode()

    line = JSONFormatter(json_serializer=to_bytes).format(record_for({"a": Opaque()}))
    assert line == '{"a": "opaque"}'


def test_json_serializer_failure_is_a_serialization_error():
    """A json_serializer that raises gives a SerializationError that names it."""

    def broken(obj: Any, **kwargs: Any) -> str:
        raise RuntimeError("serializer down")

    with pytest.raises(mimir.SerializationError, match="serializer down"):
        JSONFormatter(json_serializer=broken).format(record_for({"a": 1}))


def test_json_serializer_import_path_and_json_dumps_are_accepted():
    """json_serializer may be an import path; json.dumps itself keeps the built-in encoder."""
    formatter = JSONFormatter(json_serializer="json.dumps")
    assert formatter.format(record_for({"a": 1})) == '{"a":1}'
    assert formatter.encoder.serializer is None


class RaisingAttributes:
    """An object whose every attribute lookup fails with something other than AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    def __str__(self) -> str:
        return "raising-attributes"


def test_objects_whose_attributes_raise_are_still_written():
    """Probing a value for .ndim/.item never makes its entry fail."""
    line = JSONFormatter().format(record_for({"v": RaisingAttributes()}))
    assert json.loads(line) == {"v": "raising-attributes"}
    line = JSONFormatter(default=str).format(record_for({"v": RaisingAttributes()}))
    assert json.loads(line) == {"v": "raising-attributes"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (decimal.Decimal("2"), 2),
        (decimal.Decimal("2.0"), 2.0),
        (decimal.Decimal("1E+2"), 100),
        (decimal.Decimal("-0.125"), -0.125),
        (decimal.Decimal("Infinity"), float("inf")),
        (decimal.Decimal("sNaN"), "sNaN"),
    ],
    ids=str,
)
def test_decimals_become_numbers(value, expected):
    """A Decimal is an int without a fraction, else a float; a signalling NaN its text."""
    got = json.loads(JSONFormatter().format(record_for({"d": value})))["d"]
    assert got == expected
    assert type(got) is type(expected)


def test_encoding_values_does_not_import_numpy():
    """Converting non-NumPy values never imports NumPy."""
    code = (
        "import sys, logging, decimal, datetime, mimir\n"
        "r = logging.makeLogRecord({'msg': {'d': decimal.Decimal(1), 'o': object(),"
        " 't': datetime.date(2020, 1, 1), 's': {1}}})\n"
        "mimir.JSONFormatter().format(r)\n"
        "mimir.JSONFormatter(ensure_ascii=True).format(r)\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
