"""Test helper: publish entries {"i": 1..TOTAL} at full speed from a separate process.

Usage: python stream_publisher.py ADDRESSES_FILE REPLAY TOTAL

Binds ephemeral loopback ports, writes {"address", "replay_address"} as JSON to
ADDRESSES_FILE, logs TOTAL entries at once, then waits for standard input to close
before closing the handler.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from mimir.stream.publisher import ZMQStreamHandler


def main() -> None:
    path, replay, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    handler = ZMQStreamHandler("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", replay=replay)
    logger = logging.getLogger("publisher")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump({"address": handler.address, "replay_address": handler.replay_address}, f)
    os.replace(temporary, path)
    for i in range(1, total + 1):
        logger.info({"i": i})
    sys.stdin.read()  # until the test is done reading
    handler.close()
    if handler.sent + handler.dropped != total:
        sys.exit(2)


if __name__ == "__main__":
    main()
