"""Many processes into one collector: ZMQForwardHandler, Collector and ``mimir collect``.

Rows Z5, Z6, Z7 and S1-S4 of the reliability plan, with real processes and sockets on
127.0.0.1 (ephemeral ports).
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import logging.config
import multiprocessing
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
import warnings
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

zmq = pytest.importorskip("zmq")

import mimir  # noqa: E402
from mimir.stream.collector import Collector  # noqa: E402
from mimir.stream.forwarder import MAX_MESSAGE_BYTES, SPAN, ZMQForwardHandler  # noqa: E402

HERE = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
ANY_PORT = "tcp://127.0.0.1:0"


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.005)


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every entry of a .jsonl or .jsonl.gz log (each line must parse)."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        return [json.loads(line) for line in file.read().splitlines()]


def by_sender(entries: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[int]]:
    """The ``i`` of each entry, per (pid, name) of its source, in file order."""
    seen: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for entry in entries:
        seen[(entry["source"]["pid"], entry["source"].get("name"))].append(entry["i"])
    return seen


def forward_logger(handler: logging.Handler, name: str) -> logging.Logger:
    log = logging.getLogger(f"test_collector.{name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]
    return log


def spawn(*args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A collector on a free loopback port, writing tmp_path/run.jsonl.gz, running in a thread."""
    c = Collector(ANY_PORT, filename=tmp_path / "run.jsonl.gz", flush_interval=0.05)
    c.start()
    yield c
    c.stop()


def server_process(bind: str, filename: Path) -> tuple[subprocess.Popen[str], str]:
    proc = spawn(str(HERE / "collector_server.py"), bind, str(filename))
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    assert address.startswith("tcp://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
    return proc, address


# -- the basics ---------------------------------------------------------------------------


def test_entries_get_source_and_sequence(collector: Collector, tmp_path: Path) -> None:
    """Entries arrive once, in order, with the sender's host, pid and name under "source"."""
    handler = ZMQForwardHandler(collector.address, name="rank0")
    log = forward_logger(handler, "basic")
    for i in range(1000):
        log.info({"i": i})
    log.info("a message", extra={"i": 1000})
    handler.close()
    assert (handler.sent, handler.dropped) == (1001, 0)
    wait_until(lambda: collector.received == 1001)
    collector.stop()
    entries = read_entries(tmp_path / "run.jsonl.gz")
    assert [e["i"] for e in entries] == list(range(1001))
    assert entries[0]["source"] == {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "name": "rank0",
    }
    assert entries[-1]["message"] == "a message"
    (sender,) = collector.senders.values()
    assert (sender.received, sender.last_seq, sender.gaps, collector.bad_messages) == (
        1001,
        1001,
        0,
        0,
    )


def test_entry_too_long_is_reported_missing_where_it_was(
    collector: Collector, tmp_path: Path
) -> None:
    """An entry dropped for its length leaves its gap between its neighbours: a, b, [3], c, d."""
    handler = ZMQForwardHandler(collector.address, name="big")
    reports: list[str] = []  # what would go to stderr, with the 4 MB entry
    handler.handleError = lambda record: reports.append(str(sys.exc_info()[1]))  # type: ignore[method-assign]
    log = forward_logger(handler, "too_long")
    log.info({"i": "a"})
    log.info({"i": "b"})
    log.info({"i": "oversized", "pad": "x" * MAX_MESSAGE_BYTES})
    log.info({"i": "c"})
    log.info({"i": "d"})
    wait_until(lambda: collector.received == 4, what="the four entries that fit")
    handler.close()  # its thread has ended: the counts are final
    assert (handler.sent, handler.dropped) == (4, 1)
    (sender,) = collector.senders.values()
    assert sender.missing == [(3, 3)]  # the oversized entry was the third
    assert (sender.received, sender.last_seq, sender.gaps, sender.missed) == (4, 5, 1, 1)
    assert (collector.received, collector.gaps, collector.missed) == (4, 1, 1)
    collector.stop()
    assert [e["i"] for e in read_entries(tmp_path / "run.jsonl.gz")] == ["a", "b", "c", "d"]
    assert len(reports) == 1 and "larger than the collector accepts" in reports[0]


def test_p6_closed_forwarder_sends_again_as_the_same_sender(
    collector: Collector, tmp_path: Path
) -> None:
    """P6: after logging.shutdown() (what dictConfig runs), the next entries reach the
    collector from the same sender, its sequence going on: no restart, no gap."""
    handler = ZMQForwardHandler(collector.address, name="rank0")
    log = forward_logger(handler, "reopen")
    for i in range(10):
        log.info({"i": i})
    logging.shutdown([weakref.ref(handler)])
    for i in range(10, 20):
        log.info({"i": i})
    handler.close()
    assert (handler.sent, handler.dropped, handler.failures) == (20, 0, 0)
    wait_until(lambda: collector.received == 20)
    collector.stop()
    assert [e["i"] for e in read_entries(tmp_path / "run.jsonl.gz")] == list(range(20))
    (sender,) = collector.senders.values()
    assert (sender.last_seq, sender.gaps, collector.restarts) == (20, 0, 0)


def test_p6_collector_keeps_saving_after_dictconfig(tmp_path: Path) -> None:
    """P6: a dictConfig by other code closes the collector's own handlers; it saves on."""
    with Collector(ANY_PORT, filename=tmp_path / "run.jsonl.gz", stream=ANY_PORT) as c:
        c.start()
        handler = ZMQForwardHandler(c.address)
        handler.add_line(b'{"i":0}\n')
        handler.flush()
        wait_until(lambda: c.received == 1)
        logging.config.dictConfig({"version": 1})  # closes every handler, ours too
        handler.add_line(b'{"i":1}\n')
        handler.close()
        wait_until(lambda: c.received == 2)
    assert [e["i"] for e in read_entries(tmp_path / "run.jsonl.gz")] == [0, 1]


def test_plain_jsonl_and_existing_source_key(tmp_path: Path) -> None:
    """A .jsonl name gives a plain file; an entry's own "source" is replaced by the sender's."""
    with Collector(ANY_PORT, filename=tmp_path / "run.jsonl", source_key="source") as c:
        c.start()
        handler = ZMQForwardHandler(c.address)
        for line in (b'{"i":0,"source":"spoofed"}\n', b"{}\n", b'{"i": 2} \n', b'{"i":3}\n'):
            handler.add_line(line)
        handler.close()
        wait_until(lambda: c.received == 4)
    entries = read_entries(tmp_path / "run.jsonl")
    assert [e.get("i") for e in entries] == [0, None, 2, 3]
    assert all(e["source"] == {"host": socket.gethostname(), "pid": os.getpid()} for e in entries)


def test_forked_child_is_a_new_sender(collector: Collector, tmp_path: Path) -> None:
    """After fork the child is a new sender (own pid, sequence from 1); nothing duplicated."""
    handler = ZMQForwardHandler(collector.address, name="loader")
    log = forward_logger(handler, "fork")
    for i in range(100):
        log.info({"i": i})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            for i in range(1000, 1100):
                log.info({"i": i})
            handler.close()
        finally:
            os._exit(0)
    for i in range(100, 200):
        log.info({"i": i})
    handler.close()
    assert os.waitpid(pid, 0)[1] == 0
    wait_until(lambda: collector.received == 300)
    collector.stop()
    seen = by_sender(read_entries(tmp_path / "run.jsonl.gz"))
    assert seen == {
        (os.getpid(), "loader"): list(range(200)),
        (pid, "loader"): list(range(1000, 1100)),
    }
    assert sorted(s.last_seq for s in collector.senders.values()) == [100, 200]
    assert collector.gaps == 0


def test_dictconfig_pool_workers(collector: Collector, tmp_path: Path) -> None:
    """Pool workers configured by dictConfig from a JSON-serialisable dict all reach one log."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "collector": {
                "class": "mimir.stream.forwarder.ZMQForwardHandler",
                "address": collector.address,
                "name": "worker",
                "queue_size": 10000,
            }
        },
        "loggers": {"pool_work": {"handlers": ["collector"], "level": "INFO", "propagate": False}},
    }
    config = json.loads(json.dumps(config))
    context = multiprocessing.get_context("fork")
    with context.Pool(3, initializer=logging.config.dictConfig, initargs=(config,)) as pool:
        pids = pool.map(_pool_task, range(8))
        pool.close()
        pool.join()
    wait_until(lambda: collector.received == 8 * 500, what="8 x 500 entries")
    collector.stop()
    entries = read_entries(tmp_path / "run.jsonl.gz")
    assert sorted((e["task"], e["i"]) for e in entries) == [
        (t, i) for t in range(8) for i in range(500)
    ]
    assert {e["source"]["pid"] for e in entries} == set(pids)
    assert collector.gaps == collector.bad_messages == 0


def _pool_task(task: int) -> int:
    log = logging.getLogger("pool_work")
    for i in range(500):
        log.info({"task": task, "i": i})
    return os.getpid()


# -- Z5: shutdown with the collector gone or stuck ----------------------------------------


def test_z5_close_with_collector_gone() -> None:
    """Z5: with nobody listening, close() returns within 2 s and every entry is counted dropped."""
    handler = ZMQForwardHandler(f"tcp://127.0.0.1:{free_port()}")
    for i in range(20_000):
        handler.add_line(b'{"i":%d}\n' % i)
    start = time.monotonic()
    handler.close()
    assert time.monotonic() - start < 2.0
    assert (handler.sent, handler.dropped) == (0, 20_000)


def _flood_and_close(address: str) -> ZMQForwardHandler:
    handler = ZMQForwardHandler(address, queue_size=50_000)
    pad = b"x" * 200
    count = 300_000
    for i in range(count):
        handler.add_line(b'{"i":%d,"pad":"%s"}\n' % (i, pad))
    start = time.monotonic()
    handler.close()
    assert time.monotonic() - start < 2.0
    assert handler.sent + handler.dropped == count
    assert handler.dropped > 0
    return handler


def test_z5_close_with_collector_not_reading() -> None:
    """Z5: a collector that never reads: close() within 2 s; unsent entries counted."""
    context = zmq.Context()
    stuck = context.socket(zmq.PULL)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.bind("tcp://127.0.0.1:*")
    try:
        _flood_and_close(stuck.getsockopt(zmq.LAST_ENDPOINT).decode())
    finally:
        stuck.close(linger=0)
        context.term()


def test_z5_close_with_collector_stopped(tmp_path: Path) -> None:
    """Z5: a SIGSTOPped collector process: close() returns within 2 s; unsent entries counted."""
    proc, address = server_process(ANY_PORT, tmp_path / "run.jsonl.gz")
    try:
        probe = ZMQForwardHandler(address)
        probe.add_line(b'{"i":0}\n')
        probe.close()
        os.kill(proc.pid, signal.SIGSTOP)
        _flood_and_close(address)
    finally:
        proc.kill()
        os.kill(proc.pid, signal.SIGCONT)
        proc.wait()


# -- Z6: the collector killed and restarted -----------------------------------------------


def test_z6_collector_killed_and_restarted(tmp_path: Path) -> None:
    """Z6: collector SIGKILLed mid-stream and restarted: senders never block; gaps exact."""
    first, address = server_process(ANY_PORT, tmp_path / "first.jsonl.gz")
    stop_file = tmp_path / "stop"
    senders = [
        spawn(str(HERE / "collector_sender.py"), address, f"s{n}", "0", str(stop_file))
        for n in range(3)
    ]
    restarted = None
    try:
        for proc in senders:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "started"
        # Kill only once the first collector has committed entries from every sender:
        # a sender whose entries all waited in its own queue would reach the restarted
        # collector from entry 1 and show no gap there.
        first_file = tmp_path / "first.jsonl.gz"
        wait_until(
            lambda: len(by_sender(mimir.load(first_file))) == 3,
            what="the first collector has entries from every sender",
        )
        first.kill()
        first.wait()
        restarted = Collector(address, filename=tmp_path / "second.jsonl.gz", flush_interval=0.05)
        restarted.start()
        wait_until(lambda: len(restarted.senders) == 3, what="every sender heard from again")
        stop_file.touch()
        results = [json.loads(proc.communicate(timeout=60)[0]) for proc in senders]
        totals = {r["pid"]: r["logged"] for r in results}
        wait_until(
            lambda: {s.source["pid"]: s.last_seq for s in restarted.senders.values()} == totals,
            what="the last entry of every sender",
        )
        restarted.stop()
    finally:
        for proc in senders:
            proc.kill()
        if restarted is not None:
            restarted.stop()
    for result in results:
        assert result["slowest_call"] < 0.5, result  # never blocked on the network
        assert result["close_seconds"] < 2.0
    seen = by_sender(read_entries(tmp_path / "second.jsonl.gz"))
    assert restarted.gaps >= 3  # each sender at least joined late
    for sender in restarted.senders.values():
        pid = sender.source["pid"]
        got = [i + 1 for i in seen[(pid, sender.source["name"])]]  # entry i has sequence i + 1
        assert got == sorted(got)
        missing = {seq for first_, last in sender.missing for seq in range(first_, last + 1)}
        # What the restarted collector received and what it reported missing are
        # exactly 1..last, with no overlap.
        assert not missing & set(got)
        assert missing | set(got) == set(range(1, totals[pid] + 1))
        assert sender.missed == len(missing)
        assert sender.missing[0][0] == 1


# -- Z7: many senders, one file -----------------------------------------------------------


def test_z7_eight_senders_one_file(collector: Collector, tmp_path: Path) -> None:
    """Z7: 8 senders x 20,000 entries: every entry once, sequences contiguous, valid gzip."""
    senders = [
        spawn(str(HERE / "collector_sender.py"), collector.address, f"rank{n}", "20000")
        for n in range(8)
    ]
    results = [json.loads(proc.communicate(timeout=90)[0]) for proc in senders]
    assert all(r["dropped"] == 0 and r["sent"] == 20_000 for r in results), results
    wait_until(lambda: collector.received == 160_000, timeout=60, what="160,000 entries")
    collector.stop()
    path = tmp_path / "run.jsonl.gz"
    subprocess.run(["gzip", "-t", str(path)], check=True)
    seen = by_sender(read_entries(path))
    assert sorted(seen) == sorted((r["pid"], f"rank{n}") for n, r in enumerate(results))
    assert all(values == list(range(20_000)) for values in seen.values())
    assert (collector.gaps, collector.missed, collector.duplicates) == (0, 0, 0)


# -- S1: loopback by default ------------------------------------------------------------


def test_s1_loopback_default_and_wide_bind_warning(tmp_path: Path) -> None:
    """S1: loopback by default; a wider bind warns unless CURVE authenticates senders."""
    assert inspect.signature(Collector).parameters["bind"].default == "tcp://127.0.0.1:5555"
    assert (
        inspect.signature(ZMQForwardHandler)
        .parameters["address"]
        .default.startswith("tcp://127.0.0.1:")
    )
    from mimir.cli import collect as collector_cli

    assert (
        collector_cli.COMMAND.build_parser().parse_args(["--output", "x.gz"]).bind
        == "tcp://127.0.0.1:5555"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Collector(ANY_PORT).close()
    with pytest.warns(UserWarning, match="anyone who can reach the port"):
        Collector("tcp://*:0").close()
    zmq_auth = pytest.importorskip("zmq.auth")
    _, secret = zmq_auth.create_certificates(str(tmp_path), "server")
    with pytest.warns(UserWarning, match="any sender may connect"):
        Collector("tcp://*:0", curve_server_secret_key=secret).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Collector(
            "tcp://*:0", curve_server_secret_key=secret, curve_authorized_keys=tmp_path
        ).close()


# -- S2: CURVE ------------------------------------------------------------------------------


def test_s2_curve_refuses_unauthenticated_senders(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """S2: no keys, a wrong server key or an unknown key: nothing accepted; each logged."""
    zmq_auth = pytest.importorskip("zmq.auth")
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    server_public, server_secret = zmq_auth.create_certificates(str(keys), "server")
    other_public, _ = zmq_auth.create_certificates(str(keys), "other")
    alice_public, alice_secret = zmq_auth.create_certificates(str(keys), "alice")
    _, mallory_secret = zmq_auth.create_certificates(str(keys), "mallory")
    os.link(alice_public, allowed / "alice.key")
    caplog.set_level(logging.WARNING)
    with Collector(
        ANY_PORT,
        filename=tmp_path / "run.jsonl.gz",
        curve_server_secret_key=server_secret,
        curve_authorized_keys=allowed,
    ) as c:
        c.start()
        bad = {
            "nokeys": {},
            "wrongserver": {
                "curve_server_public_key": other_public,
                "curve_client_secret_key": alice_secret,
            },
            "mallory": {
                "curve_server_public_key": server_public,
                "curve_client_secret_key": mallory_secret,
            },
        }
        for name, kwargs in bad.items():
            refused = c.refused
            handler = ZMQForwardHandler(c.address, name=name, linger=0, **kwargs)
            handler.add_line(b'{"i":0}\n')
            wait_until(lambda r=refused: c.refused > r, what=f"{name} refused")
            handler.close()
        alice = ZMQForwardHandler(
            c.address,
            name="alice",
            curve_server_public_key=server_public,
            curve_client_secret_key=alice_secret,
        )
        for i in range(10):
            alice.add_line(b'{"i":%d}\n' % i)
        alice.close()
        wait_until(lambda: c.received == 10)
    assert [s.source["name"] for s in c.senders.values()] == ["alice"]
    assert [e["source"]["name"] for e in read_entries(tmp_path / "run.jsonl.gz")] == ["alice"] * 10
    denials = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert sum("handshake failed" in m for m in denials) >= 2  # no keys, wrong server key
    assert any("authentication refused" in m for m in denials)  # unknown client key


# -- S3: fuzzed frames and a pickle ---------------------------------------------------------


class _Evil:
    """Unpickling this would create a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_s3_fuzz_and_pickle_dropped_and_counted(tmp_path: Path) -> None:
    """S3: fuzzed frames and a pickle: nothing unpickled; each dropped and counted."""
    target = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(str(target)))
    header = b'F{"host":"h","pid":1,"run":"r1"}'
    rng = random.Random(7)
    malformed_messages = [
        [evil],
        [header, SPAN.pack(1, 1), evil],  # count 1 but no final newline
        [b"F" + evil, SPAN.pack(1, 1), b'{"i":0}\n'],
        [header, evil, b'{"i":0}\n'],
        [header, SPAN.pack(0, 1), b'{"i":0}\n'],
        [header, SPAN.pack(1, 2), b'{"i":0}\n'],
        [b'F{"host":1,"pid":1,"run":"x"}', SPAN.pack(1, 1), b'{"i":0}\n'],
        [b'F{"host":"h","pid":1,"run":"x","extra":1}', SPAN.pack(1, 1), b'{"i":0}\n'],
        [b"F" + b"{" * 2000, SPAN.pack(1, 1), b'{"i":0}\n'],
        *[
            [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.choice([1, 2, 4, 5]))]
            for _ in range(300)
        ],
        *[[header, rng.randbytes(rng.choice([0, 11, 13])), b"{}\n"] for _ in range(20)],
    ]
    bad_lines = [
        evil.replace(b"\n", b" ") + b"\n",
        b"\xff\xfe\n",
        b"[1, 2]\n",
        b"NaN\n",
        b'{"a":\n',
    ]
    with Collector(ANY_PORT, filename=tmp_path / "run.jsonl.gz") as c:
        c.start()
        context = zmq.Context()
        push = context.socket(zmq.PUSH)
        push.connect(c.address)
        for frames in malformed_messages:
            push.send_multipart(frames)
        good = b'{"i":0}\n'
        push.send_multipart([header, SPAN.pack(1, 1 + len(bad_lines)), good + b"".join(bad_lines)])
        wait_until(lambda: c.received == 1, what="the good entry after the bad ones")
        push.close(linger=0)
        context.term()
        handler = ZMQForwardHandler(c.address)
        handler.add_line(b'{"i":1}\n')
        handler.close()
        wait_until(lambda: c.received == 2)
    assert not target.exists()
    assert c.bad_messages == len(malformed_messages)
    assert c.bad_entries == len(bad_lines)
    assert [e["i"] for e in read_entries(tmp_path / "run.jsonl.gz")] == [0, 1]


def test_deep_nesting_is_a_malformed_entry_reported_per_sender_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Deeply nested lines are dropped and counted, said at 1, 2, 4... per sender, no traceback."""
    caplog.set_level(logging.WARNING)
    deep = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    with Collector(ANY_PORT, filename=tmp_path / "run.jsonl.gz") as c:
        c.start()
        context = zmq.Context()
        push = context.socket(zmq.PUSH)
        push.connect(c.address)
        for who in ("a", "b"):
            header = b'F{"host":"h","pid":1,"run":"%s"}' % who.encode()
            for seq in range(1, 6):
                push.send_multipart([header, SPAN.pack(2 * seq - 1, 2), b'{"i":%d}\n' % seq + deep])
        wait_until(lambda: c.received == 10 and c.bad_entries == 10, what="every message")
        push.close(linger=0)
        context.term()
    said = [r for r in caplog.records if "malformed entries" in r.getMessage()]
    assert len(said) == 6  # per sender: at its 1st, 2nd and 4th bad entry
    assert all(r.exc_info is None for r in caplog.records)
    assert said[-1].getMessage().endswith("4 from it so far")
    assert sorted(s.bad_entries for s in c.senders.values()) == [5, 5]
    assert [e["i"] for e in read_entries(tmp_path / "run.jsonl.gz")] == [1, 2, 3, 4, 5] * 2


# -- S4: oversized frames and a flood -----------------------------------------------------


def test_s4_oversized_frame_and_flood(tmp_path: Path) -> None:
    """S4: a frame over the limit cuts its peer off; a flooding peer does not stop others."""
    with Collector(ANY_PORT, filename=tmp_path / "run.jsonl.gz", max_message_bytes=64 << 10) as c:
        c.start()
        context = zmq.Context()
        big = context.socket(zmq.PUSH)
        big.connect(c.address)
        header = b'F{"host":"h","pid":1,"run":"big"}'
        line = b'{"pad":"%s"}\n' % (b"x" * (1 << 20))
        big.send_multipart([header, SPAN.pack(1, 1), line])
        flood = spawn(str(HERE / "collector_flood.py"), c.address, stdin=subprocess.PIPE)
        assert flood.stdout is not None and flood.stdin is not None
        assert flood.stdout.readline().strip() == "flooding"
        wait_until(lambda: c.bad_messages > 10_000, what="the flood to arrive")
        handler = ZMQForwardHandler(c.address, name="good")
        log = forward_logger(handler, "flood")
        for i in range(5000):
            log.info({"i": i})
        handler.close()
        wait_until(lambda: c.received == 5000, what="the good sender's entries")
        flood.stdin.close()
        flooded = int(flood.stdout.read().strip())
        assert flood.wait(timeout=30) == 0
        big.close(linger=0)
        context.term()
    assert flooded > 10
    assert "big" not in c.senders  # the oversized message never got through
    (good,) = [s for s in c.senders.values() if s.source.get("name") == "good"]
    assert (good.received, good.gaps) == (5000, 0)


# -- mimir collect ---------------------------------------------------------------------------


def test_cli_sigterm_leaves_valid_file(tmp_path: Path) -> None:
    """SIGTERM to `mimir collect` leaves a valid file holding everything it received."""
    path = tmp_path / "run.jsonl.gz"
    proc = spawn("-m", "mimir.cli.collect", "--bind", ANY_PORT, "--output", str(path))
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    address = banner.split("collecting on ")[1].split()[0]
    handler = ZMQForwardHandler(address, name="rank0")
    log = forward_logger(handler, "cli")
    for i in range(5000):
        log.info({"i": i})
    handler.close()
    assert handler.sent == 5000
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    received = int(out.split(" entries from")[0].split()[-1].replace(",", ""))
    subprocess.run(["gzip", "-t", str(path)], check=True)
    entries = read_entries(path)
    assert len(entries) == received
    assert [e["i"] for e in entries] == list(range(received))
    assert received == 5000


def test_restart_and_sender_eviction(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A new handler with the same host, pid and name is a restart; silent senders make room."""
    import mimir.stream.collector

    monkeypatch.setattr(mimir.stream.collector, "_EVICT_AFTER", 0.0)
    with Collector(ANY_PORT, filename=tmp_path / "run.jsonl.gz", max_senders=2) as c:
        c.start()
        for round_ in range(3):
            handler = ZMQForwardHandler(c.address, name="rank0")
            for i in range(10):
                handler.add_line(b'{"i":%d}\n' % i)
            handler.close()
            wait_until(lambda r=round_: c.received == 10 * (r + 1))
    assert c.restarts == 2
    assert len(c.senders) == 2  # the first was forgotten to make room for the third
    assert (c.gaps, c.bad_messages) == (0, 0)


def test_stop_from_another_thread_while_run_blocks(tmp_path: Path) -> None:
    """stop() from another thread ends a blocking run(), which closes the log itself."""
    import threading

    c = Collector(ANY_PORT, filename=tmp_path / "run.jsonl")
    runner = threading.Thread(target=c.run, kwargs={"handle_signals": False})
    runner.start()
    handler = ZMQForwardHandler(c.address)
    handler.add_line(b'{"i":0}\n')
    handler.close()
    wait_until(lambda: c.received == 1)
    c.stop()
    assert not runner.is_alive() or runner.join(5) is None
    assert not runner.is_alive()
    assert [e["i"] for e in read_entries(tmp_path / "run.jsonl")] == [0]


def test_z5_process_exits_quickly_with_collector_gone() -> None:
    """Z5: a process logging to a vanished collector exits within 2 s of its last entry."""
    script = (
        "import logging, sys\n"
        "from mimir.stream.forwarder import ZMQForwardHandler\n"
        f"logging.getLogger().addHandler(ZMQForwardHandler('tcp://127.0.0.1:{free_port()}'))\n"
        "for i in range(10000):\n"
        "    logging.warning({'i': i})\n"
        "print('done', flush=True)\n"
    )
    proc = spawn("-c", script)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"
    start = time.monotonic()
    proc.wait(timeout=10)
    assert time.monotonic() - start < 2.0
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_collector_republishes_with_replay(tmp_path: Path) -> None:
    """With ``stream``, entries are republished with their source and replayed to late joiners."""
    from mimir.stream import subscribe

    with Collector(ANY_PORT, stream=ANY_PORT, replay=100) as c:
        c.start()
        assert c.stream_address is not None and c.replay_address is not None
        handler = ZMQForwardHandler(c.address, name="rank1")
        for i in range(50):
            handler.add_line(b'{"i":%d}\n' % i)
        handler.close()
        wait_until(lambda: c.received == 50)
        with subscribe(c.stream_address, c.replay_address, timeout=10) as entries:
            got = [next(entries) for _ in range(50)]
    assert [e["i"] for e in got] == list(range(50))
    assert {e["source"]["name"] for e in got} == {"rank1"}
