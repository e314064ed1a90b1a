"""``mimir plot``: live plots of a run in the browser, or a standalone HTML report.

``add_parser(subparsers)`` adds the ``plot`` subcommand to the ``mimir`` command's
parser; :func:`run` carries it out. ``python -m mimir.cli.plot`` runs it alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from mimir.cli._args import stream_address

__all__ = ["add_parser", "build_parser", "main", "run"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
DEFAULT_REPLAY_ADDRESS = "tcp://127.0.0.1:5556"

_DESCRIPTION = """\
Plot Y keys against the X key of a run, live in the browser: from a stream
(--connect, default tcp://127.0.0.1:5557 with replay from tcp://127.0.0.1:5556) or
from a log file that is still being written (--file, .jsonl or .jsonl.gz). With
--output, write a standalone HTML report of a log file instead of serving.
The server listens on 127.0.0.1 only; see the docs for viewing a remote run
through an SSH tunnel.
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("x_key", metavar="X", help="entry key on the x axis, e.g. iteration")
    parser.add_argument(
        "y_keys", nargs="+", metavar="Y", help="entry keys on the y axis, one line each"
    )
    source = parser.add_argument_group("where the entries come from")
    source.add_argument(
        "--connect",
        metavar="ADDRESS",
        type=stream_address,
        help=f"the publisher's stream address (default {DEFAULT_ADDRESS})",
    )
    source.add_argument(
        "--replay-address",
        metavar="ADDRESS",
        type=stream_address,
        help="the publisher's replay address, to show the entries it kept first "
        f"(default {DEFAULT_REPLAY_ADDRESS} without --connect, none with it)",
    )
    source.add_argument(
        "--file", metavar="PATH", help="follow a log file as it grows (.jsonl or .jsonl.gz)"
    )
    server = parser.add_argument_group("the server")
    server.add_argument(
        "--port", type=_positive, default=5006, help="HTTP port (default 5006; 0: any free port)"
    )
    server.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only)",
    )
    server.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="also accept this Host/Origin (e.g. a reverse proxy's name); repeatable",
    )
    server.add_argument("--show", action="store_true", help="open the plot in a web browser")
    view = parser.add_argument_group("what is shown")
    limit = view.add_mutually_exclusive_group()
    limit.add_argument(
        "--rollover",
        type=_positive,
        default=10_000,
        metavar="N",
        help="each line shows its newest N points (default 10000; 0: all)",
    )
    limit.add_argument(
        "--decimate",
        type=_positive,
        metavar="N",
        help="each line shows the whole run in at most N points (every k-th point)",
    )
    view.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    view.add_argument("--title", help="title of the plot")
    view.add_argument(
        "--output",
        "-o",
        metavar="REPORT.html",
        help="write a standalone HTML plot of --file (all points, or --decimate N) and exit",
    )
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plot`` subcommand to ``subparsers`` (from ``add_subparsers()``)."""
    parser = subparsers.add_parser(
        "plot",
        help="live plot of a run in the browser (stream or growing file), or an HTML report",
        description=_DESCRIPTION,
    )
    _configure(parser)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """A parser for ``plot`` alone (``python -m mimir.cli.plot``)."""
    return _configure(argparse.ArgumentParser(prog="mimir plot", description=_DESCRIPTION))


def _error(message: str, status: int = 2) -> int:
    print(f"mimir plot: error: {message}", file=sys.stderr)
    return status


def _refuse_non_regular(path: str) -> None:
    """Raise OSError at once if ``path`` is a FIFO, device or directory (a missing file is
    waited for)."""
    from mimir.reader import open_regular_file

    try:
        open_regular_file(path).close()
    except FileNotFoundError:
        pass


def run(args: argparse.Namespace) -> int:
    """Carry out ``mimir plot``; return the exit status."""
    if args.file is not None and (args.connect is not None or args.replay_address is not None):
        return _error("give either --file or --connect/--replay-address, not both")
    if args.output is not None and args.file is None:
        return _error("--output writes a report of a log file: give it --file PATH")
    if args.output is not None and args.show:
        return _error("--show opens the live plot, --output writes a report instead: drop one")
    if args.output is not None and args.allow_host:
        return _error("--allow-host is for the live plot's server, not --output: drop it")
    if args.decimate is not None and args.decimate < 2:
        return _error("--decimate needs at least 2 points")
    try:
        from mimir.plot import import_bokeh

        import_bokeh()
        from mimir.plot import server as plot_server

        if args.output is not None:
            count = plot_server.write_report(
                args.file,
                args.x_key,
                args.y_keys,
                args.output,
                log_y=args.log_y,
                decimate=args.decimate,
                title=args.title,
            )
            print(f"Wrote {args.output}: {count:,} entries of {args.file}")
            return 0
        store = plot_server.PointStore(
            args.x_key,
            args.y_keys,
            log_y=args.log_y,
            rollover=args.rollover or None,
            decimate=args.decimate,
        )
        if args.file is not None:
            _refuse_non_regular(args.file)
            feed: Any = plot_server.FileFeed(store, os.path.abspath(args.file))
        else:
            from mimir.stream.publisher import import_zmq

            import_zmq()
            if args.connect is None:
                address = DEFAULT_ADDRESS
                replay = args.replay_address or DEFAULT_REPLAY_ADDRESS
            else:
                address, replay = args.connect, args.replay_address
            feed = plot_server.StreamFeed(store, address, replay)

        def ready(url: str) -> None:
            print(f"Mímir plot at {url} (Ctrl+C to stop)", flush=True)

        plot_server.serve(
            store,
            feed,
            address=args.address,
            port=args.port,
            allow_hosts=args.allow_host,
            title=args.title,
            show=args.show,
            ready=ready,
        )
        return 0
    except ImportError as error:
        return _error(str(error), 1)
    except (OSError, ValueError) as error:
        return _error(str(error), 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mimir plot`` alone; return the exit status."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
