"""mimir.Logger: the README's examples and the convenience wrapper's contract."""

from __future__ import annotations

import collections
import gc
import gzip
import importlib.util
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import types

import numpy
import pytest

import mimir
from mimir.serialization import deserialize_numpy, serialize_numpy

JQ = shutil.which("jq")


def file_handler_of(logger: mimir.Logger) -> mimir.JSONLFileHandler:
    """The JSONLFileHandler a Logger attached to its stdlib logger."""
    (handler,) = [h for h in logger.logger.handlers if isinstance(h, mimir.JSONLFileHandler)]
    return handler


# -- the README, example by example --------------------------------------------------


def test_readme_quickstart_prints_each_entry_and_keeps_nothing(capsys):
    """Quickstart: the default Logger prints every entry to stdout and keeps none in memory."""
    logger = mimir.Logger()
    for i in range(100):
        logger.log({"iteration": i, "training_error": 1.0 / (i + 1)})
    out = capsys.readouterr().out
    assert out.count("\n") == 100
    assert out.splitlines()[0] == "iteration: 0  training_error: 1"
    assert out.splitlines()[99] == "iteration: 99  training_error: 0.01"
    assert len(logger) == 0
    with pytest.raises(IndexError, match="maxlen"):
        logger[-1]
    logger.close()


def test_readme_memory_example():
    """Memory: with maxlen=10 the last entry is readable as logger[-1]."""
    logger = mimir.Logger(maxlen=10)
    logger.log({"iteration": 0, "training_error": 10})
    assert logger[-1]["training_error"] == 10
    logger.close()


def test_memory_keeps_only_maxlen_entries(capsys):
    """With maxlen=10, after 100 entries the ten newest are held, oldest first."""
    with mimir.Logger(maxlen=10) as logger:
        for i in range(100):
            logger.log({"iteration": i})
        assert len(logger) == 10
        assert logger[0] == {"iteration": 90}
        assert logger[-1] == {"iteration": 99}
        assert [entry["iteration"] for entry in logger] == list(range(90, 100))
        assert logger[2:4] == [{"iteration": 92}, {"iteration": 93}]
    assert capsys.readouterr().out.count("\n") == 100


def test_memory_maxlen_sys_maxsize_keeps_everything():
    """maxlen=sys.maxsize keeps every entry, as the README suggests."""
    with mimir.Logger(maxlen=sys.maxsize, formatter=None) as logger:
        for i in range(3000):
            logger.log({"iteration": i})
        assert len(logger) == 3000
        assert logger[0] == {"iteration": 0}


def test_maxlen_none_keeps_every_entry():
    """maxlen=None keeps every entry, as collections.deque reads None: no limit."""
    with mimir.Logger(maxlen=None, formatter=None) as logger:
        for i in range(3000):
            logger.log({"iteration": i})
        assert len(logger) == 3000
        assert logger[0] == {"iteration": 0}
        assert logger[-1] == {"iteration": 2999}


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_filename_is_the_first_positional_argument(tmp_path, suffix):
    """Logger("run.jsonl.gz") writes that file: the filename comes first."""
    path = tmp_path / f"run{suffix}"
    with mimir.Logger(path, formatter=None) as logger:
        logger.log({"iteration": 0})
    assert mimir.load(path) == [{"iteration": 0}]


def test_arguments_after_filename_are_keyword_only(tmp_path):
    """A second positional argument is a TypeError, and the stdlib logger is left untouched."""
    with pytest.raises(TypeError, match="positional"):
        mimir.Logger(tmp_path / "a.jsonl", "train")  # type: ignore[misc]
    assert "mimir.train" not in logging.Logger.manager.loggerDict
    assert not (tmp_path / "a.jsonl").exists()


def test_readme_saving_to_disk_with_jsonl(tmp_path):
    """Saving to disk: filename='log.jsonl' writes every entry as a JSON line."""
    path = tmp_path / "log.jsonl"
    logger = mimir.Logger(filename=str(path), formatter=None)
    for i in range(100):
        logger.log({"iteration": i, "training_error": 1.0 / (i + 1)})
    logger.close()
    entries = mimir.load(path)
    assert entries == [{"iteration": i, "training_error": 1.0 / (i + 1)} for i in range(100)]


@pytest.mark.skipif(JQ is None, reason="jq is not installed")
def test_readme_jq_min_by_query(tmp_path):
    """The README's jq query finds the lowest training error in a saved log."""
    path = tmp_path / "log.jsonl"
    with mimir.Logger(filename=path, formatter=None) as logger:
        for i in range(100):
            logger.log({"iteration": i, "training_error": 1.0 / (i + 1)})
    result = subprocess.run(
        [JQ, "-c", "-s", "min_by(.training_error)", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"iteration": 99, "training_error": 0.01}


def test_readme_json_example_with_numpy_default(tmp_path):
    """JSON: default=serialize_numpy writes arrays that object_hook=deserialize_numpy reads back."""
    path = tmp_path / "log.jsonl"
    data = numpy.random.default_rng(0).random((10, 10))
    with mimir.Logger(filename=path, default=serialize_numpy, formatter=None) as logger:
        logger.log({"iteration": 0, "data": data})
    with open(path, encoding="utf-8") as file:
        entry = json.loads(file.readline(), object_hook=deserialize_numpy)
    assert entry["iteration"] == 0
    assert numpy.array_equal(entry["data"], data)
    assert mimir.load(path, object_hook=deserialize_numpy)[0]["data"].shape == (10, 10)


def test_readme_context_manager(tmp_path):
    """Context manager: leaving the with-block closes the logger and writes the file."""
    path = tmp_path / "log.jsonl"
    with mimir.Logger(filename=str(path), formatter=None) as logger:
        logger.log({"iteration": 0, "training_error": 10})
        stdlib_logger = logger.logger
    assert mimir.load(path) == [{"iteration": 0, "training_error": 10}]
    assert stdlib_logger.handlers == []
    assert "closed" in repr(logger)


def test_readme_saving_to_disk_compressed(tmp_path):
    """Saving to disk: filename='log.jsonl.gz' writes a gzip log that gzip and mimir.load read."""
    path = tmp_path / "log.jsonl.gz"
    with mimir.Logger(filename=str(path), formatter=None) as logger:
        for i in range(100):
            logger.log({"iteration": i, "training_error": 1.0 / (i + 1)})
    expected = [{"iteration": i, "training_error": 1.0 / (i + 1)} for i in range(100)]
    with gzip.open(path, "rb") as file:
        assert [json.loads(line) for line in file] == expected
    assert mimir.load(path) == expected


def test_readme_streaming_binds_loopback_defaults():
    """The README's Logger(stream=True, stream_maxlen=50) streams on 127.0.0.1:5557/5556."""
    pytest.importorskip("zmq")
    import mimir.stream

    with mimir.Logger(stream=True, stream_maxlen=50, formatter=None) as logger:
        assert logger.stream.address == "tcp://127.0.0.1:5557"
        assert logger.stream.replay_address == "tcp://127.0.0.1:5556"
        for i in range(100):
            logger.log({"iteration": i, "training_error": 1.0 / (i + 1)})
        logger.stream.flush(10)  # all 100 published before the client joins
        with mimir.stream.subscribe(logger.stream.address, logger.stream.replay_address) as sub:
            with pytest.warns(mimir.stream.StreamGapWarning, match="1 to 50"):
                sub.sync(10)  # joined after 100 entries: told what it cannot get
            assert sub.first_seq == 51  # the last 50 entries are replayed
            assert next(sub) == {"iteration": 50, "training_error": 1.0 / 51}


# -- the stdlib logger underneath -------------------------------------------------------


def test_named_logger_is_registered_and_does_not_propagate():
    """Logger(name="x") uses logging.getLogger("mimir.x"), which does not propagate."""
    with mimir.Logger(name="train", formatter=None) as logger:
        assert logger.logger is logging.getLogger("mimir.train")
        assert logger.logger.propagate is False


def test_unnamed_logger_is_private():
    """Logger() uses a stdlib logger that is not registered with logging."""
    before = dict(logging.Logger.manager.loggerDict)
    with mimir.Logger(formatter=None) as logger:
        assert isinstance(logger.logger, logging.Logger)
        assert logger.logger.propagate is False
        assert dict(logging.Logger.manager.loggerDict) == before
        assert all(logger.logger is not obj for obj in before.values())


def test_two_unnamed_loggers_are_independent():
    """Two unnamed Loggers keep separate rings."""
    with (
        mimir.Logger(maxlen=5, formatter=None) as first,
        mimir.Logger(maxlen=5, formatter=None) as second,
    ):
        first.log({"who": "first"})
        second.log({"who": "second"})
        assert first[:] == [{"who": "first"}]
        assert second[:] == [{"who": "second"}]


def test_entries_do_not_reach_the_root_logger(capsys):
    """Entries are not propagated to handlers on the root logger."""
    ring = mimir.MemoryHandler(10)
    logging.getLogger().addHandler(ring)
    with mimir.Logger(name="isolated", maxlen=5, formatter=None) as logger:
        logger.log({"a": 1})
    assert len(ring) == 0


def test_other_code_can_log_into_a_named_logger(tmp_path):
    """logging.getLogger("mimir.<name>").info(entry) lands in the Logger's ring and file."""
    path = tmp_path / "shared.jsonl"
    with mimir.Logger(name="shared", filename=path, maxlen=5, formatter=None) as logger:
        logging.getLogger("mimir.shared").info({"from": "stdlib"}, extra={"run": "r"})
        logger.log({"from": "mimir"})
        assert logger[:] == [{"from": "stdlib", "run": "r"}, {"from": "mimir"}]
    assert mimir.load(path) == [{"from": "stdlib", "run": "r"}, {"from": "mimir"}]


# -- log() ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["loss=0.3", 0.3, [("loss", 0.3)], None])
def test_log_refuses_non_mappings(bad):
    """Logger.log of something other than a mapping raises TypeError asking for a mapping."""
    with mimir.Logger(maxlen=5, formatter=None) as logger:
        with pytest.raises(TypeError, match="mapping"):
            logger.log(bad)
        assert len(logger) == 0


def test_log_accepts_any_mapping(tmp_path):
    """OrderedDict, MappingProxyType and other mappings are logged as plain entries."""
    path = tmp_path / "m.jsonl"
    mappings = [
        collections.OrderedDict(a=1),
        types.MappingProxyType({"b": 2}),
        collections.ChainMap({"c": 3}),
    ]
    with mimir.Logger(filename=path, maxlen=5, formatter=None) as logger:
        for mapping in mappings:
            logger.log(mapping)
        assert [dict(entry) for entry in logger] == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert mimir.load(path) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_ring_holds_a_copy_of_the_logged_dict():
    """Changing a dict after logging it does not change the entry held in memory."""
    with mimir.Logger(maxlen=5, formatter=None) as logger:
        entry = {"loss": 1.0}
        logger.log(entry)
        entry["loss"] = 2.0
        assert logger[-1] == {"loss": 1.0}


def test_ring_and_file_hold_the_same_entries(tmp_path):
    """The memory ring and the file receive identical entries."""
    path = tmp_path / "same.jsonl"
    with mimir.Logger(filename=path, maxlen=100, formatter=None) as logger:
        for i in range(50):
            logger.log({"i": i, "nested": {"x": [i, i / 2]}, "big": 2**70 + i})
        held = logger[:]
    assert mimir.load(path) == held


def test_log_from_many_threads(tmp_path):
    """Entries logged from several threads all reach the ring and the file."""
    path = tmp_path / "threads.jsonl"
    with mimir.Logger(filename=path, maxlen=sys.maxsize, formatter=None) as logger:

        def work(thread):
            for i in range(1000):
                logger.log({"t": thread, "i": i})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(logger) == 4000
    assert sorted((e["t"], e["i"]) for e in mimir.load(path)) == [
        (t, i) for t in range(4) for i in range(1000)
    ]


@pytest.mark.parametrize("name", [None, "disable-test"], ids=["unnamed", "named"])
def test_logging_disable_silences_the_logger(name):
    """logging.disable(logging.INFO) stops entries and NOTSET lets them through again."""
    with mimir.Logger(name=name, maxlen=5, formatter=None) as logger:
        logging.disable(logging.INFO)
        logger.log({"a": 1})
        logging.disable(logging.NOTSET)
        logger.log({"a": 2})
        assert logger[:] == [{"a": 2}]


@pytest.mark.parametrize("name", [None, "disable-test"], ids=["unnamed", "named"])
def test_logging_disable_after_logging_takes_effect(name):
    """logging.disable() called after entries were logged stops further entries."""
    with mimir.Logger(name=name, maxlen=5, formatter=None) as logger:
        logger.log({"a": 1})
        logging.disable(logging.INFO)
        logger.log({"a": 2})
        logging.disable(logging.NOTSET)
        assert logger[:] == [{"a": 1}]


@pytest.mark.parametrize("name", [None, "level-test"], ids=["unnamed", "named"])
def test_raising_the_stdlib_logger_level_after_logging_applies(name):
    """logger.logger.setLevel(WARNING) after some entries stops further INFO entries."""
    with mimir.Logger(name=name, maxlen=5, formatter=None) as logger:
        logger.log({"a": 1})
        logger.logger.setLevel(logging.WARNING)
        logger.log({"a": 2})
        assert logger[:] == [{"a": 1}]


def test_filters_on_the_stdlib_logger_apply(tmp_path):
    """A filter added to .logger drops entries from the ring and the file."""
    path = tmp_path / "filtered.jsonl"
    with mimir.Logger(filename=path, maxlen=10, formatter=None) as logger:
        logger.log({"i": 0, "skip": False})
        logger.logger.addFilter(lambda record: not record.msg.get("skip"))
        logger.log({"i": 1, "skip": True})
        logger.log({"i": 2, "skip": False})
        assert [entry["i"] for entry in logger] == [0, 2]
    assert [entry["i"] for entry in mimir.load(path)] == [0, 2]


def test_handlers_added_by_the_user_receive_records(tmp_path):
    """A stdlib handler added to .logger receives each entry as a LogRecord with the mapping."""
    received = []

    class Collect(logging.Handler):
        def emit(self, record):
            received.append(record.msg)

    path = tmp_path / "extra.jsonl"
    with mimir.Logger(filename=path, maxlen=5, formatter=None) as logger:
        logger.log({"i": 0})
        logger.logger.addHandler(Collect())
        logger.log({"i": 1})
        assert logger[:] == [{"i": 0}, {"i": 1}]
    assert received == [{"i": 1}]
    assert mimir.load(path) == [{"i": 0}, {"i": 1}]


def test_handler_level_changes_apply(tmp_path):
    """Raising the level of the Logger's file handler stops INFO entries reaching the file."""
    path = tmp_path / "level.jsonl"
    with mimir.Logger(filename=path, maxlen=5, formatter=None) as logger:
        logger.log({"i": 0})
        file_handler = file_handler_of(logger)
        file_handler.setLevel(logging.ERROR)
        logger.log({"i": 1})
        assert len(logger) == 2
    assert mimir.load(path) == [{"i": 0}]


@pytest.mark.parametrize("filters", [False, True], ids=["plain", "with-filter"])
def test_same_bytes_with_and_without_extra_machinery(tmp_path, filters):
    """What a Logger writes does not depend on whether a pass-through filter is attached."""
    odd = [
        {"nan": math.nan, "inf": -math.inf},
        {"big": 2**100},
        {"lone": "\ud800", "é": "\U0001f600"},
        {"np": numpy.float32(0.5), "zero_dim": numpy.array(3)},
        {1: "int key"},
        {"status": "null", "none": None},
    ]
    path = tmp_path / "a.jsonl"
    with mimir.Logger(filename=path, maxlen=10, formatter=None) as logger:
        if filters:
            logger.logger.addFilter(lambda record: True)
        for entry in odd:
            logger.log(entry)
        held = logger[:]
    reference = tmp_path / "reference.jsonl"
    handler = mimir.JSONLFileHandler(reference)
    stdlib = logging.Logger("reference")
    stdlib.addHandler(handler)
    for entry in odd:
        stdlib.info(entry)
    handler.close()
    assert path.read_bytes() == reference.read_bytes()
    assert len(held) == len(odd)
    assert held[1] == {"big": 2**100}


# -- console output ---------------------------------------------------------------------


def test_default_console_output_indents_nested_entries(capsys):
    """The default console output puts scalars on one line and indents nested mappings."""
    with mimir.Logger() as logger:
        logger.log({"iteration": 7, "loss": 0.31, "norms": {"w": 1.5, "b": 0.25}})
    assert capsys.readouterr().out == "iteration: 7  loss: 0.31\nnorms:\n  w: 1.5  b: 0.25\n"


@pytest.mark.parametrize(
    ("entry", "printed"),
    [
        ({"loss": 1 / 3}, "loss: 0.333333"),
        ({"nan": math.nan, "inf": -math.inf}, "nan: nan  inf: -inf"),
        ({"name": "run-1", "flag": True, "none": None}, "name: run-1  flag: True  none: None"),
        ({"empty": {}, "list": [1, 2]}, "empty: {}  list: [1, 2]"),
        ({"a": {"b": {"c": 1}}}, "a:\n  b:\n    c: 1"),
        ({"x": 1, "deep": {"y": 2, "z": {"w": 3}}}, "x: 1\ndeep:\n  y: 2\n  z:\n    w: 3"),
    ],
)
def test_default_console_rendering(capsys, entry, printed):
    """Scalars print compactly on one line; each nested mapping is indented by two spaces."""
    with mimir.Logger() as logger:
        logger.log(entry)
    assert capsys.readouterr().out == printed + "\n"


def test_default_console_prints_plain_records_as_text(capsys):
    """Text records sent to a Logger's stdlib logger print as their message."""
    with mimir.Logger(name="console-text") as logger:
        logging.getLogger("mimir.console-text").info("hello %s", "world")
        assert logger.logger.handlers
    assert capsys.readouterr().out == "hello world\n"


def test_formatter_none_prints_nothing(capsys):
    """formatter=None prints nothing."""
    with mimir.Logger(formatter=None, maxlen=1) as logger:
        logger.log({"a": 1})
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_formatter_callable_renders_entries(capsys):
    """A callable formatter turns each entry into the printed line."""
    with mimir.Logger(formatter=lambda entry: f"loss={entry['loss']:.2f}") as logger:
        logger.log({"loss": 0.3333})
    assert capsys.readouterr().out == "loss=0.33\n"


def test_formatter_logging_formatter_is_used(capsys):
    """A logging.Formatter formats the record of each entry."""
    with mimir.Logger(formatter=logging.Formatter("%(levelname)s %(message)s")) as logger:
        logger.log({"a": 1})
    assert capsys.readouterr().out == "INFO {'a': 1}\n"


def test_formatter_of_wrong_type_is_refused():
    """A formatter that is neither None, a logging.Formatter nor callable is a TypeError."""
    with pytest.raises(TypeError, match="formatter"):
        mimir.Logger(formatter=42)


def test_console_output_goes_with_file_and_ring(tmp_path, capsys):
    """Printing does not stop the file and ring from receiving entries."""
    path = tmp_path / "both.jsonl"
    with mimir.Logger(filename=path, maxlen=3) as logger:
        logger.log({"a": 1})
        assert logger[-1] == {"a": 1}
    assert mimir.load(path) == [{"a": 1}]
    assert capsys.readouterr().out == "a: 1\n"


# -- json_kwargs ------------------------------------------------------------------------


def test_json_kwargs_reach_the_formatter(tmp_path):
    """sort_keys= and default= given to Logger shape the file's lines."""
    path = tmp_path / "kw.jsonl"
    with mimir.Logger(filename=path, formatter=None, sort_keys=True, default=repr) as logger:
        logger.log({"b": 1, "a": {2, 1}.__class__})
    assert path.read_text() == '{"a":"<class \'set\'>","b":1}\n'


def test_ensure_ascii_reaches_the_file(tmp_path):
    """ensure_ascii=True given to Logger escapes non-ASCII text in the file."""
    path = tmp_path / "ascii.jsonl"
    with mimir.Logger(filename=path, formatter=None, ensure_ascii=True) as logger:
        logger.log({"name": "Mímir"})
    assert path.read_bytes() == b'{"name":"M\\u00edmir"}\n'


def test_indent_is_refused_by_logger():
    """indent= is refused: entries are one line each."""
    with pytest.raises(ValueError, match="indent"):
        mimir.Logger(indent=2)


def test_unknown_keyword_is_refused():
    """A misspelt keyword is a TypeError, not silently ignored."""
    with pytest.raises(TypeError):
        mimir.Logger(maxlength=10)


def test_unknown_keyword_error_names_it_and_lists_the_valid_ones():
    """Logger(maxlne=5) says which argument is wrong, suggests maxlen, and lists the valid ones."""
    with pytest.raises(TypeError) as caught:
        mimir.Logger(maxlne=5)
    message = str(caught.value)
    assert message.startswith("Logger() got an unexpected keyword argument 'maxlne'")
    assert "did you mean 'maxlen'?" in message
    for valid in ("filename", "name", "maxlen", "stream", "lock_timeout", "default", "sort_keys"):
        assert f" {valid}," in message or message.endswith(f" {valid}")
    assert "BaseJsonFormatter" not in message


def test_every_unknown_keyword_is_named():
    """Two unknown keyword arguments are both named in the error."""
    with pytest.raises(TypeError, match="arguments 'colour', 'flavour'"):
        mimir.Logger(colour=1, flavour=2)


def test_python_json_logger_options_reach_the_formatter(tmp_path):
    """An option python-json-logger's formatter takes (static_fields=) passes through Logger."""
    path = tmp_path / "static.jsonl"
    with mimir.Logger(path, formatter=None, static_fields={"run": "r1"}) as logger:
        logger.log({"loss": 0.5})
    assert mimir.load(path) == [{"run": "r1", "loss": 0.5}]


def test_unserializable_entry_is_reported_and_counted(tmp_path, capsys):
    """An entry the file cannot hold is reported with its key path; the others are written."""
    path = tmp_path / "bad.jsonl"
    with mimir.Logger(filename=path, maxlen=5, formatter=None) as logger:
        circular: list = []
        circular.append(circular)
        logger.log({"i": 0})
        logger.log({"i": 1, "data": [circular]})
        logger.log({"i": 2})
        file_handler = file_handler_of(logger)
        assert file_handler.failures == 1
        assert [entry["i"] for entry in logger] == [0, 1, 2]
    assert mimir.load(path) == [{"i": 0}, {"i": 2}]
    assert "entry['data'][0]" in capsys.readouterr().err


# -- life cycle -------------------------------------------------------------------------


def test_close_flushes_closes_and_detaches(tmp_path):
    """close() writes the file, closes the handlers and removes them from the stdlib logger."""
    path = tmp_path / "close.jsonl"
    logger = mimir.Logger(name="closing", filename=path, maxlen=5, formatter=None)
    logger.log({"a": 1})
    handlers = list(logger.logger.handlers)
    assert len(handlers) == 2
    logger.close()
    assert logging.getLogger("mimir.closing").handlers == []
    assert mimir.load(path) == [{"a": 1}]
    logger.close()  # idempotent
    assert mimir.load(path) == [{"a": 1}]


def test_flush_writes_without_closing(tmp_path):
    """flush() writes buffered entries and the Logger keeps working."""
    path = tmp_path / "flush.jsonl"
    with mimir.Logger(filename=path, formatter=None) as logger:
        logger.log({"a": 1})
        logger.flush()
        assert mimir.load(path) == [{"a": 1}]
        logger.log({"a": 2})
    assert mimir.load(path) == [{"a": 1}, {"a": 2}]


def test_ring_stays_readable_after_close():
    """Entries held in memory can still be read after close()."""
    logger = mimir.Logger(maxlen=5, formatter=None)
    logger.log({"a": 1})
    logger.close()
    assert logger[-1] == {"a": 1}
    assert len(logger) == 1


def test_context_manager_closes_on_error(tmp_path):
    """An exception inside the with-block still closes the logger and writes the file."""
    path = tmp_path / "error.jsonl"
    with pytest.raises(RuntimeError), mimir.Logger(filename=path, formatter=None) as logger:
        logger.log({"a": 1})
        raise RuntimeError("training crashed")
    assert mimir.load(path) == [{"a": 1}]
    assert logger.logger.handlers == []


def test_failed_construction_leaves_nothing_attached(tmp_path):
    """A Logger whose file cannot be opened raises OSError and leaves no handler behind."""
    with pytest.raises(OSError, match="does not exist"):
        mimir.Logger(name="broken", filename=tmp_path / "missing" / "x.jsonl", maxlen=5)
    assert logging.getLogger("mimir.broken").handlers == []


def open_descriptors() -> set[str]:
    """The file descriptors this process holds, with what each points to."""
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass  # the descriptor listdir itself used
    return fds


def failing_constructions(tmp_path):
    """Logger arguments that fail at several stages of construction, after other outputs open."""
    yield "unknown keyword", {"maxlne": 5}, TypeError
    yield "bad formatter", {"maxlen": 5, "formatter": 42}, TypeError
    yield "indent", {"filename": tmp_path / "i.jsonl", "indent": 2}, ValueError
    yield "bad maxlen", {"filename": tmp_path / "m.jsonl", "maxlen": -1}, ValueError
    missing = tmp_path / "missing" / "x.jsonl"
    yield "missing directory", {"maxlen": 5, "filename": missing}, OSError
    if importlib.util.find_spec("zmq") is not None:
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = f"tcp://127.0.0.1:{holder.getsockname()[1]}"
        arguments = {
            "maxlen": 5,
            "filename": tmp_path / "s.jsonl.gz",
            "stream": True,
            "stream_address": busy,
        }
        yield "stream port in use", arguments, OSError
        holder.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_failed_construction_leaves_no_handler_thread_or_descriptor(tmp_path):
    """Whatever stage a constructor fails at, no handler, thread, descriptor or logger is left."""
    for what, arguments, error in failing_constructions(tmp_path):
        threads = set(threading.enumerate())
        descriptors = open_descriptors()
        files = set(tmp_path.rglob("*"))
        with pytest.raises(error):
            mimir.Logger(name="failing", **arguments)
        gc.collect()
        assert set(tmp_path.rglob("*")) == files, what
        assert set(threading.enumerate()) == threads, what
        assert open_descriptors() == descriptors, what
        assert "mimir.failing" not in logging.Logger.manager.loggerDict, what
        assert not any(
            isinstance(ref(), mimir.MemoryHandler)
            for ref in logging._handlerList  # type: ignore[attr-defined]
        ), what


FAILED_BIND = """
import mimir
first = mimir.Logger(stream=True, formatter=None, stream_address="tcp://127.0.0.1:0",
                     replay_address="tcp://127.0.0.1:0")
first.log({"i": 1})
mimir.Logger("run.jsonl.gz", maxlen=5, stream=True, formatter=None,
             stream_address=first.stream.address, replay_address="tcp://127.0.0.1:0")
"""


def test_failed_stream_bind_leaves_no_noise_at_exit(tmp_path):
    """A script that dies on a port in use prints its OSError and nothing from logging at exit."""
    pytest.importorskip("zmq")
    result = subprocess.run(
        [sys.executable, "-c", FAILED_BIND],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "address already in use" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("OSError:"), result.stderr
    assert "Exception ignored" not in result.stderr
    assert "AttributeError" not in result.stderr


def test_repr_names_the_logger():
    """repr() shows the stdlib logger's name and state."""
    logger = mimir.Logger(name="shown", formatter=None)
    assert "mimir.shown" in repr(logger)
    logger.close()
    assert "closed" in repr(logger)


def test_records_of_log_carry_the_stdlib_relative_created():
    """A record made by Logger.log counts relativeCreated from the same start as the stdlib's."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    with mimir.Logger(formatter=None) as logger:
        logger.logger.addHandler(Keep())
        logger.log({"i": 0})
    stdlib = logging.LogRecord("x", logging.INFO, "", 0, "", None, None)
    (record,) = seen
    start = record.created - record.relativeCreated / 1000
    assert abs(start - (stdlib.created - stdlib.relativeCreated / 1000)) < 1e-3


# -- wall_time= ------------------------------------------------------------------------

EPHEMERAL_STREAM = {"stream_address": "tcp://127.0.0.1:0", "replay_address": "tcp://127.0.0.1:0"}
# "direct": log() hands entries straight to the handlers; "records": a filter on the
# stdlib logger makes log() go through LogRecords and the formatter.
ROUTES = ["direct", "records"]


def logged_everywhere(tmp_path, route, entries, **kwargs):
    """Log ``entries`` through a Logger with memory, a .jsonl file and a stream.

    Returns what the ring held, the file and a client of the stream received.
    """
    zmq = importlib.util.find_spec("zmq")
    path = tmp_path / "run.jsonl"
    stream = {"stream": True, "stream_maxlen": 100, **EPHEMERAL_STREAM} if zmq else {}
    logger = mimir.Logger(path, maxlen=100, formatter=None, **stream, **kwargs)
    try:
        if route == "records":
            logger.logger.addFilter(lambda record: True)
        for entry in entries:
            logger.log(entry)
        held = logger[:]
        streamed = None
        if zmq is not None:
            from mimir.stream import subscribe

            with subscribe(
                logger.stream.address, logger.stream.replay_address, timeout=10
            ) as subscription:
                streamed = [next(subscription) for _ in entries]
    finally:
        logger.close()
    return held, mimir.load(path), streamed


@pytest.mark.parametrize("route", ROUTES)
def test_wall_time_is_added_to_memory_file_and_stream(tmp_path, route):
    """wall_time=True adds the float time.time() of each entry under "wall_time", everywhere."""
    import time

    entries = [{"iteration": i, "loss": 0.5} for i in range(5)]
    before = time.time()
    held, written, streamed = logged_everywhere(tmp_path, route, entries, wall_time=True)
    after = time.time()
    outputs = [held, written] + ([streamed] if streamed is not None else [])
    for output in outputs:
        assert [{k: v for k, v in e.items() if k != "wall_time"} for e in output] == entries
        times = [entry["wall_time"] for entry in output]
        assert all(type(t) is float for t in times)
        assert before <= times[0] and times == sorted(times) and times[-1] <= after
        assert list(output[0]) == ["iteration", "loss", "wall_time"]
    assert [e["wall_time"] for e in held] == [e["wall_time"] for e in written]
    assert entries[0] == {"iteration": 0, "loss": 0.5}  # the caller's dict is left alone


@pytest.mark.parametrize("route", ROUTES)
def test_without_wall_time_entries_are_exactly_as_logged(tmp_path, route):
    """By default no key is added: memory, file and stream hold the entries as logged."""
    entries = [{"iteration": i, "loss": 0.5} for i in range(5)]
    held, written, streamed = logged_everywhere(tmp_path, route, entries)
    assert held == written == entries
    assert streamed in (None, entries)


@pytest.mark.parametrize("route", ROUTES)
def test_wall_time_never_overwrites_a_logged_key(tmp_path, route):
    """An entry that has the key keeps its own value, and gets no second time."""
    entries = [{"i": 0, "wall_time": "mine"}, {"i": 1}, {"i": 2, "wall_time": 3}]
    held, written, streamed = logged_everywhere(tmp_path, route, entries, wall_time=True)
    for output in [held, written] + ([streamed] if streamed is not None else []):
        assert output[0] == {"i": 0, "wall_time": "mine"}
        assert output[2] == {"i": 2, "wall_time": 3}
        assert type(output[1]["wall_time"]) is float


def test_wall_time_under_a_key_of_ones_choice(tmp_path):
    """wall_time="t" puts the time under "t"."""
    with mimir.Logger(tmp_path / "t.jsonl", maxlen=2, formatter=None, wall_time="t") as logger:
        logger.log({"i": 0})
        assert set(logger[-1]) == {"i", "t"}
    assert set(mimir.load(tmp_path / "t.jsonl")[0]) == {"i", "t"}


def test_wall_time_is_on_text_records_and_not_on_the_console(tmp_path, capsys):
    """Text records logged through .logger carry the time too; the console shows neither."""
    with mimir.Logger(tmp_path / "x.jsonl", maxlen=5, wall_time=True) as logger:
        logger.log({"i": 0})
        logger.logger.warning("epoch %d done", 1)
        held = logger[:]
    assert capsys.readouterr().out == "i: 0\nepoch 1 done\n"
    assert held[1]["message"] == "epoch 1 done"
    assert mimir.load(tmp_path / "x.jsonl") == held
    assert all(type(entry["wall_time"]) is float for entry in held)


@pytest.mark.parametrize("value", [1, "", 0.5, ["wall_time"]])
def test_wall_time_takes_a_bool_or_a_key(value):
    """wall_time= refuses anything but True, False or a non-empty string."""
    with pytest.raises(TypeError, match="wall_time="):
        mimir.Logger(formatter=None, wall_time=value)
