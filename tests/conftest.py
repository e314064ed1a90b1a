"""Shared fixtures: every test leaves the logging module as it found it."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def _is_pytest_handler(handler: logging.Handler) -> bool:
    """pytest attaches (and later removes) its own capture handlers to the root logger."""
    return type(handler).__module__.startswith("_pytest")


def _close_quietly(handler: logging.Handler) -> None:
    try:
        handler.flush()
        handler.close()
    except Exception:  # a test may have broken it on purpose
        pass


def _is_mimir_name(name: str) -> bool:
    return name == "mimir" or name.startswith("mimir.")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Snapshot the root logger, logging.raiseExceptions and the "mimir." loggers; restore after."""
    root = logging.getLogger()
    manager = logging.Logger.manager
    handlers = [h for h in root.handlers if not _is_pytest_handler(h)]
    level = root.level
    filters = list(root.filters)
    raise_exceptions = logging.raiseExceptions
    disable = manager.disable
    capturing_warnings = logging._warnings_showwarning is not None  # type: ignore[attr-defined]
    mimir_loggers = {
        name: (obj, list(getattr(obj, "handlers", ())))
        for name, obj in manager.loggerDict.items()
        if _is_mimir_name(name)
    }
    # dictConfig and fileConfig disable every logger they do not name.
    disabled = {
        obj: obj.disabled for obj in manager.loggerDict.values() if isinstance(obj, logging.Logger)
    }
    yield
    for obj, was_disabled in disabled.items():
        obj.disabled = was_disabled
    if not capturing_warnings:
        logging.captureWarnings(False)
    logging.raiseExceptions = raise_exceptions
    logging.disable(disable)
    for handler in root.handlers[:]:
        if handler not in handlers and not _is_pytest_handler(handler):
            root.removeHandler(handler)
            _close_quietly(handler)
    pytest_handlers = [h for h in root.handlers if _is_pytest_handler(h)]
    root.handlers[:] = handlers + pytest_handlers
    root.setLevel(level)
    root.filters[:] = filters
    for name in list(manager.loggerDict):
        if not _is_mimir_name(name):
            continue
        obj = manager.loggerDict[name]
        kept = mimir_loggers.get(name)
        if kept is None or kept[0] is not obj:
            for handler in list(getattr(obj, "handlers", ())):
                obj.removeHandler(handler)
                _close_quietly(handler)
            del manager.loggerDict[name]
        elif isinstance(obj, logging.Logger):
            obj.handlers[:] = kept[1]
    manager._clear_cache()  # type: ignore[attr-defined]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A fresh path for a ``.jsonl`` log in the test's temporary directory."""
    return tmp_path / "run.jsonl"


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Register objects (handlers, loggers) to be closed at the end of the test, newest first."""
    objects: list[Any] = []

    def register(obj: Any) -> Any:
        objects.append(obj)
        return obj

    yield register
    for obj in reversed(objects):
        try:
            obj.close()
        except Exception:
            pass


@pytest.fixture
def stdlib_logger() -> logging.Logger:
    """A fresh stdlib logger named ``mimir.test.<random>`` at DEBUG that does not propagate."""
    logger = logging.getLogger(f"mimir.test.{uuid.uuid4().hex}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def _wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """Poll ``predicate()`` until truthy or ``timeout`` seconds pass; return its last value."""
    return _wait_until


def _read_jsonl(path: Path) -> list[Any]:
    if not Path(path).exists():
        return []
    text = Path(path).read_bytes().decode("utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


@pytest.fixture
def read_jsonl() -> Callable[[Path], list[Any]]:
    """Read a plain ``.jsonl`` file with Python's json module: one parsed object per line."""
    return _read_jsonl


@pytest.fixture
def make_record() -> Callable[..., logging.LogRecord]:
    """Build a LogRecord the way logging.Logger.info does, with optional extra fields."""

    def make(msg: Any, *args: Any, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
        logger = logging.Logger("mimir-test-records")
        return logger.makeRecord(
            logger.name, level, __file__, 1, msg, args or None, None, extra=extra or None
        )

    return make


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A log path on which every write fails with EFBIG, as on a full disk.

    The file is filled with blank lines up to this process's file size limit
    (RLIMIT_FSIZE, lowered for the test and restored after), so that every append
    fails while the file stays a readable log.
    """
    import resource
    import signal

    limit = 1 << 20
    path = tmp_path / "full.jsonl"
    path.write_bytes(b"\n" * limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield path
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
