"""Compressed logs: mimir.Logger("x.jsonl.gz") against stdlib + python-json-logger.

Usage: python benchmarks/bench_gzlog.py [N] [ROUNDS]   (default 200,000 entries, 5 rounds)

The entry, the baseline and the Mímir run are those of bench_core.py (imported), run
in interleaved rounds; the throughput ratio compares the best time of each.

Prints: throughput ratio (target >= 4x), per-call latency of log() over a run crossing
>= 5 compressions (p50/p99/p99.9; target p99.9 <= 1 ms), size after close vs `gzip -6`
(target <= 1.10x) and the largest uncompressed stored tail seen (target <= 1 MiB).
"""

from __future__ import annotations

import gc
import gzip
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_core import entry, run_baseline, run_mimir  # noqa: E402

import mimir  # noqa: E402
from mimir.gzlog import Gzlog  # noqa: E402


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
    data = [entry(i) for i in range(n)]
    times = []
    clock = time.perf_counter
    gc.disable()
    for item in data:
        t = clock()
        log.log(item)
        times.append(clock() - t)
    gc.enable()
    log.close()
    stop.set()
    thread.join()
    max_tail = max(max_tail, watcher.state().stored_bytes)
    return sorted(times), max_tail, watcher.state().clen


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t_std: list[float] = []
        t_mim: list[float] = []
        for r in range(rounds):  # interleaved, as in bench_core.py
            gc.collect()
            t_std.append(run_baseline(str(d / f"std{r}.jsonl"), n))
            (d / f"std{r}.jsonl").unlink()
            gc.collect()
            log = d / f"x{r}.jsonl.gz"  # the last one is kept for the size comparison
            t_mim.append(run_mimir(str(log), n))
        print(f"entries: {n}, {rounds} interleaved rounds")
        print(f"stdlib+python-json-logger+FileHandler: {min(t_std) / n * 1e6:.2f} us/entry (best)")
        print(f"mimir.Logger x.jsonl.gz:               {min(t_mim) / n * 1e6:.2f} us/entry (best)")
        per_round = ", ".join(f"{a / b:.2f}x" for a, b in zip(t_std, t_mim, strict=True))
        print(f"throughput ratio per round: {per_round}")
        ratios = sorted(a / b for a, b in zip(t_std, t_mim, strict=True))
        print(f"throughput ratio (best of each): {min(t_std) / min(t_mim):.2f}x (target >= 4x)")
        print(f"throughput ratio (median round): {ratios[len(ratios) // 2]:.2f}x")
        raw = gzip.decompress(log.read_bytes())  # the very same lines, for gzip -6
        plain = d / "same.jsonl"
        plain.write_bytes(raw)
        ref = subprocess.run(["gzip", "-6", "-c", str(plain)], capture_output=True, check=True)
        size = os.path.getsize(log)
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
