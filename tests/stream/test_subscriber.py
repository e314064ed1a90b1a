"""Streaming over ZeroMQ: ZMQStreamHandler and mimir.stream (rows Z1-Z5, S1-S4, P3, P4).

Every socket is real, on 127.0.0.1, with ephemeral ports.
"""

from __future__ import annotations

import itertools
import json
import logging
import logging.config
import os
import pickle
import random
import socket
import struct
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest

zmq = pytest.importorskip("zmq")

from mimir.stream import (  # noqa: E402
    PublisherRestartWarning,
    StreamGapWarning,
    StreamWarning,
    follow,
    subscribe,
)
from mimir.stream.protocol import (  # noqa: E402
    KIND_ANNOUNCE,
    KIND_HEARTBEAT,
    ProtocolError,
    decode_stream,
)
from mimir.stream.publisher import MAX_REQUEST_SIZE, ZMQStreamHandler, is_loopback  # noqa: E402

ANY = "tcp://127.0.0.1:*"
N = 50

pytestmark = pytest.mark.filterwarnings("ignore::mimir.stream.StreamGapWarning")


@pytest.fixture
def publish(closing, stdlib_logger):
    """Make a ZMQStreamHandler on ephemeral loopback ports, attached to a fresh logger."""

    def make(**kwargs: Any) -> tuple[ZMQStreamHandler, logging.Logger]:
        kwargs.setdefault("address", ANY)
        kwargs.setdefault("replay_address", ANY)
        handler = closing(ZMQStreamHandler(**kwargs))
        stdlib_logger.addHandler(handler)
        return handler, stdlib_logger

    return make


@pytest.fixture
def context():
    """A ZeroMQ context shared by the clients of one test, terminated at its end."""
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def log_range(logger: logging.Logger, first: int, last: int) -> None:
    for i in range(first, last + 1):
        logger.info({"i": i})


def read_until(sub: Any, last: int, into: list[tuple[int, Any]] | None = None) -> list:
    """Read entries until the one with sequence number ``last``; return (seq, entry) pairs."""
    got = [] if into is None else into
    while sub.last_seq < last:
        entry = next(sub)
        got.append((sub.last_seq, entry))
    return got


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)
    return result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def assert_contiguous(got: list[tuple[int, Any]], first: int, last: int) -> None:
    seqs = [seq for seq, _ in got]
    assert seqs == list(range(first, last + 1))
    assert all(entry["i"] == seq for seq, entry in got)


# -- Z1: late joiners ----------------------------------------------------------------


def replay_of(handler: ZMQStreamHandler, how: str) -> dict[str, Any]:
    """The replay options of subscribe(): the replay address given, or none (announced)."""
    return {"replay_address": handler.replay_address} if how == "given" else {}


@pytest.mark.parametrize("how", ["given", "announced"])
@pytest.mark.parametrize("k", [0, 1, N - 1, N, N + 1, 10 * N])
def test_z1_join_after_k_entries(publish, k, how):
    """Joining after K entries gives all from 1 if K <= N, else says the first it could get."""
    handler, logger = publish(replay=N)
    log_range(logger, 1, k)
    handler.flush()
    with subscribe(handler.address, timeout=10, **replay_of(handler, how)) as sub:
        sub.sync()
        flow = threading.Thread(target=log_range, args=(logger, k + 1, k + 200))
        flow.start()
        got = read_until(sub, k + 200)
        flow.join()
    first = 1 if k <= N else k - N + 1
    assert sub.replay_last == k
    assert sub.first_seq == first
    assert_contiguous(got, first, k + 200)
    assert (sub.gaps, sub.missed) == ((0, 0) if k <= N else (1, k - N))
    assert sub.restarts == 0
    assert sub.replay_address == handler.replay_address


@pytest.mark.parametrize("how", ["given", "announced"])
def test_z1_join_while_entries_flow_at_full_speed(publish, how):
    """Joining N=1000 mid-burst: contiguous from the replay's start, no gap, no duplicate."""
    n = 1000
    total = 20_000
    handler, logger = publish(replay=n)
    flow = threading.Thread(target=log_range, args=(logger, 1, total))
    flow.start()
    wait_for(lambda: handler.sent >= 300)
    with subscribe(handler.address, timeout=10, **replay_of(handler, how)) as sub:
        got = read_until(sub, total)
    flow.join()
    assert handler.dropped == 0
    # Everything the replay held, at least, and from 1 if it held the whole run.
    assert sub.first_seq <= max(1, sub.replay_last - n + 1)
    assert_contiguous(got, sub.first_seq, total)
    assert sub.gaps == (sub.first_seq > 1)
    assert sub.missed == sub.first_seq - 1


def test_z1_join_while_another_process_streams(tmp_path):
    """A client joining a publisher in another process mid-stream gets a contiguous stream."""
    import subprocess

    ready = tmp_path / "addresses.json"
    script = Path(__file__).with_name("stream_publisher.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ready), "1000", "30000"],
        stdin=subprocess.PIPE,
    )
    try:
        addresses = json.loads(wait_for(lambda: ready.exists() and ready.read_text()))
        with subscribe(addresses["address"], addresses["replay_address"], timeout=10) as sub:
            got = read_until(sub, 30_000)
        assert_contiguous(got, sub.first_seq, 30_000)
        assert sub.missed == sub.first_seq - 1
        assert sub.gaps == (sub.first_seq > 1)
    finally:
        proc.stdin.close()
        assert proc.wait(10) == 0


# -- Z2: many clients -------------------------------------------------------------------


def test_z2_hundred_clients_join_during_a_burst(publish, context):
    """100 clients joining at random moments each see a stream increasing by 1 from its snapshot."""
    handler, logger = publish(replay=200)
    rng = random.Random(2)
    done = threading.Event()
    count = [0]

    def burst() -> None:
        i = 0
        while not done.is_set() or i < 500:
            i += 1
            logger.info({"i": i})
            if i % 2 == 0:
                time.sleep(0.001)  # pacing: each entry goes to up to 100 clients
        count[0] = i

    thread = threading.Thread(target=burst)
    thread.start()
    subs = []
    try:
        for _ in range(100):
            target = handler.sent + rng.randrange(0, 10)
            wait_for(lambda t=target: handler.sent >= t)
            sub = subscribe(handler.address, handler.replay_address, timeout=10, context=context)
            subs.append(sub)
            sub.sync()
        done.set()
        thread.join()
        total = count[0]
        for sub in subs:
            got = read_until(sub, total)
            assert_contiguous(got, sub.first_seq, total)
            assert sub.missed == sub.first_seq - 1
    finally:
        done.set()
        thread.join()
        for sub in subs:
            sub.close()
    assert handler.dropped == 0


# -- Z3: a stalled client and a fast one -------------------------------------------------


def test_z3_stalled_client_sees_every_gap_fast_client_loses_nothing(publish):
    """Over 100,000 entries a fast client loses none; one that stops reading reports each gap."""
    total = 100_000
    # Entries go out in batches of up to 64 kB, one message each: 200 messages per
    # subscriber let the fast client ride out scheduling delays, while the stalled
    # one loses what exceeds them and its socket buffers (40 MB are sent).
    handler, logger = publish(replay=10, hwm=200, heartbeat=0.2)
    gaps: list[tuple[int, int]] = []
    fast = subscribe(handler.address, handler.replay_address, timeout=20)
    stalled = subscribe(
        handler.address,
        handler.replay_address,
        timeout=0.5,
        hwm=10,
        on_gap=lambda a, b: gaps.append((a, b)),
    )
    try:
        fast.sync()
        stalled.sync()
        logger.info({"i": 1})
        fast_got = read_until(fast, 1)
        stalled_got = read_until(stalled, 1)
        reader = threading.Thread(target=read_until, args=(fast, total, fast_got))
        reader.start()
        padding = "x" * 400
        for i in range(2, total + 1):  # returns: emit never waits for the stalled client
            logger.info({"i": i, "padding": padding})
        reader.join(60)
        assert not reader.is_alive()
        assert handler.dropped == 0
        assert_contiguous(fast_got, 1, total)
        assert (fast.gaps, fast.missed) == (0, 0)
        # The stalled client resumes: it reads what ZeroMQ kept, and learns of the
        # rest from later entries (logged until one gets through) and heartbeats.
        end = total
        while stalled.last_seq <= total:
            try:
                entry = next(stalled)
            except TimeoutError:
                end += 1
                logger.info({"i": end})
                continue
            stalled_got.append((stalled.last_seq, entry))
    finally:
        fast.close()
        stalled.close()
    received = {seq for seq, _ in stalled_got}
    assert len(received) == len(stalled_got)  # no duplicates
    missed = {seq for a, b in gaps for seq in range(a, b + 1)}
    assert stalled.gaps == len(gaps) > 0
    assert stalled.missed == len(missed) > 0
    assert not (received & missed)
    assert received | missed == set(range(1, stalled.last_seq + 1))


# -- Z4: abusive replay requests ---------------------------------------------------------


def _vanishing_requests(address: str, count: int) -> None:
    """``count`` DEALERs each send a replay request and go away without reading the reply."""
    for start in range(0, count, 500):  # a context holds at most 1023 sockets
        ctx = zmq.Context()
        try:
            for _ in range(min(500, count - start)):
                dealer = ctx.socket(zmq.DEALER)
                dealer.connect(address)
                dealer.send(b"REPLAY")
                dealer.close(linger=2000)
        finally:
            ctx.term()  # returns once every request is delivered


def test_z4_vanished_requesters_and_malformed_frames(publish, context):
    """Thousands of vanished requesters and malformed frames: memory bounded, server serving."""
    handler, logger = publish(replay=500)
    for i in range(1, 501):
        logger.info({"i": i, "padding": "x" * 250})  # each reply is about 140 kB
    handler.flush()
    _vanishing_requests(handler.replay_address, 300)  # warm up the allocator
    wait_for(lambda: handler.replays >= 300)
    before = rss_bytes()
    _vanishing_requests(handler.replay_address, 2000)
    wait_for(lambda: handler.replays >= 2300)
    growth = rss_bytes() - before
    # Kept, 2000 replies would be 280 MB; the allocator's own slack is tens of MB.
    assert growth < 100 << 20, f"memory grew by {growth >> 20} MB"

    malformed = [
        [b""],
        [b"REPLA"],
        [b"replay"],
        [b"REPLAY", b"extra"],
        [b"REPLAY" + b"\0" * 7],
        [b"REPLAY" + b"\0" * 9],
        [b"\xff" * MAX_REQUEST_SIZE],
        [b"", b"", b"REPLAY"],
        [b"x"] * 20,
    ]
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(handler.replay_address)
    for frames in malformed:
        dealer.send_multipart(frames)
    wait_for(lambda: handler.bad_requests == len(malformed))
    assert handler.failures == 0

    dealer.send(b"REPLAY" + struct.pack(">Q", 495))
    assert dealer.poll(5000)
    reply = dealer.recv_multipart()
    assert len(reply) == 4
    assert reply[2] == struct.pack(">QI", 496, 5)  # one run: entries 496 to 500
    lines = reply[3].split(b"\n")
    assert lines.pop() == b""
    assert [json.loads(line)["i"] for line in lines] == [496, 497, 498, 499, 500]
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        got = read_until(sub, 500)
    assert_contiguous(got, 1, 500)


# -- Z5: shutdown with a stuck peer -----------------------------------------------------


def test_z5_close_within_two_seconds_with_a_stuck_subscriber(publish, context):
    """close() returns within 2 s with a subscriber reading nothing; every entry sent or counted."""
    handler, logger = publish(replay=10, hwm=10, linger=1.0)
    stuck = context.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 4096)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(handler.address)
    assert stuck.poll(5000)  # the welcome heartbeat: subscribed
    payload = "x" * 1000
    for i in range(20_000):
        logger.info({"i": i, "payload": payload})  # 20 MB: far more than the socket buffers
    start = time.monotonic()
    handler.close()
    elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert handler.sent + handler.dropped == 20_000
    handler.close()  # idempotent
    logger.info({"after": "close"})  # reopens, as a FileHandler does
    handler.close()
    assert handler.sent + handler.dropped == 20_001


def test_z5_close_with_the_queue_full_counts_what_was_not_sent(publish):
    """Entries queued at close() are published or counted as dropped, never lost silently."""
    handler, logger = publish(replay=0, queue_size=50_000)
    log_range(logger, 1, 50_000)
    handler.close()
    assert handler.sent + handler.dropped == 50_000
    assert not handler._thread.is_alive()


# -- S1: where the sockets listen -------------------------------------------------------


def test_s1_defaults_listen_on_loopback_only(publish):
    """The default addresses are on 127.0.0.1, and a bound handler reports a loopback endpoint."""
    import inspect

    defaults = inspect.signature(ZMQStreamHandler).parameters
    assert defaults["address"].default.startswith("tcp://127.0.0.1:")
    assert defaults["replay_address"].default.startswith("tcp://127.0.0.1:")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handler, _ = publish(replay=5)
    for endpoint in (handler.address, handler.replay_address):
        assert endpoint.startswith("tcp://127.0.0.1:")
        assert is_loopback(endpoint)
        port = int(endpoint.rsplit(":", 1)[1])
        assert port > 0
        for host in _non_loopback_addresses():
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((host, port)) != 0


def _non_loopback_addresses() -> list[str]:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            host = s.getsockname()[0]
    except OSError:
        return []
    return [] if host.startswith("127.") else [host]


@pytest.mark.parametrize("address", ["tcp://*:0", "tcp://0.0.0.0:*"])
def test_s1_wider_bind_warns(publish, address):
    """Binding beyond loopback without CURVE client authentication warns that anyone can read."""
    with pytest.warns(UserWarning, match="readable by anyone"):
        handler, _ = publish(address=address, replay=0)
    assert not is_loopback(handler.address)


def test_s1_wider_bind_with_curve_authentication_does_not_warn(publish, tmp_path):
    """With CURVE and authorized client keys, a wide bind is silent."""
    keys = _make_keys(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        publish(
            address="tcp://*:0",
            replay=0,
            curve_server_secret_key=keys["server_secret"],
            curve_authorized_keys=keys["authorized"],
        )


def test_port_in_use_is_a_clear_error(publish):
    """Binding an address already in use raises OSError naming it."""
    handler, _ = publish(replay=0)
    with pytest.raises(OSError, match="already in use") as info:
        ZMQStreamHandler(address=handler.address, replay=0)
    assert handler.address in str(info.value)


# -- S2: CURVE ----------------------------------------------------------------------------


def _make_keys(tmp_path: Path) -> dict[str, Path]:
    import zmq.auth

    authorized = tmp_path / "authorized"
    authorized.mkdir()
    keys: dict[str, Path] = {"authorized": authorized}
    for name in ("server", "client", "rogue"):
        public, secret = zmq.auth.create_certificates(tmp_path, name)
        keys[f"{name}_public"], keys[f"{name}_secret"] = Path(public), Path(secret)
    (authorized / "client.key").write_bytes(keys["client_public"].read_bytes())
    return keys


def test_s2_curve_refuses_clients_without_the_right_keys(publish, tmp_path, caplog):
    """No keys, a wrong server key or an unknown client key get nothing; a known client does."""
    keys = _make_keys(tmp_path)
    handler, logger = publish(
        replay=10,
        curve_server_secret_key=keys["server_secret"],
        curve_authorized_keys=keys["authorized"],
    )
    log_range(logger, 1, 5)
    handler.flush()
    caplog.set_level(logging.WARNING, logger="zmq.auth")
    caplog.set_level(logging.WARNING, logger="mimir.stream")
    bad = [
        {},
        {
            "curve_server_public_key": keys["rogue_public"],
            "curve_client_secret_key": keys["client_secret"],
        },
        {
            "curve_server_public_key": keys["server_public"],
            "curve_client_secret_key": keys["rogue_secret"],
        },
        {"curve_server_public_key": keys["server_public"]},  # a throw-away key pair
    ]
    for options in bad:
        with subscribe(handler.address, handler.replay_address, timeout=0.5, **options) as sub:
            with pytest.raises(TimeoutError):
                next(sub)
            assert sub.run_id is None
    wait_for(lambda: sum("DENIED" in r.getMessage() for r in caplog.records) >= 2)
    # No keys and the wrong server key fail in the handshake, before any key check:
    # the publisher's handshake monitor logs and counts those.
    wait_for(lambda: handler.refused >= 2)
    handshakes = [r.getMessage() for r in caplog.records if r.name == "mimir.stream"]
    assert any("refused a connection" in message for message in handshakes)
    good = {
        "curve_server_public_key": keys["server_public"],
        "curve_client_secret_key": keys["client_secret"],
    }
    with subscribe(handler.address, handler.replay_address, timeout=10, **good) as sub:
        assert_contiguous(read_until(sub, 5), 1, 5)


def test_s2_curve_with_z85_keys(publish, tmp_path):
    """The server public key may be given as its 40-character Z85 text."""
    import zmq.auth

    keys = _make_keys(tmp_path)
    handler, logger = publish(replay=10, curve_server_secret_key=keys["server_secret"])
    server_public, _ = zmq.auth.load_certificate(keys["server_public"])
    log_range(logger, 1, 3)
    handler.flush()
    with subscribe(
        handler.address, handler.replay_address, timeout=10, curve_server_public_key=server_public
    ) as sub:
        assert_contiguous(read_until(sub, 3), 1, 3)


# -- S3: nothing received is unpickled or evaluated ---------------------------------------


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def test_s3_fuzzed_frames_and_a_pickle_are_dropped_and_counted(publish, context, tmp_path):
    """Random frames and a crafted pickle on both sockets are dropped and counted, not unpickled."""
    handler, logger = publish(replay=10)
    target = tmp_path / "pwned"
    crafted = pickle.dumps(_Exploit(str(target)))
    assert len(crafted) <= MAX_REQUEST_SIZE
    rng = random.Random(3)
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(handler.replay_address)
    xsub = context.socket(zmq.XSUB)
    xsub.setsockopt(zmq.LINGER, 0)
    xsub.connect(handler.address)
    bad = 0
    for frames in ([crafted], [b"REPLAY", crafted], [crafted[:6]]):
        dealer.send_multipart(frames)
        bad += 1
    xsub.send(crafted)
    bad += 1
    for _ in range(500):
        frames = [rng.randbytes(rng.randrange(0, 60)) for _ in range(rng.randrange(1, 4))]
        if frames != [b"REPLAY"]:
            dealer.send_multipart(frames)
            bad += 1
        frame = frames[0]
        xsub.send(frame)
        bad += not frame or frame[0] not in (0, 1)
    wait_for(lambda: handler.bad_requests >= bad)
    assert handler.bad_requests == bad
    assert not target.exists()
    assert handler.failures == 0
    log_range(logger, 1, 3)
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        assert_contiguous(read_until(sub, 3), 1, 3)


def test_s3_client_ignores_malformed_messages(context):
    """A hostile publisher's malformed messages and pickles are ignored and counted."""
    pub = context.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    with subscribe(f"tcp://127.0.0.1:{port}", replay=False, timeout=10, context=context) as sub:
        assert pub.poll(5000)
        pub.recv()  # the subscription
        run = b"E" + b"0" * 32
        bad = [
            [pickle.dumps(_Exploit("/nonexistent/x"))],
            [run, b"short"],
            [run, struct.pack(">QI", 1, 1)],  # no frame of lines
            [run, struct.pack(">QI", 1, 3), b"{}\n{}\n"],  # count beyond the lines
            [run, struct.pack(">QI", 1, 1), b"{}\n{}\n"],  # lines beyond the count
            [run, struct.pack(">QI", 1, 1), b"{}"],  # no final newline
            [run, struct.pack(">QI", 1, 0), b""],  # no entry
            [run, struct.pack(">QIQ", 1, 1, 2), b"{}\n"],  # index of the wrong size
            [run, b"", b""],
            [run, struct.pack(">QI", 1, 1), b"{}\n", b"extra"],
            [b"Z" + b"0" * 32, struct.pack(">QI", 1, 1), b"{}\n"],
            [b"E" + b"0" * 31, struct.pack(">QI", 1, 1), b"{}\n"],  # short header
        ]
        for frames in bad:
            pub.send_multipart(frames)
        pub.send_multipart([run, struct.pack(">QI", 1, 2), b'{"i": 1}\n{"i": 2}\n'])
        assert next(sub) == {"i": 1}
        assert next(sub) == {"i": 2}
        assert sub.last_seq == 2
        assert sub.bad_messages == len(bad)


# -- S4: size limit and floods ---------------------------------------------------------


def test_s4_oversized_frame_disconnects_the_peer(publish, context):
    """A frame beyond MAX_REQUEST_SIZE makes ZeroMQ cut the peer off before the server sees it."""
    from zmq.utils.monitor import recv_monitor_message

    handler, _ = publish(replay=10)
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    dealer.connect(handler.replay_address)
    dealer.send(b"REPLAY" + b"x" * (MAX_REQUEST_SIZE * 1000))
    events = []
    while zmq.EVENT_DISCONNECTED not in events:
        assert monitor.poll(5000)
        events.append(recv_monitor_message(monitor)["event"])
    assert handler.bad_requests == 0 and handler.replays == 0
    dealer.disable_monitor()
    monitor.close()


def test_s4_flood_from_one_peer_does_not_stop_others(publish, context):
    """While one peer floods replay requests and never reads, a subscriber gets every live entry."""
    handler, logger = publish(replay=500)
    log_range(logger, 1, 500)
    handler.flush()
    stop = threading.Event()

    def flood() -> None:
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.SNDHWM, 1000)
        dealer.connect(handler.replay_address)
        while not stop.is_set():
            try:
                dealer.send(b"REPLAY", zmq.NOBLOCK)
            except zmq.Again:
                stop.wait(0.001)
        dealer.close(linger=0)
        ctx.term()

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        wait_for(lambda: handler.replays >= 200)
        before = rss_bytes()
        with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
            sub.sync()
            log_range(logger, 501, 3000)
            got = read_until(sub, 3000)
        assert sub.gaps == 0
        assert_contiguous(got, 1, 3000)
        wait_for(lambda: handler.replays >= 2000)
        assert rss_bytes() - before < 40 << 20
    finally:
        stop.set()
        flooder.join()


# -- P3: bursts from many threads -------------------------------------------------------


def test_p3_eight_threads_bursting_beyond_the_queue(publish):
    """8 threads logging far beyond the queue never block; dropped == logged - sent exactly."""
    logging.raiseExceptions = False  # one report per streak of drops; keep the output short
    handler, logger = publish(replay=0, queue_size=10)  # far less than one drain's worth
    per_thread = 10_000
    barrier = threading.Barrier(8)

    def burst() -> None:
        barrier.wait()
        for i in range(per_thread):
            logger.info({"i": i})

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    handler.close()
    logged = 8 * per_thread
    assert handler.dropped > 0
    assert handler.dropped == logged - handler.sent
    assert 1 <= handler.failures <= handler.dropped


def test_p3_drop_streak_is_reported_once(publish, capsys, context):
    """Entries dropped in a row are reported once through handleError."""
    handler, _ = publish(replay=0, queue_size=1)
    handler.close()
    squatter = context.socket(zmq.PUB)
    squatter.bind(handler.address)  # the handler cannot reopen: it drops from now on
    try:
        for _ in range(100):
            handler.add_line('{"i": 1}')
    finally:
        squatter.close(linger=0)
    assert handler.dropped == 100
    assert handler.failures == 2  # the failed bind, then one report for the streak
    err = capsys.readouterr().err
    assert "could not bind its addresses again" in err
    assert "could not be bound again; entries are dropped" in err


def test_p6_closed_stream_reopens_on_the_same_address_and_run(publish):
    """After close() (by dictConfig or logging.shutdown), the next entry is published on
    the same address, run id and sequence, so a client sees no restart and no gap."""
    handler, logger = publish(replay=100)
    log_range(logger, 1, 10)
    handler.flush(10)
    address, run = handler.address, handler.run_id
    logging.shutdown([weakref.ref(handler)])  # as dictConfig does to every handler
    assert handler.sent == 10
    log_range(logger, 11, 20)
    handler.flush(10)
    assert (handler.address, handler.run_id) == (address, run)
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        got = read_until(sub, 20)  # replayed: kept across the reopening
        assert sub.restarts == 0
        log_range(logger, 21, 25)
        got += read_until(sub, 25)
    assert_contiguous(got, 1, 25)
    handler.close()
    assert (handler.sent, handler.dropped) == (25, 0)


# -- P4: fork -------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_p4_forked_child_does_not_use_the_parent_sockets(publish):
    """A forked child's entries are counted as dropped, not published; the parent streams on."""
    logging.raiseExceptions = False
    handler, logger = publish(replay=100)
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        log_range(logger, 1, 10)
        got = read_until(sub, 10)
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
            pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.close(read_fd)
                parent_run = handler.run_id
                for i in range(5):
                    logger.info({"child": i})
                start = time.monotonic()
                handler.close()
                report = {
                    "dropped": handler.dropped,
                    "failures": handler.failures,
                    "close_seconds": time.monotonic() - start,
                    "run_id": parent_run,
                }
                os.write(write_fd, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_fd, "rb") as f:
            report = json.loads(f.read())
        assert os.waitstatus_to_exitcode(status) == 0
        assert report["dropped"] == 5
        assert report["failures"] == 1
        assert report["close_seconds"] < 0.5
        assert report["run_id"] != handler.run_id
        log_range(logger, 11, 20)
        got = read_until(sub, 20, got)
    assert_contiguous(got, 1, 20)  # no child entry in the parent's stream
    assert sub.restarts == 0
    assert handler.dropped == 0


# -- the wire protocol, from the documentation alone ----------------------------------------


def test_wire_protocol_client_written_from_the_docs(publish, context):
    """A pyzmq client written from docs/streaming.rst alone gets replay then live, exactly once."""
    handler, logger = publish(replay=20)
    log_range(logger, 1, 30)
    handler.flush()

    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(handler.address)

    def entries(index: bytes, lines: bytes) -> list[tuple[int, bytes]]:
        """(seq, JSON line) pairs from an index frame of runs and a frame of lines."""
        texts = lines.split(b"\n")
        assert texts.pop() == b""  # every line ends in a newline
        out: list[tuple[int, bytes]] = []
        for offset in range(0, len(index), 12):
            first, count = struct.unpack_from(">QI", index, offset)
            for k in range(count):
                out.append((first + k, texts[len(out)]))
        assert len(out) == len(texts)
        return out

    # 1. wait for the first live message (entries "E", 3 frames, or heartbeat "H", 2),
    # noting the replay address announced ("A", 2 frames) before the heartbeat
    announced = None
    while True:
        assert sub.poll(5000)
        header, *body = sub.recv_multipart()
        assert header[:1] in (b"A", b"E", b"H") and len(header) == 33
        if header[:1] != b"A":
            break
        announced = body[0].decode("ascii")
    run_id = header[1:].decode("ascii")
    if header[:1] == b"E":
        assert len(body) == 2 and len(body[0]) == 12
        live = entries(*body)
        anchor = struct.unpack(">QI", body[0])[0]
        assert anchor == live[0][0]
    else:
        assert len(body) == 1 and len(body[0]) == 8
        live = []
        anchor = struct.unpack(">Q", body[0])[0] + 1
    # 2. ask for the replay, at the address announced (it comes with each heartbeat)
    while announced is None:
        assert sub.poll(5000)
        header, *body = sub.recv_multipart()
        if header[:1] == b"A":
            announced = body[0].decode("ascii")
        elif header[:1] == b"E":
            live += entries(*body)
    assert announced == handler.replay_address
    dealer = context.socket(zmq.DEALER)
    dealer.connect(announced)
    dealer.send(b"REPLAY")
    log_range(logger, 31, 40)  # entries keep flowing meanwhile
    assert dealer.poll(5000)
    kind_and_run, first_last, runs, lines = dealer.recv_multipart()
    assert kind_and_run == b"R" + run_id.encode()
    first, last = struct.unpack(">QQ", first_last)
    replayed = entries(runs, lines)
    assert last >= 30 and first == last - 19  # the newest 20 entries
    assert [seq for seq, _ in replayed] == list(range(first, last + 1))
    # 3. replayed entries before the anchor, then live entries from the anchor on
    stream = [item for item in replayed if item[0] < anchor] + live
    while not stream or stream[-1][0] < 40:
        assert sub.poll(5000)
        header, *body = sub.recv_multipart()
        if header[:1] == b"E":
            stream += entries(*body)
    assert stream[0][0] == min(first, anchor)
    assert [s for s, _ in stream] == list(range(stream[0][0], 41))
    assert [json.loads(line)["i"] for _, line in stream] == [s for s, _ in stream]
    sub.close(linger=0)
    dealer.close(linger=0)


def test_replay_of_entries_around_a_gap_has_one_run_on_each_side(publish, context):
    """Entries dropped between two batches: the replay index has two runs; the client a gap."""
    handler, logger = publish(replay=100)
    log_range(logger, 1, 10)
    handler.flush()
    handler._seq += 3  # as if entries 11 to 13 had been dropped
    log_range(logger, 14, 20)
    handler.flush()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(handler.replay_address)
    dealer.send(b"REPLAY")
    assert dealer.poll(5000)
    _, first_last, runs, lines = dealer.recv_multipart()
    assert struct.unpack(">QQ", first_last) == (1, 20)
    assert runs == struct.pack(">QIQI", 1, 10, 14, 7)
    assert [json.loads(line)["i"] for line in lines.splitlines()] == [
        *range(1, 11),
        *range(14, 21),
    ]
    dealer.send(b"REPLAY" + struct.pack(">Q", 12))
    assert dealer.poll(5000)
    assert dealer.recv_multipart()[2] == struct.pack(">QI", 14, 7)
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        got = read_until(sub, 20)
    assert [seq for seq, _ in got] == [*range(1, 11), *range(14, 21)]
    assert all(entry["i"] == seq for seq, entry in got)
    assert (sub.gaps, sub.missed) == (1, 3)


def test_bursts_are_cut_into_messages_at_newlines(publish, context):
    """A burst goes out in messages of at most 64 KiB of whole lines; a longer line alone."""
    handler, logger = publish(replay=3)
    raw = context.socket(zmq.SUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SUBSCRIBE, b"E")
    raw.connect(handler.address)
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        sub.sync()
        logged = 0
        while not raw.poll(20):  # until the raw subscription is live
            logger.info({"i": 0})
            logged += 1
        big = "y" * 200_000
        for i in range(1, 3001):
            logger.info({"i": i, "padding": big if i in (5, 3000) else "x" * 100})
        got = read_until(sub, logged + 3000)
    assert [entry["i"] for _, entry in got][-3000:] == list(range(1, 3001))
    messages = []
    while raw.poll(100):
        messages.append(raw.recv_multipart())
    total = 0
    for _, index, lines in messages:
        first, count = struct.unpack(">QI", index)
        assert lines.count(b"\n") == count and lines.endswith(b"\n")
        assert len(lines) <= 64 << 10 or count == 1
        total += count
    assert total >= 3000
    assert len(messages) > 5
    handler.flush()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(handler.replay_address)
    dealer.send(b"REPLAY")
    assert dealer.poll(5000)
    _, first_last, runs, lines = dealer.recv_multipart()
    first, last = struct.unpack(">QQ", first_last)
    assert (first, runs) == (last - 2, struct.pack(">QI", last - 2, 3))
    assert [json.loads(line)["i"] for line in lines.splitlines()] == [2998, 2999, 3000]


def test_add_line_takes_text_or_bytes_with_or_without_the_newline(publish):
    """add_line() encodes text and adds a missing final newline."""
    handler, _ = publish(replay=10)
    handler.add_line('{"i": 1}')
    handler.add_line(b'{"i": 2}')
    handler.add_line('{"i": 3, "s": "\u00e9"}\n')
    handler.add_line(b'{"i": 4}\n')
    handler.add_line(bytearray(b'{"i": 5}'))
    handler.flush()
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        got = read_until(sub, 5)
    assert_contiguous(got, 1, 5)
    assert got[2][1]["s"] == "\u00e9"


# -- the replay address announced on the stream ---------------------------------------------


def read_stream_messages(sub: Any, until: Any, timeout: float = 10.0) -> list[tuple]:
    """Decoded messages of a raw SUB socket, up to the first for which ``until`` is true."""
    deadline = time.monotonic() + timeout
    messages = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0 and sub.poll(left * 1000), "no message in time"
        messages.append(decode_stream(sub.recv_multipart()))
        if until(messages[-1]):
            return messages


@pytest.mark.parametrize("replay", [0, 5])
def test_real_publisher_announces_its_replay_address_before_each_heartbeat(
    publish, context, replay
):
    """The announcement (the replay address bound, or None) comes before each heartbeat."""
    handler, _ = publish(replay=replay, heartbeat=0.05)
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(handler.address)
    try:
        heartbeats = [0]

        def third_heartbeat(message: tuple) -> bool:
            heartbeats[0] += message[0] == KIND_HEARTBEAT
            return heartbeats[0] == 3

        messages = read_stream_messages(sub, third_heartbeat)
    finally:
        sub.close()
    run = handler.run_id.encode()
    announcement = (KIND_ANNOUNCE, run, handler.replay_address)
    assert (handler.replay_address is None) == (replay == 0)
    assert announcement in messages
    for before, message in itertools.pairwise(messages):
        if message[0] == KIND_HEARTBEAT:
            assert before == announcement


def test_subscribe_with_the_stream_address_alone_replays_then_follows_live(publish):
    """subscribe(address) learns the replay address from the stream: replay, then live."""
    handler, logger = publish(replay=20)
    log_range(logger, 1, 30)
    handler.flush()
    with subscribe(handler.address, timeout=10) as sub:
        sub.sync()
        log_range(logger, 31, 500)
        got = read_until(sub, 500)
    assert sub.replay_address == handler.replay_address
    assert (sub.first_seq, sub.replay_last, sub.replayed) == (11, 30, 20)
    assert_contiguous(got, 11, 500)
    assert (sub.gaps, sub.missed) == (1, 10)  # entries 1 to 10 were no longer kept


def test_replay_false_follows_live_entries_only(publish):
    """replay=False: no replay asked for, even though the publisher announces one."""
    handler, logger = publish(replay=20)
    log_range(logger, 1, 10)
    handler.flush()
    with subscribe(handler.address, replay=False, timeout=10) as sub:
        sub.sync()
        log_range(logger, 11, 15)
        got = read_until(sub, 15)
    assert_contiguous(got, 11, 15)
    assert (sub.replay_address, sub.replay_last, sub.replayed) == (None, None, 0)
    assert (sub.first_seq, sub.gaps) == (11, 0)


def test_replay_false_with_a_replay_address_is_refused():
    """Asking for live entries only and giving a replay address contradict each other."""
    with pytest.raises(ValueError, match="replay=False"):
        subscribe("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", replay=False)


@pytest.mark.parametrize("bound", ["tcp://0.0.0.0:*", "tcp://*:*"])
def test_publisher_bound_on_every_interface_announces_a_usable_address(publish, bound):
    """A replay bound on 0.0.0.0 or * is announced as 0.0.0.0, reached on the stream's host."""
    with pytest.warns(UserWarning, match="readable by anyone"):
        handler, logger = publish(address=bound, replay_address=bound, replay=10)
    assert handler.replay_address.startswith("tcp://0.0.0.0:")
    log_range(logger, 1, 5)
    handler.flush()
    stream_port = handler.address.rpartition(":")[2]
    replay_port = handler.replay_address.rpartition(":")[2]
    with subscribe(f"tcp://127.0.0.1:{stream_port}", timeout=10) as sub:
        got = read_until(sub, 5)
        assert sub.replay_address == f"tcp://127.0.0.1:{replay_port}"
    assert_contiguous(got, 1, 5)
    assert sub.replayed == 5


def test_ipc_replay_address_is_used_as_announced(publish, tmp_path):
    """An ipc:// replay address is announced and used unchanged."""
    handler, logger = publish(
        address=f"ipc://{tmp_path}/stream", replay_address=f"ipc://{tmp_path}/replay", replay=10
    )
    log_range(logger, 1, 4)
    handler.flush()
    with subscribe(handler.address, timeout=10) as sub:
        got = read_until(sub, 4)
    assert_contiguous(got, 1, 4)
    assert sub.replay_address == f"ipc://{tmp_path}/replay"
    assert sub.replayed == 4


@pytest.mark.parametrize(
    "announced, connected, reached",
    [
        ("tcp://0.0.0.0:5556", "tcp://gpu-box:5557", "tcp://gpu-box:5556"),
        ("tcp://*:5556", "tcp://10.0.0.7:5557", "tcp://10.0.0.7:5556"),
        ("tcp://[::]:5556", "tcp://[fd00::7]:5557", "tcp://[fd00::7]:5556"),
        ("tcp://0.0.0.0:5556", "tcp://eth0;gpu-box:5557", "tcp://eth0;gpu-box:5556"),
        ("tcp://0.0.0.0:5556", "ipc:///tmp/stream", "tcp://127.0.0.1:5556"),
        ("tcp://[::]:5556", "tcp://*:5557", "tcp://[::1]:5556"),
        ("tcp://10.0.0.8:5556", "tcp://gpu-box:5557", "tcp://10.0.0.8:5556"),
        ("tcp://127.0.0.1:5556", "tcp://127.0.0.1:5557", "tcp://127.0.0.1:5556"),
        ("ipc:///tmp/replay", "tcp://gpu-box:5557", "ipc:///tmp/replay"),
    ],
)
def test_announced_wildcard_host_becomes_the_host_connected_to(announced, connected, reached):
    """Only a host meaning every interface is replaced, by the stream's host (or loopback)."""
    from mimir.stream.transport import reachable_address

    assert reachable_address(announced, connected) == reached


def _old_publisher(context: Any) -> tuple[Any, str]:
    """A raw XPUB socket standing for a publisher from before announcements."""
    pub = context.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    return pub, f"tcp://127.0.0.1:{port}"


OLD_RUN = b"0123456789abcdef0123456789abcdef"


def _old_heartbeat(last: int) -> list[bytes]:
    return [b"H" + OLD_RUN, struct.pack(">Q", last)]


def _old_entries(first: int, count: int) -> list[bytes]:
    lines = b"".join(b'{"i": %d}\n' % i for i in range(first, first + count))
    return [b"E" + OLD_RUN, struct.pack(">QI", first, count), lines]


def test_publisher_without_announcements_is_followed_live_after_two_heartbeats(context):
    """An old publisher's heartbeats carry no announcement: after two, the client goes live."""
    pub, address = _old_publisher(context)
    with subscribe(address, timeout=10, context=context) as sub:
        assert pub.poll(5000)
        pub.recv()  # the subscription
        pub.send_multipart(_old_heartbeat(0))  # as an old publisher greets a subscriber
        pub.send_multipart(_old_entries(1, 2))
        pub.send_multipart(_old_heartbeat(2))
        pub.send_multipart(_old_entries(3, 1))
        with pytest.warns(StreamWarning, match="announced no replay address"):
            got = read_until(sub, 3)
    assert_contiguous(got, 1, 3)
    assert (sub.replay_address, sub.gaps, sub.bad_messages) == (None, 0, 0)


def test_publisher_without_announcements_is_followed_live_after_a_short_wait(context):
    """Entries but no second heartbeat from an old publisher: live after a bounded wait."""
    pub, address = _old_publisher(context)
    with subscribe(address, timeout=10, context=context) as sub:
        assert pub.poll(5000)
        pub.recv()
        pub.send_multipart(_old_entries(1, 2))
        started = time.monotonic()
        with pytest.warns(StreamWarning, match="announced no replay address"):
            got = read_until(sub, 2)
        waited = time.monotonic() - started
        pub.send_multipart(_old_entries(3, 1))
        read_until(sub, 3, got)
    assert_contiguous(got, 1, 3)
    assert 1.5 < waited < 8
    assert sub.replay_address is None


def test_wait_for_an_announcement_ends_with_the_timeout(context):
    """With a timeout below the announcement wait, the buffered entries come at the timeout."""
    pub, address = _old_publisher(context)
    with subscribe(address, timeout=0.5, context=context) as sub:
        assert pub.poll(5000)
        pub.recv()
        pub.send_multipart(_old_entries(1, 2))
        started = time.monotonic()
        with pytest.warns(StreamWarning, match="announced no replay address"):
            got = read_until(sub, 2)
        waited = time.monotonic() - started
    assert_contiguous(got, 1, 2)
    assert waited < 1.5


def test_malformed_announcements_are_counted_and_the_client_goes_on(context):
    """An announcement that does not decode is a bad message; a good one later is used."""
    pub, address = _old_publisher(context)
    with subscribe(address, replay=True, timeout=10, context=context) as sub:
        assert pub.poll(5000)
        pub.recv()
        for frame in (b"not an address", b"tcp://h\xff:1", b"x" * 2000):
            with pytest.raises(ProtocolError):
                decode_stream([b"A" + OLD_RUN, frame])
            pub.send_multipart([b"A" + OLD_RUN, frame])
        pub.send_multipart([b"A" + OLD_RUN, b""])  # well formed: no replay kept
        pub.send_multipart(_old_heartbeat(0))
        pub.send_multipart(_old_entries(1, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("error", StreamWarning)  # no waiting for an announcement
            assert_contiguous(read_until(sub, 1), 1, 1)
    assert sub.bad_messages == 3


@pytest.mark.parametrize("announced", [b"tcp://127.0.0.1:port", b"bogus://somewhere"])
def test_announced_address_zeromq_refuses_means_live_entries_with_a_warning(context, announced):
    """A well-formed announcement ZeroMQ cannot connect to: one warning, then live entries."""
    pub, address = _old_publisher(context)
    with subscribe(address, timeout=10, context=context) as sub:
        assert pub.poll(5000)
        pub.recv()
        pub.send_multipart([b"A" + OLD_RUN, announced])
        pub.send_multipart(_old_heartbeat(0))
        pub.send_multipart(_old_entries(1, 2))
        with pytest.warns(StreamWarning, match="cannot connect to the replay address"):
            got = read_until(sub, 2)
    assert_contiguous(got, 1, 2)
    assert sub.replay_address is None


def test_publisher_restarted_on_another_replay_port_is_replayed_from_there(publish, stdlib_logger):
    """After a restart, the client replays the new run from the address the new run announces."""
    first, logger = publish(replay=5)
    log_range(logger, 1, 3)
    first.flush()
    with subscribe(first.address, timeout=0.2) as sub:
        sub.sync(timeout=10)  # the replay of entries 1 to 3 is received
        read_until(sub, 3)
        assert sub.replay_address == first.replay_address
        first.close()
        stdlib_logger.removeHandler(first)
        second, _ = publish(address=first.address, replay=5)
        log_range(logger, 1, 3)  # before the client reconnects: replayed to it
        second.flush()
        with pytest.warns(PublisherRestartWarning):
            got: list[tuple[int, Any]] = []
            deadline = time.monotonic() + 10
            while sub.restarts == 0 or sub.last_seq < 3:
                assert time.monotonic() < deadline, "the restart was not followed in time"
                try:
                    got.append((sub.last_seq + 1, next(sub)))
                except TimeoutError:
                    continue
    assert sub.run_id == second.run_id
    assert sub.replay_address == second.replay_address
    assert [entry["i"] for _, entry in got] == [1, 2, 3]
    assert (sub.first_seq, sub.missed) == (1, 0)


def test_curve_client_learns_the_replay_address_too(publish, tmp_path):
    """With CURVE, the replay socket learned from the stream is reached with the same keys."""
    import zmq.auth

    keys = _make_keys(tmp_path)
    handler, logger = publish(replay=10, curve_server_secret_key=keys["server_secret"])
    server_public, _ = zmq.auth.load_certificate(keys["server_public"])
    log_range(logger, 1, 3)
    handler.flush()
    with subscribe(handler.address, timeout=10, curve_server_public_key=server_public) as sub:
        assert_contiguous(read_until(sub, 3), 1, 3)
        assert sub.replayed == 3


def test_follow_without_a_replay_address_replays_too(publish):
    """follow(address, callback) replays from the announced address, then follows live."""
    handler, logger = publish(replay=10)
    log_range(logger, 1, 3)
    handler.flush()
    got = []
    with follow(handler.address, got.append) as follower:
        wait_for(lambda: len(got) == 3)
        log_range(logger, 4, 6)
        wait_for(lambda: len(got) == 6)
    assert not follower.running
    assert [e["i"] for e in got] == [1, 2, 3, 4, 5, 6]
    assert follower.subscription.replay_address == handler.replay_address


# -- behaviour of the API ----------------------------------------------------------------


def test_replay_zero_binds_no_replay_socket_and_clients_follow_live(publish):
    """With replay=0 no replay socket is bound; a live-only client starts at its first entry."""
    handler, logger = publish(replay=0)
    assert handler.replay_address is None
    with subscribe(handler.address, timeout=10) as sub:
        sub.sync()
        log_range(logger, 1, 5)
        assert_contiguous(read_until(sub, 5), 1, 5)
        assert (sub.first_seq, sub.gaps) == (1, 0)


def test_gap_warning_and_callback(publish):
    """A gap is warned about once, with StreamGapWarning, and passed to on_gap."""
    handler, logger = publish(replay=0)
    gaps = []
    with subscribe(handler.address, timeout=10, on_gap=lambda a, b: gaps.append((a, b))) as sub:
        sub.sync()
        logger.info({"i": 1})
        handler.flush()  # entry 1 is published; the next one starts a new batch
        handler._seq += 3  # as if 3 entries had been dropped
        logger.info({"i": 5})
        with pytest.warns(StreamGapWarning, match="3 entries lost .* 2 to 4"):
            read_until(sub, 5)
    assert gaps == [(2, 4)]
    assert (sub.gaps, sub.missed) == (1, 3)


def test_publisher_restart_is_detected(publish, stdlib_logger):
    """A new publisher on the same address is seen as a restart, and followed."""
    first, logger = publish(replay=5)
    address = first.address
    with subscribe(address, replay=False, timeout=0.2) as sub:
        sub.sync(timeout=10)
        log_range(logger, 1, 3)
        read_until(sub, 3)
        first.close()
        stdlib_logger.removeHandler(first)
        second, _ = publish(address=address, replay=5)
        with pytest.warns(PublisherRestartWarning):
            while True:  # entries logged before the client reconnects are lost
                logger.info({"new": True})
                try:
                    entry = next(sub)
                except TimeoutError:
                    continue
                break
    assert entry == {"new": True}
    assert sub.restarts == 1
    assert sub.run_id == second.run_id
    assert sub.first_seq == sub.last_seq
    assert sub.missed == sub.last_seq - 1  # the new run's entries before the reconnection


def test_timeout_raises_and_leaves_the_subscription_usable(publish):
    """With timeout=, no entry in time raises TimeoutError; the next entry is still delivered."""
    handler, logger = publish(replay=5)
    with subscribe(handler.address, handler.replay_address, timeout=0.2) as sub:
        with pytest.raises(TimeoutError):
            next(sub)
        logger.info({"i": 1})
        assert next(sub) == {"i": 1}


def test_follow_calls_back_from_a_thread(publish):
    """follow() calls the callback for each entry until stop()."""
    handler, logger = publish(replay=10)
    log_range(logger, 1, 3)
    handler.flush()
    got = []
    follower = follow(handler.address, got.append, handler.replay_address)
    log_range(logger, 4, 6)
    wait_for(lambda: len(got) == 6)
    follower.stop()
    assert not follower.running
    assert [e["i"] for e in got] == [1, 2, 3, 4, 5, 6]


def test_handler_from_dictconfig(stdlib_logger, closing):
    """dictConfig builds the handler from plain keyword arguments."""
    logging.config.dictConfig(
        {
            "version": 1,
            "incremental": False,
            "disable_existing_loggers": False,
            "handlers": {
                "stream": {
                    "class": "mimir.stream.publisher.ZMQStreamHandler",
                    "address": ANY,
                    "replay_address": ANY,
                    "replay": 10,
                }
            },
            "loggers": {stdlib_logger.name: {"handlers": ["stream"], "level": "INFO"}},
        }
    )
    handler = closing(stdlib_logger.handlers[0])
    assert isinstance(handler, ZMQStreamHandler)
    stdlib_logger.info("hello %s", "world", extra={"step": 3})
    handler.flush()
    with subscribe(handler.address, handler.replay_address, timeout=10) as sub:
        assert next(sub) == {"message": "hello world", "step": 3}


def test_constructor_validates_arguments():
    """Bad arguments raise ValueError/TypeError with a clear message."""
    with pytest.raises(ValueError, match="replay"):
        ZMQStreamHandler(ANY, ANY, replay=-1)
    with pytest.raises(TypeError, match="queue_size"):
        ZMQStreamHandler(ANY, ANY, queue_size=1.5)
    with pytest.raises(ValueError, match="ZeroMQ address"):
        ZMQStreamHandler("127.0.0.1:5557")
    with pytest.raises(ValueError, match="curve_server_secret_key"):
        ZMQStreamHandler(ANY, curve_authorized_keys="/tmp")


def test_missing_pyzmq_names_the_extra(monkeypatch):
    """Without pyzmq, the error says which package to install."""
    monkeypatch.setitem(sys.modules, "zmq", None)
    with pytest.raises(ImportError, match=r'pip install "mimir-logger\[zmq\]"'):
        ZMQStreamHandler(ANY)
