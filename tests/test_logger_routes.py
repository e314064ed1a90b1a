"""P9: handlers added, removed or replaced through every public route while a Logger logs.

Each route starts from a fresh ``mimir.Logger`` that keeps every entry in memory
(``ring``) and writes a file (``file``), with nothing printed, so that ``log()``
takes its direct path. The route then changes the set-up step by step; after each
step a few entries are logged, and every entry must reach exactly the handlers
the set-up sends it to at that moment: no more, no fewer.
"""

from __future__ import annotations

import logging
import logging.config
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mimir

OWN = frozenset({"ring", "file"})
ENTRIES_PER_STEP = 3


class Counter(logging.Handler):
    """Remembers the ``i`` of every entry it receives, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.msg["i"])


class Setup:
    """A Logger under test, spare handlers to attach, and how to read what each received."""

    def __init__(self, tmp_path: Path, named: bool) -> None:
        self.name = f"routes{uuid.uuid4().hex[:8]}" if named else None
        self.path = tmp_path / "own.jsonl"
        self.logger = mimir.Logger(self.path, name=self.name, maxlen=None, formatter=None)
        self.stdlib = self.logger.logger
        (self.file,) = [h for h in self.stdlib.handlers if isinstance(h, mimir.JSONLFileHandler)]
        self.counter = Counter()
        self.extra = mimir.MemoryHandler(maxlen=1000)
        self.handlers: dict[str, logging.Handler] = {
            "ring": self.logger.memory,
            "file": self.file,
            "counter": self.counter,
            "extra": self.extra,
        }
        self.readers: dict[str, Callable[[], list[int]]] = {
            "ring": lambda: [entry["i"] for entry in self.logger],
            "file": lambda: [entry["i"] for entry in mimir.load(self.path)],
            "counter": lambda: list(self.counter.seen),
            "extra": lambda: [entry["i"] for entry in self.extra],
        }
        self.to_close: list[logging.Handler] = [self.counter, self.extra]
        self.checks: list[Callable[[], None]] = []

    @property
    def stdlib_name(self) -> str:
        """The name of the stdlib logger (only for a named Logger)."""
        assert self.name is not None
        return f"mimir.{self.name}"

    def track(
        self, name: str, handler: logging.Handler, read: Callable[[], list[int]] | None = None
    ) -> None:
        """Count what ``handler`` receives under ``name`` (a MemoryHandler unless ``read``)."""
        self.handlers[name] = handler
        self.readers[name] = read or (lambda: [entry["i"] for entry in handler])
        self.to_close.append(handler)

    def reached(self) -> frozenset[str]:
        """Which handlers a record logged now reaches, by the stdlib's own rules.

        One exception: the stdlib logger's ``disabled`` flag, which the Logger clears.
        """
        record = self.stdlib.makeRecord(self.stdlib.name, logging.INFO, "", 0, {}, None, None)
        enabled = (
            self.stdlib.manager.disable < logging.INFO
            and self.stdlib.getEffectiveLevel() <= logging.INFO
        )
        if not enabled or not self.stdlib.filter(record):
            return frozenset()
        names = {id(handler): name for name, handler in self.handlers.items()}
        reached = set()
        logger: logging.Logger | None = self.stdlib
        while logger is not None:
            for handler in logger.handlers:
                tracked = id(handler) in names  # not pytest's, on the root logger
                if tracked and record.levelno >= handler.level and handler.filter(record):
                    reached.add(names[id(handler)])
            logger = logger.parent if logger.propagate else None
        return frozenset(reached)

    def close(self) -> None:
        self.logger.close()
        for handler in self.to_close:
            handler.close()


Route = Callable[[Setup], Iterator[frozenset[str]]]
ROUTES: dict[str, tuple[Route, bool]] = {}  # name -> (route, needs a named Logger)


def route(named_only: bool = False) -> Callable[[Route], Route]:
    """Register a route: a generator that changes the set-up and yields who receives next."""

    def register(function: Route) -> Route:
        ROUTES[function.__name__] = (function, named_only)
        return function

    return register


# -- the stdlib logger's own methods ------------------------------------------------------


@route()
def add_and_remove_through_the_stdlib_logger(s: Setup) -> Iterator[frozenset[str]]:
    s.stdlib.addHandler(s.counter)
    yield OWN | {"counter"}
    s.stdlib.addHandler(s.extra)
    yield OWN | {"counter", "extra"}
    s.stdlib.removeHandler(s.counter)
    yield OWN | {"extra"}
    s.stdlib.removeHandler(s.extra)
    yield OWN


@route()
def append_to_logger_handlers_and_the_stdlib_logger(s: Setup) -> Iterator[frozenset[str]]:
    s.logger.handlers.append(s.extra)  # so that close() closes it too
    s.stdlib.addHandler(s.extra)
    yield OWN | {"extra"}
    s.logger.handlers.append(s.counter)
    s.stdlib.addHandler(s.counter)
    yield OWN | {"extra", "counter"}
    s.logger.handlers.remove(s.extra)
    s.stdlib.removeHandler(s.extra)
    yield OWN | {"counter"}
    s.logger.handlers.remove(s.counter)
    s.stdlib.removeHandler(s.counter)
    yield OWN


@route()
def logger_handlers_alone_attach_nothing(s: Setup) -> Iterator[frozenset[str]]:
    s.logger.handlers.append(s.counter)  # only close() reads this list
    yield OWN
    own = list(s.logger.handlers)
    s.logger.handlers.clear()
    yield OWN
    s.logger.handlers[:] = own


@route()
def remove_own_handlers_from_both_lists(s: Setup) -> Iterator[frozenset[str]]:
    s.logger.handlers.remove(s.file)
    s.stdlib.removeHandler(s.file)
    s.to_close.append(s.file)
    yield frozenset({"ring"})
    s.stdlib.removeHandler(s.logger.memory)
    yield frozenset()
    s.stdlib.addHandler(s.logger.memory)
    yield frozenset({"ring"})


@route()
def replace_the_file_handler(s: Setup) -> Iterator[frozenset[str]]:
    path = s.path.with_name("replacement.jsonl")
    replacement = mimir.JSONLFileHandler(path)
    s.track("replacement", replacement, lambda: [entry["i"] for entry in mimir.load(path)])
    s.stdlib.removeHandler(s.file)
    s.stdlib.addHandler(replacement)
    s.logger.handlers[s.logger.handlers.index(s.file)] = replacement
    s.to_close.append(s.file)
    yield frozenset({"ring", "replacement"})
    s.stdlib.removeHandler(replacement)
    s.stdlib.addHandler(s.file)  # the original set back: the same handlers, same order
    yield OWN


@route()
def reorder_and_reassign_the_handler_list(s: Setup) -> Iterator[frozenset[str]]:
    s.stdlib.handlers.reverse()
    yield OWN
    s.stdlib.handlers[:] = [s.logger.memory]
    yield frozenset({"ring"})
    s.stdlib.handlers = [s.logger.memory, s.file, s.counter]
    yield OWN | {"counter"}
    s.stdlib.handlers = [s.logger.memory, s.file]
    yield OWN


# -- levels, filters, formatters, propagation ---------------------------------------------


@route()
def stdlib_logger_level(s: Setup) -> Iterator[frozenset[str]]:
    s.stdlib.setLevel(logging.WARNING)
    yield frozenset()
    s.stdlib.setLevel(logging.DEBUG)
    yield OWN
    s.stdlib.setLevel(logging.NOTSET)  # the parent's level decides
    yield OWN if s.name is None else frozenset()  # private: INFO from its own default
    s.stdlib.setLevel(logging.INFO)
    yield OWN


@route()
def stdlib_logger_disabled(s: Setup) -> Iterator[frozenset[str]]:
    s.stdlib.disabled = True  # what dictConfig does to loggers it does not name
    yield OWN
    assert not s.stdlib.disabled  # cleared by the Logger, for other code's records too


@route()
def logging_disable(s: Setup) -> Iterator[frozenset[str]]:
    logging.disable(logging.INFO)
    yield frozenset()
    logging.disable(logging.DEBUG)
    yield OWN
    logging.disable(logging.NOTSET)
    yield OWN


@route()
def stdlib_logger_filter(s: Setup) -> Iterator[frozenset[str]]:
    def refuse(record: logging.LogRecord) -> bool:
        return False

    s.stdlib.addFilter(refuse)
    yield frozenset()
    s.stdlib.removeFilter(refuse)
    yield OWN


@route()
def own_handler_level(s: Setup) -> Iterator[frozenset[str]]:
    s.logger.memory.setLevel(logging.WARNING)
    yield frozenset({"file"})
    s.file.setLevel(logging.ERROR)
    yield frozenset()
    s.logger.memory.setLevel(logging.NOTSET)
    s.file.setLevel(logging.INFO)
    yield OWN


@route()
def own_handler_level_assigned(s: Setup) -> Iterator[frozenset[str]]:
    s.file.level = logging.ERROR  # the attribute itself, not setLevel()
    yield frozenset({"ring"})
    s.file.level = logging.NOTSET
    yield OWN


@route()
def own_handler_formatter_assigned(s: Setup) -> Iterator[frozenset[str]]:
    changed_at = len(s.logger)
    s.file.formatter = mimir.JSONFormatter(static_fields={"tag": "file"})  # not setFormatter()
    yield OWN

    def check() -> None:
        lines = mimir.load(s.path)
        tags = [entry.get("tag") for entry in lines]
        assert tags == [None] * changed_at + ["file"] * (len(lines) - changed_at)

    s.checks.append(check)


@route()
def own_handler_filter(s: Setup) -> Iterator[frozenset[str]]:
    def refuse(record: logging.LogRecord) -> bool:
        return False

    s.file.addFilter(refuse)
    yield frozenset({"ring"})
    s.file.removeFilter(refuse)
    yield OWN


@route()
def own_handler_formatter(s: Setup) -> Iterator[frozenset[str]]:
    ring_changed_at = len(s.logger)
    s.logger.memory.setFormatter(mimir.JSONFormatter(static_fields={"tag": "new"}))
    yield OWN
    file_changed_at = len(s.logger)
    s.file.setFormatter(mimir.JSONFormatter(static_fields={"tag": "file"}))
    yield OWN

    def check() -> None:
        ring = list(s.logger)
        assert [entry.get("tag") for entry in ring] == [None] * ring_changed_at + ["new"] * (
            len(ring) - ring_changed_at
        )
        lines = mimir.load(s.path)
        assert [entry.get("tag") for entry in lines] == [None] * file_changed_at + ["file"] * (
            len(lines) - file_changed_at
        )

    s.checks.append(check)


@route(named_only=True)
def propagation_to_the_root_logger(s: Setup) -> Iterator[frozenset[str]]:
    logging.getLogger().addHandler(s.counter)
    yield OWN
    s.stdlib.propagate = True
    yield OWN | {"counter"}
    s.stdlib.propagate = False
    yield OWN


# -- logging.config.dictConfig ---------------------------------------------------------


@route(named_only=True)
def dictconfig_incremental_levels(s: Setup) -> Iterator[frozenset[str]]:
    ring_name = f"ring-{s.name}"
    s.logger.memory.set_name(ring_name)
    logging.config.dictConfig(
        {"version": 1, "incremental": True, "handlers": {ring_name: {"level": "ERROR"}}}
    )
    yield frozenset({"file"})
    logging.config.dictConfig(
        {"version": 1, "incremental": True, "loggers": {s.stdlib_name: {"level": "ERROR"}}}
    )
    yield frozenset()
    logging.config.dictConfig(
        {
            "version": 1,
            "incremental": True,
            "handlers": {ring_name: {"level": "NOTSET"}},
            "loggers": {s.stdlib_name: {"level": "INFO"}},
        }
    )
    yield OWN


@route(named_only=True)
def dictconfig_naming_the_logger(s: Setup) -> Iterator[frozenset[str]]:
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "counter": {"()": lambda: s.counter},
            "configured": {"class": "mimir.MemoryHandler", "maxlen": 1000},
        },
        "loggers": {s.stdlib_name: {"handlers": ["counter", "configured"], "level": "INFO"}},
    }
    logging.config.dictConfig(config)
    (configured,) = [h for h in s.stdlib.handlers if isinstance(h, mimir.MemoryHandler)]
    s.track("configured", configured)
    yield frozenset({"counter", "configured"})
    s.stdlib.addHandler(s.logger.memory)  # one of the Logger's own handlers back
    yield frozenset({"counter", "configured", "ring"})


@route()
def dictconfig_of_other_loggers_disabling_existing_ones(s: Setup) -> Iterator[frozenset[str]]:
    logging.config.dictConfig({"version": 1, "loggers": {"elsewhere": {"level": "INFO"}}})
    yield OWN  # disable_existing_loggers (True by default) does not silence a Logger
    s.stdlib.addHandler(s.counter)
    yield OWN | {"counter"}


@route()
def dictconfig_of_other_loggers_keeps_this_one(s: Setup) -> Iterator[frozenset[str]]:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"elsewhere": {"level": "INFO"}},
        }
    )
    yield OWN


def route_cases() -> Iterator[Any]:
    for name, (function, named_only) in ROUTES.items():
        for named in (True, False):
            if named or not named_only:
                kind = "named" if named else "private"
                yield pytest.param(function, named, id=f"{name}-{kind}")


@pytest.mark.parametrize(("follow_route", "named"), route_cases())
def test_every_entry_reaches_exactly_the_handlers_attached(follow_route, named, tmp_path):
    """After each step of the route, entries reach exactly the handlers then attached."""
    s = Setup(tmp_path, named)
    expected: dict[str, list[int]] = {}
    i = 0

    def log_step(receivers: frozenset[str]) -> None:
        nonlocal i
        assert s.reached() == receivers  # the route's expectation, by the stdlib's rules
        for _ in range(ENTRIES_PER_STEP):
            s.logger.log({"i": i})
            for receiver in receivers:
                expected.setdefault(receiver, []).append(i)
            i += 1

    try:
        assert s.logger._direct is not None  # the direct path is what is under test
        log_step(OWN)
        for receivers in follow_route(s):
            log_step(receivers)
    finally:
        s.close()
    for name, read in s.readers.items():
        assert sorted(read()) == expected.get(name, []), name
    for check in s.checks:
        check()


def test_every_route_is_exercised_for_both_kinds_of_logger():
    """The table of routes covers the stdlib methods, both lists, levels, filters and dictConfig."""
    names = set(ROUTES)
    assert {
        "add_and_remove_through_the_stdlib_logger",
        "append_to_logger_handlers_and_the_stdlib_logger",
        "dictconfig_incremental_levels",
        "dictconfig_naming_the_logger",
    } <= names
    assert len(list(route_cases())) == 2 * len(ROUTES) - sum(
        named_only for _, named_only in ROUTES.values()
    )
