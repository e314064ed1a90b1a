"""MemoryHandler: the ring of the most recent entries."""

from __future__ import annotations

import collections.abc
import logging
import logging.config
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimir import JSONFormatter, MemoryHandler


def make_logger(handler: logging.Handler, name: str = "mimir-test-memory") -> logging.Logger:
    """A private stdlib logger (not registered) at DEBUG with ``handler`` attached."""
    logger = logging.Logger(name, logging.DEBUG)
    logger.addHandler(handler)
    return logger


def test_is_a_logging_handler_and_a_sequence():
    """MemoryHandler is a logging.Handler and a collections.abc.Sequence."""
    handler = MemoryHandler(3)
    assert isinstance(handler, logging.Handler)
    assert isinstance(handler, collections.abc.Sequence)
    assert handler  # truthy even when empty, as logging expects of handlers
    assert len(handler) == 0


def test_sequence_protocol():
    """Index, negative index, slice, len, iteration, reversed, in, count and index work."""
    handler = MemoryHandler(10)
    logger = make_logger(handler)
    for i in range(5):
        logger.info({"i": i})
    assert len(handler) == 5
    assert handler[0] == {"i": 0}
    assert handler[-1] == {"i": 4}
    assert handler[1:3] == [{"i": 1}, {"i": 2}]
    assert handler[::-2] == [{"i": 4}, {"i": 2}, {"i": 0}]
    assert [entry["i"] for entry in handler] == [0, 1, 2, 3, 4]
    assert [entry["i"] for entry in reversed(handler)] == [4, 3, 2, 1, 0]
    assert {"i": 3} in handler
    assert handler.index({"i": 3}) == 3
    assert handler.count({"i": 3}) == 1


def test_keeps_only_the_last_maxlen_entries():
    """Older entries are dropped once maxlen are held."""
    handler = MemoryHandler(3)
    logger = make_logger(handler)
    for i in range(10):
        logger.info({"i": i})
    assert handler.snapshot() == [{"i": 7}, {"i": 8}, {"i": 9}]
    assert handler[0] == {"i": 7}


def test_maxlen_zero_keeps_nothing():
    """maxlen=0 keeps nothing."""
    handler = MemoryHandler(0)
    logger = make_logger(handler)
    logger.info({"i": 1})
    assert len(handler) == 0
    assert handler.snapshot() == []
    with pytest.raises(IndexError):
        handler[-1]


@pytest.mark.parametrize("maxlen", [sys.maxsize, None], ids=["maxsize", "None"])
def test_maxlen_none_or_sys_maxsize_keeps_everything(maxlen):
    """maxlen=None (as for collections.deque) or sys.maxsize keeps every entry."""
    handler = MemoryHandler(maxlen)
    logger = make_logger(handler)
    for i in range(5000):
        logger.info({"i": i})
    assert len(handler) == 5000
    assert handler[0] == {"i": 0}
    assert handler[-1] == {"i": 4999}


def test_maxlen_none_from_dictconfig():
    """dictConfig can ask for an unbounded ring (YAML/JSON null)."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"ring": {"class": "mimir.MemoryHandler", "maxlen": None}},
            "loggers": {"mimir.test.ring": {"handlers": ["ring"], "level": "INFO"}},
        }
    )
    handler = logging.getLogger("mimir.test.ring").handlers[0]
    assert handler.maxlen is None


def test_default_maxlen_is_1000():
    """Without arguments the ring keeps the last 1000 entries."""
    handler = MemoryHandler()
    logger = make_logger(handler)
    for i in range(1500):
        logger.info({"i": i})
    assert len(handler) == 1000
    assert handler[0] == {"i": 500}


def test_out_of_range_index_raises_index_error_with_context():
    """An index beyond the ring raises IndexError saying how many entries are held."""
    handler = MemoryHandler(5)
    make_logger(handler).info({"i": 0})
    with pytest.raises(IndexError, match="1 entries held"):
        handler[3]
    with pytest.raises(IndexError):
        handler[-2]


def test_snapshot_is_a_copy_and_clear_forgets():
    """snapshot() returns an independent list; clear() empties the ring."""
    handler = MemoryHandler(5)
    logger = make_logger(handler)
    logger.info({"i": 0})
    snapshot = handler.snapshot()
    logger.info({"i": 1})
    assert snapshot == [{"i": 0}]
    handler.clear()
    assert len(handler) == 0
    assert snapshot == [{"i": 0}]
    logger.info({"i": 2})
    assert handler.snapshot() == [{"i": 2}]


@pytest.mark.parametrize(
    ("maxlen", "error"),
    [(-1, ValueError), ("10", TypeError), (1.5, TypeError), (True, TypeError)],
)
def test_invalid_maxlen_is_refused(maxlen, error):
    """A negative or non-int maxlen is refused at construction."""
    with pytest.raises(error, match="maxlen"):
        MemoryHandler(maxlen)


def test_entries_are_the_formatter_entries():
    """Held entries are what the JSON formatter builds: extra= merged, text as message."""
    handler = MemoryHandler(5)
    logger = make_logger(handler)
    logger.info({"loss": 0.5}, extra={"run": "a"})
    logger.warning("hello %s", "world")
    assert handler[0] == {"loss": 0.5, "run": "a"}
    assert handler[1] == {"message": "hello world"}


def test_configured_json_formatter_is_used():
    """A JSONFormatter with fields set on the handler shapes the held entries."""
    handler = MemoryHandler(5)
    handler.setFormatter(JSONFormatter("%(levelname)s"))
    make_logger(handler).info({"loss": 0.5})
    assert handler[-1] == {"levelname": "INFO", "loss": 0.5}


def test_non_json_formatter_gives_message_entries():
    """With a plain logging.Formatter the entry is {"message": formatted text}."""
    handler = MemoryHandler(5)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(message)s"))
    make_logger(handler).info("ready")
    assert handler[-1] == {"message": "INFO:ready"}


def test_level_filters_records():
    """Records below the handler's level are not kept."""
    handler = MemoryHandler(5, level=logging.WARNING)
    logger = make_logger(handler)
    logger.info({"i": 0})
    logger.warning({"i": 1})
    assert handler.snapshot() == [{"i": 1}]


def test_level_accepts_names():
    """level= accepts level names as the stdlib does."""
    assert MemoryHandler(5, level="ERROR").level == logging.ERROR


class RaisingFormatter(JSONFormatter):
    """Fails to build any entry."""

    def process_log_record(self, log_data):
        raise ValueError("cannot build this entry")


def test_failures_count_handle_error_calls(capsys):
    """An error while building an entry goes to handleError, is printed and counted."""
    handler = MemoryHandler(5)
    logger = make_logger(handler)
    logger.info({"i": 0})
    handler.setFormatter(RaisingFormatter())
    logger.info({"i": 1})
    logger.info({"i": 2})
    assert handler.failures == 2
    assert "cannot build this entry" in capsys.readouterr().err
    assert handler.snapshot() == [{"i": 0}]


def test_failures_are_counted_silently_without_raise_exceptions(capsys):
    """With logging.raiseExceptions = False nothing is printed but failures are still counted."""
    logging.raiseExceptions = False
    handler = MemoryHandler(5)
    handler.setFormatter(RaisingFormatter())
    make_logger(handler).info({"i": 1})
    assert handler.failures == 1
    assert capsys.readouterr().err == ""


def test_reading_is_safe_while_another_thread_logs():
    """Iterating and slicing while a thread logs never fails and sees contiguous runs."""
    handler = MemoryHandler(500)
    logger = make_logger(handler)
    total = 20_000
    errors: list[BaseException] = []

    def produce():
        try:
            for i in range(total):
                logger.info({"i": i})
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    producer = threading.Thread(target=produce)
    producer.start()
    reads = 0
    try:
        while producer.is_alive() or reads < 10:
            for view in (list(handler), handler[:], handler.snapshot(), list(reversed(handler))):
                numbers = [entry["i"] for entry in view]
                if not numbers:
                    continue
                if numbers[0] > numbers[-1]:
                    numbers.reverse()
                assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
                assert len(numbers) <= 500
            snapshot = handler.snapshot()  # two separate reads may straddle a rotation
            if snapshot:
                assert snapshot[-1]["i"] >= snapshot[0]["i"]
            reads += 1
    finally:
        producer.join(timeout=60)
    assert not producer.is_alive()
    assert not errors
    assert handler[-1] == {"i": total - 1}
    assert len(handler) == 500


# -- property: the ring behaves as list[-maxlen:] ---------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers()),
        st.tuples(st.just("index"), st.integers(-15, 15)),
        st.tuples(st.just("slice"), st.slices(15)),
        st.tuples(st.just("clear"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(maxlen=st.one_of(st.integers(0, 8), st.just(sys.maxsize)), ops=operations)
def test_property_ring_matches_list_model(maxlen, ops):
    """For any appends and reads, the ring reads like the model list[-maxlen:]."""
    handler = MemoryHandler(maxlen)
    logger = make_logger(handler)
    model: list[dict[str, int]] = []
    for op, arg in ops:
        if op == "append":
            logger.info({"v": arg})
            model = [*model, {"v": arg}][-maxlen:] if maxlen else []
        elif op == "clear":
            handler.clear()
            model = []
        elif op == "index":
            try:
                expected = model[arg]
            except IndexError:
                with pytest.raises(IndexError):
                    handler[arg]
            else:
                assert handler[arg] == expected
        else:
            assert handler[arg] == model[arg]
        assert len(handler) == len(model)
    assert list(handler) == model
    assert list(reversed(handler)) == model[::-1]
    assert handler.snapshot() == model
