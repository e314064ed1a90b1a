"""The logging contract (reliability rows P1, P2, P4) and interplay with stdlib logging."""

from __future__ import annotations

import collections
import logging
import logging.handlers
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import mimir
from mimir import JSONFormatter, JSONLFileHandler, MemoryHandler

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def make_logger(*handlers: logging.Handler, name: str = "mimir-test-contract") -> logging.Logger:
    """A private stdlib logger (not registered) at DEBUG with ``handlers`` attached."""
    logger = logging.Logger(name, logging.DEBUG)
    for handler in handlers:
        logger.addHandler(handler)
    return logger


class Unserializable:
    """A value only a default= (or Mímir's own conversions) can write."""


def refuse(value: object) -> object:
    """A default= that fails on every value it is asked about."""
    raise ValueError(f"cannot convert {type(value).__name__}")


def unencodable() -> list:
    """A value no JSON encoder can write: a list that contains itself."""
    loop: list = []
    loop.append(loop)
    return loop


def raising_formatter(exception: BaseException, hook: str) -> JSONFormatter:
    """A JSONFormatter whose python-json-logger hook ``hook`` raises ``exception``."""

    def fail(self, *args, **kwargs):
        raise exception

    return type("RaisingFormatter", (JSONFormatter,), {hook: fail})()


# Each handler kind with the hook its entries go through: files encode a line,
# the memory ring only builds the entry.
HANDLER_KINDS = {
    "jsonl": (lambda path: JSONLFileHandler(path, flush_interval=0), "jsonify_log_record"),
    "memory": (lambda path: MemoryHandler(10), "process_log_record"),
}


# -- P1: errors inside emit ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(HANDLER_KINDS))
def test_p1_formatter_error_goes_to_handle_error(kind, log_path, closing, capsys):
    """An exception raised by the formatter inside emit is reported and counted, not raised."""
    factory, hook = HANDLER_KINDS[kind]
    handler = closing(factory(log_path))
    handler.setFormatter(raising_formatter(ValueError("formatter exploded"), hook))
    make_logger(handler).info({"a": 1})
    assert handler.failures == 1
    err = capsys.readouterr().err
    assert "Logging error" in err
    assert "formatter exploded" in err


@pytest.mark.parametrize("exception", [SystemExit, KeyboardInterrupt, RecursionError])
@pytest.mark.parametrize("kind", list(HANDLER_KINDS))
def test_p1_control_flow_exceptions_propagate(kind, exception, log_path, closing):
    """SystemExit, KeyboardInterrupt and RecursionError raised in emit reach the caller."""
    factory, hook = HANDLER_KINDS[kind]
    handler = closing(factory(log_path))
    handler.setFormatter(raising_formatter(exception("stop"), hook))
    logger = make_logger(handler)
    with pytest.raises(exception):
        logger.info({"a": 1})
    assert handler.failures == 0


@pytest.mark.parametrize("exception", [SystemExit, KeyboardInterrupt, RecursionError])
@pytest.mark.parametrize("options", [{}, {"ensure_ascii": True}], ids=["orjson", "stdlib"])
def test_p1_control_flow_exceptions_from_default_propagate_through_logger(
    exception, options, log_path
):
    """A default= that raises SystemExit/KeyboardInterrupt/RecursionError stops Logger.log."""

    def default(obj):
        raise exception("stop")

    with mimir.Logger(filename=log_path, formatter=None, default=default, **options) as logger:
        with pytest.raises(exception):
            logger.log({"a": Unserializable()})
        logger.log({"b": 2})
    assert mimir.load(log_path) == [{"b": 2}]


def test_p1_serialization_error_goes_to_handle_error(log_path, closing, capsys):
    """An unserializable entry is reported through handleError with its key path, and counted."""
    handler = closing(JSONLFileHandler(log_path, flush_interval=0))
    handler.setFormatter(JSONFormatter(default=refuse))
    make_logger(handler).info({"data": [Unserializable()]})
    assert handler.failures == 1
    err = capsys.readouterr().err
    assert "entry['data'][0]" in err
    assert "default=" in err


def test_p1_serialization_error_through_mimir_logger(log_path, capsys):
    """mimir.Logger.log of an unserializable entry never raises; the failure is counted."""
    with mimir.Logger(filename=log_path, maxlen=5, formatter=None) as logger:
        logger.log({"data": unencodable()})
        failures = sum(getattr(h, "failures", 0) for h in logger.logger.handlers)
    assert failures == 1
    assert "entry['data']" in capsys.readouterr().err


def test_p1_io_error_goes_to_handle_error(capsys, full_disk):
    """A write that fails (a full disk) is reported through handleError and counted."""
    handler = JSONLFileHandler(full_disk, flush_interval=0)
    logger = make_logger(handler)
    logger.info({"a": 1})
    assert handler.failures >= 1
    assert handler.written == 0
    err = capsys.readouterr().err
    assert "could not write" in err
    assert "File too large" in err  # the OSError itself is in the report
    logging.raiseExceptions = False
    handler.close()


def test_p1_io_error_in_the_background_thread_is_counted(wait_until, capsys, full_disk):
    """A write failing on the writer thread is reported and counted, not lost silently."""
    handler = JSONLFileHandler(full_disk, flush_interval=0.01)
    make_logger(handler).info({"a": 1})
    try:
        assert wait_until(lambda: handler.failures >= 1, timeout=5.0)
        assert handler.written == 0
    finally:
        logging.raiseExceptions = False
        handler.close()
    assert "could not write" in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["serialization", "io", "formatter"])
def test_p1_without_raise_exceptions_nothing_is_printed_but_failures_count(
    failure, log_path, closing, capsys, full_disk
):
    """With logging.raiseExceptions = False nothing reaches stderr, yet failures are counted."""
    logging.raiseExceptions = False
    if failure == "io":
        handler = closing(JSONLFileHandler(full_disk, flush_interval=0))
    else:
        handler = closing(JSONLFileHandler(log_path, flush_interval=0))
    if failure == "formatter":
        handler.setFormatter(raising_formatter(ValueError("boom"), "jsonify_log_record"))
    entry = {"x": unencodable()} if failure == "serialization" else {"x": 1}
    make_logger(handler).info(entry)
    assert handler.failures >= 1
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_p1_nothing_logged_before_a_failure_is_lost(log_path, closing):
    """Entries before and after a failing entry all reach the file and the ring."""
    logging.raiseExceptions = False
    file_handler = closing(JSONLFileHandler(log_path, flush_interval=60))
    ring = MemoryHandler(100)
    logger = make_logger(file_handler, ring)
    for i in range(10):
        logger.info({"i": i})
    logger.info({"i": "bad", "x": unencodable()})
    for i in range(10, 20):
        logger.info({"i": i})
    file_handler.close()
    assert mimir.load(log_path) == [{"i": i} for i in range(20)]
    assert [entry["i"] for entry in ring] == [*range(10), "bad", *range(10, 20)]
    assert file_handler.failures == 1


def test_p1_failed_writes_are_kept_and_retried(tmp_path):
    """A write refused by the OS (file size limit) leaves no partial line and succeeds on retry."""
    path = tmp_path / "limited.jsonl"
    script = textwrap.dedent(
        """
        import logging, resource, signal, sys
        import mimir

        path = sys.argv[1]
        logging.raiseExceptions = False
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        handler = mimir.JSONLFileHandler(path, flush_interval=600)
        logger = logging.Logger("limited")
        logger.addHandler(handler)
        logger.info({"i": 0})
        handler.flush()
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        for i in range(1, 50):
            logger.info({"i": i, "padding": "p" * 20})
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, hard))
        handler.flush()
        with open(path, "rb") as file:
            data = file.read()
        assert data.endswith(b"\\n"), data
        assert handler.failures == 1, handler.failures
        written_while_limited = handler.written
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        handler.flush()
        assert handler.written == 50, handler.written
        handler.close()
        print(written_while_limited)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 1  # only the first entry got in while the limit held
    entries = mimir.load(path)
    assert [entry["i"] for entry in entries] == list(range(50))


# -- P2: Mímir's own warnings and errors while its handlers sit on the root logger -----


def run_in_thread(target, timeout: float = 30.0) -> list[BaseException]:
    """Run ``target`` in a thread; fail if it does not finish (a deadlock) within ``timeout``."""
    errors: list[BaseException] = []

    def wrapper():
        try:
            target()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=wrapper, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "deadlock: logging did not finish"
    return errors


class CountRecords(logging.Handler):
    """Counts the records that reach it, by logger name."""

    def __init__(self):
        super().__init__()
        self.names: collections.Counter[str] = collections.Counter()

    def emit(self, record):
        self.names[record.name] += 1


def test_p2_own_warnings_and_errors_with_handlers_on_root(tmp_path, capsys):
    """A torn-line warning and a serialization error, with Mímir on root: no hang, no recursion."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root_file = JSONLFileHandler(tmp_path / "root.jsonl", flush_interval=0.01)
    ring = MemoryHandler(100)
    counter = CountRecords()
    for handler in (root_file, ring, counter):
        root.addHandler(handler)
    logging.captureWarnings(True)
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b'{"a":1}\n{"b":')
    child = logging.getLogger("mimir.test.p2")
    opened = []

    def work():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            opened.append(JSONLFileHandler(torn))  # warns through logging
        child.info({"i": 0})
        child.info({"bad": unencodable()})
        child.info({"i": 1})
        root_file.flush()

    errors = run_in_thread(work)
    try:
        assert errors == []
        messages = [entry.get("message", "") for entry in ring]
        assert any("incomplete" in message for message in messages)
        assert ring[-1] == {"i": 1}
        assert root_file.failures == 1
        assert counter.names["mimir.test.p2"] == 3  # reporting created no new records
        assert counter.names["py.warnings"] == 1
        entries = mimir.load(tmp_path / "root.jsonl")
        assert {"i": 0} in entries
        assert {"i": 1} in entries
        assert any("incomplete" in entry.get("message", "") for entry in entries)
        assert capsys.readouterr().err.count("entry['bad']") == 1
    finally:
        logging.captureWarnings(False)
        for handler in (root_file, ring, counter):
            root.removeHandler(handler)
        root_file.close()
        for handler in opened:
            handler.close()


def test_p2_background_write_failures_with_handlers_on_root(wait_until, capsys, full_disk):
    """A writer thread failing while Mímir handlers sit on root reports once, no recursion."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    failing = JSONLFileHandler(full_disk, flush_interval=0.005)
    ring = MemoryHandler(10_000)
    counter = CountRecords()
    for handler in (failing, ring, counter):
        root.addHandler(handler)
    child = logging.getLogger("mimir.test.p2-io")

    def work():
        for i in range(2000):
            child.info({"i": i})

    try:
        errors = run_in_thread(work)
        assert errors == []
        assert wait_until(lambda: failing.failures >= 1, timeout=5.0)
        assert len(ring) == 2000
        assert counter.names == {"mimir.test.p2-io": 2000}
        assert capsys.readouterr().err.count("could not write") == 1
    finally:
        logging.raiseExceptions = False
        for handler in (failing, ring, counter):
            root.removeHandler(handler)
        failing.close()


def test_p2_handle_error_output_is_not_logged_again(log_path, capsys):
    """A Mímir handler's error report goes to stderr, not back through logging (no recursion)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    handler = JSONLFileHandler(log_path, flush_interval=0)
    counter = CountRecords()
    root.addHandler(handler)
    root.addHandler(counter)
    try:
        errors = run_in_thread(
            lambda: [logging.getLogger("mimir.test.p2-rec").info({"x": unencodable()})]
        )
        assert errors == []
        assert sum(counter.names.values()) == 1
        assert handler.failures == 1
        assert "Logging error" in capsys.readouterr().err
    finally:
        root.removeHandler(handler)
        root.removeHandler(counter)
        handler.close()


# -- P4: fork ---------------------------------------------------------------------------


def _child_logs(logger: logging.Logger, handler: JSONLFileHandler, path, flush: bool) -> int:
    """What a forked child does; returns its exit code (0 ok, others name the failure)."""
    if any(t.name.startswith("mimir") for t in threading.enumerate()):
        return 3  # a parent's writer thread is visible in the child
    for i in range(20):
        logger.info({"child": i, "pad": "c" * 20})
    # The child's own writer (woken by flush_bytes) writes without flush().
    deadline = time.monotonic() + 10
    while b'"child"' not in path.read_bytes():
        if time.monotonic() > deadline:
            return 4
        time.sleep(0.01)
    if flush:
        handler.flush()
    return 0


def _check_once_each(path, parent: int, child: int) -> None:
    entries = mimir.load(path)
    parents = [e["parent"] for e in entries if "parent" in e]
    children = [e["child"] for e in entries if "child" in e]
    assert sorted(parents) == list(range(parent))
    assert sorted(children) == list(range(child))
    assert len(entries) == parent + child


@needs_fork
def test_p4_os_fork_does_not_duplicate_buffered_entries(log_path):
    """After os.fork() with entries buffered, every entry is in the file exactly once."""
    handler = JSONLFileHandler(log_path, flush_interval=600, flush_bytes=256)
    logger = make_logger(handler)
    logger.info({"parent": 0})
    for i in range(1, 10):
        logger.info({"parent": i})  # buffered: under flush_bytes, long before flush_interval
    assert log_path.read_bytes() == b""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = _child_logs(logger, handler, log_path, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.info({"parent": 10})
    handler.close()
    _check_once_each(log_path, parent=11, child=20)


@needs_fork
def test_p4_logging_shutdown_in_a_child_writes_only_its_entries(log_path):
    """logging.shutdown() in a forked child (what atexit runs) writes the child's entries only."""
    handler = JSONLFileHandler(log_path, flush_interval=600)
    logger = make_logger(handler)
    for i in range(5):
        logger.info({"parent": i})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            for i in range(3):
                logger.info({"child": i})
            logging.shutdown([weakref_to(handler)])
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    handler.close()
    _check_once_each(log_path, parent=5, child=3)


def weakref_to(obj):
    """A callable returning ``obj``, as logging.shutdown expects of its handler list."""
    return lambda: obj


@needs_fork
@pytest.mark.parametrize("flush", [True, False], ids=["child-flushes", "child-just-returns"])
def test_p4_multiprocessing_fork_children(log_path, flush):
    """multiprocessing 'fork' children, flushing or just returning, get every entry in once."""
    # A child that just returns (as a DataLoader worker does) must not lose what it logged.
    # Small flush_bytes lets a flushing child's own writer run; the default keeps a
    # returning child's entries buffered until the child's exit.
    handler = JSONLFileHandler(log_path, flush_interval=600, flush_bytes=256 if flush else 1 << 20)
    logger = make_logger(handler)
    for i in range(10):
        logger.info({"parent": i})
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def child(number: int) -> None:
        code = 1
        try:
            if any(t.name.startswith("mimir") for t in threading.enumerate()):
                code = 3
            else:
                for i in range(number * 100, number * 100 + 20):
                    logger.info({"child": i, "pad": "c" * 20})
                if flush:
                    handler.flush()
                code = 0
        finally:
            results.put(code)

    processes = [context.Process(target=child, args=(n,)) for n in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    codes = sorted(results.get(timeout=10) for _ in processes)
    assert codes == [0, 0, 0]
    assert [process.exitcode for process in processes] == [0, 0, 0]
    handler.close()
    entries = mimir.load(log_path)
    assert sorted(e["parent"] for e in entries if "parent" in e) == list(range(10))
    assert sorted(e["child"] for e in entries if "child" in e) == [
        n * 100 + i for n in range(3) for i in range(20)
    ]


@needs_fork
def test_p4_parent_keeps_writing_after_fork(log_path, wait_until):
    """The parent's writer thread keeps working after a fork."""
    handler = JSONLFileHandler(log_path, flush_interval=0.02)
    logger = make_logger(handler)
    logger.info({"parent": 0})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    logger.info({"parent": 1})
    try:
        assert wait_until(lambda: log_path.read_bytes().count(b"\n") == 2, timeout=5.0)
    finally:
        handler.close()
    _check_once_each(log_path, parent=2, child=0)


# -- interplay with the rest of logging ---------------------------------------------------


def test_records_stay_picklable_after_mimir_handled_them(log_path, closing):
    """A record a Mímir handler formatted can still be pickled by SocketHandler/QueueHandler."""
    file_handler = closing(JSONLFileHandler(log_path, flush_interval=600))
    ring = MemoryHandler(5)
    pickled = []

    class Pickling(logging.Handler):
        def emit(self, record):
            pickled.append(pickle.loads(pickle.dumps(record)))
            socket_form = logging.handlers.SocketHandler("localhost", None).makePickle(record)
            pickled.append(socket_form)

    logger = make_logger(file_handler, ring, Pickling())
    logger.info({"loss": 0.5})
    logger.info("text %s", "message")
    assert len(pickled) == 4
    assert pickled[0].msg == {"loss": 0.5}


def test_stdlib_handlers_work_beside_mimir_handlers(log_path, closing):
    """A StreamHandler with a plain formatter on the same logger still prints the record."""
    import io

    stream = io.StringIO()
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    file_handler = closing(JSONLFileHandler(log_path, flush_interval=600))
    logger = make_logger(file_handler, plain)
    logger.warning({"a": 1})
    logger.warning("plain %d", 2)
    file_handler.close()
    assert stream.getvalue() == "WARNING {'a': 1}\nWARNING plain 2\n"
    assert mimir.load(log_path) == [{"a": 1}, {"message": "plain 2"}]


class PassThroughQueueHandler(logging.handlers.QueueHandler):
    """The stdlib recipe for structured messages: enqueue records unformatted."""

    def prepare(self, record):
        return record


def test_queue_handler_and_listener_deliver_entries(log_path):
    """Entries sent through a pass-through QueueHandler and a QueueListener reach Mímir intact."""
    import queue

    records: queue.Queue = queue.Queue()
    file_handler = JSONLFileHandler(log_path, flush_interval=600)
    ring = MemoryHandler(10)
    listener = logging.handlers.QueueListener(records, file_handler, ring)
    listener.start()
    logger = make_logger(PassThroughQueueHandler(records))
    try:
        logger.info({"loss": 0.5}, extra={"run": "r"})
    finally:
        listener.stop()
        file_handler.close()
    assert ring[:] == [{"loss": 0.5, "run": "r"}]
    assert mimir.load(log_path) == [{"loss": 0.5, "run": "r"}]


def test_importing_mimir_configures_nothing():
    """Importing mimir adds no handler anywhere and changes no logger level."""
    script = textwrap.dedent(
        """
        import logging
        def state():
            root = logging.root
            return list(root.handlers), root.level, dict(root.manager.loggerDict)
        before = state()
        import mimir, mimir.serialization, mimir.cli
        after = state()
        assert before[:2] == after[:2], (before, after)
        assert not [n for n in after[2] if n.startswith("mimir")], after[2]
        import sys
        assert "numpy" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _interrupt_add_line(handler: logging.Handler, lock: threading.Lock) -> tuple[int, int]:
    """Call add_line in a loop while a timer raises KeyboardInterrupt every 0.1 ms.

    After each interrupt the handler's lock must be free. Returns (completed calls,
    interrupted calls). The handler's thread is started first, and its batches are
    large: what is exercised is the path every entry takes. (The rare wake-up of the
    thread goes through threading.Event, which the standard library does not make
    safe against an interrupt landing inside it.)
    """
    handler.add_line(b'{"i": 0}\n')
    armed = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal armed
        if armed:
            armed = False
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    done = interrupted = 0
    signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
    try:
        while interrupted < 300:
            try:
                armed = True
                while True:
                    handler.add_line(b'{"i": 1}\n')
                    done += 1
            except KeyboardInterrupt:
                interrupted += 1
                assert not lock.locked(), "a KeyboardInterrupt left the handler's lock held"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return done, interrupted


def test_ctrl_c_while_logging_leaves_no_lock_held(tmp_path):
    """A KeyboardInterrupt (Ctrl-C) landing anywhere in add_line: the handler still works."""
    pytest.importorskip("zmq")
    from mimir.stream.forwarder import ZMQForwardHandler
    from mimir.stream.publisher import ZMQStreamHandler

    path = tmp_path / "run.jsonl"
    handler = JSONLFileHandler(path, flush_interval=60, flush_bytes=1 << 30)
    done, interrupted = _interrupt_add_line(handler, handler._buffer_lock)
    handler.close()
    assert 1 + done <= len(path.read_bytes().splitlines()) <= 1 + done + interrupted
    stream = ZMQStreamHandler("tcp://127.0.0.1:0", None)
    forward = ZMQForwardHandler("tcp://127.0.0.1:9", queue_size=10_000_000)
    try:
        for other in (stream, forward):
            _interrupt_add_line(other, other._lock)
    finally:
        stream.close()
        forward.close()
