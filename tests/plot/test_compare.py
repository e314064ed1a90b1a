"""Several runs in one view, mistakes as errors, and whole runs with their spikes.

Files, streams and collected logs overlaid in the live server (headless
Chromium), the HTML report (its data parsed) and the notebook; misspelt keys and
files that are not logs failing with a message; a single spike in 10^6 points
visible in every view.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plot_browser import (
    ROOT,
    WAIT,
    ZOOM_JS,
    artifact,
    bokeh,
    data,
    embedded_series,
    embedded_sources,
    environment,
    plot_server,
    run_notebook,
    until,
    wait_for_points,
    wait_for_text,
    wait_idle,
)
from plot_data import entry

from mimir.plot import source_name
from mimir.plot.server import COLUMNS

SPIKE_AT = 612_345  # the iteration of the spike in the million-point run
SPIKE = 50.0


def _write(path: Path, entries: list[dict[str, Any]]) -> Path:
    with path.open("w") as file:
        for item in entries:
            file.write(json.dumps(item) + "\n")
    return path


def _mimir_plot(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mimir.cli.plot", *arguments],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


@pytest.fixture(scope="module")
def million(tmp_path_factory: Any) -> Path:
    """A run of 10^6 entries: a smooth decaying loss with one spike, at SPIKE_AT."""
    path = tmp_path_factory.mktemp("million") / "long.jsonl"
    with path.open("w") as file:
        for i in range(1_000_000):
            loss = SPIKE if i == SPIKE_AT else 1.0 / (1 + i / 1000) + 0.01 * math.sin(i)
            file.write(f'{{"iteration": {i}, "loss": {loss!r}}}\n')
    return path


# -- the report ---------------------------------------------------------------------------


def test_report_overlays_runs_named_by_file(tmp_path):
    """Two files give two runs named by their stems, each with its own data source."""
    bokeh()
    from mimir.plot import write_report

    first = _write(tmp_path / "baseline.jsonl", [entry(i) for i in range(100)])
    second = _write(
        tmp_path / "lr-0.1.jsonl.gz.jsonl",
        [{"iteration": i, "training_error": 2.0 * entry(i)["training_error"]} for i in range(50)],
    )
    output = tmp_path / "report.html"
    assert write_report([first, second], "iteration", ["training_error"], str(output)) == 150
    page = output.read_text(encoding="utf-8")
    baseline = embedded_series(page, source_name("training_error", "baseline"))
    other = embedded_series(page, source_name("training_error", "lr-0.1.jsonl.gz"))
    assert baseline["x"] == list(range(100)) and other["x"] == list(range(50))
    assert other["y"][7] == 2.0 * entry(7)["training_error"]


def test_report_of_a_folder_with_names(tmp_path):
    """A folder stands for its logs; --name names each run in order."""
    folder = tmp_path / "runs"
    folder.mkdir()
    _write(folder / "a.jsonl", [entry(i) for i in range(10)])
    _write(folder / "b.jsonl", [entry(i) for i in range(20)])
    output = tmp_path / "report.html"
    done = _mimir_plot(
        "iteration", "training_error", "--file", str(folder), "--name", "first",
        "--name", "second", "-o", str(output),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sources = embedded_sources(output.read_text(encoding="utf-8"))
    assert len(sources[source_name("training_error", "first")]["x"]) == 10
    assert len(sources[source_name("training_error", "second")]["x"]) == 20


def test_report_splits_a_collected_log_by_source(tmp_path):
    """A collected log (entries with their source) is one run per process."""
    bokeh()
    from mimir.plot import write_report

    entries = [
        {"iteration": i // 2, "loss": float(i), "source": {"host": "h", "pid": 7 + i % 2,
                                                           "name": f"rank{i % 2}"}}
        for i in range(40)
    ]  # fmt: skip
    path = _write(tmp_path / "collected.jsonl", entries)
    output = tmp_path / "report.html"
    write_report(path, "iteration", ["loss"], str(output))
    sources = embedded_sources(output.read_text(encoding="utf-8"))
    assert sources[source_name("loss", "rank0")]["y"] == [float(i) for i in range(0, 40, 2)]
    assert sources[source_name("loss", "rank1")]["x"] == list(range(20))


def test_a_restarted_run_is_two_segments_never_a_line_back(tmp_path):
    """Appending a second run to a log starts a new segment: a NaN row, no line back to 0."""
    bokeh()
    from mimir.plot import write_report

    path = _write(tmp_path / "twice.jsonl", [entry(i) for i in range(30)] +
                  [entry(i) for i in range(20)])  # fmt: skip
    output = tmp_path / "report.html"
    write_report(path, "iteration", ["training_error"], str(output))
    xs = embedded_series(output.read_text(encoding="utf-8"), source_name("training_error"))["x"]
    assert xs == [*range(30), None, *range(20)]


@pytest.mark.parametrize(
    "keys, option, figures",
    [
        (["loss", "accuracy"], [], 1),
        (["loss", "accuracy"], ["--panels"], 2),
        (["loss", "learning_rate"], [], 2),  # scales 1000x apart: a panel each
    ],
)
def test_report_panels_when_asked_or_when_scales_differ(tmp_path, keys, option, figures):
    """--panels gives each key a panel; so do keys whose scales differ by over 100x."""
    path = _write(
        tmp_path / "run.jsonl",
        [{"iteration": i, "loss": 2.0 / (i + 1), "accuracy": i / 20, "learning_rate": 1e-4}
         for i in range(20)],
    )  # fmt: skip
    output = tmp_path / "report.html"
    done = _mimir_plot("iteration", *keys, "--file", str(path), *option, "-o", str(output))
    assert done.returncode == 0, done.stderr
    page = output.read_text(encoding="utf-8")
    assert len(set(re.findall(r'"name":"(mimir:figure:\d+)"', page))) == figures


def test_report_on_wall_clock_and_elapsed_time(tmp_path):
    """X = wall_time is a wall-clock axis (milliseconds for Bokeh); --x-axis elapsed counts
    each run's seconds from its first entry."""
    first = _write(tmp_path / "a.jsonl", [{"wall_time": 1.7e9 + i / 2, "loss": 1.0 / (i + 1)}
                                           for i in range(10)])  # fmt: skip
    second = _write(tmp_path / "b.jsonl", [{"wall_time": 1.8e9 + i, "loss": 2.0}
                                            for i in range(5)])  # fmt: skip
    output = tmp_path / "report.html"
    done = _mimir_plot("wall_time", "loss", "--file", str(first), "-o", str(output))
    assert done.returncode == 0, done.stderr
    page = output.read_text(encoding="utf-8")
    assert embedded_series(page, source_name("loss"))["x"] == [
        (1.7e9 + i / 2) * 1000 for i in range(10)
    ]
    assert "DatetimeAxis" in page
    done = _mimir_plot(
        "wall_time", "loss", "--file", str(first), "--file", str(second), "--x-axis",
        "elapsed", "-o", str(output),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sources = embedded_sources(output.read_text(encoding="utf-8"))
    assert sources[source_name("loss", "a")]["x"] == [i / 2 for i in range(10)]
    assert sources[source_name("loss", "b")]["x"] == [float(i) for i in range(5)]


# -- mistakes -----------------------------------------------------------------------------


@pytest.mark.parametrize("report", [True, False], ids=["report", "live"])
def test_a_misspelt_key_is_an_error_listing_the_keys_found(tmp_path, report):
    """`mimir plot iteration trainig_error` fails (status 1) with the keys found and a hint."""
    bokeh()
    path = _write(tmp_path / "run.jsonl", [entry(i) for i in range(30)])
    output = tmp_path / "report.html"
    extra = ["-o", str(output)] if report else ["--port", "0"]
    done = _mimir_plot("iteration", "trainig_error", "--file", str(path), *extra)
    assert done.returncode == 1
    assert (
        f"no entry of {path} has the key 'trainig_error'; keys found: iteration, "
        "training_error, validation_error; did you mean 'training_error'?"
    ) in done.stderr
    assert not output.exists() and "http://" not in done.stdout
    wrong_x = _mimir_plot("step", "training_error", "--file", str(path), *extra)
    assert wrong_x.returncode == 1 and "the key 'step'" in wrong_x.stderr


@pytest.mark.parametrize("report", [True, False], ids=["report", "live"])
def test_a_file_that_is_not_a_log_is_an_error(tmp_path, report):
    """`--file notes.txt` fails (status 1): no line of it is a JSON entry."""
    bokeh()
    path = tmp_path / "notes.txt"
    path.write_text("lr 0.1 was too high\nlr 0.01 is fine\n")
    extra = ["-o", str(tmp_path / "r.html")] if report else ["--port", "0"]
    done = _mimir_plot("iteration", "loss", "--file", str(path), *extra)
    assert done.returncode == 1
    assert "notes.txt: not a Mímir log: no line of it is a JSON entry" in done.stderr


def test_a_report_of_an_empty_log_or_of_nothing_is_an_error(tmp_path):
    """An empty log has nothing to plot; a glob that matches nothing is named."""
    bokeh()
    (tmp_path / "empty.jsonl").write_text("")
    done = _mimir_plot("i", "y", "--file", str(tmp_path / "empty.jsonl"), "-o", "r.html")
    assert done.returncode == 1 and "holds no entry" in done.stderr
    done = _mimir_plot("i", "y", "--file", str(tmp_path / "*.nothing"), "-o", "r.html")
    assert done.returncode == 1 and "no file matches" in done.stderr


# -- the live server ----------------------------------------------------------------------


def test_live_plot_overlays_two_files_in_chromium(browser, tmp_path):
    """Two --file runs are two lines of each key, named by file; the page names both."""
    first = _write(tmp_path / "adam.jsonl", [entry(i) for i in range(200)])
    second = _write(tmp_path / "sgd.jsonl", [entry(i) for i in range(120)])
    with plot_server(
        "iteration", "training_error", "validation_error", "--file", str(first),
        "--file", str(second),
    ) as (_, url, _):  # fmt: skip
        browser.get(url)
        assert wait_for_points(browser, source_name("training_error", "adam"), 200) == 200
        assert wait_for_points(browser, source_name("training_error", "sgd"), 120) == 120
        assert wait_for_points(browser, source_name("validation_error", "sgd"), 12) == 12
        wait_for_text(browser, "mimir:status", "120 entries from")
        browser.save_screenshot(str(artifact("live-plot-two-files.png")))
        with first.open("a") as file:  # one run grows: only its line does
            for i in range(200, 260):
                file.write(json.dumps(entry(i)) + "\n")
        assert wait_for_points(browser, source_name("training_error", "adam"), 260) == 260
        assert data(browser, source_name("training_error", "sgd"))["x"] == list(range(120))


def test_live_plot_overlays_two_streams_in_chromium(browser, publishers):
    """Two --connect streams, named with --name, are two runs; both keep growing live."""
    (first, log_first), (second, log_second) = publishers("a"), publishers("b")
    for i in range(100):
        log_first.info(entry(i))
        log_second.info({"iteration": i, "training_error": 1.0 + i})
    with plot_server(
        "iteration", "training_error", "--connect", first.address, "--connect",
        second.address, "--name", "baseline", "--name", "wide",
    ) as (_, url, _):  # fmt: skip
        browser.get(url)
        assert wait_for_points(browser, source_name("training_error", "baseline"), 100) == 100
        assert wait_for_points(browser, source_name("training_error", "wide"), 100) == 100
        for i in range(100, 150):
            log_second.info({"iteration": i, "training_error": 1.0 + i})
        assert wait_for_points(browser, source_name("training_error", "wide"), 150) == 150
        wide = data(browser, source_name("training_error", "wide"))
        assert wide["x"] == list(range(150)) and wide["y"][-1] == 150.0
        assert data(browser, source_name("training_error", "baseline"))["x"] == list(range(100))


# -- whole runs: the spike ----------------------------------------------------------------


def _has_spike(columns: dict[str, list]) -> bool:
    return any(x == SPIKE_AT and y == SPIKE for x, y in zip(columns["x"], columns["y"],
                                                              strict=True))  # fmt: skip


def test_a_spike_in_a_million_points_is_in_every_resolution_of_the_report(million, tmp_path):
    """The report's data, parsed: every resolution of the line has the spike, bounded points."""
    bokeh()
    output = tmp_path / "report.html"
    done = _mimir_plot("iteration", "loss", "--file", str(million), "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert output.stat().st_size <= 5 << 20
    sources = embedded_sources(output.read_text(encoding="utf-8"))
    shown = sources[source_name("loss")]
    assert _has_spike(shown) and len(shown["x"]) <= 4 * 1000 + 2
    resolutions = [v for k, v in sources.items() if k.startswith(f"{source_name('loss')}:")]
    assert len(resolutions) >= 2
    assert all(_has_spike(resolution) for resolution in resolutions)


def test_a_spike_in_a_million_points_is_visible_in_the_report_when_zoomed(browser, million,
                                                                         tmp_path):  # fmt: skip
    """In Chromium, the report shows the spike, and a zoom picks a finer resolution."""
    output = tmp_path / "report.html"
    assert (
        _mimir_plot("iteration", "loss", "--file", str(million), "-o", str(output)).returncode == 0
    )
    browser.get_log("browser")
    browser.get(output.as_uri())
    wait_idle(browser)
    whole = data(browser, source_name("loss"))
    assert _has_spike(whole)
    coarse = sum(1 for x in whole["x"] if x is not None and abs(x - SPIKE_AT) <= 5000)
    browser.execute_script(ZOOM_JS, SPIKE_AT - 5000, SPIKE_AT + 5000)

    def finer(driver: Any) -> Any:
        zoomed = data(driver, source_name("loss"))
        inside = [x for x in zoomed["x"] if x is not None and abs(x - SPIKE_AT) <= 5000]
        return zoomed if len(inside) >= 8 * coarse else None

    zoomed = until(browser, finer, lambda: "the report kept its coarsest resolution")
    assert _has_spike(zoomed)
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []


def test_a_spike_in_a_million_points_is_visible_in_the_live_server(browser, million):
    """The live server shows the spike in the whole run, and again after a zoom refines it."""
    with plot_server("iteration", "loss", "--file", str(million)) as (_, url, _):
        browser.get(url)
        until(
            browser,
            lambda d: d.execute_script(
                "if (!window.Bokeh || !Bokeh.documents.length) return -1;"
                "const s = Bokeh.documents[0].get_model_by_name(arguments[0]);"
                "return s ? Math.max(...Array.from(s.data.x).filter(Number.isFinite)) : -1",
                source_name("loss"),
            ) >= 999_999,
            lambda: "the live plot never showed the whole run",
        )  # fmt: skip
        whole = data(browser, source_name("loss"))
        assert _has_spike(whole) and len(whole["x"]) <= 4 * COLUMNS + 2
        browser.execute_script(ZOOM_JS, SPIKE_AT - 1000, SPIKE_AT + 1000)

        def refined(driver: Any) -> Any:
            zoomed = data(driver, source_name("loss"))
            return zoomed if min(x for x in zoomed["x"] if x is not None) > 500_000 else None

        zoomed = until(browser, refined, lambda: "the server never refined the zoomed view")
        assert _has_spike(zoomed)
        assert len(zoomed["x"]) == 2003  # every point of the range, and one beyond each edge


def test_a_spike_in_a_million_points_is_in_the_notebook_view(million):
    """The notebook shows what its store's views hold (the same data path): the spike is in
    the whole view and in each finer resolution it sends for zooming."""
    bokeh()
    from mimir.plot.server import REPORT_COLUMNS, FileFeed, PointStore, report_resolutions

    store = PointStore("iteration", ["loss"])
    FileFeed(store, str(million)).read_new()
    view = store.view(("", "loss"), columns=REPORT_COLUMNS)
    assert len(view["x"]) <= 4 * REPORT_COLUMNS + 2
    assert _has_spike({"x": view["x"].tolist(), "y": view["y"].tolist()})
    finer = report_resolutions(store, [("", "loss")])[("", "loss")]
    assert len(finer) == 3
    assert all(_has_spike({"x": r["x"].tolist(), "y": r["y"].tolist()}) for r in finer)


def test_the_notebook_plot_refines_a_zoom_in_the_page(browser, tmp_path):
    """The notebook's page holds finer resolutions and picks one on zoom: its layout, saved
    from a real kernel as a standalone page, shows more points of a zoomed range."""
    pytest.importorskip("zmq")
    page = tmp_path / "notebook-plot.html"
    cells = [
        "import time\nimport mimir, mimir.plot\n"
        "logger = mimir.Logger(stream=True, stream_maxlen=30_000, formatter=None,"
        " stream_address='tcp://127.0.0.1:0', replay_address='tcp://127.0.0.1:0')\n"
        "for i in range(20_000):\n"
        "    logger.log({'iteration': i, 'loss': 50.0 if i == 12_345 else 1 / (1 + i / 100)})\n"
        "plot = mimir.plot.notebook_plot('iteration', 'loss', address=logger.stream.address)",
        "deadline = time.monotonic() + 30\nassert plot.wait_ready(30)\n"
        "finest = lambda: plot.resolutions.levels[('', 'loss')][2].data['x']\n"
        "while time.monotonic() < deadline and (plot.received < 20_000 or len(finest()) < 20_000):"
        "\n    time.sleep(0.05)\n"
        "print(plot.received, len(finest()), plot.shown())",
        "from bokeh.embed import file_html\nfrom bokeh.resources import INLINE\n"
        f"open({str(page)!r}, 'w').write(file_html(plot.figure, INLINE, 'notebook plot'))\n"
        "plot.stop()\nlogger.close()",
    ]
    _, outputs = run_notebook(cells)
    printed = outputs[1]
    received, finest, shown = map(int, printed.split())
    assert received == finest == 20_000 and shown <= 4000
    browser.get(page.as_uri())
    wait_idle(browser)
    assert len(data(browser, source_name("loss"))["x"]) == shown
    browser.execute_script(ZOOM_JS, 12_000, 12_700)

    def refined(driver: Any) -> Any:
        zoomed = data(driver, source_name("loss"))
        inside = [x for x in zoomed["x"] if x is not None and 12_000 <= x <= 12_700]
        return zoomed if len(inside) == 701 else None  # every point of the range

    zoomed = until(browser, refined, lambda: "the notebook's page kept its coarsest points")
    assert _has_spike_at(zoomed, 12_345)


def _has_spike_at(columns: dict[str, list], at: int) -> bool:
    return any(x == at and y == 50.0 for x, y in zip(columns["x"], columns["y"], strict=True))
