"""Live plots: the row and point logic, ``mimir plot`` in headless Chromium, notebooks, reports.

The browser tests drive real ``mimir plot`` servers (subprocesses on ephemeral
ports) with headless Chromium through Selenium and read the number of points
from BokehJS's own document on the page. They skip when Bokeh, Selenium, Chromium
or chromedriver is missing (CI installs them all).
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from plot_browser import (
    ROOT,
    WAIT,
    artifact,
    bokeh,
    data,
    embedded_series,
    environment,
    notebook_client,
    plot_server,
    run_notebook,
    text,
    wait_for_points,
    wait_for_text,
)
from plot_data import entry

from mimir.cli import plot as plot_cli
from mimir.plot import PlotValueWarning, entries_to_rows, source_name
from mimir.plot.server import FileFeed, PointStore, allowed_hosts

DOCS_SCREENSHOT = ROOT / "docs" / "_static" / "live-plot.png"
_bokeh = bokeh
_environment = environment
_artifact = artifact
_text = text
_wait_for_text = wait_for_text


def _wait_for_points(driver: Any, key: str, at_least: int, run: str = "") -> int:
    return wait_for_points(driver, source_name(key, run), at_least)


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"mimir.test.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def _xs(store: PointStore, key: str, run: str = "") -> list[float]:
    return [x for x in store.view((run, key))["x"].tolist()]


# -- rows and points (no browser) ------------------------------------------------------


def test_rows_skip_missing_keys_per_series():
    """An entry lacking a y key is skipped for that series only; lacking x, for all."""
    entries = [
        {"iteration": 0, "a": 1.0, "b": 2},
        {"iteration": 1, "a": 0.5},
        {"a": 7.0, "b": 7.0},
        {"iteration": 2, "b": 3},
    ]
    rows = entries_to_rows(entries, "iteration", ["a", "b"])
    assert rows == {"a": {"x": [0, 1], "y": [1.0, 0.5]}, "b": {"x": [0, 2], "y": [2, 3]}}


def test_rows_warn_once_per_key_about_values_that_are_not_numbers():
    """Strings, booleans, None and lists are skipped, with one warning per key over many calls."""
    warned: set[str] = set()
    entries = [
        {"i": 0, "loss": "nan?", "acc": True},
        {"i": 1, "loss": None, "acc": [1]},
        {"i": 2, "loss": 0.25, "acc": 0.5},
        {"i": "three", "loss": 0.1},
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = entries_to_rows(entries, "i", ["loss", "acc"], warned=warned)
        again = entries_to_rows(entries, "i", ["loss", "acc"], warned=warned)
    assert rows == again == {"loss": {"x": [2], "y": [0.25]}, "acc": {"x": [2], "y": [0.5]}}
    messages = sorted(str(w.message) for w in caught if w.category is PlotValueWarning)
    assert len(messages) == 3, messages  # loss, acc and the x key i: once each
    assert any("'i'" in message for message in messages)


def test_rows_on_a_log_scale_skip_values_that_are_not_positive():
    """With log_y, zero and negative values are skipped (and reported), positive ones kept."""
    with pytest.warns(PlotValueWarning, match="log scale"):
        rows = entries_to_rows(
            [{"x": 0, "y": 0.0}, {"x": 1, "y": -1}, {"x": 2, "y": 1e-9}], "x", ["y"], log_y=True
        )
    assert rows == {"y": {"x": [2], "y": [1e-9]}}


def test_store_keeps_every_point_and_views_are_bounded():
    """A store keeps the whole run; a view of it holds at most ~4 points per column."""
    store = PointStore("i", ["y"])
    store.add([{"i": i, "y": math.sin(i / 100)} for i in range(100_000)])
    assert store.points("y") == 100_000
    view = store.view(("", "y"), columns=500)
    assert 1000 <= len(view["x"]) <= 2002
    assert view["x"][0] == 0 and view["x"][-1] == 99_999
    assert store.bounds() == (0, 99_999)
    assert "whole run" in store.describe()


def test_store_splits_a_collected_log_by_source():
    """Entries carrying a source (mimir collect) are one run per source, named by it."""
    store = PointStore("i", ["y"])
    store.add(
        [
            {"i": i, "y": i, "source": {"host": "h", "pid": 1 + i % 2, "name": f"rank{i % 2}"}}
            for i in range(10)
        ],
        "collected",
    )
    assert store.lines() == [("collected/rank0", "y"), ("collected/rank1", "y")]
    assert _xs(store, "y", "collected/rank1") == [1, 3, 5, 7, 9]


def test_store_checks_keys_against_the_entries_received():
    """A key in none of the entries is an UnknownKeyError naming the keys found, closest first."""
    from mimir.runs import UnknownKeyError

    store = PointStore("iteration", ["trainig_error"])
    store.check_keys("nothing")  # no entry yet: nothing to say
    store.add([entry(i) for i in range(20)])
    with pytest.raises(UnknownKeyError, match="did you mean 'training_error'") as caught:
        store.check_keys("run.jsonl")
    assert "iteration, training_error, validation_error" in str(caught.value)
    assert store.problem("run.jsonl") == str(caught.value)


def test_file_feed_reads_complete_lines_and_follows_a_plain_log(tmp_path):
    """A plain log is read on from the last complete line; a truncated one starts the plot over."""
    path = tmp_path / "run.jsonl"
    path.write_text('{"i": 0, "y": 1}\n{"i": 1, "y": 2}\n{"i": 2, "y"')
    store = PointStore("i", ["y"])
    feed = FileFeed(store, str(path))
    assert feed.read_new() == 2
    with path.open("a") as file:
        file.write(': 3}\nnot json\n{"i": 3, "y": 4}\n')
    with pytest.warns(UserWarning, match="not a JSON entry"):
        assert feed.read_new() == 2
    assert store.view(("", "y")) is not None
    assert _xs(store, "y") == [0, 1, 2, 3]
    path.write_text('{"i": 0, "y": 9}\n')  # a new run in the same file: the plot starts over
    assert feed.read_new() == 1
    assert _xs(store, "y") == [0]


def test_file_feed_reads_a_prefix_then_the_rest(tmp_path):
    """read_new(limit) stops after about that many entries; the next call reads on."""
    path = tmp_path / "run.jsonl"
    path.write_text("".join(f'{{"i": {i}, "y": {i}}}\n' for i in range(50_000)))
    store = PointStore("i", ["y"])
    feed = FileFeed(store, str(path))
    first = feed.read_new(1000)
    assert 1000 <= first < 50_000 and not feed.done
    assert first + feed.read_new() == 50_000 and feed.done
    assert _xs(store, "y") == list(range(50_000))[::1] or store.points("y") == 50_000


def test_file_feed_refuses_a_file_that_is_not_a_log(tmp_path):
    """A file whose lines are none of them JSON entries is a NoEntriesError, without warnings."""
    from mimir.runs import NoEntriesError

    path = tmp_path / "notes.txt"
    path.write_text("Monday: tried lr=0.1\nTuesday: lr=0.01\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NoEntriesError, match="not a Mímir log"):
            FileFeed(PointStore("i", ["y"]), str(path)).read_new()


def test_file_feed_follows_a_compressed_log(tmp_path):
    """A .jsonl.gz being written is re-read as it grows, without plotting an entry twice."""
    from mimir.files.compressed import GzlogFileHandler
    from mimir.formatter import JSONFormatter

    path = tmp_path / "run.jsonl.gz"
    handler = GzlogFileHandler(path, flush_interval=0.05)
    handler.setFormatter(JSONFormatter())
    logger = _logger("plotgz", handler)
    try:
        store = PointStore("iteration", ["training_error"])
        feed = FileFeed(store, str(path))
        for i in range(50):
            logger.info(entry(i))
        handler.flush()
        assert feed.read_new() == 50
        for i in range(50, 120):
            logger.info(entry(i))
        handler.flush()
        assert feed.read_new() == 70
        assert feed.read_new() == 0
        assert _xs(store, "training_error") == list(range(120))
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_allowed_hosts_are_the_servers_own_address_only():
    """Loopback servers accept localhost and the loopback addresses at their own port only."""
    assert allowed_hosts("127.0.0.1", 5006) == ["127.0.0.1:5006", "localhost:5006", "[::1]:5006"]
    assert allowed_hosts("10.1.2.3", 80, ["proxy.example", "x.example:8443"]) == [
        "10.1.2.3:80",
        "proxy.example:80",
        "x.example:8443",
    ]


def test_missing_bokeh_names_the_extra_to_install(monkeypatch):
    """Without Bokeh, plotting raises an ImportError that says what to pip install."""
    from mimir.plot import import_bokeh

    monkeypatch.setitem(sys.modules, "bokeh", None)
    with pytest.raises(ImportError, match=re.escape('pip install "mimir-logger[plot]"')):
        import_bokeh()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["i", "y", "--output", "r.html"], "--file"),
        (["i", "y", "--file", "a.jsonl", "--connect", "h:1", "-o", "r.html"], "not of streams"),
        (["i", "y", "--file", "a.jsonl", "--replay-address", "h:2"], "goes with --connect"),
        (["i", "y", "--connect", "h:1", "--name", "a", "--name", "b"], "2 --name for 1 run"),
        (["i", "y", "--connect", "h:1", "--connect", "h:2", "--name", "a", "--name", "a"], "same"),
        (["i", "y", "--connect", "h:1", "--replay-address", "h:2", "--no-replay"], "drop"),
    ],
)
def test_cli_refuses_contradictory_options(argv, message, capsys):
    """`mimir plot` exits with status 2 and a clear message on options that do not go together."""
    _bokeh()
    assert plot_cli.run(plot_cli.COMMAND.build_parser().parse_args(argv)) == 2
    assert message in capsys.readouterr().err


def test_figure_has_one_named_source_per_series():
    """build_figure makes one data source per y key, named for get_model_by_name, log axis too."""
    _bokeh()
    from bokeh.models import LogScale

    from mimir.plot import build_figure

    fig, sources = build_figure("iteration", ["a", "b"], log_y=True)
    assert [source.name for source in sources.values()] == ["mimir:a", "mimir:b"]
    assert isinstance(fig.y_scale, LogScale)
    assert fig.select_one({"name": source_name("b")}) is sources["b"]


# -- the browser ------------------------------------------------------------------------


def test_live_plot_of_a_stream_in_chromium(browser, publisher):
    """`mimir plot --connect` shows the replayed entries first (from the address the
    publisher announces), then keeps growing live."""
    handler, logger = publisher
    for i in range(300):
        logger.info(entry(i))
    with plot_server(
        "iteration", "training_error", "validation_error", "--connect", handler.address
    ) as (_, url, _):
        browser.get(url)
        assert _wait_for_points(browser, "training_error", 300) == 300  # the replay
        assert _wait_for_points(browser, "validation_error", 30) == 30
        for i in range(300, 700):
            logger.info(entry(i))
        assert _wait_for_points(browser, "validation_error", 70) == 70
        assert _wait_for_points(browser, "training_error", 700) == 700
        xs = browser.execute_script(
            "return Array.from(Bokeh.documents[0].get_model_by_name(arguments[0]).data.x)",
            source_name("training_error"),
        )
        assert xs == list(range(700))  # in order, none missing, none twice
        assert "whole run" in _text(browser, "mimir:mode")
        _wait_for_text(browser, "mimir:status", "700 entries from tcp://127.0.0.1:")
        screenshot = _artifact("live-plot-stream.png")
        browser.save_screenshot(str(screenshot))
    if not DOCS_SCREENSHOT.exists() or os.environ.get("MIMIR_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def test_live_plot_of_a_growing_compressed_log_in_chromium(browser, tmp_path):
    """`mimir plot --file run.jsonl.gz` follows a log another process writes, the whole run."""
    path = tmp_path / "run.jsonl.gz"
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("plot_writer.py")), str(path), "150"],
        cwd=tmp_path,
        env=_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "wrote 150"
        arguments = ("iteration", "training_error", "--file", str(path), "--rollover", "200")
        with plot_server(*arguments) as (_, url, stderr):
            browser.get(url)
            assert _wait_for_points(browser, "training_error", 150) == 150
            writer.stdin.write("more\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "wrote 300"
            _wait_for_text(browser, "mimir:status", "300 entries from")
            assert _wait_for_points(browser, "training_error", 300) == 300
            xs = data(browser, source_name("training_error"))["x"]
            assert xs == list(range(300))  # the whole run: --rollover is gone
            assert "--rollover is deprecated and ignored" in "".join(stderr)
            browser.save_screenshot(str(_artifact("live-plot-file.png")))
    finally:
        writer.stdin.close()
        writer.wait(timeout=WAIT)
    assert writer.returncode == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_html_report_holds_the_data_and_opens_without_errors(browser, tmp_path, suffix):
    """`mimir plot --file LOG -o report.html` embeds every point of a small run; Chromium
    shows it cleanly."""
    import mimir

    path = tmp_path / f"run{suffix}"
    with mimir.Logger(filename=path, formatter=None) as logger:
        for i in range(400):
            logger.log(entry(i))
    output = tmp_path / "report.html"
    status = plot_cli.COMMAND.main(
        ["iteration", "training_error", "validation_error", "--file", str(path), "-o", str(output)]
    )
    assert status == 0
    text = output.read_text(encoding="utf-8")
    training = embedded_series(text, source_name("training_error"))
    assert training["x"] == list(range(400))
    assert training["y"] == [entry(i)["training_error"] for i in range(400)]
    validation = embedded_series(text, source_name("validation_error"))
    assert validation["x"] == list(range(0, 400, 10))
    assert "<script src=" not in text  # BokehJS inline: no server, no network
    shutil.copyfile(output, _artifact(f"report{suffix}.html"))
    browser.get_log("browser")  # forget what earlier pages logged
    browser.get(output.as_uri())
    assert _wait_for_points(browser, "training_error", 400) == 400
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []


# -- Jupyter ----------------------------------------------------------------------------


def test_notebook_plot_updates_while_later_cells_run(publisher):
    """In a real kernel, notebook_plot returns at once and its sources fill while cells run."""
    _bokeh()
    handler, logger = publisher
    for i in range(200):
        logger.info(entry(i))
    cells = [
        "import time\nimport mimir.plot\nstarted = time.monotonic()\n"
        "plot = mimir.plot.notebook_plot('iteration', 'training_error', 'validation_error', "
        f"address={handler.address!r}, replay_address={handler.replay_address!r})\n"
        "elapsed = time.monotonic() - started\n"
        "print(plot.wait_ready(30))",  # the plot is shown in this cell's outputs
        "print(f'returned after {elapsed:.2f} s')\nassert elapsed < 10",
        # busy cells (no sleep): the plot's threads update it meanwhile
        "deadline = time.monotonic() + 30\n"
        "while plot.points() < 200 and time.monotonic() < deadline:\n    sum(range(10_000))\n"
        "print('points', plot.points())",
        "deadline = time.monotonic() + 30\n"
        "while plot.points() < 500 and time.monotonic() < deadline:\n    sum(range(10_000))\n"
        "print('points', plot.points(), plot.points('validation_error'), plot.received)",
        "plot.stop()\nprint(plot.error)",
    ]
    notebook, client = notebook_client(cells)

    def run(index: int) -> str:
        client.execute_cell(notebook.cells[index], index)
        return "".join(o.get("text", "") for o in notebook.cells[index].outputs)

    with client.setup_kernel():
        assert run(0).strip() == "True"
        kinds = {kind for o in notebook.cells[0].outputs for kind in o.get("data", {})}
        assert "application/vnd.bokehjs_exec.v0+json" in kinds  # the plot was shown
        assert "returned after" in run(1)
        assert run(2).strip() == "points 200"
        for i in range(200, 500):  # logged while the kernel is idle, then while it runs
            logger.info(entry(i))
        assert run(3).strip() == "points 500 50 500"
        assert run(4).strip() == "None"


def test_notebook_plot_of_two_streams_shows_its_warnings_with_the_plot(publishers):
    """Two addresses are two runs; a gap and a misspelt key are told under the plot, in its
    own cell, never in a later cell's output."""
    _bokeh()
    (first, log_first), (second, log_second) = publishers("nb1"), publishers("nb2")
    for i in range(1500):  # more than the 1000 replayed: the start is a gap
        log_first.info(entry(i))
    for i in range(100):
        log_second.info(entry(i))
    cells = [
        "import time\nimport mimir.plot\nstarted = time.monotonic()\n"
        "plot = mimir.plot.notebook_plot('iteration', 'training_error', "
        f"address=[{first.address!r}, {second.address!r}], names=['long', 'short'])\n"
        "elapsed = time.monotonic() - started\n"
        "wrong = mimir.plot.notebook_plot('iteration', 'trainig_error', "
        f"address={second.address!r})",
        "deadline = time.monotonic() + 30\n"
        "while time.monotonic() < deadline and not (plot.points('training_error', 'long') >= 1000"
        " and plot.points('training_error', 'short') >= 100 and plot.messages"
        " and wrong.received >= 100):\n    sum(range(10_000))\n"
        "print(plot.points('training_error', 'long'), plot.points('training_error', 'short'))",
        "deadline = time.monotonic() + 30\n"
        "messages = lambda p: p.figure.select_one({'name': 'mimir:messages'}).text\n"
        "assert plot.wait_ready(30) and wrong.wait_ready(30)\n"
        "while time.monotonic() < deadline and not ('Gap' in messages(plot)"
        " and 'did you mean' in messages(wrong)):\n    sum(range(10_000))\n"
        "print(messages(plot))\nprint(messages(wrong))",
        "plot.stop()\nwrong.stop()\nprint(elapsed < 5, plot.error, wrong.error)",
    ]
    notebook, outputs = run_notebook(cells)
    errors = [o.get("text", "") for cell in notebook.cells[1:] for o in cell.outputs
              if o.get("name") == "stderr"]  # fmt: skip
    assert outputs[1].strip() == "1000 100"
    assert "StreamGapWarning" in outputs[2]
    assert "no entry of the entries received from" in outputs[2]
    assert "did you mean &#x27;training_error&#x27;?" in outputs[2]
    assert outputs[3].strip() == "True None None"
    assert not any("Warning" in error for error in errors), errors


def test_notebook_plot_returns_before_bokeh_is_imported(publisher):
    """In a fresh kernel, notebook_plot imports Bokeh's models and builds the plot on a
    background thread: the call returns while that import is held back, then the plot is
    shown (Bokeh's div and script) in the cell's outputs."""
    _bokeh()
    handler, logger = publisher
    for i in range(50):
        logger.info(entry(i))
    cells = [
        "import importlib.abc, importlib.machinery, sys, threading\n"
        "import mimir.plot\n"
        "HEAVY = {'bokeh.core', 'bokeh.models', 'bokeh.io', 'bokeh.embed', 'bokeh.document',"
        " 'bokeh.layouts', 'bokeh.plotting'}\n"
        "release = threading.Event()\n"
        "on_caller = []\n"
        "class Held(importlib.abc.Loader):\n"
        "    def __init__(self, loader):\n        self.loader = loader\n"
        "    def __getattr__(self, name):\n        return getattr(self.loader, name)\n"
        "    def create_module(self, spec):\n        return self.loader.create_module(spec)\n"
        "    def exec_module(self, module):\n"
        "        release.wait(30)\n        self.loader.exec_module(module)\n"
        "class Hold(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if '.'.join(name.split('.')[:2]) not in HEAVY or release.is_set():\n"
        "            return None\n"
        "        if threading.current_thread() is threading.main_thread():\n"
        "            on_caller.append(name)\n            return None\n"
        "        spec = importlib.machinery.PathFinder.find_spec(name, path, target)\n"
        "        if spec is not None:\n            spec.loader = Held(spec.loader)\n"
        "        return spec\n"
        "hold = Hold()\nsys.meta_path.insert(0, hold)\n"
        "plot = mimir.plot.notebook_plot('iteration', 'training_error', "
        f"address={handler.address!r}, replay_address={handler.replay_address!r})\n"
        "print(on_caller, 'bokeh.models' in sys.modules, plot.ready.is_set(), plot.figure)\n"
        "release.set()\nsys.meta_path.remove(hold)\n"
        "print(plot.wait_ready(30), plot.figure is not None, 'bokeh.models' in sys.modules)",
        "import time\ndeadline = time.monotonic() + 30\n"
        "while plot.shown() < 50 and time.monotonic() < deadline:\n    time.sleep(0.05)\n"
        "plot.stop()\nprint(plot.points(), plot.shown(), plot.error)\n"
        # the handle is made off the main thread, without IPython's history (its SQLite
        # connection is the main thread's; IPython would take the error for a corrupt file)
        "print(getattr(get_ipython().history_manager, '_corrupt_db_counter', 0))",
    ]
    notebook, outputs = run_notebook(cells)
    returned, ready = outputs[0].strip().splitlines()
    assert returned == "[] False False None"  # nothing of Bokeh's models on the caller's thread
    assert ready == "True True True"
    assert outputs[1].split() == ["50", "50", "None", "0"]
    shown = [o.get("data", {}) for o in notebook.cells[0].outputs]
    assert any("application/vnd.bokehjs_exec.v0+json" in data for data in shown)
    assert any("data-root-id" in data.get("text/html", "") for data in shown)
    assert any("application/vnd.bokehjs_load.v0+json" in data for data in shown)
    assert not any("Loading the plot" in data.get("text/html", "") for data in shown)


def test_notebook_plot_that_cannot_be_shown_says_why_in_its_place():
    """An error of the background thread that builds the plot replaces the placeholder
    with its message, and wait_ready raises it."""
    _bokeh()
    cells = [
        "import mimir.plot\n"
        "plot = mimir.plot.notebook_plot('iteration', 'loss', "
        "address='tcp://127.0.0.1:9', replay=False, resources='nowhere')\n"
        "try:\n    plot.wait_ready(30)\nexcept RuntimeError as error:\n"
        "    print(repr(error.__cause__))\n"
        "plot.stop()\nprint(plot.figure, plot.running)",
    ]
    notebook, outputs = run_notebook(cells)
    assert "wrong value for 'mode' parameter" in outputs[0]
    assert outputs[0].strip().endswith("None False")
    shown = "".join(o.get("data", {}).get("text/html", "") for o in notebook.cells[0].outputs)
    assert "the plot could not be shown" in shown
    assert "Loading the plot" not in shown


def test_notebook_plot_returns_before_its_stream_exists():
    """notebook_plot blocks on nothing: it returns for a publisher that does not exist yet,
    and plots its entries once it starts."""
    _bokeh()
    pytest.importorskip("zmq")
    cells = [
        "import socket, time\nimport mimir, mimir.plot\n"
        "probe = socket.socket()\nprobe.bind(('127.0.0.1', 0))\n"
        "port = probe.getsockname()[1]\nprobe.close()\n"
        "plot = mimir.plot.notebook_plot('iteration', 'loss', "
        "address=f'tcp://127.0.0.1:{port}', replay=False)\n"
        "print(plot.received, plot.running)",
        "logger = mimir.Logger(stream=True, stream_address=f'tcp://127.0.0.1:{port}', "
        "replay_address='tcp://127.0.0.1:0', formatter=None)\n"
        "deadline = time.monotonic() + 30\ni = 0\n"
        "while plot.received == 0 and time.monotonic() < deadline:\n"
        "    logger.log({'iteration': i, 'loss': 1 / (i + 1)})\n    i += 1\n"
        "    time.sleep(0.01)\n"
        "print(plot.received > 0, plot.error)",
        "plot.stop()\nlogger.close()",
    ]
    _, outputs = run_notebook(cells)
    assert outputs[0].strip() == "0 True"  # returned with no stream to wait for
    assert outputs[1].strip() == "True None"


def test_example_notebook_runs(tmp_path):
    """examples/live_plot.ipynb runs top to bottom in a real kernel."""
    _bokeh()
    pytest.importorskip("zmq")
    import mimir

    try:
        mimir.Logger(stream=True, formatter=None).close()
    except NotImplementedError:
        pytest.skip("mimir.Logger(stream=True) is not available yet")
    notebook, client = notebook_client(path=tmp_path)
    nbformat = pytest.importorskip("nbformat")
    notebook.cells = nbformat.read(ROOT / "examples" / "live_plot.ipynb", as_version=4).cells
    env_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    notebook.cells.insert(
        0, nbformat.v4.new_code_cell(f"import sys\nsys.path[:0] = {env_path.split(os.pathsep)!r}")
    )
    client.execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    assert any("entries plotted" in o.get("text", "") for o in outputs)


# -- security (S6) -----------------------------------------------------------------------


def _request(port: int, text: str) -> str:
    """Send a raw HTTP request to 127.0.0.1:port; return the status line of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
        connection.sendall(text.encode("ascii"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode("ascii", "replace")


def _upgrade(port: int, host: str, origin: str) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    return _request(
        port,
        f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n",
    )


def _get(port: int, host: str) -> str:
    return _request(port, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                found.append(address)
    return found


def test_server_refuses_foreign_origins_and_hosts_and_listens_on_loopback(tmp_path):
    """S6: by default only 127.0.0.1 listens; foreign Origin and Host headers get 403."""
    _bokeh()
    with plot_server("i", "y", "--file", str(tmp_path / "later.jsonl")) as (_, url, _):
        port = int(re.search(r":(\d+)/$", url).group(1))
        own = f"127.0.0.1:{port}"
        assert _get(port, own).endswith("200 OK")
        assert _get(port, f"localhost:{port}").endswith("200 OK")  # e.g. through an SSH tunnel
        assert _get(port, f"evil.example:{port}").endswith("403 Forbidden")  # DNS rebinding
        assert _get(port, "evil.example").endswith("403 Forbidden")
        assert _upgrade(port, own, "http://evil.example").endswith("403 Forbidden")
        assert _upgrade(port, own, f"http://evil.example:{port}").endswith("403 Forbidden")
        assert _upgrade(port, own, f"http://{own}").endswith("101 Switching Protocols")
        if sys.platform.startswith("linux"):
            assert _listening(port) == ["0100007F"]  # 127.0.0.1, and nothing else
