"""The ``mimir`` command's shared vocabulary: one parser, one dispatcher, one address syntax."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mimir
from mimir.cli import commands as cli

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "demo": [],
    "cat": ["a.jsonl"],
    "check": ["a.jsonl"],
    "tail": [],
    "plot": ["iteration", "loss"],
    "collect": ["--output", "x.jsonl"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_sets_its_run_function(command):
    """Each subcommand's parser names the function that carries it out, and nothing else."""
    args = cli.build_parser().parse_args([command, *COMMANDS[command]])
    assert callable(args.run)
    assert not hasattr(args, "func")


def test_main_dispatches_through_the_run_function(tmp_path, capsys):
    """`mimir.cli.commands` runs the chosen subcommand through the run function its parser set."""
    path = tmp_path / "run.jsonl"
    with mimir.Logger(filename=str(path), formatter=None) as logger:
        logger.log({"iteration": 1})
    assert cli.main(["cat", str(path)]) == 0
    assert '"iteration":1' in capsys.readouterr().out.replace(" ", "")


# -- addresses without a scheme -----------------------------------------------------------

ADDRESS_OPTIONS = {
    "tail": ["tail", "{}"],
    "tail --connect": ["tail", "--connect", "{}"],
    "tail --replay-address": ["tail", "--replay-address", "{}"],
    "plot --connect": ["plot", "iteration", "loss", "--connect", "{}"],
    "plot --replay-address": ["plot", "iteration", "loss", "--replay-address", "{}"],
    "collect --bind": ["collect", "--output", "x.jsonl", "--bind", "{}"],
    "collect --stream": ["collect", "--output", "x.jsonl", "--stream", "{}"],
    "collect --replay-address": ["collect", "--output", "x.jsonl", "--replay-address", "{}"],
}


def _argv(option: str, address: str) -> list[str]:
    return [address if word == "{}" else word for word in ADDRESS_OPTIONS[option]]


@pytest.mark.parametrize("option", sorted(ADDRESS_OPTIONS))
def test_an_address_without_a_scheme_means_tcp(option):
    """`localhost:5557` is read as `tcp://localhost:5557` wherever a stream address is taken."""
    args = cli.build_parser().parse_args(_argv(option, "localhost:5557"))
    values = []
    for value in vars(args).values():  # an option that may be repeated holds a list
        values.extend(value if type(value) is list else [value])
    assert "tcp://localhost:5557" in values


@pytest.mark.parametrize("option", sorted(ADDRESS_OPTIONS))
@pytest.mark.parametrize("address", ["localhost", "tcp://localhost:port", "udp://h:1", "h:70000"])
def test_an_invalid_address_is_a_one_line_usage_error(option, address, capsys):
    """An address ZeroMQ would refuse ends the command with status 2 and one line naming it."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(_argv(option, address))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    command = ADDRESS_OPTIONS[option][0]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"mimir {command}: error: argument ")
    assert repr(address) in last
    assert "Traceback" not in err


# -- options that need another one ----------------------------------------------------------

CONTRADICTIONS = [
    (["collect", "--output", "x.jsonl", "--replay", "5"], "add --stream"),
    (["collect", "--output", "x.jsonl", "--replay-address", "127.0.0.1:1"], "add --stream"),
    (
        ["collect", "--output", "x.jsonl", "--stream", "127.0.0.1:0", "--replay-address", "h:1"],
        "add --replay",
    ),
    (["collect", "--output", "x.jsonl", "--curve-authorized-keys", "keys"], "--curve-secret-key"),
    (["collect", "--output", "x.jsonl", "--replay", "-1"], ">= 0"),
    (["collect"], "add --output"),
    (["collect", "--output", "x.jsonl", "--file", "y.jsonl"], "give only --output"),
    (["tail", "--connect", "127.0.0.1:1", "127.0.0.1:1"], "--connect ADDRESS"),
    (["tail", "--no-replay", "--replay-address", "127.0.0.1:1"], "drop --replay-address"),
    (["plot", "i", "y", "--file", "a.jsonl", "--output", "r.html", "--show"], "drop one"),
    (["plot", "i", "y", "--file", "a.jsonl", "-o", "r.html", "--allow-host", "h"], "drop it"),
]


@pytest.mark.parametrize("argv, message", CONTRADICTIONS)
def test_an_option_without_the_one_it_needs_is_a_usage_error(argv, message, tmp_path, capsys):
    """An option that means nothing without another ends with status 2 saying what to add."""
    argv = [str(tmp_path / word) if word.endswith(".jsonl") else word for word in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mimir {argv[0]}: error: ")
    assert message in err
    assert not (tmp_path / "x.jsonl").exists()


# -- deprecated spellings -------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["--output", "--file"])
def test_collect_writes_the_log_named_by_output_or_the_deprecated_file(spelling, tmp_path):
    """`mimir collect --output` writes the log; `--file` still does, with one deprecation line."""
    pytest.importorskip("zmq")
    path = tmp_path / "run.jsonl"
    collect = subprocess.Popen(
        [sys.executable, "-m", "mimir", "collect", spelling, str(path), "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        banner = collect.stdout.readline()  # printed once the log is open
    finally:
        collect.terminate()
        _, err = collect.communicate(timeout=30)
    assert f"into {path} " in banner
    assert path.exists()
    deprecated = "mimir collect: --file is deprecated, use --output\n"
    assert err == (deprecated if spelling == "--file" else "")
