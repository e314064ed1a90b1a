"""Building every Mímir class from logging.config.dictConfig, with a JSON-safe config."""

from __future__ import annotations

import json
import logging
import logging.config

import numpy
import pytest

import mimir
from mimir import JSONFormatter, JSONLFileHandler, MemoryHandler
from mimir.serialization import deserialize_numpy


def json_safe(config: dict) -> dict:
    """The config after a trip through JSON, as if read from a .json file."""
    text = json.dumps(config)
    again = json.loads(text)
    assert again == config
    return again


def handlers_of(logger: logging.Logger, kind: type) -> list:
    """The handlers of ``kind`` attached to ``logger``."""
    return [handler for handler in logger.handlers if isinstance(handler, kind)]


@pytest.fixture
def full_config(tmp_path):
    """A config that builds every Mímir class, the formatter both ways."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "entries": {
                "()": "mimir.JSONFormatter",
                "default": "mimir.serialization.serialize_numpy",
                "sort_keys": True,
                "static_fields": {"run": "r1"},
            },
            "levels": {
                "class": "mimir.JSONFormatter",
                "format": "%(levelname)s %(message)s",
            },
        },
        "handlers": {
            "file": {
                "class": "mimir.JSONLFileHandler",
                "filename": str(tmp_path / "config.jsonl"),
                "flush_interval": 0.05,
                "flush_bytes": 4096,
                "max_buffer_bytes": 1 << 20,
                "formatter": "entries",
                "level": "INFO",
            },
            "ring": {
                "class": "mimir.MemoryHandler",
                "maxlen": 5,
                "formatter": "levels",
                "level": "DEBUG",
            },
        },
        "loggers": {
            "mimir.test.dictconfig": {
                "handlers": ["file", "ring"],
                "level": "DEBUG",
                "propagate": False,
            }
        },
    }


def test_dictconfig_builds_every_class_from_json(full_config, tmp_path):
    """A JSON-safe dictConfig builds JSONFormatter (via "()" and "class") and both handlers."""
    logging.config.dictConfig(json_safe(full_config))
    logger = logging.getLogger("mimir.test.dictconfig")
    (file_handler,) = handlers_of(logger, JSONLFileHandler)
    (ring,) = handlers_of(logger, MemoryHandler)
    assert isinstance(file_handler.formatter, JSONFormatter)
    assert isinstance(ring.formatter, JSONFormatter)
    assert file_handler.level == logging.INFO
    assert file_handler.flush_interval == 0.05

    logger.info({"iteration": 1, "weights": numpy.eye(2)})
    logger.debug({"iteration": 2})
    logger.warning("plain %s", "text")
    file_handler.close()

    entries = mimir.load(tmp_path / "config.jsonl", object_hook=deserialize_numpy)
    assert len(entries) == 2
    assert list(entries[0]) == sorted(entries[0])
    assert entries[0]["run"] == "r1"
    assert entries[0]["iteration"] == 1
    assert numpy.array_equal(entries[0]["weights"], numpy.eye(2))
    assert entries[1] == {"message": "plain text", "run": "r1"}

    assert ring[0]["levelname"] == "INFO"
    assert ring[0]["iteration"] == 1
    assert ring[1] == {"levelname": "DEBUG", "iteration": 2}
    assert ring[2] == {"levelname": "WARNING", "message": "plain text"}
    assert len(ring) == 3


def test_dictconfig_on_the_root_logger(tmp_path):
    """Mímir handlers configured on the root logger receive entries from any named logger."""
    config = json_safe(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "file": {
                    "class": "mimir.JSONLFileHandler",
                    "filename": str(tmp_path / "root.jsonl"),
                },
                "ring": {"class": "mimir.MemoryHandler", "maxlen": 3},
            },
            "root": {"handlers": ["file", "ring"], "level": "INFO"},
        }
    )
    logging.config.dictConfig(config)
    root = logging.getLogger()
    (file_handler,) = handlers_of(root, JSONLFileHandler)
    (ring,) = handlers_of(root, MemoryHandler)
    logging.getLogger("mimir.test.anywhere").info({"loss": 0.5}, extra={"epoch": 1})
    logging.getLogger("mimir.test.anywhere").debug({"ignored": True})
    file_handler.close()
    assert ring[:] == [{"loss": 0.5, "epoch": 1}]
    assert mimir.load(tmp_path / "root.jsonl") == [{"loss": 0.5, "epoch": 1}]


def test_dictconfig_formatter_with_cls_import_path(tmp_path):
    """cls= given as an import path through dictConfig selects that encoder class."""
    config = json_safe(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "spaced": {
                    "()": "mimir.JSONFormatter",
                    "cls": "json.JSONEncoder",
                    "separators": [", ", ": "],
                }
            },
            "handlers": {
                "file": {
                    "class": "mimir.JSONLFileHandler",
                    "filename": str(tmp_path / "spaced.jsonl"),
                    "formatter": "spaced",
                }
            },
            "loggers": {
                "mimir.test.spaced": {"handlers": ["file"], "level": "INFO", "propagate": False}
            },
        }
    )
    logging.config.dictConfig(config)
    logger = logging.getLogger("mimir.test.spaced")
    logger.info({"a": 1, "b": [1, 2]})
    (file_handler,) = handlers_of(logger, JSONLFileHandler)
    file_handler.close()
    assert (tmp_path / "spaced.jsonl").read_text() == '{"a": 1, "b": [1, 2]}\n'


def test_dictconfig_reports_a_bad_default_path(tmp_path):
    """A default= import path that does not exist makes dictConfig fail, the cause naming it."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bad": {"()": "mimir.JSONFormatter", "default": "mimir.nope.nothing"}},
    }
    with pytest.raises(ValueError) as info:
        logging.config.dictConfig(config)
    assert "mimir.nope.nothing" in str(info.value.__cause__)


def test_dictconfig_reports_a_missing_directory(tmp_path):
    """A JSONLFileHandler in a missing directory makes dictConfig fail, the cause naming it."""
    missing = tmp_path / "missing"
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "file": {"class": "mimir.JSONLFileHandler", "filename": str(missing / "x.jsonl")}
        },
    }
    with pytest.raises(ValueError) as info:
        logging.config.dictConfig(config)
    assert isinstance(info.value.__cause__, OSError)
    assert "does not exist" in str(info.value.__cause__)
    assert str(missing) in str(info.value.__cause__)
