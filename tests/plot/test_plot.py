"""Live plots: the row and point logic, ``mimir plot`` in headless Chromium, notebooks, reports.

The browser tests drive real ``mimir plot`` servers (subprocesses on ephemeral
ports) with headless Chromium through Selenium and read the number of points
from BokehJS's own document on the page. They skip when Bokeh, Selenium, Chromium
or chromedriver is missing (CI installs them all).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from plot_data import entry

from mimir.cli import plot as plot_cli
from mimir.plot import PlotValueWarning, entries_to_rows, source_name
from mimir.plot.server import FileFeed, PointStore, allowed_hosts

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "_static" / "live-plot.png"
WAIT = 30  # seconds any single condition may take before the test fails

#: JavaScript run in the page: the number of points of the named data source (-1: none yet).
POINTS_JS = """
const name = arguments[0];
if (!window.Bokeh || !Bokeh.documents || Bokeh.documents.length === 0) return -1;
const source = Bokeh.documents[0].get_model_by_name(name);
return source ? (source.get_length() ?? 0) : -1;
"""


def _bokeh() -> Any:
    return pytest.importorskip("bokeh", minversion="3.8.2")


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


def test_store_rollover_keeps_the_newest_points_and_cursors_resume():
    """A store with rollover keeps the newest N points; since() hands out only the new ones."""
    store = PointStore("i", ["y"], rollover=5)
    store.add([{"i": i, "y": i * 2} for i in range(3)])
    cursor, replace, data = store.since("y", (-1, 0))
    assert replace and data == {"x": [0, 1, 2], "y": [0, 2, 4]}
    store.add([{"i": i, "y": i * 2} for i in range(3, 10)])
    cursor, replace, data = store.since("y", cursor)
    assert not replace and data["x"] == [5, 6, 7, 8, 9]  # 3 and 4 already rolled over
    assert store.since("y", cursor)[2] == {"x": [], "y": []}
    assert store.points("y") == 5
    assert "Rollover" in store.describe() and "5 points" in store.describe()


def test_store_decimation_keeps_the_whole_run_in_bounded_points():
    """With decimate=N a series spans the whole run in at most N points; readers get a reset."""
    store = PointStore("i", ["y"], rollover=None, decimate=100)
    cursor, _, _ = store.since("y", (-1, 0))
    store.add([{"i": i, "y": float(i)} for i in range(1000)])
    cursor, replace, data = store.since("y", cursor)
    assert replace  # thinned out since the first read: everything is replaced
    assert 50 <= len(data["x"]) <= 100
    assert data["x"][0] == 0 and data["x"][-1] >= 900
    steps = {b - a for a, b in zip(data["x"], data["x"][1:], strict=False)}
    assert len(steps) == 1  # evenly spaced
    assert "Decimation" in store.describe()


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
    assert store.since("y", (-1, 0))[2] == {"x": [0, 1, 2, 3], "y": [1, 2, 3, 4]}
    path.write_text('{"i": 0, "y": 9}\n')  # a new run in the same file: the plot starts over
    assert feed.read_new() == 1
    assert store.since("y", (0, 4)) == ((1, 1), True, {"x": [0], "y": [9]})


def test_file_feed_follows_a_compressed_log(tmp_path):
    """A .jsonl.gz being written is re-read as it grows, without plotting an entry twice."""
    from mimir.files.compressed import GzlogFileHandler
    from mimir.formatter import JSONFormatter

    path = tmp_path / "run.jsonl.gz"
    handler = GzlogFileHandler(path, flush_interval=0.05)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("mimir.test.plotgz")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
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
        xs = store.since("training_error", (-1, 0))[2]["x"]
        assert xs == list(range(120))
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
        (["i", "y", "--file", "a.jsonl", "--connect", "tcp://127.0.0.1:1"], "not both"),
        (["i", "y", "--output", "r.html"], "--file"),
        (["i", "y", "--file", "a.jsonl", "--decimate", "1"], "at least 2"),
    ],
)
def test_cli_refuses_contradictory_options(argv, message, capsys):
    """`mimir plot` exits with status 2 and a clear message on options that do not go together."""
    assert plot_cli.run(plot_cli.build_parser().parse_args(argv)) == 2
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


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Selenium, shared by the tests of this module."""
    _bokeh()
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("needs Chromium and chromedriver (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="mimir-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,640",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_points(driver: Any, key: str, at_least: int) -> int:
    """Poll the page until series ``key`` shows at least ``at_least`` points; return the count."""
    from selenium.webdriver.support.wait import WebDriverWait

    counts: list[int] = []

    def reached(d: Any) -> bool:
        counts.append(d.execute_script(POINTS_JS, source_name(key)))
        return counts[-1] >= at_least

    try:
        WebDriverWait(driver, WAIT, poll_frequency=0.05).until(reached)
    except Exception as error:
        raise AssertionError(
            f"{key}: {counts[-1] if counts else None} points, expected >= {at_least}"
        ) from error
    return counts[-1]


def _text(driver: Any, name: str) -> str:
    """The text of the Bokeh model (a Div) named ``name`` on the page."""
    return driver.execute_script(
        "return Bokeh.documents[0].get_model_by_name(arguments[0]).text", name
    )


def _wait_for_text(driver: Any, name: str, part: str) -> None:
    """Poll the page until the Div named ``name`` contains ``part``."""
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        WebDriverWait(driver, WAIT, poll_frequency=0.05).until(lambda d: part in _text(d, name))
    except Exception as error:
        raise AssertionError(f"{name}: {_text(driver, name)!r} lacks {part!r}") from error


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# screenshots and reports written by the tests\n*\n")
    return ARTIFACTS / name


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def plot_server(*arguments: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``mimir plot ARGUMENTS --port 0`` in a subprocess; yield it and its URL.

    On exit: SIGTERM, and the server must stop cleanly (status 0).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "mimir.cli.plot", *arguments, "--port", "0"],
        cwd=ROOT,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr: list[str] = []
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=WAIT)
        except queue.Empty:
            line = ""
        match = re.search(r"(http://\S+/)", line)
        assert match, f"no URL from mimir plot: {line!r}; stderr: {''.join(stderr)}"
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            status = None
        assert status == 0, f"mimir plot ended with {status}; stderr: {''.join(stderr)}"


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"mimir.test.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


@pytest.fixture
def publisher(closing: Any) -> tuple[Any, logging.Logger]:
    """A ZMQStreamHandler on ephemeral loopback ports, replaying 1000, and a logger using it."""
    pytest.importorskip("zmq")
    from mimir.formatter import JSONFormatter
    from mimir.stream.publisher import ZMQStreamHandler

    handler = closing(ZMQStreamHandler("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", replay=1000))
    handler.setFormatter(JSONFormatter())
    return handler, _logger("plotpub", handler)


def test_live_plot_of_a_stream_in_chromium(browser, publisher):
    """`mimir plot --connect` shows the replayed entries first, then keeps growing live."""
    handler, logger = publisher
    for i in range(300):
        logger.info(entry(i))
    with plot_server(
        "iteration",
        "training_error",
        "validation_error",
        "--connect",
        handler.address,
        "--replay-address",
        handler.replay_address,
    ) as (_, url):
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
        assert "Rollover" in _text(browser, "mimir:mode")
        _wait_for_text(browser, "mimir:status", "700 entries from tcp://127.0.0.1:")
        screenshot = _artifact("live-plot-stream.png")
        browser.save_screenshot(str(screenshot))
    if not DOCS_SCREENSHOT.exists() or os.environ.get("MIMIR_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def test_live_plot_of_a_growing_compressed_log_in_chromium(browser, tmp_path):
    """`mimir plot --file run.jsonl.gz` follows a log another process writes; rollover bounds it."""
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
        with plot_server(*arguments) as (_, url):
            browser.get(url)
            assert _wait_for_points(browser, "training_error", 150) == 150
            writer.stdin.write("more\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "wrote 300"
            _wait_for_text(browser, "mimir:status", "300 entries from")
            assert _wait_for_points(browser, "training_error", 200) == 200  # the rollover
            xs = browser.execute_script(
                "return Array.from(Bokeh.documents[0].get_model_by_name(arguments[0]).data.x)",
                source_name("training_error"),
            )
            assert xs == list(range(100, 300))  # the newest 200
            assert "newest 200 points" in _text(browser, "mimir:mode")
            browser.save_screenshot(str(_artifact("live-plot-file.png")))
    finally:
        writer.stdin.close()
        writer.wait(timeout=WAIT)
    assert writer.returncode == 0


def _script_json(text: str) -> list[Any]:
    return [
        json.loads(body)
        for body in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S)
    ]


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _embedded_series(text: str, key: str) -> dict[str, list]:
    """The columns of the data source named for ``key`` in a standalone Bokeh HTML file."""
    for document in _script_json(text):
        for node in _walk(document):
            attributes = node.get("attributes")
            if isinstance(attributes, dict) and attributes.get("name") == source_name(key):
                return {column: values for column, values in attributes["data"]["entries"]}
    raise AssertionError(f"no data source for {key!r} in the report")


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_html_report_holds_the_data_and_opens_without_errors(browser, tmp_path, suffix):
    """`mimir plot --file LOG -o report.html` embeds every point; Chromium shows it cleanly."""
    import mimir

    path = tmp_path / f"run{suffix}"
    with mimir.Logger(filename=path, formatter=None) as logger:
        for i in range(400):
            logger.log(entry(i))
    output = tmp_path / "report.html"
    status = plot_cli.main(
        ["iteration", "training_error", "validation_error", "--file", str(path), "-o", str(output)]
    )
    assert status == 0
    text = output.read_text(encoding="utf-8")
    training = _embedded_series(text, "training_error")
    assert training["x"] == list(range(400))
    assert training["y"] == [entry(i)["training_error"] for i in range(400)]
    assert _embedded_series(text, "validation_error")["x"] == list(range(0, 400, 10))
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
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    handler, logger = publisher
    for i in range(200):
        logger.info(entry(i))
    cells = [
        "import time\nimport mimir.plot\nstarted = time.monotonic()\n"
        "plot = mimir.plot.notebook_plot('iteration', 'training_error', 'validation_error', "
        f"address={handler.address!r}, replay_address={handler.replay_address!r}, "
        "rollover=1000)\nelapsed = time.monotonic() - started",
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
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )

    def run(index: int) -> str:
        client.execute_cell(notebook.cells[index], index)
        return "".join(o.get("text", "") for o in notebook.cells[index].outputs)

    with client.setup_kernel():
        run(0)
        kinds = {kind for o in notebook.cells[0].outputs for kind in o.get("data", {})}
        assert "application/vnd.bokehjs_exec.v0+json" in kinds  # the plot was shown
        assert "returned after" in run(1)
        assert run(2).strip() == "points 200"
        for i in range(200, 500):  # logged while the kernel is idle, then while it runs
            logger.info(entry(i))
        assert run(3).strip() == "points 500 50 500"
        assert run(4).strip() == "None"


def test_example_notebook_runs(tmp_path):
    """examples/live_plot.ipynb runs top to bottom in a real kernel."""
    _bokeh()
    pytest.importorskip("zmq")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import mimir

    try:
        mimir.Logger(stream=True, formatter=None).close()
    except NotImplementedError:
        pytest.skip("mimir.Logger(stream=True) is not available yet")
    notebook = nbformat.read(ROOT / "examples" / "live_plot.ipynb", as_version=4)
    env_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    notebook.cells.insert(
        0, nbformat.v4.new_code_cell(f"import sys\nsys.path[:0] = {env_path.split(os.pathsep)!r}")
    )
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
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
    with plot_server("i", "y", "--file", str(tmp_path / "later.jsonl")) as (_, url):
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
