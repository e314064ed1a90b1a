"""Cost per entry of the progress console against the memory ring, side by side.

Runs, in one process and interleaved, the same workload (``Logger.log`` of a
5-key metrics dict, 200,000 entries) through

* ``mimir.Logger(formatter=None)``: nothing attached, the cost of ``log()`` itself,
* ``mimir.Logger(formatter=None, maxlen=1000)``: the memory ring,
* ``mimir.Logger(formatter="progress")`` writing to a pseudo-terminal (one status
  line redrawn 10 times a second, read by a thread as a terminal would) and to a
  pipe-like null stream (a line every 10,000 entries),
* ``mimir.Logger()``: the per-line console, to a null stream, for reference,

and prints the time per entry of each, the cost of each console or ring (its time
minus that of the bare Logger) and the ratio progress / memory (target <= 1).
Then the same for the handlers alone, as a dictConfig set-up calls them:
``handler.handle(record)`` on ready-made records.

Usage: python benchmarks/bench_console.py [--entries N] [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import threading
import time
import tty
from collections.abc import Callable, Iterator

from bench_core import entry  # benchmarks/ is the script's directory

import mimir
from mimir.console import ConsoleFormatter, ConsoleHandler, ProgressHandler


@contextlib.contextmanager
def terminal() -> Iterator[object]:
    """A pseudo-terminal's slave end as a text stream; a thread drains the master end."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stream = os.fdopen(slave, "w", encoding="utf-8")

    def drain() -> None:  # wakes only when something was written, as a terminal would
        with contextlib.suppress(OSError):  # EIO once the slave end is closed
            while os.read(master, 65536):
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield stream
    finally:
        stream.close()
        reader.join()
        os.close(master)


@contextlib.contextmanager
def null_stream() -> Iterator[object]:
    with open(os.devnull, "w", encoding="utf-8") as stream:
        yield stream


def through_logger(stdout: Callable[[], contextlib.AbstractContextManager], **kwargs) -> Callable:
    """A runner: seconds to log ``n`` entries through mimir.Logger(**kwargs), close included."""

    def run(n: int) -> float:
        with stdout() as stream, contextlib.redirect_stdout(stream):
            logger = mimir.Logger(**kwargs)
            log = logger.log
            start = time.perf_counter()
            for i in range(n):
                log(entry(i))
            logger.close()
            return time.perf_counter() - start

    return run


def through_handler(make: Callable[[object], logging.Handler | None], stdout) -> Callable:
    """A runner: seconds for ``handler.handle(record)`` on ``n`` ready-made records."""

    def run(n: int) -> float:
        records = [
            logging.LogRecord("bench", logging.INFO, "", 0, entry(i), None, None) for i in range(n)
        ]
        with stdout() as stream:
            handler = make(stream)
            start = time.perf_counter()
            if handler is not None:
                handle = handler.handle
                for record in records:
                    handle(record)
                handler.close()
            else:
                for _record in records:
                    pass
            return time.perf_counter() - start

    return run


def console_to(stream: object) -> logging.Handler:
    handler = ConsoleHandler()
    handler.setFormatter(ConsoleFormatter())
    return handler


def memory(stream: object) -> logging.Handler:
    handler = mimir.MemoryHandler(maxlen=1000)
    handler.setFormatter(mimir.JSONFormatter())
    return handler


def measure(runners: dict[str, Callable[[int], float]], n: int, rounds: int) -> dict[str, float]:
    """Best time per entry (seconds) of each runner over interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            gc.collect()
            times[name].append(run(n) / n)
    return {name: min(values) for name, values in times.items()}


def report(title: str, best: dict[str, float], base: str) -> None:
    print(title)
    for name, seconds in best.items():
        extra = "" if name == base else f"   cost {(seconds - best[base]) * 1e6:6.3f} us"
        print(f"  {name:28s} {seconds * 1e6:7.3f} us/entry{extra}")
    for progress in (name for name in best if name.startswith("progress")):
        ratio = (best[progress] - best[base]) / (best["memory ring"] - best[base])
        print(f"  {progress} / memory ring, cost per entry: {ratio:.2f}x (target <= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.entries

    logger_runners = {
        "bare Logger": through_logger(null_stream, formatter=None),
        "memory ring": through_logger(null_stream, formatter=None, maxlen=1000),
        "progress, terminal": through_logger(terminal, formatter="progress"),
        "progress, pipe": through_logger(null_stream, formatter="progress"),
        "per-line console, null": through_logger(null_stream),
    }
    best = measure(logger_runners, n, args.rounds)
    report(
        f"mimir.Logger.log, {n:,} entries of a 5-key dict, best of {args.rounds} rounds",
        best,
        "bare Logger",
    )

    handler_n = min(n, 50_000)
    handler_runners = {
        "loop over records": through_handler(lambda stream: None, null_stream),
        "memory ring": through_handler(memory, null_stream),
        "progress, terminal": through_handler(lambda stream: ProgressHandler(stream), terminal),
        "progress, pipe": through_handler(lambda stream: ProgressHandler(stream), null_stream),
        "per-line console, null": through_handler(console_to, null_stream),
    }
    with null_stream() as devnull, contextlib.redirect_stdout(devnull):  # the per-line console's
        best = measure(handler_runners, handler_n, args.rounds)
    report(
        f"handler.handle(record) alone, {handler_n:,} records, best of {args.rounds} rounds",
        best,
        "loop over records",
    )


if __name__ == "__main__":
    main()
