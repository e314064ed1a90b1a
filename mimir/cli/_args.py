"""What the ``mimir`` command's subcommands share: argument types, and how a command is
added to the parser or run alone."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Command", "stream_address"]

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


@dataclass(frozen=True)
class Command:
    """A subcommand with a module of its own, which also runs alone (``python -m``)."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]

    def add_parser(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the subcommand to ``subparsers`` (from ``add_subparsers()``)."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description)
        self.configure(parser)
        parser.set_defaults(run=self.run)
        return parser

    def build_parser(self) -> argparse.ArgumentParser:
        """A parser for this command alone."""
        parser = argparse.ArgumentParser(prog=f"mimir {self.name}", description=self.description)
        return self.configure(parser)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the command alone; return the exit status."""
        return self.run(self.build_parser().parse_args(argv))
