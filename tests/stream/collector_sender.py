"""Child process for tests/test_collector.py: log entries through a ZMQForwardHandler.

Usage: collector_sender.py ADDRESS NAME COUNT [STOPFILE]

Logs COUNT entries {"i": i, ...} through logging (or, with STOPFILE, keeps logging
until that file exists, printing "started" after the first 1000), closes the
handler and prints one JSON line: logged, sent, dropped, close and slowest-call
seconds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from mimir.stream.forwarder import ZMQForwardHandler


def main() -> None:
    address, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stop_file = sys.argv[4] if len(sys.argv) > 4 else None
    handler = ZMQForwardHandler(address, name=name)
    log = logging.getLogger("sender")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    slowest = 0.0
    i = 0
    clock = time.perf_counter
    while True:
        if stop_file is None:
            if i == count:
                break
        elif i % 1000 == 0:
            if i == 1000:
                print("started", flush=True)
            if os.path.exists(stop_file) and i >= 1000:
                break
            time.sleep(0.002)  # pacing: about 500k entries/s at most, not synchronisation
        start = clock()
        log.info({"i": i, "loss": 1.0 / (i + 1)})
        took = clock() - start
        if took > slowest:
            slowest = took
        i += 1
    start = clock()
    handler.close()
    closing = clock() - start
    print(
        json.dumps(
            {
                "logged": i,
                "sent": handler.sent,
                "dropped": handler.dropped,
                "close_seconds": closing,
                "slowest_call": slowest,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
