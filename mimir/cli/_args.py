"""Argument types shared by the ``mimir`` command's parsers (``main``, ``plot``, ``collect``)."""

from __future__ import annotations

import argparse

__all__ = ["stream_address"]

_SCHEMES = ("tcp", "ipc", "inproc")


def stream_address(text: str) -> str:
    """A ZeroMQ address from the command line: ``host:port`` means ``tcp://host:port``.

    Raises :class:`argparse.ArgumentTypeError` (a one-line usage error) for anything
    ZeroMQ would refuse, instead of letting it fail later with a ZeroMQ traceback.
    """
    address = text if "://" in text else f"tcp://{text}"
    scheme, _, rest = address.partition("://")
    example = "tcp://127.0.0.1:5557 or 127.0.0.1:5557"
    if scheme not in _SCHEMES:
        raise argparse.ArgumentTypeError(
            f"unknown scheme {scheme!r} in {text!r} (use {', '.join(_SCHEMES)}; e.g. {example})"
        )
    if scheme != "tcp":
        if not rest:
            raise argparse.ArgumentTypeError(f"{text!r} names no endpoint after {scheme}://")
        return address
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not (port == "*" or (port.isdigit() and int(port) <= 65535)):
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT with a port from 0 to 65535, got {text!r} (e.g. {example})"
        )
    return address
