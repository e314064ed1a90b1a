"""How fast one collector takes entries from 8 sender processes, and what a sender pays per call.

Run: ``python benchmarks/bench_collector.py [--senders 8] [--seconds 2]``

1. Sustained rate: 8 sender processes each offer entries at a fixed rate (paced
   every 1 ms, through the ``add_line`` fast path so that the collector is what is
   measured) for ``--seconds``; the collector (in this process, writing a
   ``.jsonl.gz``) must receive every one. The offered rate doubles until entries are
   lost (dropped by a sender, or missing at the collector) or the senders cannot
   make it, then is bisected; the highest lossless total rate is printed.
2. Per-call cost in a sender, side by side in one run: ``logging.info`` and the
   ``add_line`` fast path (what ``mimir.Logger`` uses) into a ZMQForwardHandler
   (collector reading), against the same calls into a plain JSONLFileHandler.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mimir.files.plain import JSONLFileHandler
from mimir.stream.collector import Collector
from mimir.stream.forwarder import ZMQForwardHandler

# A sender's buffer in the rate test: small, so that a step measures the sustained
# rate rather than how much the buffers absorb (8 x 5,000 entries at most).
QUEUE_SIZE = 5000


def _collector(filename: str, out: Any) -> None:
    collector = Collector("tcp://127.0.0.1:0", filename=filename)
    out.put(collector.address)
    collector.run()  # until SIGTERM


def _sender(address: str, name: str, rate: float, seconds: float, out: Any) -> None:
    """Offer ``rate`` entries/s for ``seconds`` through the add_line fast path; report back."""
    logging.raiseExceptions = False  # drops are counted; no report per streak here
    handler = ZMQForwardHandler(address, name=name, queue_size=QUEUE_SIZE)
    add = handler.add_line
    total = int(rate * seconds)
    start = time.perf_counter()
    i = 0
    while i < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while i < due:
            add(b'{"iteration":%d,"loss":0.5,"lr":0.001,"norm":1.5,"step":%d}\n' % (i, i))
            i += 1
        if i < total:
            time.sleep(0.001)
    elapsed = time.perf_counter() - start
    handler.close()
    out.put((handler.sent, handler.dropped, total, elapsed))


def offered(senders: int, total_rate: float, seconds: float) -> tuple[int, int, float, float]:
    """One step: (entries logged, entries lost, rate the senders achieved, collector rate)."""
    with tempfile.TemporaryDirectory() as directory:
        collector = Collector(
            "tcp://127.0.0.1:0", filename=os.path.join(directory, "run.jsonl.gz")
        ).start()
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        procs = [
            context.Process(
                target=_sender,
                args=(collector.address, f"rank{n}", total_rate / senders, seconds, queue),
            )
            for n in range(senders)
        ]
        start = time.perf_counter()
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join()
        logged = sum(r[2] for r in results)
        produced = logged / max(r[3] for r in results)
        deadline = time.monotonic() + 10
        last = collector.received
        while collector.received < logged and time.monotonic() < deadline:
            time.sleep(0.01)
            if collector.received != last:
                last = collector.received
                done = time.perf_counter()
        received = collector.received
        took = (done if received != 0 and "done" in locals() else time.perf_counter()) - start
        collector.stop()
    return logged, logged - received, produced, received / took


def per_call(count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        # The collector in a process of its own, as in a real run: not competing for
        # this process's GIL.
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        server = context.Process(
            target=_collector, args=(os.path.join(directory, "run.jsonl.gz"), queue)
        )
        server.start()
        address = queue.get(timeout=30)
        entry = {"iteration": 1, "loss": 0.5, "lr": 0.001, "norm": 1.5, "step": 1}
        line = b'{"iteration":1,"loss":0.5,"lr":0.001,"norm":1.5,"step":1}\n'
        rows = []
        for label, make in (
            ("ZMQForwardHandler", lambda: ZMQForwardHandler(address, queue_size=count)),
            ("JSONLFileHandler", lambda: JSONLFileHandler(os.path.join(directory, "plain.jsonl"))),
        ):
            handler = make()
            log = logging.getLogger(f"bench.{label}")
            log.propagate = False
            log.setLevel(logging.INFO)
            log.handlers[:] = [handler]
            start = time.perf_counter()
            for _ in range(count):
                log.info(entry)
            info = (time.perf_counter() - start) / count * 1e6
            add = handler.add_line
            start = time.perf_counter()
            for _ in range(count):
                add(line)
            fast = (time.perf_counter() - start) / count * 1e6
            handler.close()
            dropped = handler.dropped
            rows.append((label, info, fast, dropped))
        server.terminate()
        server.join()
    print(f"\nPer call in the sender ({count:,} calls each, 5-key entry):")
    print(f"  {'handler':<20} {'logging.info µs':>16} {'add_line µs':>12} {'dropped':>8}")
    for label, info, fast, dropped in rows:
        print(f"  {label:<20} {info:>16.2f} {fast:>12.2f} {dropped:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--start", type=float, default=20_000, help="first total rate, entries/s")
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    logging.getLogger("mimir.stream.collector").setLevel(logging.ERROR)  # gaps are counted below
    print(f"{os.cpu_count()} CPUs; {args.senders} sender processes, {args.seconds} s per step")
    good, bad = None, None
    rate = args.start
    for _ in range(12):
        logged, lost, produced, achieved = offered(args.senders, rate, args.seconds)
        met = produced >= 0.9 * rate
        print(
            f"  offered {rate:>10,.0f}/s: senders made {produced:>10,.0f}/s, {logged:>9,} logged,"
            f" {lost:>7,} lost; collector took {achieved:>10,.0f}/s"
        )
        if lost or not met:
            bad = rate
        else:
            good = (rate, achieved)
        if bad is None:
            rate *= 2
        elif good is None:
            rate /= 2
        elif bad - good[0] <= 0.1 * bad:
            break
        else:
            rate = (good[0] + bad) / 2
    if good is None:
        print("No step without loss.")
    else:
        # Queues (each sender's buffer, ZeroMQ's, the kernel's) absorb a few seconds of
        # excess: what the collector took over the step is the sustained figure.
        print(
            f"Sustained with zero loss: {min(good):,.0f} entries/s at the collector"
            f" ({args.senders} senders on loopback; highest lossless offer {good[0]:,.0f}/s"
            f" for {args.seconds} s)"
        )
    per_call(args.calls)


if __name__ == "__main__":
    main()
