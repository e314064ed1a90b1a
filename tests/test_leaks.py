"""Creating and closing many Loggers leaves nothing behind."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref

import pytest

import mimir

MIMIR_HANDLERS = (mimir.MemoryHandler, mimir.JSONLFileHandler)


def open_fds() -> int:
    """Number of file descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def live_mimir_handlers_in_handler_list() -> list[logging.Handler]:
    """Mímir handlers still alive in logging's module-wide handler list."""
    alive = (ref() for ref in list(logging._handlerList))  # type: ignore[attr-defined]
    return [handler for handler in alive if isinstance(handler, MIMIR_HANDLERS)]


def mimir_handlers_on_any_logger() -> list[logging.Handler]:
    """Mímir handlers attached to the root logger or any registered logger."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        handler
        for logger in loggers
        for handler in getattr(logger, "handlers", ())
        if isinstance(handler, MIMIR_HANDLERS)
    ]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_ten_thousand_loggers_leave_nothing_behind(tmp_path):
    """10,000 Loggers created, used and closed leave no thread, fd, handler or logger behind."""
    gc.collect()
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    logger_names_before = set(logging.Logger.manager.loggerDict)
    handlers_before = set(live_mimir_handlers_in_handler_list())
    attached_before = set(mimir_handlers_on_any_logger())
    refs: list[weakref.ref] = []
    filenames = [tmp_path / f"run{n}.jsonl" for n in range(4)]
    start = time.monotonic()

    for i in range(10_000):
        logger = mimir.Logger(filename=filenames[i % 4], maxlen=10, formatter=None)
        logger.log({"i": i})
        assert logger[-1] == {"i": i}
        refs.extend(weakref.ref(handler) for handler in logger.logger.handlers)
        refs.extend((weakref.ref(logger), weakref.ref(logger.logger)))
        logger.close()
    del logger
    gc.collect()

    assert time.monotonic() - start < 60
    assert set(threading.enumerate()) <= threads_before
    assert open_fds() <= fds_before
    assert set(logging.Logger.manager.loggerDict) == logger_names_before
    assert len(refs) == 40_000  # two handlers, the Logger and its stdlib logger, each
    assert [ref for ref in refs if ref() is not None] == []
    assert set(live_mimir_handlers_in_handler_list()) <= handlers_before
    assert set(mimir_handlers_on_any_logger()) <= attached_before
    assert sum(len(mimir.load(name)) for name in filenames) == 10_000


def test_closed_logger_releases_its_thread_and_file(tmp_path):
    """One Logger with a file: its writer thread and file descriptor are gone after close()."""
    gc.collect()
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    logger = mimir.Logger(filename=tmp_path / "one.jsonl", formatter=None)
    logger.log({"a": 1})
    assert open_fds() == fds_before + 1
    logger.close()
    assert set(threading.enumerate()) <= threads_before
    assert open_fds() == fds_before


def test_unclosed_logger_is_flushed_by_logging_shutdown(tmp_path):
    """A Logger dropped without close() is still written out by logging.shutdown()."""
    path = tmp_path / "dropped.jsonl"

    def forget():
        mimir.Logger(filename=path, formatter=None).log({"a": 1})

    forget()
    gc.collect()
    alive = live_mimir_handlers_in_handler_list()
    logging.shutdown([weakref.ref(handler) for handler in alive])
    assert mimir.load(path) == [{"a": 1}]
