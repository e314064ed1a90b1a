"""Full verification of a compressed log: Gzlog.verify() against Python's gzip module.

Usage: python benchmarks/bench_gzlog_verify.py [--size-mb N] [--rounds R] [--cache-dir D]

Builds (once; cached in D, by default the system's temp dir) a gzlog of about N MB
(default 1000) of uncompressed 5-key JSON metric lines, written through the engine as
appends of 1 MiB each followed by a compression, at the handler's default level 4.
Then, in R interleaved rounds (default 3, best of each kept), on the same file:

* Python's gzip module reading it to the end (the baseline: inflate plus CRC),
* Gzlog.verify(): inflate the compressed part, check it against ccrc/clen, check the
  stored tail and P.dict (what a writer does once before its first append),
* Gzlog(path, verify="quick"): the constructor the handlers use (state, stored tail
  and trailer only), and Gzlog(path) with the default full verification,
* GzlogFileHandler(path): the handler's constructor (quick open, writer process
  started and ready), side by side with the same constructor on a new, empty log
  (the ratio shows whether it grows with the log), and the time until its writer
  process has verified the log (a flush() right after the constructor).

Rates are MB (10^6 bytes) of uncompressed log data per second. The file is in the page
cache after the first round: these are CPU rates, not disk rates.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mimir.files.compressed import GzlogFileHandler  # noqa: E402
from mimir.gzlog import MAX_APPEND, Gzlog  # noqa: E402

LEVEL = 4  # GzlogFileHandler's default compression level


def metric_lines(rnd: random.Random, start: int, size: int) -> tuple[bytes, int]:
    """Whole JSON lines of 5-key metric entries, about ``size`` bytes; the next iteration."""
    out: list[str] = []
    total = 0
    i = start
    while total < size:
        err = rnd.random()
        line = (
            f'{{"iteration": {i}, "epoch": {i // 5000}, "training_error": {err:.6f}, '
            f'"validation_error": {err * 1.1 + 0.01 * rnd.random():.6f}, '
            f'"learning_rate": {0.1 * 0.999 ** (i // 1000):.8f}}}\n'
        )
        out.append(line)
        total += len(line)
        i += 1
    data = "".join(out).encode()
    return data, i


def build(path: Path, size_mb: int) -> None:
    """Write the log through the engine: appends of < 1 MiB of whole lines, each compressed."""
    building = path.with_name(path.name.replace(".jsonl.gz", ".building.jsonl.gz"))
    base = str(building)[: -len(".gz")]
    for suffix in (".gz", ".dict", ".add", ".temp", ".lock", ".lock.k", ".repairs"):
        Path(base + suffix).unlink(missing_ok=True)
    rnd = random.Random(2024)
    g = Gzlog(building, compression_level=LEVEL)
    written = 0
    iteration = 0
    t0 = time.perf_counter()
    while written < size_mb * 10**6:
        data, iteration = metric_lines(rnd, iteration, MAX_APPEND - 200)
        g.append(data)
        g.compress()
        written += len(data)
    g.close()
    os.replace(building, path)
    os.replace(base + ".dict", str(path)[: -len(".gz")] + ".dict")  # as a writer leaves it
    for suffix in (".add", ".temp", ".lock", ".lock.k", ".repairs"):
        Path(base + suffix).unlink(missing_ok=True)
    took = time.perf_counter() - t0
    print(f"built {path} ({written / 1e6:.0f} MB of lines) in {took:.0f} s", flush=True)


def gzip_read(path: Path) -> tuple[float, int]:
    """Seconds for Python's gzip module to read the file to the end, and the bytes read."""
    t0 = time.perf_counter()
    n = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += len(chunk)
    return time.perf_counter() - t0, n


def engine_verify(path: Path) -> tuple[float, float]:
    """Seconds of Gzlog(path, verify="quick"), then of .verify() on that instance."""
    t0 = time.perf_counter()
    g = Gzlog(path, verify="quick")
    t1 = time.perf_counter()
    g.verify()
    t2 = time.perf_counter()
    g.close()
    return t1 - t0, t2 - t1


def full_open(path: Path) -> float:
    """Seconds of Gzlog(path) (verify="full", the default)."""
    t0 = time.perf_counter()
    Gzlog(path).close()
    return time.perf_counter() - t0


def handler_open(path: Path) -> tuple[float, float]:
    """Seconds of GzlogFileHandler(path), then until its writer has verified the log."""
    t0 = time.perf_counter()
    handler = GzlogFileHandler(path)
    t1 = time.perf_counter()
    handler.flush()  # answered once the writer has verified the log
    t2 = time.perf_counter()
    handler.close()
    return t1 - t0, t2 - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="uncompressed MB (10^6 B)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "mimir-bench"))
    args = parser.parse_args()
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"verify-{args.size_mb}mb.jsonl.gz"
    if not path.exists():
        build(path, args.size_mb)
    t_gzip: list[float] = []
    t_verify: list[float] = []
    t_quick: list[float] = []
    t_full: list[float] = []
    t_handler: list[float] = []
    t_handler_ready: list[float] = []
    t_handler_empty: list[float] = []
    empty = Path(tempfile.mkdtemp(prefix="mimir-bench-")) / "empty.jsonl.gz"
    size = 0
    for _ in range(args.rounds):  # interleaved, best of each
        gc.collect()
        took, size = gzip_read(path)
        t_gzip.append(took)
        quick, verify = engine_verify(path)
        t_quick.append(quick)
        t_verify.append(verify)
        t_full.append(full_open(path))
        ctor, ready = handler_open(path)
        t_handler.append(ctor)
        t_handler_ready.append(ready)
        empty.unlink(missing_ok=True)
        t_handler_empty.append(handler_open(empty)[0])
    mb = size / 1e6
    g, v = min(t_gzip), min(t_verify)
    print(f"log: {path}")
    print(
        f"     {mb:.0f} MB uncompressed, {path.stat().st_size / 1e6:.1f} MB on disk "
        f"(level {LEVEL}), {args.rounds} interleaved rounds, best of each"
    )
    print()
    print(f"| {'what':<38} | {'time':>10} | {'MB/s':>7} |")
    print(f"|{'-' * 40}|{'-' * 12}|{'-' * 9}|")
    print(f"| {'gzip module, read to the end':<38} | {g:>8.2f} s | {mb / g:>7.0f} |")
    print(f"| {'Gzlog.verify()':<38} | {v:>8.2f} s | {mb / v:>7.0f} |")
    print(f"| {'Gzlog(path) (verify=full, default)':<38} | {min(t_full):>8.2f} s | {'':>7} |")
    print(f"| {'Gzlog(path, verify=quick)':<38} | {min(t_quick) * 1e3:>7.2f} ms | {'':>7} |")
    h, e = min(t_handler), min(t_handler_empty)
    print(f"| {'GzlogFileHandler(path)':<38} | {h * 1e3:>7.0f} ms | {'':>7} |")
    print(f"| {'GzlogFileHandler(new, empty log)':<38} | {e * 1e3:>7.0f} ms | {'':>7} |")
    ready = min(t_handler_ready)
    print(f"| {'  ... until its writer has verified':<38} | {ready:>8.2f} s | {'':>7} |")
    print()
    print(f"verification rate / gzip module rate: {g / v:.2f}x")
    print(f"handler constructor, this log / empty log: {h / e:.2f}x")


if __name__ == "__main__":
    main()
