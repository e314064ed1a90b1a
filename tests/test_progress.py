"""The progress console: a status line in a terminal, a line now and then elsewhere."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import logging.config
import os
import re
import select
import struct
import termios
import threading
import time
import tty
from collections.abc import Iterator

import numpy
import pytest

import mimir
from mimir.console import ProgressHandler

ERASE = "\x1b[K"


class PseudoTerminal:
    """A pty: the handler writes to the slave end, a thread reads the master end."""

    def __init__(self, columns: int) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no output processing: "\n" stays "\n", no "\r" added
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.stream = os.fdopen(slave, "w", encoding="utf-8")
        self.data = bytearray()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            # Once the slave end is closed (before _done is set), a read never blocks:
            # it returns what is left, then fails with EIO. So read on at least once
            # more after _done, however the select above timed out.
            if not ready and not self._done.is_set():
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the slave end is closed and everything was read
                return
            if not chunk:
                return
            self.data += chunk

    def output(self, deadline: float = 10.0) -> str:
        """Close the slave end and return all that was written to it."""
        if not self.stream.closed:
            self.stream.close()
        self._done.set()
        self._reader.join(deadline)
        assert not self._reader.is_alive(), "the pty reader did not finish"
        return self.data.decode("utf-8")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        self._done.set()
        self._reader.join(10)
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[PseudoTerminal]:
    """A 200-column pseudo-terminal."""
    pty = PseudoTerminal(columns=200)
    yield pty
    pty.close()


class FakeTerminal(io.StringIO):
    """An in-memory stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def redraws(output: str) -> list[str]:
    """The status lines drawn, in order (each starts with a carriage return)."""
    return [part.split(ERASE)[0] for part in output.split("\r")[1:]]


def entry(i: int) -> dict:
    return {"iteration": i, "training_error": 1.0 / (i + 1), "learning_rate": 0.001}


# -- in a terminal ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ["mimir.Logger", "logging.Logger"])
def test_a_fast_loop_is_redrawn_at_most_ten_times_a_second(terminal, route):
    """100,000 entries as fast as possible: at most one redraw per 0.1 s, then the final one.

    Through mimir.Logger (its direct path) and through a stdlib logger (LogRecords,
    slower, so that the loop lasts several redraw intervals).
    """
    with contextlib.redirect_stdout(terminal.stream):
        start = time.monotonic()
        if route == "mimir.Logger":
            logger = mimir.Logger(formatter="progress")
            log = logger.log
        else:
            logger = ProgressHandler()
            stdlib = logging.Logger("progress-fast")
            stdlib.addHandler(logger)
            log = stdlib.info
        for i in range(100_000):
            log(entry(i))
        logger.close()
        elapsed = time.monotonic() - start
    output = terminal.output()
    drawn = redraws(output)
    # One at the first entry, one per 0.1 s after it, and the last one at close.
    assert 2 <= len(drawn) <= int(elapsed / 0.1) + 2, (len(drawn), elapsed)
    assert output.endswith(ERASE + "\n")
    assert output.count("\n") == 1
    last = drawn[-1]
    assert last.startswith("100,000 entries  ")
    assert "iteration=99999  training_error=1e-5  learning_rate=0.001" in last


def test_redraws_follow_the_clock_exactly():
    """With a clock moving 1/32 s per entry and an interval of 1/8 s: a redraw every 4 entries."""
    clock = FakeClock()
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, interval=0.125, width=200)
    handler.clock = clock
    for i in range(1000):
        handler.add_entry({"i": i})
        clock.now += 1 / 32
    handler.close()
    drawn = redraws(stream.getvalue())
    assert len(drawn) == 250 + 1
    assert [line.split("  i=")[1] for line in drawn[:4]] == ["0", "4", "8", "12"]
    assert drawn[-1] == "1,000 entries  32/s  i=999"
    assert stream.getvalue().endswith("\n")


@pytest.mark.parametrize("interval", [0.1, 0.05, 1.0])
def test_redraws_never_exceed_the_interval(interval):
    """Whatever the pace of entries, redraws stay at most one per interval (plus the last)."""
    clock = FakeClock()
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, interval=interval, width=100)
    handler.clock = clock
    start = clock.now
    for i in range(5000):
        handler.add_entry({"i": i})
        clock.now += 0.0037 * (1 + i % 7)
    elapsed = clock.now - start
    handler.close()
    assert len(redraws(stream.getvalue())) <= int(elapsed / interval) + 2


def test_values_are_formatted_only_when_a_line_is_due():
    """Logging without a redraw due does not touch the entry's values (O(1) per entry)."""
    calls = []

    class Watched:
        def __repr__(self) -> str:
            calls.append(1)
            return "watched"

    clock = FakeClock()
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, width=100)
    handler.clock = clock
    value = Watched()
    for _ in range(10_000):
        handler.add_entry({"value": value})
    assert len(calls) == 1  # the first entry's redraw only
    handler.close()
    assert len(calls) == 2  # and the last one
    assert handler.count == 10_000


def test_status_line_fits_the_terminal_width():
    """On a 40-column terminal every redraw fits in 39 columns, cut with an ellipsis."""
    pty = PseudoTerminal(columns=40)
    try:
        handler = ProgressHandler(stream=pty.stream)
        wide = {"iteration": 3, "名前": "値" * 30, "training_error": 0.25, "more": 1}
        handler.add_entry(wide)
        handler.close()
        drawn = redraws(pty.output())
    finally:
        pty.close()
    assert len(drawn) == 2
    for line in drawn:
        assert line.endswith("…")
        columns = sum(2 if "\u4e00" <= char <= "\u9fff" else 1 for char in line)
        assert columns <= 39
        assert line.startswith("1 entry  iteration=3  名前=値")


def test_width_follows_columns_environment(monkeypatch):
    """COLUMNS sets the width, as for shutil.get_terminal_size."""
    monkeypatch.setenv("COLUMNS", "30")
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream)
    handler.add_entry({"a_long_key_name": 1, "another_long_key": 2})
    handler.close()
    for line in redraws(stream.getvalue()):
        assert len(line) <= 29


def test_text_records_are_printed_above_the_status_line():
    """A text message is printed whole on its own line, and the status is drawn again below."""
    clock = FakeClock()
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, width=100)
    handler.clock = clock
    stdlib = logging.Logger("progress-messages")
    stdlib.addHandler(handler)
    stdlib.info({"i": 1})
    stdlib.info("epoch %d done", 1)
    handler.close()
    output = stream.getvalue()
    assert output == (
        "\r1 entry  i=1" + ERASE + "\repoch 1 done" + ERASE + "\n"
        "1 entry  i=1" + ERASE + "\r1 entry  i=1" + ERASE + "\n"
    )


def test_close_is_idempotent_and_ends_the_line_once():
    """close() twice: one final newline; no output at all without entries."""
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, width=80)
    handler.close()
    assert stream.getvalue() == ""
    handler = ProgressHandler(stream=stream, width=80)
    handler.add_entry({"i": 0})
    handler.close()
    handler.close()
    assert stream.getvalue().count("\n") == 1


def test_values_are_compact():
    """Floats in 4 significant digits, integers exact, arrays by shape, nested keys dotted."""
    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, width=400)
    handler.add_entry(
        {
            "step": 123456789,
            "loss": 0.312745,
            "tiny": 1.5e-7,
            "big": 123456.0,
            "np": numpy.float32(0.5),
            "nan": float("nan"),
            "flag": True,
            "weights": numpy.zeros((3, 4)),
            "norms": {"w": 1.25, "b": {"x": 2}},
            "phase": "train\nline",
            "none": None,
        }
    )
    handler.close()
    assert redraws(stream.getvalue())[-1] == (
        "1 entry  step=123456789  loss=0.3127  tiny=1.5e-7  big=1.235e5  np=0.5  nan=nan  "
        "flag=True  weights=<ndarray 3x4>  norms.w=1.25  norms.b.x=2  phase=train\\nline  "
        "none=None"
    )


# -- not a terminal ----------------------------------------------------------------------


@pytest.mark.parametrize("every", [1, 7, 1000])
def test_lines_every_n_entries_exactly(every):
    """In a pipe or file: one line at each multiple of ``every``, one last line at close."""
    stream = io.StringIO()
    handler = ProgressHandler(stream=stream, every=every, every_seconds=0)
    total = every * 5 + min(3, every - 1)
    for i in range(total):
        handler.add_entry({"i": i})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert [int(line.split()[0].replace(",", "")) for line in lines] == [
        every * k for k in range(1, 6)
    ]
    assert [line.rsplit("i=", 1)[1] for line in lines] == [str(every * k - 1) for k in range(1, 6)]
    handler.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == (6 if total > every * 5 else 5)
    assert lines[-1].startswith(f"{total:,} entries")
    assert lines[-1].endswith(f"i={total - 1}")
    assert "\r" not in stream.getvalue() and ERASE not in stream.getvalue()


def test_lines_every_s_seconds_never_more():
    """With only the time rule: a line when ``every_seconds`` have passed since the last one."""
    clock = FakeClock()
    stream = io.StringIO()
    handler = ProgressHandler(stream=stream, every=0, every_seconds=10)
    handler.clock = clock
    for i in range(95):  # one entry a second: lines at 10 s, 20 s ... 90 s
        handler.add_entry({"i": i})
        clock.now += 1.0
    lines = stream.getvalue().splitlines()
    assert [line.rsplit("i=", 1)[1] for line in lines] == [str(k) for k in range(10, 91, 10)]
    assert all("/s" in line for line in lines)


def test_no_final_line_when_the_last_entry_was_shown():
    """Closing right after a line adds nothing: the last entry is already printed."""
    stream = io.StringIO()
    handler = ProgressHandler(stream=stream, every=5, every_seconds=0)
    for i in range(10):
        handler.add_entry({"i": i})
    handler.close()
    assert len(stream.getvalue().splitlines()) == 2


# -- failures ------------------------------------------------------------------------------


class Broken(io.StringIO):
    """A terminal whose writes fail with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.writes = 0

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.writes += 1
        raise self.error


def test_a_failing_stream_never_raises_and_failures_are_counted(capsys):
    """Write errors go to handleError, counted, and drawing backs off while they go on."""
    clock = FakeClock()
    handler = ProgressHandler(stream=Broken(OSError(5, "Input/output error")), width=80)
    handler.clock = clock
    for i in range(1000):  # 10 s: attempts at 0, 1, 3 and 7 s (back-off 1, 2, 4, 8 s)
        handler.add_entry({"i": i})
        clock.now += 0.01
    handler.close()
    assert handler.failures == 5  # and the last line at close
    assert handler.count == 1000
    stderr = capsys.readouterr().err
    assert stderr.count("could not write its progress line") == 4
    assert "could not write its last line" in stderr


def test_a_broken_pipe_stops_drawing_with_one_note(capsys):
    """When the reader goes away, the handler stops writing, with one note and no traceback."""
    stream = Broken(BrokenPipeError(32, "Broken pipe"))
    handler = ProgressHandler(stream=stream, interval=0.001, width=80)
    for i in range(2000):
        handler.add_entry({"i": i})
        if i % 100 == 0:
            time.sleep(0.002)
    handler.close()
    for i in range(100):  # entries after close() do not try again either
        handler.add_entry({"i": i})
    handler.close()
    assert stream.writes == 1
    assert handler.failures == 1
    assert handler.closed_by_reader
    stderr = capsys.readouterr().err
    assert stderr.count("progress output was closed") == 1
    assert "Traceback" not in stderr


def test_a_closed_terminal_never_raises_into_the_loop(capsys):
    """The terminal goes away mid-run (pty master closed): logging carries on, errors counted."""
    pty = PseudoTerminal(columns=80)
    logging.raiseExceptions = False  # restored by conftest
    try:
        with contextlib.redirect_stdout(pty.stream):
            logger = mimir.Logger(formatter="progress", maxlen=5)
            (handler,) = [h for h in logger.handlers if isinstance(h, ProgressHandler)]
            handler.add_entry({"i": -1})
            pty._done.set()
            pty._reader.join(10)
            os.close(pty.master)
            pty.master = os.open(os.devnull, os.O_RDONLY)  # for pty.close()
            deadline = time.monotonic() + 0.5
            i = 0
            while time.monotonic() < deadline:
                logger.log({"i": i})
                i += 1
            logger.close()
    finally:
        pty.close()
    assert logger[-1] == {"i": i - 1}
    assert handler.failures >= 1


def test_a_failing_value_costs_only_that_value():
    """A value whose repr raises is shown by its type; the line is still drawn."""

    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    stream = FakeTerminal()
    handler = ProgressHandler(stream=stream, width=80)
    handler.add_entry({"bad": Bad(), "ok": 1})
    handler.close()
    assert redraws(stream.getvalue())[-1] == "1 entry  bad=<Bad>  ok=1"
    assert handler.failures == 0


# -- construction, Logger and dictConfig --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"interval": 0}, ValueError),
        ({"interval": -1.0}, ValueError),
        ({"every": -1}, ValueError),
        ({"every": 2.5}, TypeError),
        ({"every": True}, TypeError),
        ({"every_seconds": "10"}, TypeError),
        ({"width": -3}, ValueError),
        ({"stream": 42}, TypeError),
    ],
)
def test_bad_arguments_are_refused(kwargs, error):
    """Constructor arguments are checked, with the argument named."""
    with pytest.raises(error, match=next(iter(kwargs))):
        ProgressHandler(**kwargs)


def test_logger_progress_console_in_a_pipe(capsys):
    """Logger(formatter="progress") prints nothing per entry; at close one line with the last."""
    with mimir.Logger(formatter="progress", maxlen=3) as logger:
        for i in range(25):
            logger.log({"iteration": i, "loss": 0.5})
        assert capsys.readouterr().out == ""
        assert [entry["iteration"] for entry in logger] == [22, 23, 24]
    assert re.fullmatch(r"25 entries  \S+/s  iteration=24  loss=0\.5\n", capsys.readouterr().out)


def test_logger_progress_keeps_the_direct_path(tmp_path):
    """The progress console does not make entries go through LogRecords, and sees them all."""
    path = tmp_path / "run.jsonl"
    with mimir.Logger(path, formatter="progress", maxlen=10) as logger:
        assert logger._direct is not None
        (handler,) = [h for h in logger.handlers if isinstance(h, ProgressHandler)]
        for i in range(100):
            logger.log({"i": i})
        assert handler.count == 100
        assert handler.latest == {"i": 99}
        handler.setLevel(logging.WARNING)  # now records decide, and INFO entries stop here
        logger.log({"i": 100})
        assert handler.count == 100
        assert logger[-1] == {"i": 100}
    assert len(mimir.load(path)) == 101


def test_logger_refuses_an_unknown_console_name():
    """formatter= takes "progress" as a name; any other string is an error naming it."""
    with pytest.raises(ValueError, match=r"'progres'.*'progress'"):
        mimir.Logger(formatter="progres")


def test_dictconfig_builds_the_progress_console(capsys):
    """A JSON-safe dictConfig builds a ProgressHandler from plain keyword arguments."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "progress": {
                "class": "mimir.console.ProgressHandler",
                "stream": "ext://sys.stdout",
                "interval": 0.2,
                "every": 4,
                "every_seconds": 30,
                "width": 0,
            }
        },
        "loggers": {
            "mimir.test.progress": {"handlers": ["progress"], "level": "INFO", "propagate": False}
        },
    }
    logging.config.dictConfig(json.loads(json.dumps(config)))
    log = logging.getLogger("mimir.test.progress")
    (handler,) = log.handlers
    assert isinstance(handler, ProgressHandler)
    assert (handler.interval, handler.every, handler.every_seconds) == (0.2, 4, 30.0)
    for i in range(9):
        log.info({"i": i})
    handler.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("i=", 1)[1] for line in lines] == ["3", "7", "8"]


def test_a_forked_child_does_not_repeat_the_parents_line(tmp_path):
    """A child process starts from no entries: closing there prints nothing of the parent's."""
    path = tmp_path / "progress.txt"
    with open(path, "w", encoding="utf-8") as stream:
        handler = ProgressHandler(stream=stream, every=0, every_seconds=0)
        for i in range(5):
            handler.add_entry({"i": i})
        pid = os.fork()
        if pid == 0:  # the child: what logging.shutdown() would do at its exit
            code = 1
            try:
                handler.close()
                code = 0 if handler.count == 0 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handler.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("5 entries")


def test_a_new_standard_output_ends_the_line_on_the_old_one():
    """With sys.stdout replaced, the status line left on the old terminal is ended there."""
    first, second = FakeTerminal(), FakeTerminal()
    handler = ProgressHandler(width=80)
    with contextlib.redirect_stdout(first):
        handler.add_entry({"i": 0})
    with contextlib.redirect_stdout(second):
        handler.clock = lambda: 1e9  # the next entry is due at once
        handler.add_entry({"i": 1})
        handler.close()
    assert first.getvalue() == "\r1 entry  i=0" + ERASE + "\n"
    assert redraws(second.getvalue())[-1].startswith("2 entries")
    assert second.getvalue().endswith("i=1" + ERASE + "\n")
