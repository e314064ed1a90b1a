"""Compressed logs: mimir.Logger("x.jsonl.gz") against stdlib + python-json-logger.

Usage: python benchmarks/bench_gzlog.py [N]   (default 200,000 five-key entries)

Prints: throughput ratio (target >= 4x), per-call latency of log() over a run crossing
>= 5 compressions (p50/p99/p99.9; target p99.9 <= 1 ms), size after close vs `gzip -6`
(target <= 1.10x) and the largest uncompressed stored tail seen (target <= 1 MiB).
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mimir
from mimir.gzlog import Gzlog


def entries(n: int):
    for i in range(n):
        yield {
            "iteration": i,
            "loss": 1.0 / (i + 1),
            "accuracy": (i % 1000) / 1000,
            "lr": 0.001,
            "epoch": i // 1000,
        }


def run_mimir(path: Path, n: int) -> float:
    log = mimir.Logger(filename=str(path), maxlen=1000, formatter=None)
    data = list(entries(n))
    start = time.perf_counter()
    for entry in data:
        log.log(entry)
    log.close()
    return time.perf_counter() - start


def run_stdlib(path: Path, n: int) -> float:
    from pythonjsonlogger.json import JsonFormatter

    logger = logging.getLogger("bench.stdlib")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    data = list(entries(n))
    start = time.perf_counter()
    for entry in data:
        logger.info("m", extra=entry)
    handler.close()
    logger.removeHandler(handler)
    return time.perf_counter() - start


def latency(path: Path, n: int) -> tuple[list[float], int, int]:
    """Per-call latency of log(); a watcher samples the stored tail size meanwhile."""
    log = mimir.Logger(filename=str(path), maxlen=1000, formatter=None)
    log.log({"iteration": -1})
    log.flush() if hasattr(log, "flush") else None
    watcher = Gzlog(path)
    max_tail = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal max_tail
        while not stop.is_set():
            try:
                max_tail = max(max_tail, watcher.state().stored_bytes)
            except OSError:
                pass
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    data = list(entries(n))
    times = []
    clock = time.perf_counter
    gc.disable()
    for entry in data:
        t = clock()
        log.log(entry)
        times.append(clock() - t)
    gc.enable()
    log.close()
    stop.set()
    thread.join()
    max_tail = max(max_tail, watcher.state().stored_bytes)
    return sorted(times), max_tail, watcher.state().clen


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t_std = run_stdlib(d / "std.jsonl", n)
        t_mim = run_mimir(d / "x.jsonl.gz", n)
        print(f"entries: {n}")
        print(f"stdlib+python-json-logger+FileHandler: {t_std / n * 1e6:.2f} us/entry")
        print(f"mimir.Logger x.jsonl.gz:               {t_mim / n * 1e6:.2f} us/entry")
        print(f"throughput ratio: {t_std / t_mim:.2f}x (target >= 4x)")
        raw = b"".join(
            line + b"\n"
            for line in (__import__("json").dumps(e).encode() for e in mimir.load(d / "x.jsonl.gz"))
        )
        plain = d / "same.jsonl"
        plain.write_bytes(raw)
        ref = subprocess.run(["gzip", "-6", "-c", str(plain)], capture_output=True, check=True)
        size = os.path.getsize(d / "x.jsonl.gz")
        print(
            f"size after close: {size} B vs gzip -6 {len(ref.stdout)} B: "
            f"{size / len(ref.stdout):.3f}x (target <= 1.10x)"
        )
        times, max_tail, clen = latency(d / "lat.jsonl.gz", n)

        def pct(p: float) -> float:
            return times[min(len(times) - 1, int(p * len(times)))] * 1e6

        print(
            f"latency run: {clen / 2**20:.1f} MiB compressed in place "
            f"(>= {int(clen // 2**20)} compressions)"
        )
        print(
            f"log() latency p50 {pct(0.5):.1f} us, p99 {pct(0.99):.1f} us, "
            f"p99.9 {pct(0.999):.1f} us, max {times[-1] * 1e6:.0f} us (target p99.9 <= 1000)"
        )
        print(f"max stored tail observed: {max_tail} B ({max_tail / 2**20:.2f} MiB; target <= 1)")


if __name__ == "__main__":
    main()
