"""The ``mimir`` command's shared vocabulary: one parser, one dispatcher, one address syntax."""

from __future__ import annotations

import pytest

import mimir
from mimir import cli

COMMANDS = {
    "demo": [],
    "cat": ["a.jsonl"],
    "check": ["a.jsonl"],
    "tail": [],
    "plot": ["iteration", "loss"],
    "collect": ["--file", "x.jsonl"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_sets_its_run_function(command):
    """Each subcommand's parser names the function that carries it out, and nothing else."""
    args = cli.build_parser().parse_args([command, *COMMANDS[command]])
    assert callable(args.run)
    assert not hasattr(args, "func")


def test_main_dispatches_through_the_run_function(tmp_path, capsys):
    """`mimir.cli.main` runs the chosen subcommand through the run function its parser set."""
    path = tmp_path / "run.jsonl"
    with mimir.Logger(filename=str(path), formatter=None) as logger:
        logger.log({"iteration": 1})
    assert cli.main(["cat", str(path)]) == 0
    assert '"iteration":1' in capsys.readouterr().out.replace(" ", "")
