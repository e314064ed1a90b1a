"""``mimir summary``: what each run holds, in a few numbers, to compare runs at a glance.

``add_parser(subparsers)`` adds the ``summary`` subcommand to the ``mimir``
command's parser; :func:`run` carries it out. ``python -m mimir.cli.summary`` runs
it alone.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from mimir.cli._args import Command
from mimir.reader import MalformedLogError, PartialReadWarning
from mimir.runs import Run, UnknownKeyError, find_logs, load_runs, run_names
from mimir.summary import check_x, format_json, format_table, summarize

__all__ = ["COMMAND", "run"]

_DESCRIPTION = """\
Summarize runs: for each log (a file, a glob such as 'runs/*.jsonl.gz', or a folder
for its .jsonl and .jsonl.gz files), the number of entries, the range of the x key
(--x; by default iteration, else step, else epoch, else the entry index) and the
number of segments (a run restarted into the same log starts a new one), then for
each numeric key its count, minimum, maximum and last value. A log collected from
many processes (mimir collect) gives one run per source. Exit status: 0, 1 if a log
cannot be read, 2 for a wrong argument (a spec that matches nothing, an --x key no
run has).
"""


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="log files, globs or folders (one run each)"
    )
    parser.add_argument(
        "--x",
        metavar="KEY",
        help="the key whose range is shown (default: iteration, else step, else epoch,"
        " else the entry index)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per run, one per line (NaN and infinities as"
        ' "NaN", "Infinity", "-Infinity")',
    )
    parser.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="name the runs of the logs, one --name per log in order (default: the file"
        " names without .jsonl/.jsonl.gz)",
    )
    parser.add_argument(
        "--no-split",
        action="store_true",
        help="one run per file even for a log collected from many processes",
    )
    parser.add_argument(
        "--source-key",
        default="source",
        metavar="KEY",
        help="the key naming each entry's process in a collected log (default source)",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="summarize the readable part of a damaged or truncated log (with a warning)",
    )
    return parser


def _say(kind: str, message: object) -> None:
    text = " ".join(str(message).split())  # one line, whatever the message
    print(f"mimir summary: {kind}: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Carry out ``mimir summary``; return the exit status.

    Every log that can be read is summarized; each one that cannot is reported on
    standard error (status 1). A wrong argument (a spec that matches nothing, an
    ``--x`` key that no run has) is status 2, with nothing summarized.
    """
    try:
        paths = find_logs(args.files)
        names = run_names(paths, args.name)
    except (OSError, ValueError) as error:
        _say("error", error)
        return 2
    status = 0
    runs: list[Run] = []
    errors = "partial" if args.partial else "strict"
    for path, name in zip(paths, names, strict=True):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PartialReadWarning)
                runs += load_runs(
                    [path],
                    [name],
                    split_source=not args.no_split,
                    source_key=args.source_key,
                    errors=errors,
                )
            for warning in caught:
                _say("warning", warning.message)
        except (OSError, MalformedLogError) as error:
            _say("error", error)
            status = 1
    if args.x is not None:
        try:
            check_x(runs, args.x)
        except UnknownKeyError as error:
            _say("error", error)
            return 2
    summaries = [summarize(one, args.x, require_x=False) for one in runs]
    out = sys.stdout
    out.write(format_json(summaries) if args.json else format_table(summaries))
    out.flush()
    return status


COMMAND = Command(
    "summary",
    help="entries, x range and min/max/last of each numeric key, per run",
    description=_DESCRIPTION,
    configure=_configure,
    run=run,
)


if __name__ == "__main__":
    sys.exit(COMMAND.main())
