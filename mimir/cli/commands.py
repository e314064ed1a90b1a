"""The ``mimir`` command's parser and dispatcher, and its commands on logs and streams.

``demo``, ``cat``, ``check`` and ``tail`` are here; ``plot``, ``summary`` and
``collect`` have modules of their own beside this one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import mimir
from mimir.cli import collect, plot, summary
from mimir.cli._args import stream_address
from mimir.gzlog import HEADER as GZLOG_HEADER
from mimir.reader import (
    DamagedLogError,
    MalformedLogError,
    iter_lines,
    open_regular_file,
    parse_line,
)

__all__ = ["main"]

DEFAULT_STREAM_ADDRESS = "tcp://127.0.0.1:5557"


def demo(output: str, steps: int, delay: float, seed: int, stream: bool = False) -> None:
    """A short synthetic training run, logged to the console and to ``output``.

    With ``stream``, entries are also published on the default stream addresses,
    with the whole run replayed to late joiners, for ``mimir tail`` or ``mimir plot``.
    """
    rng = random.Random(seed)
    streaming = {"stream": True, "stream_maxlen": steps} if stream else {}
    with mimir.Logger(filename=output, maxlen=steps, **streaming) as logger:
        if logger.stream is not None:
            print(
                f"Streaming on {logger.stream.address} (replay on "
                f"{logger.stream.replay_address}); watch with: mimir tail",
                flush=True,
            )
        for iteration in range(steps):
            progress = iteration / max(steps - 1, 1)
            training_error = 0.9 * math.exp(-4 * progress) + 0.05 + rng.gauss(0, 0.01)
            entry = {"iteration": iteration, "training_error": round(training_error, 5)}
            if iteration % 10 == 9:
                entry["validation_error"] = round(training_error + 0.03 + rng.gauss(0, 0.01), 5)
            logger.log(entry)
            time.sleep(delay)
        best = min(logger, key=lambda entry: entry["training_error"])
    print(
        f"\nLogged {steps} entries to {output}; lowest training error "
        f"{best['training_error']} at iteration {best['iteration']}.\n"
        f"Try: mimir cat {output} | jq -s 'min_by(.training_error)'"
    )


def cat(filenames: Sequence[str], partial: bool = False) -> int:
    """Write the complete entries of each log to standard output as JSON lines.

    A damaged or truncated log's readable lines are printed, then the error goes to
    standard error and the status is 1 (with ``partial``: a warning, status 0). The
    other files are still printed.
    """
    out = sys.stdout.buffer
    status = 0
    for filename in filenames:
        try:
            for _, line in iter_lines(filename):
                out.write(line)
        except DamagedLogError as error:
            out.flush()
            if partial:
                after = "the rest was left out"
            else:
                status = 1
                after = "--partial exits with status 0"
            print(
                f"mimir cat: {'warning' if partial else 'error'}: {error.filename}:"
                f" {error.reason}; printed {error.entries_read}"
                f" {'entry' if error.entries_read == 1 else 'entries'} before it"
                f" ({after})",
                file=sys.stderr,
            )
        except BrokenPipeError:
            raise
        except OSError as error:  # a missing file, a FIFO ...: say so, print the others
            out.flush()
            print(f"mimir cat: error: {error}", file=sys.stderr)
            status = 1
    out.flush()
    return status


def _count_entries(filename: str) -> tuple[int, int]:
    """(entries, bytes of a last line without its newline) of a log; raises if it is damaged."""
    entries = partial = 0
    for _, line in iter_lines(filename, torn=True):
        if line.endswith(b"\n"):
            entries += 1
        else:
            partial = len(line)
    return entries, partial


def _check_gzlog(filename: str, out) -> int:
    from mimir import gzlog

    pending = gzlog.pending_operation(filename)
    holder = gzlog.describe_lock_holder(filename)
    caught: list[warnings.WarningMessage] = []

    def keep(message: Warning | str, category: type[Warning], *args: object, **kw: object) -> None:
        if issubclass(category, gzlog.GzlogLockWaitWarning):  # said now: the user waits
            print(f"mimir check: {message}", file=sys.stderr, flush=True)
        else:  # recoveries: said with the report below
            caught.append(warnings.WarningMessage(message, category, "", 0))

    with warnings.catch_warnings():
        warnings.simplefilter("always", gzlog.GzlogWarning)
        warnings.showwarning = keep
        report = gzlog.check(filename, recover=True, lock_timeout=60)
    print(f"{filename}: gzlog (compressed log)", file=out)
    print(f"  lock holder: {holder or 'none'}", file=out)
    print(f"  operation pending: {pending if pending != 'none' else 'none'}", file=out)
    if not report["valid"]:
        print(f"  DAMAGED: {report['error']}", file=out)
        print(
            "  the file was left as it is; the next writer moves it aside to "
            f"{filename}.corrupt-<time> and starts a new log (see `mimir check` in the docs)",
            file=out,
        )
        return 1
    try:
        lines, partial = _count_entries(filename)
    except DamagedLogError as error:  # changed since it was checked
        print(f"  DAMAGED: {error}", file=out)
        return 1
    print(f"  entries: {lines}", file=out)
    print(f"  bytes compressed: {report['compressed_bytes']}", file=out)
    print(f"  bytes stored: {report['stored_bytes']} (uncompressed tail)", file=out)
    if partial:
        print(f"  last line: incomplete ({partial} bytes without a newline)", file=out)
    if report["recovered"]:
        print("  recovered an interrupted operation:", file=out)
        for line in report["recovered"]:
            print(f"    {line}", file=out)
        for warning in caught:
            print(f"    warning: {warning.message}", file=out)
        print("  status: recovered", file=out)
    else:
        if pending != "none":
            print(f"  (the {pending} in progress was finished by its writer)", file=out)
        print("  status: healthy", file=out)
    return 0


_SHOWN_BAD_LINES = 5


def _check_plain(filename: str, out: Any) -> int:
    """Check a plain JSON-lines log line by line, as :func:`mimir.load` reads it."""
    entries = partial = 0
    bad: list[str] = []
    for lineno, line in iter_lines(filename, torn=True):
        if not line.endswith(b"\n"):
            partial = len(line)
            break
        try:
            parse_line(line, filename, lineno)
        except MalformedLogError as error:
            bad.append(str(error))
            continue
        entries += 1
    print(f"{filename}: plain JSON lines", file=out)
    print(f"  entries: {entries}", file=out)
    for message in bad[:_SHOWN_BAD_LINES]:
        print(f"  MALFORMED: {message}", file=out)
    if len(bad) > _SHOWN_BAD_LINES:
        print(f"  ... and {len(bad) - _SHOWN_BAD_LINES} more malformed lines", file=out)
    if partial:
        print(
            f"  last line: incomplete ({partial} bytes without a newline: being"
            " written, or cut by a crash; readers leave it out)",
            file=out,
        )
    else:
        print("  last line: complete", file=out)
    if bad:
        print(
            f"  status: malformed ({len(bad)} {'line is' if len(bad) == 1 else 'lines are'}"
            " not JSON: mimir.load raises on the first; jq -cR 'fromjson? // empty' skips them)",
            file=out,
        )
        return 1
    print("  status: healthy", file=out)
    return 0


def _check_one(filename: str, out: Any) -> int:
    with open_regular_file(filename) as file:
        head = file.read(16)
    if head == GZLOG_HEADER:
        return _check_gzlog(filename, out)
    if head[:2] == b"\x1f\x8b" or filename.endswith(".gz"):
        print(
            f"{filename}: not a gzlog file: it does not start with the header of a"
            " Mímir compressed log (damaged, or a plain gzip file that Mímir cannot"
            " append to)",
            file=out,
        )
        return 1
    return _check_plain(filename, out)


def check(filenames: Sequence[str]) -> int:
    """Report each log's state; recover an interrupted gzlog operation. 1 if one is damaged."""
    status = 0
    out = sys.stdout
    for filename in filenames:
        try:
            status = max(status, _check_one(filename, out))
        except (OSError, DamagedLogError) as error:
            out.flush()
            print(f"mimir check: error: {error}", file=sys.stderr)
            status = 1
        out.flush()
    return status


def tail(
    address: str, replay_address: str | None, timeout: float | None, replay: bool = True
) -> int:
    """Print the entries of a live stream as JSON lines until interrupted.

    The entries the publisher keeps for replay come first, asked for at
    ``replay_address`` or, when it is None, at the address the publisher announces;
    ``replay=False`` prints live entries only. With ``timeout``, a stream silent for
    that long ends the command normally: a note on standard error and status 0.
    """
    from mimir.stream import subscribe

    out = sys.stdout
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    try:
        with subscribe(address, replay_address, replay=replay, timeout=timeout) as entries:
            for entry in entries:
                out.write(dumps(entry) + "\n")
                out.flush()
    except TimeoutError as error:
        print(f"mimir tail: {error}", file=sys.stderr)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ValueError("--steps must be at least 1")
    demo(args.output, args.steps, args.delay, args.seed, args.stream)
    return 0


def _run_cat(args: argparse.Namespace) -> int:
    return cat(args.files, args.partial)


def _run_check(args: argparse.Namespace) -> int:
    return check(args.files)


def _run_tail(args: argparse.Namespace) -> int:
    address = args.connect
    if args.address is not None:
        if address is not None:
            print("mimir tail: error: give the stream once, as --connect ADDRESS", file=sys.stderr)
            return 2
        print(
            "mimir tail: the ADDRESS argument is deprecated, use --connect ADDRESS", file=sys.stderr
        )
        address = args.address
    if args.no_replay and args.replay_address is not None:
        print(
            "mimir tail: error: --no-replay prints live entries only: drop --replay-address",
            file=sys.stderr,
        )
        return 2
    return tail(
        address or DEFAULT_STREAM_ADDRESS, args.replay_address, args.timeout, not args.no_replay
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mimir`` command."""
    parser = argparse.ArgumentParser(
        prog="mimir", description="Logging for machine-learning experiments."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {mimir.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_parser = commands.add_parser("demo", help="log a short synthetic training run")
    demo_parser.add_argument("--output", "-o", default="demo.jsonl", help="log file to write")
    demo_parser.add_argument("--steps", type=int, default=60, help="number of iterations")
    demo_parser.add_argument("--delay", type=float, default=0.05, help="seconds per iteration")
    demo_parser.add_argument("--seed", type=int, default=0, help="random seed")
    demo_parser.add_argument(
        "--stream", action="store_true", help="also stream the entries (see mimir tail)"
    )
    demo_parser.set_defaults(run=_run_demo)

    cat_parser = commands.add_parser(
        "cat", help="print logs as JSON lines (plain or compressed), e.g. for jq"
    )
    cat_parser.add_argument("files", nargs="+", metavar="FILE")
    cat_parser.add_argument(
        "--partial",
        action="store_true",
        help="print the readable part of a damaged or truncated log and exit 0 (with a warning)",
    )
    cat_parser.set_defaults(run=_run_cat)

    check_parser = commands.add_parser(
        "check",
        help="report a log's state; recover a compressed log after an interrupted write",
    )
    check_parser.add_argument("files", nargs="+", metavar="FILE")
    check_parser.set_defaults(run=_run_check)

    tail_parser = commands.add_parser(
        "tail",
        help="print the entries of a live stream as JSON lines, e.g. for jq",
        description="Print the entries a publisher keeps for replay, then the live ones, as"
        " JSON lines. The replay address is the one the publisher announces on its stream,"
        " unless --replay-address is given.",
    )
    tail_parser.add_argument(
        "--connect",
        metavar="ADDRESS",
        type=stream_address,
        help=f"the stream's address (default {DEFAULT_STREAM_ADDRESS})",
    )
    tail_parser.add_argument(
        "address",
        nargs="?",
        type=stream_address,
        help="deprecated: the stream's address, now given as --connect ADDRESS",
    )
    tail_parser.add_argument(
        "--replay-address",
        metavar="ADDRESS",
        type=stream_address,
        help="where to ask for the entries the publisher keeps for late joiners (default:"
        " the address it announces; give it when that one is not reachable as is, e.g."
        " through an SSH tunnel on other ports)",
    )
    tail_parser.add_argument(
        "--no-replay",
        action="store_true",
        help="print live entries only, not the ones the publisher kept",
    )
    tail_parser.add_argument(
        "--timeout", type=float, help="give up after this many seconds without an entry"
    )
    tail_parser.set_defaults(run=_run_tail)

    for command in (plot.COMMAND, summary.COMMAND, collect.COMMAND):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mimir`` command; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. `mimir cat log.jsonl | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C ends `mimir tail` and `mimir demo`
        return 130
    except TimeoutError as error:
        print(f"mimir {args.command}: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError, MalformedLogError) as error:
        print(f"mimir {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
