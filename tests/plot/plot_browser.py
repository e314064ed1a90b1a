"""Helpers of the plot tests: ``mimir plot`` subprocesses, pages read through Selenium,
and the data of standalone Bokeh HTML files."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT = 30  # seconds any single condition may take before the test fails

#: JavaScript run in the page: the number of points of the named data source (-1: none yet).
POINTS_JS = """
const name = arguments[0];
if (!window.Bokeh || !Bokeh.documents || Bokeh.documents.length === 0) return -1;
const source = Bokeh.documents[0].get_model_by_name(name);
return source ? (source.get_length() ?? 0) : -1;
"""

#: JavaScript: the x and y columns of the named data source (NaN as null), or null.
DATA_JS = """
const source = Bokeh.documents[0].get_model_by_name(arguments[0]);
if (!source) return null;
const column = (values) => Array.from(values, (v) => (Number.isFinite(v) ? v : null));
return {x: column(source.data.x), y: column(source.data.y)};
"""

#: JavaScript: zoom every figure to [x0, x1], as the wheel-zoom tool does when it ends.
ZOOM_JS = """
const [x0, x1] = [arguments[0], arguments[1]];
const doc = Bokeh.documents[0];
const events = Bokeh.require("core/bokeh_events");
const figures = doc.all_models ? [...doc.all_models].filter((m) => m.type === "Figure") : [];
const figure = figures.length ? figures[0] : doc.get_model_by_name("mimir:figure:0");
figure.x_range.setv({start: x0, end: x1});
for (const fig of figures) fig.trigger_event(new events.RangesUpdate(x0, x1, null, null));
return figures.length;
"""


def bokeh() -> Any:
    return pytest.importorskip("bokeh", minversion="3.8.2")


def find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Selenium (skips when something is missing)."""
    bokeh()
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = find("chromium", "chromium-browser", "google-chrome")
    driver_path = find("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("needs Chromium and chromedriver (apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="mimir-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
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


def until(driver: Any, condition: Any, what: Any) -> Any:
    """Poll ``condition(driver)`` until it is truthy (at most WAIT s); fail with ``what()``."""
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition)
    except Exception as error:
        raise AssertionError(what()) from error


def wait_for_points(driver: Any, name: str, at_least: int) -> int:
    """Poll the page until the source ``name`` holds at least ``at_least`` points."""
    counts: list[int] = []

    def reached(d: Any) -> bool:
        counts.append(d.execute_script(POINTS_JS, name))
        return counts[-1] >= at_least

    until(
        driver,
        reached,
        lambda: f"{name}: {counts[-1] if counts else None} points, expected >= {at_least}",
    )
    return counts[-1]


def data(driver: Any, name: str) -> dict[str, list]:
    """The x and y columns of the source ``name`` on the page (NaN as None)."""
    found = driver.execute_script(DATA_JS, name)
    assert found is not None, f"no data source {name!r} on the page"
    return found


def text(driver: Any, name: str) -> str:
    """The text of the Bokeh model (a Div) named ``name`` on the page."""
    return driver.execute_script(
        "return Bokeh.documents[0].get_model_by_name(arguments[0]).text", name
    )


def wait_for_text(driver: Any, name: str, part: str) -> None:
    """Poll the page until the Div named ``name`` contains ``part``."""
    until(
        driver,
        lambda d: part in text(d, name),
        lambda: f"{name}: {text(driver, name)!r} lacks {part!r}",
    )


def wait_idle(driver: Any) -> None:
    """Poll until BokehJS's document says it is idle (everything drawn once)."""
    until(
        driver,
        lambda d: d.execute_script(
            "return !!(window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle)"
        ),
        lambda: "the Bokeh document never became idle",
    )


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    ignore = ARTIFACTS / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# screenshots and reports written by the tests\n*\n")
    return ARTIFACTS / name


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def plot_server(*arguments: str) -> Iterator[tuple[subprocess.Popen, str, list[str]]]:
    """Run ``mimir plot ARGUMENTS --port 0`` in a subprocess; yield it, its URL and stderr.

    On exit: SIGTERM, and the server must stop cleanly (status 0).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "mimir.cli.plot", *arguments, "--port", "0"],
        cwd=ROOT,
        env=environment(),
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
        yield process, match.group(1), stderr
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


def make_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"mimir.test.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


# -- standalone HTML -----------------------------------------------------------------------


def _script_json(page: str) -> list[Any]:
    return [
        json.loads(body)
        for body in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S)
    ]


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _column(value: Any) -> list[Any]:
    """A column as Bokeh serialises it: a list, or an ndarray (base64, maybe gzipped)."""
    if isinstance(value, list):
        return value
    assert value.get("type") == "ndarray", value
    raw = base64.b64decode(value["array"]["data"])
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    import numpy

    array = numpy.frombuffer(raw, dtype=value["dtype"])
    return [None if not math.isfinite(v) else v for v in array.tolist()]


def embedded_sources(page: str) -> dict[str, dict[str, list]]:
    """Every named data source of a standalone Bokeh HTML file: ``{name: {column: values}}``."""
    found: dict[str, dict[str, list]] = {}
    for document in _script_json(page):
        for node in _walk(document):
            attributes = node.get("attributes")
            if (
                node.get("name") == "ColumnDataSource"
                and isinstance(attributes, dict)
                and isinstance(attributes.get("name"), str)
                and isinstance(attributes.get("data"), dict)
            ):
                entries = attributes["data"]["entries"]
                found[attributes["name"]] = {key: _column(value) for key, value in entries}
    return found


def embedded_series(page: str, name: str) -> dict[str, list]:
    """The columns of the data source named ``name`` in a standalone Bokeh HTML file."""
    sources = embedded_sources(page)
    assert name in sources, f"no data source {name!r} in the report: {sorted(sources)}"
    return sources[name]


def notebook_client(cells: list[str] | None = None, path: Path = ROOT) -> tuple[Any, Any]:
    """A notebook of ``cells`` (code) and an nbclient client for it, run from ``path``.

    Skips without nbformat, nbclient or ipykernel.
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells or []]
    client = nbclient.NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path)}}
    )
    return notebook, client


def run_notebook(cells: list[str]) -> tuple[Any, list[str]]:
    """Run ``cells`` in a fresh kernel: the notebook, and what each cell printed on stdout."""
    notebook, client = notebook_client(cells)
    client.execute()
    printed = [
        "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
        for cell in notebook.cells
    ]
    return notebook, printed
