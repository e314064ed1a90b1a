"""Throughput with every output on: memory ring, compressed gzlog file and ZeroMQ stream.

Runs, in one process and interleaved, 200,000 entries of a 5-key metrics dict through
``mimir.Logger(filename="x.jsonl.gz", maxlen=1000, stream=True, stream_maxlen=1000,
formatter=None)`` and through the baseline of bench_core.py (stdlib ``logging`` +
python-json-logger + ``logging.FileHandler`` writing plain ``.jsonl``), and prints
the throughput ratio (target: Mímir >= 3x the baseline).

Usage: python benchmarks/bench_outputs.py [--entries N] [--rounds R]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile

from bench_core import run_baseline, run_mimir  # benchmarks/ is the script's directory


def run_mimir_all_outputs(path: str, n: int) -> float:
    """Seconds to log ``n`` entries to memory, a gzlog file and a stream, and close."""
    return run_mimir(
        path,
        n,
        stream=True,
        stream_maxlen=1000,
        stream_address="tcp://127.0.0.1:0",
        replay_address="tcp://127.0.0.1:0",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.entries
    times: dict[str, list[float]] = {"mimir": [], "baseline": []}
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            gc.collect()
            times["mimir"].append(
                run_mimir_all_outputs(os.path.join(directory, f"m{round_}.jsonl.gz"), n)
            )
            gc.collect()
            times["baseline"].append(run_baseline(os.path.join(directory, f"b{round_}.jsonl"), n))
    best = {name: min(values) for name, values in times.items()}
    print(f"{n:,} entries of a 5-key dict, best of {args.rounds} interleaved rounds")
    for name, seconds in best.items():
        print(f"  {name:9s} {n / seconds:>12,.0f} entries/s  {seconds / n * 1e6:6.2f} us/entry")
    ratio = best["baseline"] / best["mimir"]
    print(f"mimir (memory + gzlog + stream) / baseline throughput: {ratio:.2f}x (target >= 3)")


if __name__ == "__main__":
    main()
