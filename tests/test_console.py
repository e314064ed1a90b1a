"""Console output: rendering entries and the handler behind mimir.Logger's printing."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import numpy

import mimir
from mimir.console import render_entry


def test_numpy_scalars_print_as_plain_numbers():
    """A NumPy scalar in an entry prints like the Python number it holds."""
    entry = {"loss": numpy.float32(0.5), "step": numpy.int64(3)}
    assert render_entry(entry) == "loss: 0.5  step: 3"


def test_console_follows_redirected_stdout():
    """Entries go to the sys.stdout of the moment, not the one at construction."""
    logger = mimir.Logger()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        logger.log({"iteration": 1})
    logger.close()
    assert buffer.getvalue() == "iteration: 1\n"


def test_closed_pipe_stops_printing_with_one_note(tmp_path):
    """When the reader of stdout goes away, printing stops with one note and the file keeps all."""
    script = (
        "import mimir\n"
        "with mimir.Logger(filename='out.jsonl') as logger:\n"
        "    for i in range(20000):\n"
        "        logger.log({'iteration': i})\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    ) as process:
        process.stdout.readline()
        process.stdout.close()  # the reader goes away, like `| head -1`
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 0
    assert stderr.count("console output stopped") == 1
    assert "Traceback" not in stderr
    assert len(mimir.load(tmp_path / "out.jsonl")) == 20000
