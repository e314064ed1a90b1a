"""Child process for tests/test_collector.py: run a Collector until signalled or killed.

Usage: collector_server.py BIND FILENAME

Prints the bound address on its first line, then runs; on SIGTERM prints one JSON
line of counters.
"""

from __future__ import annotations

import json
import sys

from mimir.stream.collector import Collector


def main() -> None:
    collector = Collector(sys.argv[1], filename=sys.argv[2], flush_interval=0.05)
    print(collector.address, flush=True)
    collector.run()
    print(
        json.dumps(
            {"received": collector.received, "gaps": collector.gaps, "missed": collector.missed}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
