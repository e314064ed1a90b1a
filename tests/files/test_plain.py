"""JSONLFileHandler: buffered, appending, line-delimited JSON files."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref

import pytest

import mimir
from mimir import JSONFormatter, JSONLFileHandler


def make_logger(handler: logging.Handler, name: str = "mimir-test-jsonl") -> logging.Logger:
    """A private stdlib logger (not registered) at DEBUG with ``handler`` attached."""
    logger = logging.Logger(name, logging.DEBUG)
    logger.addHandler(handler)
    return logger


def line_count(path) -> int:
    """Number of complete lines in ``path`` (0 if it does not exist)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def mimir_threads() -> list[threading.Thread]:
    """Threads that look like Mímir's writers."""
    return [t for t in threading.enumerate() if t.name.startswith("mimir")]


def test_is_a_logging_handler(log_path, closing):
    """JSONLFileHandler is a logging.Handler that creates its file at construction."""
    handler = closing(JSONLFileHandler(log_path))
    assert isinstance(handler, logging.Handler)
    assert log_path.exists()
    assert log_path.read_bytes() == b""


def test_flush_writes_one_line_per_entry(log_path, closing, read_jsonl):
    """flush() writes each buffered entry as one JSON line and counts it in .written."""
    handler = closing(JSONLFileHandler(log_path, flush_interval=60))
    logger = make_logger(handler)
    for i in range(5):
        logger.info({"iteration": i, "loss": 1 / (i + 1)})
    handler.flush()
    assert read_jsonl(log_path) == [{"iteration": i, "loss": 1 / (i + 1)} for i in range(5)]
    assert handler.written == 5
    assert handler.dropped == 0
    assert handler.failures == 0


def test_close_writes_what_is_buffered(log_path, read_jsonl):
    """close() writes the buffered entries and is idempotent."""
    handler = JSONLFileHandler(log_path, flush_interval=60)
    logger = make_logger(handler)
    logger.info({"a": 1})
    logger.info("text record")
    handler.close()
    handler.close()
    assert read_jsonl(log_path) == [{"a": 1}, {"message": "text record"}]


def test_close_stops_the_writer_thread(log_path):
    """After close() no writer thread of the handler is left running."""
    before = set(mimir_threads())
    handler = JSONLFileHandler(log_path, flush_interval=60)
    make_logger(handler).info({"a": 1})
    handler.close()
    assert set(mimir_threads()) <= before


def test_entries_reach_the_file_within_a_second_without_flush(log_path, closing, wait_until):
    """With the default flush_interval, entries reach the file within about a second."""
    handler = closing(JSONLFileHandler(log_path))
    logger = make_logger(handler)
    start = time.monotonic()
    logger.info({"a": 1})
    assert wait_until(lambda: line_count(log_path) == 1, timeout=5.0)
    assert time.monotonic() - start < 3.0  # one interval, plus slack for a busy machine
    logger.info({"a": 2})
    assert wait_until(lambda: line_count(log_path) == 2, timeout=5.0)
    # Counted once the write has returned, a moment after the line is in the file.
    assert wait_until(lambda: handler.written == 2, timeout=5.0)


def test_short_flush_interval_writes_soon(log_path, closing, wait_until):
    """A short flush_interval gets entries to disk soon, without flush()."""
    handler = closing(JSONLFileHandler(log_path, flush_interval=0.02))
    logger = make_logger(handler)
    for i in range(100):
        logger.info({"i": i})
    assert wait_until(lambda: line_count(log_path) == 100, timeout=5.0)


def test_flush_bytes_wakes_the_writer_early(log_path, closing, wait_until):
    """Once flush_bytes are buffered the writer runs before flush_interval has passed."""
    handler = closing(JSONLFileHandler(log_path, flush_interval=600, flush_bytes=256))
    logger = make_logger(handler)
    for i in range(50):
        logger.info({"i": i, "padding": "x" * 20})
    assert wait_until(lambda: line_count(log_path) > 0, timeout=5.0)


def test_flush_interval_zero_writes_before_returning(log_path, closing):
    """With flush_interval=0 each entry is in the file when the logging call returns."""
    handler = closing(JSONLFileHandler(log_path, flush_interval=0))
    logger = make_logger(handler)
    for i in range(3):
        logger.info({"i": i})
        assert line_count(log_path) == i + 1


def test_appends_and_never_truncates(log_path, read_jsonl):
    """An existing log is appended to, never truncated."""
    log_path.write_text('{"old":1}\n')
    for value in (2, 3):
        handler = JSONLFileHandler(log_path, flush_interval=60)
        make_logger(handler).info({"new": value})
        handler.close()
    assert read_jsonl(log_path) == [{"old": 1}, {"new": 2}, {"new": 3}]


def test_accepts_path_objects_and_strings(tmp_path, read_jsonl):
    """filename may be a str or a path-like object."""
    for filename in (str(tmp_path / "a.jsonl"), tmp_path / "b.jsonl"):
        handler = JSONLFileHandler(filename)
        make_logger(handler).info({"f": str(filename)})
        handler.close()
        assert read_jsonl(filename) == [{"f": str(filename)}]


def test_missing_directory_is_an_oserror_at_construction(tmp_path):
    """A log in a directory that does not exist fails at once with a message naming it."""
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(OSError, match="does not exist") as info:
        JSONLFileHandler(missing / "run.jsonl")
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_directory_as_filename_is_an_oserror_at_construction(tmp_path):
    """A path that cannot be opened for appending fails at once with a clear message."""
    with pytest.raises(OSError, match="cannot open log file") as info:
        JSONLFileHandler(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_file_as_directory_is_an_oserror_at_construction(tmp_path):
    """A path below a regular file fails at once with an OSError."""
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="log file"):
        JSONLFileHandler(tmp_path / "file" / "run.jsonl")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_file_is_an_oserror_at_construction(log_path):  # pragma: no cover
    """A file without write permission fails at once with a message about permissions."""
    log_path.write_text("")
    log_path.chmod(0o444)
    with pytest.raises(OSError, match="permission"):
        JSONLFileHandler(log_path)


@pytest.mark.parametrize(
    "kwargs",
    [{"flush_interval": -1}, {"flush_bytes": 0}, {"max_buffer_bytes": 0}],
)
def test_invalid_arguments_are_refused(log_path, kwargs):
    """Negative intervals and non-positive byte limits are a ValueError."""
    with pytest.raises(ValueError):
        JSONLFileHandler(log_path, **kwargs)


def test_torn_last_line_is_dealt_with_and_warned_about(log_path):
    """A torn last line gives a RuntimeWarning; new entries start on a line of their own."""
    log_path.write_bytes(b'{"a":1}\n{"b":')
    with pytest.warns(RuntimeWarning, match="incomplete"):
        handler = JSONLFileHandler(log_path)
    make_logger(handler).info({"c": 3})
    handler.close()
    lines = log_path.read_bytes().split(b"\n")
    assert lines[0] == b'{"a":1}'
    assert lines[-2:] == [b'{"c":3}', b""]
    # The torn fragment is kept, in the log or in a file beside it, not thrown away.
    assert any(b'{"b":' in path.read_bytes() for path in log_path.parent.iterdir())


def test_torn_line_longer_than_a_mebibyte_does_not_swallow_the_next_entry(log_path):
    """A torn last line of several MiB (a big array cut short) does not merge with a new entry."""
    log_path.write_bytes(b'{"a":1}\n{"weights":"' + b"x" * (3 << 20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        handler = JSONLFileHandler(log_path)
    make_logger(handler).info({"c": 3})
    handler.close()
    data = log_path.read_bytes()
    assert data.endswith(b'\n{"c":3}\n')
    assert data.startswith(b'{"a":1}\n')


def test_last_entry_without_newline_is_kept(log_path):
    """A last line that is a complete entry without its newline stays an entry of its own."""
    log_path.write_bytes(b'{"a":1}\n{"b":2}')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        handler = JSONLFileHandler(log_path)
    make_logger(handler).info({"c": 3})
    handler.close()
    assert mimir.load(log_path) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_complete_last_line_gives_no_warning(log_path, recwarn):
    """A file ending with a newline is appended to without a warning."""
    log_path.write_bytes(b'{"a":1}\n')
    JSONLFileHandler(log_path).close()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert log_path.read_bytes() == b'{"a":1}\n'


def test_file_is_utf8_and_keeps_unicode(log_path, read_jsonl):
    """Text is written as UTF-8 (lone surrogates escaped) and reads back equal."""
    handler = JSONLFileHandler(log_path)
    entries = [{"name": "Mímir"}, {"emoji": "\U0001f600"}, {"lone": "\ud800"}]
    logger = make_logger(handler)
    for entry in entries:
        logger.info(entry)
    handler.close()
    assert "Mímir".encode() in log_path.read_bytes()
    assert read_jsonl(log_path) == entries


def test_formatter_options_shape_the_lines(log_path):
    """A JSONFormatter set on the handler decides the line (here sorted keys and a level field)."""
    handler = JSONLFileHandler(log_path)
    handler.setFormatter(JSONFormatter("%(levelname)s", sort_keys=True))
    make_logger(handler).warning({"b": 1, "a": 2})
    handler.close()
    assert log_path.read_text() == '{"a":2,"b":1,"levelname":"WARNING"}\n'


def test_plain_logging_formatter_gives_message_lines(log_path, read_jsonl):
    """With a plain logging.Formatter each line is {"message": formatted text}."""
    handler = JSONLFileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    make_logger(handler).error("disk %s", "full")
    handler.close()
    assert read_jsonl(log_path) == [{"message": "ERROR disk full"}]


@pytest.mark.parametrize("flush_bytes", [64, 4096])
def test_many_threads_write_every_entry_exactly_once(log_path, read_jsonl, flush_bytes):
    """Entries logged from 8 threads at once are all written, each once and whole
    (the callers append without a lock while the writer takes batches out)."""
    handler = JSONLFileHandler(log_path, flush_interval=0.01, flush_bytes=flush_bytes)
    logger = make_logger(handler)

    def work(thread: int) -> None:
        for i in range(2000):
            logger.info({"thread": thread, "i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    handler.close()
    entries = read_jsonl(log_path)
    assert len(entries) == 8 * 2000
    assert {(e["thread"], e["i"]) for e in entries} == {
        (t, i) for t in range(8) for i in range(2000)
    }
    for thread in range(8):
        own = [e["i"] for e in entries if e["thread"] == thread]
        assert own == sorted(own)
    assert handler.written == 8 * 2000


def test_two_handlers_on_one_file_interleave_whole_lines(log_path, read_jsonl):
    """Two handlers appending to one file never tear each other's lines."""
    first = JSONLFileHandler(log_path, flush_interval=0.005)
    second = JSONLFileHandler(log_path, flush_interval=0.005)
    loggers = [make_logger(first, "one"), make_logger(second, "two")]
    for i in range(2000):
        for n, logger in enumerate(loggers):
            logger.info({"h": n, "i": i, "pad": "y" * (i % 50)})
    first.close()
    second.close()
    entries = read_jsonl(log_path)
    assert len(entries) == 4000
    assert sorted((e["h"], e["i"]) for e in entries) == sorted(
        (n, i) for n in range(2) for i in range(2000)
    )


@pytest.mark.parametrize("flush_interval", [0.05, 0], ids=["thread", "synchronous"])
def test_p5_entry_after_close_reopens_and_never_reaches_a_reused_descriptor(
    log_path, read_jsonl, flush_interval
):
    """P5: after close(), the closed descriptor's number belongs to another file; the
    entry goes to the log, reopened as logging.FileHandler does, and the other file is
    untouched."""
    handler = JSONLFileHandler(log_path, flush_interval=flush_interval)
    logger = make_logger(handler)
    logger.info({"x": 0})
    handler.close()
    other = log_path.parent / "data.csv"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # likely the same number
    try:
        os.write(fd, b"a,b\n")
        logger.info({"x": 1})
        handler.flush()
        logging.shutdown([weakref.ref(handler)])  # what interpreter exit does
        logger.info({"x": 2})  # and once more after a shutdown by other code
        handler.close()
    finally:
        os.close(fd)
    assert other.read_bytes() == b"a,b\n"
    assert read_jsonl(log_path) == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert (handler.written, handler.dropped, handler.failures) == (3, 0, 0)


def test_unserializable_entry_is_reported_and_others_kept(log_path, capsys, read_jsonl):
    """An entry that cannot be written is reported with its key path; the others are written."""
    handler = JSONLFileHandler(log_path)
    logger = make_logger(handler)
    loop: list = []
    loop.append(loop)  # a list that contains itself has no JSON form
    logger.info({"i": 0})
    logger.info({"i": 1, "bad": {"history": loop}})
    logger.info({"i": 2, "ids": {2, 1}})  # a set is written as a sorted list
    handler.close()
    assert read_jsonl(log_path) == [{"i": 0}, {"i": 2, "ids": [1, 2]}]
    assert handler.failures == 1
    err = capsys.readouterr().err
    assert "entry['bad']['history']" in err
    assert "contains itself" in err


def test_write_failures_are_reported_once_and_counted(capsys, full_disk):
    """Writes to a full device are reported through handleError and counted, never silent."""
    handler = JSONLFileHandler(full_disk, flush_interval=0)
    logger = make_logger(handler)
    logger.info({"i": 0})
    logger.info({"i": 1})
    assert handler.failures >= 1
    assert handler.written == 0
    assert "could not write" in capsys.readouterr().err
    logging.raiseExceptions = False
    handler.close()


def test_buffer_is_bounded_when_writes_keep_failing(full_disk):
    """When writes keep failing, entries beyond max_buffer_bytes are dropped and counted."""
    logging.raiseExceptions = False
    handler = JSONLFileHandler(full_disk, flush_interval=0, max_buffer_bytes=1000)
    logger = make_logger(handler)
    for i in range(200):
        logger.info({"i": i, "padding": "z" * 40})
    try:
        assert handler.written == 0
        assert handler.dropped >= 200 - 1000 // 50
        assert handler.failures >= 2  # the write failure and the first drop
    finally:
        handler.close()


def test_entries_are_written_at_interpreter_exit(tmp_path, read_jsonl):
    """A process that logs and exits without closing anything still writes every entry."""
    path = tmp_path / "exit.jsonl"
    script = textwrap.dedent(
        """
        import logging, sys
        import mimir

        path = sys.argv[1]
        logger = mimir.Logger(filename=path, formatter=None)
        for i in range(1000):
            logger.log({"i": i})

        def forgotten():
            mimir.Logger(filename=path, formatter=None).log({"forgotten": True})

        forgotten()
        handler = mimir.JSONLFileHandler(path, flush_interval=600)
        stdlib = logging.getLogger("mimir.exit-test")
        stdlib.addHandler(handler)
        stdlib.warning({"handler": True})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    entries = read_jsonl(path)
    assert [e for e in entries if "i" in e] == [{"i": i} for i in range(1000)]
    assert {"forgotten": True} in entries
    assert {"handler": True} in entries
    assert len(entries) == 1002


def test_repr_names_the_file(log_path, closing):
    """repr() names the file, so error messages say which log failed."""
    handler = closing(JSONLFileHandler(log_path))
    assert str(log_path) in repr(handler)


def test_written_lines_parse_with_python_json(log_path):
    """Every line is complete JSON followed by a newline."""
    handler = JSONLFileHandler(log_path, flush_interval=0.001)
    logger = make_logger(handler)
    for i in range(500):
        logger.info({"i": i, "text": "a\nb"})
    handler.close()
    data = log_path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert [json.loads(line)["i"] for line in lines] == list(range(500))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """A FIFO, a device or a directory is refused at construction, never waited on."""
    path = {"fifo": tmp_path / "run.jsonl", "device": "/dev/null", "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(OSError, match="not a regular file"):
        JSONLFileHandler(path)  # a FIFO without a reader would block an ordinary open


def test_torn_line_is_moved_aside_without_following_a_planted_symlink(log_path, monkeypatch):
    """A torn line goes to a file created exclusively: a symlink planted there is left alone."""
    monkeypatch.setattr(time, "strftime", lambda *args: "20260101T000000")
    target = log_path.parent / "precious.txt"
    target.write_bytes(b"keep me\n")
    planted = log_path.parent / (log_path.name + ".torn-20260101T000000")
    planted.symlink_to(target)
    log_path.write_bytes(b'{"i": 0}\n{"i": 1, "trai')
    with pytest.warns(RuntimeWarning, match="torn-20260101T000000-1"):
        JSONLFileHandler(log_path).close()
    assert target.read_bytes() == b"keep me\n"
    assert planted.is_symlink()
    assert (log_path.parent / (planted.name + "-1")).read_bytes() == b'{"i": 1, "trai'
    assert log_path.read_bytes() == b'{"i": 0}\n'
