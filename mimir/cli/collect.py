"""``mimir collect``: receive the entries of many processes into one log.

``add_parser(subparsers)`` adds the ``collect`` subcommand to the ``mimir`` command's
parser; ``python -m mimir.cli.collect`` runs it alone.
"""

from __future__ import annotations

import argparse
import sys

from mimir.cli._args import Command, stream_address

__all__ = ["COMMAND", "run"]

_DESCRIPTION = (
    "Receive the entries that processes send with mimir.stream.forwarder.ZMQForwardHandler "
    "(ranks, data-loader workers, other hosts) and write them to one log, each with "
    "its sender under --source-key (the log named by --output); optionally republish "
    "them as a live stream. "
    "Gaps in a sender's entries are reported. Stops on Ctrl+C or SIGTERM, with "
    "everything received written."
)


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--bind",
        type=stream_address,
        default="tcp://127.0.0.1:5555",
        help="address to receive on (default: tcp://127.0.0.1:5555, this machine only; "
        "port 0 picks a free one)",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="the log to write (required): compressed and crash-safe if it ends in .gz "
        "(run.jsonl.gz), plain JSON lines otherwise",
    )
    parser.add_argument(
        "--file", metavar="FILE", help="deprecated spelling of --output (to be removed)"
    )
    parser.add_argument(
        "--stream", type=stream_address, help="also publish every entry live at this address"
    )
    parser.add_argument(
        "--replay", type=int, default=0, help="newest entries kept for late stream clients"
    )
    parser.add_argument(
        "--replay-address",
        type=stream_address,
        help="where the replay is served (default: the --stream host, a free port)",
    )
    parser.add_argument(
        "--source-key", default="source", help="key of the sender identity in each entry"
    )
    parser.add_argument("--curve-secret-key", help="the collector's .key_secret file (CURVE)")
    parser.add_argument(
        "--curve-authorized-keys", help="directory of the public keys of the allowed senders"
    )
    return parser


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of options, or None."""
    if args.output is None and args.file is None:
        return "the log to write is missing: add --output FILE"
    if args.output is not None and args.file is not None:
        return "--file is the deprecated spelling of --output: give only --output"
    if args.replay < 0:
        return "--replay must be >= 0"
    if args.stream is None and args.replay:
        return "--replay keeps entries for late stream clients: add --stream ADDRESS"
    if args.stream is None and args.replay_address is not None:
        return "--replay-address serves the stream's kept entries: add --stream ADDRESS"
    if args.replay_address is not None and not args.replay:
        return "--replay-address serves the entries --replay keeps: add --replay N"
    if args.curve_authorized_keys is not None and args.curve_secret_key is None:
        return "--curve-authorized-keys needs the collector's key: add --curve-secret-key FILE"
    return None


def run(args: argparse.Namespace) -> int:
    """Carry out ``mimir collect``; return the exit status."""
    problem = _usage_problem(args)
    if problem is not None:
        print(f"mimir collect: error: {problem}", file=sys.stderr)
        return 2
    if args.file is not None:
        print("mimir collect: --file is deprecated, use --output", file=sys.stderr)
        args.output = args.file
    try:
        from mimir.stream.collector import Collector

        collector = Collector(
            args.bind,
            filename=args.output,
            stream=args.stream,
            replay=args.replay,
            replay_address=args.replay_address,
            source_key=args.source_key,
            curve_server_secret_key=args.curve_secret_key,
            curve_authorized_keys=args.curve_authorized_keys,
        )
    except (ImportError, OSError, ValueError) as error:
        print(f"mimir collect: error: {error}", file=sys.stderr)
        return 1
    where = f"collecting on {collector.address} into {args.output}"
    if collector.stream is not None:
        where += f"; stream at {collector.stream_address}"
        if collector.replay_address:
            where += f", replay at {collector.replay_address}"
    print(f"mimir collect: {where} (Ctrl+C to stop)", flush=True)
    collector.run()
    print(
        f"mimir collect: {collector.received:,} entries from {len(collector.senders)} senders; "
        f"{collector.missed:,} missed in {collector.gaps:,} gaps; "
        f"{collector.bad_messages:,} malformed messages",
        flush=True,
    )
    return 0


COMMAND = Command(
    "collect",
    help="receive entries from many processes or hosts into one log",
    description=_DESCRIPTION,
    configure=_configure,
    run=run,
)


if __name__ == "__main__":
    sys.exit(COMMAND.main())
