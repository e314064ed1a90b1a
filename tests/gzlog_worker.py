"""Child process for tests/test_gzlog_engine.py (lock and multi-writer tests).

Usage:
    python gzlog_worker.py hold PATH TEXT
        open PATH, start appending TEXT, print "held" once the append is marked
        (lock held, P.add written) and wait to be killed.
    python gzlog_worker.py write PATH ID COUNT SEED
        open PATH, print "ready", wait for a line on stdin, then append COUNT
        JSON lines {"id": ID, "seq": n, "pad": ...}, one append each.
    python gzlog_worker.py ack PATH SEED
        append JSON lines {"seq": n, "pad": ...} forever, printing "ack n" after
        each append returned (until killed).
"""

from __future__ import annotations

import json
import random
import sys
import time

from mimir.gzlog import Gzlog


def _hold(path: str, text: str) -> None:
    def hook(point: str, n: int) -> None:
        if point == "append.marked":
            print("held", flush=True)
            time.sleep(600)  # the test kills this process with SIGKILL

    Gzlog(path, hooks=hook).append(text.encode())


def _write(path: str, ident: int, count: int, seed: int) -> None:
    rnd = random.Random(seed)
    log = Gzlog(path, lock_timeout=120)
    print("ready", flush=True)
    sys.stdin.readline()
    for seq in range(count):
        pad = "x" * rnd.randint(100, 8000)
        log.append((json.dumps({"id": ident, "seq": seq, "pad": pad}) + "\n").encode())
    log.close()
    print("done", flush=True)


def _ack(path: str, seed: int) -> None:
    rnd = random.Random(seed)
    log = Gzlog(path, lock_timeout=120)
    seq = 0
    while True:
        pad = "y" * rnd.randint(100, 12000)
        log.append((json.dumps({"seq": seq, "pad": pad}) + "\n").encode())
        print(f"ack {seq}", flush=True)
        seq += 1


def main(argv: list[str]) -> None:
    if argv[1] == "hold":
        _hold(argv[2], argv[3])
    elif argv[1] == "ack":
        _ack(argv[2], int(argv[3]))
    elif argv[1] == "write":
        _write(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    else:
        raise SystemExit(f"unknown mode {argv[1]!r}")


if __name__ == "__main__":
    main(sys.argv)
