"""Child process for tests/test_collector.py: flood a collector from one raw PUSH socket.

Usage: collector_flood.py ADDRESS

Sends malformed messages as fast as ZeroMQ takes them until stdin is closed, then
prints how many it sent.
"""

from __future__ import annotations

import sys
import threading

import zmq


def main() -> None:
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(sys.argv[1])
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    junk = [b"F" + b"x" * 100, b"\x00" * 12, b"not json\n" * 1000]
    sent = 0
    print("flooding", flush=True)
    while not done.is_set():
        try:
            sock.send_multipart(junk, zmq.NOBLOCK)
            sent += 1
        except zmq.Again:
            done.wait(0.0001)
    print(sent, flush=True)
    sock.close()
    context.term()


if __name__ == "__main__":
    main()
