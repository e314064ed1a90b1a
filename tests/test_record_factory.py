"""mimir.Logger.log and logging.setLogRecordFactory: another factory's records, its attributes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mimir
from mimir._record import EntryRecord

ENTRIES = [{"iteration": i, "training_error": 1.0 / (i + 1), "tag": "x"} for i in range(5)]


class Collect(logging.Handler):
    """A plain stdlib handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class RunRecord(logging.LogRecord):
    """A record class used as the factory itself, as ``setLogRecordFactory(cls)`` allows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_id = "class-run"


@pytest.fixture
def run_id_factory() -> Iterator[list[logging.LogRecord]]:
    """Install a factory adding ``run_id`` to every record; restore the previous one after."""
    previous = logging.getLogRecordFactory()
    made: list[logging.LogRecord] = []

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.run_id = "run-42"
        made.append(record)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield made
        assert logging.getLogRecordFactory() is factory  # Mímir left it in place
    finally:
        logging.setLogRecordFactory(previous)
    assert logging.getLogRecordFactory() is previous


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_factory_records_reach_a_plain_handler(run_id_factory: list[logging.LogRecord]) -> None:
    """A plain handler on the Logger's logger gets the factory's records, with its attribute."""
    logger = mimir.Logger(maxlen=10, formatter=None)
    collect = Collect()
    logger.logger.addHandler(collect)
    for entry in ENTRIES:
        logger.log(entry)
    logger.close()
    assert collect.records == run_id_factory  # the very records the factory made
    assert [r.msg for r in collect.records] == ENTRIES
    for record in collect.records:
        assert record.run_id == "run-42"  # type: ignore[attr-defined]
        assert (record.name, record.levelno, record.args) == (logger.logger.name, 20, None)
        assert (record.pathname, record.lineno, record.funcName) == ("", 0, None)
    assert list(logger) == ENTRIES  # the entries themselves are unchanged


def test_record_class_as_factory() -> None:
    """``setLogRecordFactory(SomeRecordClass)``: Logger.log's records are of that class."""
    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(RunRecord)
    try:
        logger = mimir.Logger(formatter=None)
        collect = Collect()
        logger.logger.addHandler(collect)
        logger.log(ENTRIES[0])
        logger.close()
    finally:
        logging.setLogRecordFactory(previous)
    (record,) = collect.records
    assert type(record) is RunRecord
    assert record.run_id == "class-run"  # type: ignore[attr-defined]


def test_json_formatter_field_gets_the_factory_attribute(
    run_id_factory: list[logging.LogRecord], tmp_path: Path
) -> None:
    """A JSONFormatter configured with the factory's field writes it; the entry follows."""
    path = tmp_path / "run.jsonl"
    logger = mimir.Logger(path, maxlen=10, formatter=None, fmt=["run_id"])
    out = io.StringIO()
    extra = logging.StreamHandler(out)
    extra.setFormatter(mimir.JSONFormatter("%(run_id)s %(levelname)s"))
    logger.logger.addHandler(extra)
    for entry in ENTRIES:
        logger.log(entry)
    logger.close()
    expected = [{"run_id": "run-42", **entry} for entry in ENTRIES]
    assert lines_of(path) == expected
    assert list(logger) == expected
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"run_id": "run-42", "levelname": "INFO", **entry} for entry in ENTRIES
    ]


def test_factory_installed_after_the_logger_is_honoured(tmp_path: Path) -> None:
    """The factory in place at each entry makes its record, whenever it was installed."""
    path = tmp_path / "run.jsonl"
    logger = mimir.Logger(path, formatter=None, fmt=["run_id"])
    collect = Collect()
    logger.logger.addHandler(collect)
    logger.log({"i": 0})  # the default factory
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.run_id = "late"
        return record

    logging.setLogRecordFactory(factory)
    try:
        logger.log({"i": 1})
    finally:
        logging.setLogRecordFactory(previous)
    logger.log({"i": 2})  # the default factory again
    logger.close()
    assert [type(r) is EntryRecord for r in collect.records] == [True, False, True]
    assert [getattr(r, "run_id", None) for r in collect.records] == [None, "late", None]
    assert lines_of(path) == [
        {"run_id": None, "i": 0},
        {"run_id": "late", "i": 1},
        {"run_id": None, "i": 2},
    ]


@pytest.mark.parametrize("custom_factory", [False, True], ids=["default-factory", "factory"])
@pytest.mark.parametrize("records", [False, True], ids=["direct", "records"])
def test_entries_written_unchanged(
    request: pytest.FixtureRequest, tmp_path: Path, custom_factory: bool, records: bool
) -> None:
    """Default formatter: each line is the entry, byte for byte the same whatever the factory."""
    if custom_factory:
        request.getfixturevalue("run_id_factory")
    path = tmp_path / "run.jsonl"
    logger = mimir.Logger(path, maxlen=10, formatter=None)
    collect = Collect()
    if records:  # a handler of its own: entries go through records
        logger.logger.addHandler(collect)
    for entry in ENTRIES:
        logger.log(entry)
    logger.close()
    assert path.read_bytes() == b"".join(
        json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in ENTRIES
    )
    assert list(logger) == ENTRIES
    if records:
        assert len(collect.records) == len(ENTRIES)
        assert all((type(r) is EntryRecord) is not custom_factory for r in collect.records)


def test_stdlib_records_keep_their_extras(run_id_factory: list[logging.LogRecord]) -> None:
    """Only Logger.log's records leave the factory's attribute out; stdlib calls merge it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(mimir.JSONFormatter())
    stdlib = logging.getLogger("mimir.test_record_factory.stdlib")
    stdlib.propagate = False
    stdlib.addHandler(handler)
    stdlib.setLevel(logging.INFO)
    stdlib.info({"loss": 0.5})
    stdlib.info("hello", extra={"step": 3})
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"loss": 0.5, "run_id": "run-42"},
        {"message": "hello", "run_id": "run-42", "step": 3},
    ]
