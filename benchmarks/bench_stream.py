"""Live streaming over ZeroMQ: delivery and delay at a steady rate, and replay time.

(a) Logs entries at ``--rate`` per second (default 50,000) for ``--seconds``
    (default 10) through a :class:`mimir.stream.publisher.ZMQStreamHandler`, while a
    client in a separate process follows the stream on loopback. Each entry carries
    its ``time.time()`` at logging; the client computes the delay to its arrival
    (same host, same clock). Targets: 100% of the entries received, median delay
    <= 5 ms.
(b) A late joiner gets 10,000 replayed entries: time from ``subscribe()`` to the
    last replayed entry parsed, and the bare request -> reply time. Target: <= 100 ms.

Usage: python benchmarks/bench_stream.py [--rate R] [--seconds S] [--replay N]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import struct
import subprocess
import sys
import time

import zmq

from mimir.formatter import JSONFormatter
from mimir.stream import subscribe
from mimir.stream.publisher import ZMQStreamHandler

ANY = "tcp://127.0.0.1:*"


def client(address: str, total: int) -> None:
    """The follower process: report how many entries arrived and their delays."""
    delays = []
    with subscribe(address, timeout=30) as entries:
        entries.sync()
        print("ready", flush=True)
        for entry in entries:
            delays.append(time.time() - entry["t"])
            if entries.last_seq >= total:
                break
        report = {
            "received": len(delays),
            "gaps": entries.gaps,
            "missed": entries.missed,
            "first_seq": entries.first_seq,
            "median_ms": statistics.median(delays) * 1000,
            "p99_ms": sorted(delays)[int(len(delays) * 0.99)] * 1000,
            "max_ms": max(delays) * 1000,
        }
    print(json.dumps(report), flush=True)


def steady_rate(rate: int, seconds: float, api: str) -> None:
    total = int(rate * seconds)
    handler = ZMQStreamHandler(ANY, ANY, replay=0)
    logger = logging.getLogger("bench.stream")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    follower = subprocess.Popen(
        [sys.executable, __file__, "--client", handler.address, str(total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    if api == "logger":
        # What mimir.Logger.log does for its handlers: encode once, hand the line over.
        encode = JSONFormatter().encoder.encode_line
        add_line = handler.add_line

        def info(entry: dict) -> None:
            add_line(encode(entry))
    else:
        info = logger.info
    clock = time.time
    now = time.perf_counter
    sleep = time.sleep
    i = 0
    while i < total:
        due = start + i / rate
        ahead = due - now()
        if ahead > 0.0005:
            sleep(ahead)
        i += 1
        info({"iteration": i, "training_error": 1.0 / i, "learning_rate": 0.001, "t": clock()})
    elapsed = time.perf_counter() - start
    report = json.loads(follower.stdout.readline())
    follower.wait()
    handler.close()
    logger.removeHandler(handler)
    rate_done = total / elapsed
    print(f"(a) through {api}: {total:,} entries logged in {elapsed:.2f} s ({rate_done:,.0f}/s)")
    print(
        f"    handler: sent {handler.sent:,}, dropped {handler.dropped:,}; "
        f"client received {report['received']:,} "
        f"({100 * report['received'] / total:.2f}%), gaps {report['gaps']}, "
        f"missed {report['missed']}"
    )
    print(
        f"    delay log() -> client: median {report['median_ms']:.2f} ms, "
        f"p99 {report['p99_ms']:.2f} ms, max {report['max_ms']:.2f} ms "
        f"(targets: 100%, median <= 5 ms)"
    )


def replay_time(n: int, rounds: int = 5) -> None:
    handler = ZMQStreamHandler(ANY, ANY, replay=n)
    logger = logging.getLogger("bench.replay")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    for i in range(1, n + 1):
        logger.info({"iteration": i, "training_error": 1.0 / i, "learning_rate": 0.001})
    handler.flush()
    context = zmq.Context()
    joins = []
    bare = []
    for _ in range(rounds):
        start = time.perf_counter()
        with subscribe(handler.address, handler.replay_address, context=context) as entries:
            for _entry in entries:
                if entries.last_seq == n:
                    break
            joins.append(time.perf_counter() - start)
            assert entries.replayed == n and entries.gaps == 0
        dealer = context.socket(zmq.DEALER)
        dealer.connect(handler.replay_address)
        start = time.perf_counter()
        dealer.send(b"REPLAY")
        reply = dealer.recv_multipart()
        bare.append(time.perf_counter() - start)
        assert struct.unpack(">QQ", reply[1]) == (1, n) and len(reply) == 4
        assert reply[2] == struct.pack(">QI", 1, n) and reply[3].count(b"\n") == n
        dealer.close(linger=0)
    context.term()
    handler.close()
    logger.removeHandler(handler)
    print(
        f"(b) late joiner, {n:,} replayed entries: subscribe() -> last entry parsed "
        f"median {statistics.median(joins) * 1000:.1f} ms (best {min(joins) * 1000:.1f}); "
        f"bare request -> reply {statistics.median(bare) * 1000:.1f} ms (target <= 100 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--replay", type=int, default=10_000)
    parser.add_argument(
        "--api",
        choices=["logger", "stdlib"],
        default="logger",
        help="log as mimir.Logger.log does (encode once, add_line), or with logging.info",
    )
    parser.add_argument("--client", nargs=2, metavar=("ADDRESS", "TOTAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client[0], int(args.client[1]))
        return
    steady_rate(args.rate, args.seconds, args.api)
    replay_time(args.replay)


if __name__ == "__main__":
    main()
