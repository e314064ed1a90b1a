"""The ``mimir`` command, run as a real process."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mimir

JQ = shutil.which("jq")
SCRIPT = Path(sys.executable).parent / "mimir"


def run_mimir(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m mimir ARGS`` and capture its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "mimir", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


def test_console_script_is_installed_and_runs():
    """The installed ``mimir`` console script runs and reports the version."""
    script = str(SCRIPT) if SCRIPT.exists() else shutil.which("mimir")
    if script is None:
        pytest.skip("the mimir console script is not installed")
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert mimir.__version__ in result.stdout


def test_demo_writes_the_file_and_prints_entries(tmp_path):
    """``mimir demo`` logs N entries to the file and prints them readably."""
    output = tmp_path / "demo.jsonl"
    result = run_mimir("demo", "--output", str(output), "--steps", "12", "--delay", "0")
    assert result.returncode == 0, result.stderr
    entries = mimir.load(output)
    assert [entry["iteration"] for entry in entries] == list(range(12))
    assert all(isinstance(entry["training_error"], float) for entry in entries)
    assert "validation_error" in entries[9]
    assert "iteration: 0" in result.stdout
    assert "iteration: 11" in result.stdout
    assert str(output) in result.stdout


def test_demo_appends_to_an_existing_log(tmp_path):
    """Running the demo twice on one file keeps both runs."""
    output = tmp_path / "demo.jsonl"
    for _ in range(2):
        result = run_mimir("demo", "-o", str(output), "--steps", "3", "--delay", "0")
        assert result.returncode == 0, result.stderr
    assert len(mimir.load(output)) == 6


def test_demo_refuses_zero_steps(tmp_path):
    """``mimir demo --steps 0`` exits with status 1 and a message."""
    result = run_mimir("demo", "--output", str(tmp_path / "d.jsonl"), "--steps", "0")
    assert result.returncode == 1
    assert "--steps" in result.stderr


def test_demo_into_missing_directory_is_an_error(tmp_path):
    """A demo output in a missing directory exits with status 1 and says why."""
    result = run_mimir("demo", "--output", str(tmp_path / "no" / "d.jsonl"), "--steps", "2")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(JQ is None, reason="jq is not installed")
def test_demo_log_answers_the_readme_jq_query(tmp_path):
    """The README's ``jq -s 'min_by(.training_error)'`` works on what demo writes."""
    output = tmp_path / "demo.jsonl"
    assert run_mimir("demo", "-o", str(output), "--steps", "20", "--delay", "0").returncode == 0
    catted = run_mimir("cat", str(output))
    result = subprocess.run(
        [JQ, "-c", "-s", "min_by(.training_error)"],
        input=catted.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    best = min(mimir.load(output), key=lambda entry: entry["training_error"])
    assert json.loads(result.stdout) == best


def test_cat_prints_complete_lines_of_a_plain_log(tmp_path):
    """``mimir cat`` prints each complete line and leaves out a torn last line."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"a":2}\n{"a":')
    result = run_mimir("cat", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"a":1}\n{"a":2}\n'


def test_cat_prints_a_gzip_log(tmp_path):
    """``mimir cat`` decompresses gzip logs."""
    path = tmp_path / "run.jsonl.gz"
    with gzip.open(path, "wb") as file:
        file.write(b'{"a":1}\n{"b":"\xc3\xa9"}\n')
    result = run_mimir("cat", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"a":1}\n{"b":"é"}\n'


def test_cat_of_a_truncated_gzip_log_prints_complete_lines_then_fails(tmp_path):
    """A gzip log cut short prints its complete lines, then the error, and exits 1;
    ``--partial`` prints the same and exits 0 with a warning."""
    path = tmp_path / "cut.jsonl.gz"
    data = gzip.compress(b"".join(b'{"i":%d}\n' % i for i in range(100)))
    path.write_bytes(data[: len(data) - 20])
    result = run_mimir("cat", str(path))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert 0 < len(lines) < 100
    assert lines == [f'{{"i":{i}}}' for i in range(len(lines))]
    assert str(path) in result.stderr and "truncated" in result.stderr
    assert f"printed {len(lines)} entries before it" in result.stderr
    partial = run_mimir("cat", "--partial", str(path))
    assert partial.returncode == 0, partial.stderr
    assert partial.stdout == result.stdout
    assert "mimir cat: warning:" in partial.stderr


def test_cat_concatenates_several_files(tmp_path):
    """``mimir cat A B`` prints A's entries, then B's."""
    first = tmp_path / "a.jsonl"
    second = tmp_path / "b.jsonl.gz"
    first.write_bytes(b'{"f":"a"}\n')
    second.write_bytes(gzip.compress(b'{"f":"b"}\n'))
    result = run_mimir("cat", str(first), str(second))
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"f":"a"}\n{"f":"b"}\n'


@pytest.mark.skipif(JQ is None, reason="jq is not installed")
def test_cat_output_is_parseable_by_jq(tmp_path):
    """What ``mimir cat`` prints of a Mímir log (NaN and infinities included) parses with jq."""
    path = tmp_path / "odd.jsonl"
    with mimir.Logger(filename=path, formatter=None) as logger:
        logger.log({"nan": float("nan"), "inf": float("inf")})
        logger.log({"text": "tab\tnew\nline", "é": 2**70})
    catted = run_mimir("cat", str(path))
    assert catted.returncode == 0, catted.stderr
    result = subprocess.run(
        [JQ, "-c", "."], input=catted.stdout, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_cat_missing_file_exits_1_with_a_message(tmp_path):
    """``mimir cat`` on a missing file exits with status 1 naming the file, without a traceback."""
    missing = tmp_path / "missing.jsonl"
    result = run_mimir("cat", str(missing))
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert "error" in result.stderr
    assert "Traceback" not in result.stderr


def test_cat_damaged_gzip_exits_1(tmp_path):
    """``mimir cat`` on a gzip log with a bad checksum exits with status 1 and names the file."""
    path = tmp_path / "damaged.jsonl.gz"
    data = bytearray(gzip.compress(b'{"a":1}\n'))
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_mimir("cat", str(path))
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_cat_into_a_closed_pipe_exits_quietly(tmp_path):
    """``mimir cat big.jsonl | head -1`` ends without a traceback."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(b'{"i":%d}\n' % i for i in range(200_000)))
    process = subprocess.Popen(
        [sys.executable, "-m", "mimir", "cat", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout.readline() == b'{"i":0}\n'
    process.stdout.close()
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 0
    assert b"Traceback" not in stderr
    assert b"Error" not in stderr


def test_no_command_is_a_usage_error():
    """``mimir`` without a command prints usage and exits with argparse's status 2."""
    result = run_mimir()
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_main_can_be_called_in_process(tmp_path, capsys):
    """mimir.cli.commands(argv) returns the exit status instead of exiting."""
    from mimir.cli import main

    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a":1}\n')
    assert main(["cat", str(path)]) == 0
    assert main(["cat", str(tmp_path / "nope.jsonl")]) == 1
    assert "nope.jsonl" in capsys.readouterr().err


def test_environment_is_not_needed(tmp_path):
    """The command works from any directory (no reliance on the current directory)."""
    output = tmp_path / "demo.jsonl"
    result = run_mimir(
        "demo", "-o", str(output), "--steps", "2", "--delay", "0", cwd=os.path.dirname(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert len(mimir.load(output)) == 2
