"""The ``mimir`` command: one parser with subcommands, one dispatcher, one vocabulary.

* :mod:`mimir.cli.commands`: the parser, the dispatcher (:func:`main`) and the
  commands on files and streams: ``demo``, ``cat``, ``check``, ``tail``.
* :mod:`mimir.cli.plot`: ``mimir plot`` (the live server and the HTML report).
* :mod:`mimir.cli.summary`: ``mimir summary`` (a table of each run's keys).
* :mod:`mimir.cli.collect`: ``mimir collect`` (the collector).
* ``mimir.cli._args``: argument types the commands share (stream addresses).

Every command speaks the same words: ``--file`` names a log that is read,
``--output`` what the command writes, ``--connect`` a stream that is read,
``--stream`` a stream that is published. Nothing else in Mímir imports this
package; ``python -m mimir`` and the ``mimir`` script call :func:`main`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mimir`` command with ``argv`` (default: ``sys.argv[1:]``); return its status.

    The commands are imported here, not with the package, so that ``python -m
    mimir.cli.plot`` (and the other commands run alone) load their module once.
    """
    from mimir.cli.commands import main as run_command

    return run_command(argv)
