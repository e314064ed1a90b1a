"""Test helper for tests/test_plot.py: write a compressed log in batches, on request.

Usage: python plot_writer.py PATH BATCH

Logs BATCH entries {"iteration", "training_error"[, "validation_error"]} to PATH
(a .jsonl.gz, through GzlogFileHandler with a short flush interval), commits them,
prints "wrote N" (N: entries so far), then waits for a line on standard input
before the next batch; closes the log when standard input closes.
"""

from __future__ import annotations

import logging
import sys

from plot_data import entry  # beside this script, so on sys.path

from mimir.files.compressed import GzlogFileHandler
from mimir.formatter import JSONFormatter


def main() -> None:
    path, batch = sys.argv[1], int(sys.argv[2])
    handler = GzlogFileHandler(path, flush_interval=0.05)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("plot-writer")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    written = 0
    while True:
        for _ in range(batch):
            logger.info(entry(written))
            written += 1
        handler.flush()
        print(f"wrote {written}", flush=True)
        if not sys.stdin.readline():
            break
    handler.close()


if __name__ == "__main__":
    main()
