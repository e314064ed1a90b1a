"""Mímir inside an application's logging set-up, configured as Flask's docs show."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import io
import logging
import logging.config
import uuid
import warnings
from pathlib import Path

import mimir


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Batch:
    size: int
    name: str


class Request:
    """Like a web framework's request object: attributes, no JSON form."""

    def __init__(self) -> None:
        self.method = "GET"
        self.path = "/train"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


def configure(tmp_path: Path, stream: io.StringIO) -> None:
    """An application's dictConfig: console and rotating file, plus Mímir's handlers on root."""
    logging.config.dictConfig(
        {
            "version": 1,
            # An application configures at start-up, before other loggers exist; here
            # earlier tests made some (py.warnings among them): keep them enabled.
            "disable_existing_loggers": False,
            "formatters": {
                "default": {"format": "[%(asctime)s] %(levelname)s in %(module)s: %(message)s"},
                "entry": {
                    "()": "mimir.JSONFormatter",
                    "fmt": "%(asctime)s %(levelname)s %(name)s",
                    "exc_info_as_array": True,
                    "stack_info_as_array": True,
                },
            },
            "handlers": {
                "wsgi": {
                    "class": "logging.StreamHandler",
                    "stream": stream,
                    "formatter": "default",
                },
                "rotating": {
                    "class": "logging.handlers.RotatingFileHandler",
                    "filename": str(tmp_path / "app.log"),
                    "maxBytes": 1 << 20,
                    "backupCount": 2,
                    "formatter": "default",
                },
                "jsonl": {
                    "class": "mimir.JSONLFileHandler",
                    "filename": str(tmp_path / "app.jsonl"),
                    "formatter": "entry",
                },
                "gzlog": {
                    "class": "mimir.GzlogFileHandler",
                    "filename": str(tmp_path / "app.jsonl.gz"),
                    "formatter": "entry",
                },
                "memory": {"class": "mimir.MemoryHandler", "maxlen": None, "formatter": "entry"},
            },
            "root": {"level": "INFO", "handlers": ["wsgi", "rotating", "jsonl", "gzlog", "memory"]},
        }
    )


def log_a_request_cycle(log: logging.Logger) -> int:
    """What an application logs; returns how many records."""
    log.info("GET %s from %s", "/train", "127.0.0.1")
    log.info(
        "batch done",
        extra={
            "when": datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.timezone.utc),
            "lr": decimal.Decimal("0.001"),
            "colour": Colour.RED,
            "batch": Batch(32, "b0"),
            "request": Request(),
            "run": uuid.UUID(int=7),
            "raw": b"\x00\xff",
            "tags": {"b", "a"},
        },
    )
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.exception("step %d failed", 3)
    log.warning("slow step", stack_info=True)
    log.info({"iteration": 7, "training_error": 0.31})
    warnings.warn("learning rate is high", UserWarning, stacklevel=1)
    return 6


def test_flask_style_pipeline_every_handler_gets_every_record(tmp_path: Path) -> None:
    """Console, rotating file and Mímir's handlers on root each receive every record,
    whatever its values, exceptions and stack, and no handler spoils it for the next."""
    stream = io.StringIO()
    configure(tmp_path, stream)
    logging.captureWarnings(True)
    log = logging.getLogger("mimir.test.flask")  # made after the configuration, as in Flask
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # whatever filters earlier code left
        count = log_a_request_cycle(log)
    root = logging.getLogger()
    memory = next(h for h in root.handlers if isinstance(h, mimir.MemoryHandler))
    failures = {type(h).__name__: getattr(h, "failures", 0) for h in root.handlers}
    entries_in_memory = list(memory)
    logging.config.dictConfig({"version": 1})  # the application shuts its logging down
    console = stream.getvalue()
    assert console.count("] INFO in ") == 3 and console.count("] WARNING in ") == 2
    assert console.count("] ERROR in ") == 1 and "ZeroDivisionError" in console
    assert "Stack (most recent call last)" in console
    assert (tmp_path / "app.log").read_text() == console
    plain = mimir.load(tmp_path / "app.jsonl")
    assert mimir.load(tmp_path / "app.jsonl.gz") == plain
    assert len(plain) == len(entries_in_memory) == count
    assert failures == dict.fromkeys(failures, 0)
    first, extras, error, slow, metrics, warned = plain
    assert first["message"] == "GET /train from 127.0.0.1"
    assert extras["when"] == "2026-11-30T12:00:00+00:00"
    assert extras["lr"] == 0.001 and extras["colour"] == 1 and extras["tags"] == ["a", "b"]
    assert extras["batch"] == {"size": 32, "name": "b0"}
    assert extras["request"] == "<Request GET /train>"
    assert extras["run"] == str(uuid.UUID(int=7))
    assert isinstance(extras["raw"], str)
    assert error["message"] == "step 3 failed" and isinstance(error["exc_info"], list)
    assert "ZeroDivisionError: division by zero" in error["exc_info"][-1]
    assert isinstance(slow["stack_info"], list)
    assert metrics["iteration"] == 7 and metrics["training_error"] == 0.31
    assert metrics["levelname"] == "INFO" and "message" not in metrics
    assert warned["name"] == "py.warnings" and "learning rate is high" in warned["message"]
