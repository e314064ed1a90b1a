"""Throughput of mimir.Logger writing .jsonl against stdlib logging + python-json-logger.

Runs, in one process and interleaved, 200,000 entries of a 5-key metrics dict through

* Mímir: ``mimir.Logger(filename="x.jsonl", maxlen=1000, formatter=None)``,
* the baseline: stdlib ``logging`` + python-json-logger ``JsonFormatter`` +
  ``logging.FileHandler``,
* the floor: a bare loop of ``orjson.dumps`` plus a buffered binary write,

and prints entries per second and the ratios (targets: Mímir >= 4x the baseline and
within 3x of the floor). Then it prints the resident memory of a Logger with
``maxlen=1000`` after 1M and 5M entries (target: growth <= 5 MB).

Usage: python benchmarks/bench_core.py [--entries N] [--rounds R] [--skip-memory]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import tempfile
import time

import orjson
from pythonjsonlogger.json import JsonFormatter

import mimir


def entry(i: int) -> dict:
    """A typical 5-key metrics entry."""
    return {
        "iteration": i,
        "training_error": 1.0 / (i + 1),
        "validation_error": 1.5 / (i + 1),
        "learning_rate": 0.001,
        "epoch": i // 1000,
    }


def run_mimir(path: str, n: int, **logger_kwargs) -> float:
    """Seconds to log ``n`` entries through a mimir.Logger writing ``path``, and close it."""
    logger = mimir.Logger(filename=path, maxlen=1000, formatter=None, **logger_kwargs)
    start = time.perf_counter()
    log = logger.log
    for i in range(n):
        log(entry(i))
    logger.close()
    return time.perf_counter() - start


def run_baseline(path: str, n: int) -> float:
    logger = logging.getLogger("bench.baseline")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    start = time.perf_counter()
    info = logger.info
    for i in range(n):
        info(entry(i))
    handler.close()
    logger.removeHandler(handler)
    return time.perf_counter() - start


def run_floor(path: str, n: int) -> float:
    start = time.perf_counter()
    dumps = orjson.dumps
    with open(path, "wb", buffering=1 << 16) as file:
        for i in range(n):
            file.write(dumps(entry(i)) + b"\n")
    return time.perf_counter() - start


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_growth(directory: str, checkpoints: list[int]) -> list[tuple[int, float]]:
    """RSS growth (MB) of a Logger(maxlen=1000) writing .jsonl, at each checkpoint."""
    logger = mimir.Logger(
        filename=os.path.join(directory, "mem.jsonl"), maxlen=1000, formatter=None
    )
    for i in range(10_000):  # warm up: fill the ring and start the flush thread
        logger.log(entry(i))
    gc.collect()
    base = rss_bytes()
    results = []
    done = 0
    for checkpoint in checkpoints:
        for i in range(done, checkpoint):
            logger.log(entry(i))
        done = checkpoint
        logger.flush()
        gc.collect()
        results.append((checkpoint, (rss_bytes() - base) / 1e6))
    logger.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    n = args.entries
    runners = {"mimir": run_mimir, "baseline": run_baseline, "floor": run_floor}
    times: dict[str, list[float]] = {name: [] for name in runners}
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            for name, run in runners.items():
                path = os.path.join(directory, f"{name}-{round_}.jsonl")
                gc.collect()
                times[name].append(run(path, n))
                os.unlink(path)
        best = {name: min(values) for name, values in times.items()}
        print(f"{n:,} entries of a 5-key dict, best of {args.rounds} interleaved rounds")
        for name in runners:
            median = statistics.median(times[name])
            print(
                f"  {name:9s} {n / best[name]:>12,.0f} entries/s  "
                f"{best[name] / n * 1e6:6.2f} us/entry (median {median / n * 1e6:.2f})"
            )
        print(f"mimir / baseline throughput: {best['baseline'] / best['mimir']:.2f}x (target >= 4)")
        print(f"mimir time / floor time:     {best['mimir'] / best['floor']:.2f}x (target <= 3)")
        if not args.skip_memory:
            for count, growth in memory_growth(directory, [1_000_000, 5_000_000]):
                print(f"RSS growth after {count:,} entries (maxlen=1000): {growth:.2f} MB")


if __name__ == "__main__":
    main()
