"""``mimir plot``: live plots of a run in the browser, or a standalone HTML report.

``add_parser(subparsers)`` adds the ``plot`` subcommand to the ``mimir`` command's
parser; :func:`run` carries it out. ``python -m mimir.cli.plot`` runs it alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mimir.cli._args import Command, stream_address

__all__ = ["COMMAND", "run"]

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
DEFAULT_REPLAY_ADDRESS = "tcp://127.0.0.1:5556"

_DESCRIPTION = """\
Plot Y keys against the X key of one or more runs, live in the browser: from
streams (--connect, default tcp://127.0.0.1:5557, with the entries the publisher
kept replayed first) and from log files that may still be written (--file,
.jsonl or .jsonl.gz; globs and folders too). Each file or stream is a run,
named by its file name or by --name; a collected log is split by its source.
Every view shows the whole run, at most 4 points per pixel column, refined when
you zoom. With --output, write a standalone HTML report of log files instead of
serving. The server listens on 127.0.0.1 only; see the docs for viewing a
remote run through an SSH tunnel.
"""

#: How many entries of each file are read before the server starts (keys are checked on them).
PRIME_ENTRIES = 200_000


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


class _Input(argparse.Action):
    """Collects --file and --connect in command-line order (for --name)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        inputs = list(getattr(namespace, "inputs", None) or [])
        inputs.append((self.dest, values))
        namespace.inputs = inputs
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("x_key", metavar="X", help="entry key on the x axis, e.g. iteration")
    parser.add_argument(
        "y_keys", nargs="+", metavar="Y", help="entry keys on the y axis, one line each"
    )
    parser.set_defaults(inputs=[])
    source = parser.add_argument_group("where the entries come from")
    source.add_argument(
        "--connect",
        metavar="ADDRESS",
        type=stream_address,
        action=_Input,
        help=f"a publisher's stream address (default {DEFAULT_ADDRESS}); repeatable: one run each",
    )
    source.add_argument(
        "--replay-address",
        metavar="ADDRESS",
        type=stream_address,
        action="append",
        help="the replay address of each --connect in order (default: the one each "
        "publisher announces on its stream)",
    )
    source.add_argument(
        "--no-replay",
        action="store_true",
        help="streams: live entries only, without those the publisher kept",
    )
    source.add_argument(
        "--file",
        metavar="PATH",
        action=_Input,
        help="a log file followed as it grows (.jsonl or .jsonl.gz), a glob or a folder; "
        "repeatable: one run per file",
    )
    source.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="the name of each run, once per file and stream in order (default: the file "
        "name without .jsonl[.gz], the stream's address)",
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
    view.add_argument("--rollover", type=_positive, metavar="N", help=argparse.SUPPRESS)
    view.add_argument("--decimate", type=_positive, metavar="N", help=argparse.SUPPRESS)
    view.add_argument("--log-y", action="store_true", help="start with a logarithmic y axis")
    view.add_argument(
        "--x-axis",
        choices=["linear", "datetime", "elapsed"],
        help="numbers (linear), wall-clock time (datetime: X in seconds since the epoch) or "
        "elapsed time since each run's first entry (elapsed: X in seconds); default: datetime "
        "for X = wall_time (mimir.Logger(wall_time=True)), linear otherwise",
    )
    view.add_argument(
        "--panels",
        action="store_true",
        default=None,
        help="one panel per key, on a shared x axis (default: when the keys' scales differ "
        "by over 100x)",
    )
    view.add_argument("--title", help="title of the plot")
    view.add_argument(
        "--output",
        "-o",
        metavar="REPORT.html",
        help="write a standalone HTML plot of the --file logs and exit",
    )
    return parser


def _error(message: str, status: int = 2) -> int:
    print(f"mimir plot: error: {message}", file=sys.stderr)
    return status


def _deprecated(args: argparse.Namespace) -> None:
    for option in ("rollover", "decimate"):
        if getattr(args, option) is not None:
            print(
                f"mimir plot: --{option} is deprecated and ignored: every view now shows the "
                "whole run, at most 4 points per pixel column (spikes stay visible), refined "
                "when you zoom",
                file=sys.stderr,
            )


def _has_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _files(spec: str) -> list[str]:
    """The files of one --file: a file (that may not exist yet), a glob or a folder."""
    from mimir.reader import open_regular_file
    from mimir.runs import find_logs

    if not os.path.isdir(spec) and (os.path.lexists(spec) or not _has_glob(spec)):
        try:
            open_regular_file(spec).close()  # a FIFO or device: refused at once
        except FileNotFoundError:
            pass  # waited for
        return [spec]
    return [os.fspath(path) for path in find_logs([spec])]


def _inputs(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """``(kind, file or address, replay address)`` of every run, in command-line order."""
    inputs = list(args.inputs)
    replays = list(args.replay_address or [])
    if not inputs:
        return [("connect", DEFAULT_ADDRESS, replays.pop(0) if replays else None)]
    connects = sum(kind == "connect" for kind, _ in inputs)
    if len(replays) > connects:
        raise _Usage(
            f"{len(replays)} --replay-address for {connects} --connect: give one per --connect"
        )
    result: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    for kind, value in inputs:
        if kind == "file":
            for path in _files(value):
                if os.path.realpath(path) not in seen:  # a file named twice is one run
                    seen.add(os.path.realpath(path))
                    result.append(("file", path, None))
        else:
            result.append(("connect", value, replays.pop(0) if replays else None))
    return result


class _Usage(Exception):
    """A usage error (exit status 2)."""


def _names(args: argparse.Namespace, inputs: list[tuple[str, str, str | None]]) -> list[str]:
    from mimir.runs import run_names

    if args.name is not None:
        if len(args.name) != len(inputs):
            raise _Usage(
                f"{len(args.name)} --name for {len(inputs)} runs (files and streams): "
                "give one --name per run, in order"
            )
        if len(set(args.name)) != len(args.name):
            raise _Usage("two runs have the same --name: give each its own")
        return list(args.name)
    if len(inputs) == 1:
        return [""]
    files = [value for kind, value, _ in inputs if kind == "file"]
    stems = iter(run_names(files)) if files else iter(())
    names = []
    for kind, value, _ in inputs:
        names.append(next(stems) if kind == "file" else value.split("://", 1)[-1])
    return names


def run(args: argparse.Namespace) -> int:
    """Carry out ``mimir plot``; return the exit status."""
    files = [value for kind, value in args.inputs if kind == "file"]
    connects = [value for kind, value in args.inputs if kind == "connect"]
    if args.replay_address and not connects and files:
        return _error("--replay-address goes with --connect, not --file")
    if args.replay_address and args.no_replay:
        return _error("--no-replay shows live entries only: drop --replay-address")
    if args.output is not None and not files:
        return _error("--output writes a report of log files: give it --file PATH")
    if args.output is not None and connects:
        return _error("--output writes a report of log files, not of streams: drop --connect")
    if args.output is not None and args.show:
        return _error("--show opens the live plot, --output writes a report instead: drop one")
    if args.output is not None and args.allow_host:
        return _error("--allow-host is for the live plot's server, not --output: drop it")
    _deprecated(args)
    try:
        from mimir.plot import import_bokeh

        import_bokeh()
        from mimir.plot import server as plot_server

        if args.output is not None:
            count = plot_server.write_report(
                files,
                args.x_key,
                args.y_keys,
                args.output,
                names=args.name,
                log_y=args.log_y,
                title=args.title,
                panels=args.panels,
                x_axis=args.x_axis,
            )
            print(f"Wrote {args.output}: {count:,} entries of {', '.join(files)}")
            return 0
        inputs = _inputs(args)
        names = _names(args, inputs)
        store = plot_server.PointStore(
            args.x_key, args.y_keys, log_y=args.log_y, x_axis=args.x_axis
        )
        store.panels = args.panels
        feeds: list[Any] = []
        for (kind, value, replay), name in zip(inputs, names, strict=True):
            store.declare(name)
            if kind == "file":
                feeds.append(plot_server.FileFeed(store, os.path.abspath(value), run=name))
            else:
                from mimir.stream.publisher import import_zmq

                import_zmq()
                options = {"replay": False} if args.no_replay else {}
                feeds.append(plot_server.StreamFeed(store, value, replay, run=name, **options))
        read = [feed for feed in feeds if isinstance(feed, plot_server.FileFeed)]
        for feed in read:  # what the files hold already: its keys are checked now
            feed.read_new(PRIME_ENTRIES)
        if read and store.entries:
            store.check_keys(", ".join(feed.path for feed in read))

        def ready(url: str) -> None:
            print(f"Mímir plot at {url} (Ctrl+C to stop)", flush=True)

        def problem(message: str) -> None:
            print(f"mimir plot: {message}", file=sys.stderr, flush=True)

        plot_server.serve(
            store,
            feeds,
            address=args.address,
            port=args.port,
            allow_hosts=args.allow_host,
            title=args.title,
            show=args.show,
            ready=ready,
            on_problem=problem,
        )
        return 0
    except _Usage as error:
        return _error(str(error))
    except ImportError as error:
        return _error(str(error), 1)
    except (OSError, ValueError) as error:
        return _error(str(error), 1)


COMMAND = Command(
    "plot",
    help="live plot of a run in the browser (stream or growing file), or an HTML report",
    description=_DESCRIPTION,
    configure=_configure,
    run=run,
)


if __name__ == "__main__":
    sys.exit(COMMAND.main())
