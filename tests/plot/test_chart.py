"""The chart that compares runs: smoothing and panel decisions in Python, the page in Chromium.

The browser tests write a chart with its data to a standalone HTML file (BokehJS
inline), open it in headless Chromium through Selenium and read BokehJS's own
models and views on the page: what the smoothed lines draw, what the readout
says, which scale an axis has. They skip when Bokeh, Selenium, Chromium or
chromedriver is missing (CI installs them all).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from plot_browser import artifact, bokeh

from mimir.plot.chart import PANEL_RATIO, line_source_name, panels_needed, smooth

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "_static" / "compare-runs.png"
WAIT = 30  # seconds any single condition may take before the test fails


# -- smoothing and panels (no browser) ----------------------------------------------------


def test_smoothing_is_a_debiased_moving_average():
    """smooth() is TensorBoard's average: s_t = w s_(t-1) + (1-w) y_t, over 1 - w^t."""
    values = [1.0, 2.0, 4.0, 3.0]
    weight = 0.6
    expected, last = [], 0.0
    for t, y in enumerate(values, start=1):
        last = weight * last + (1 - weight) * y
        expected.append(last / (1 - weight**t))
    assert smooth(values, weight) == pytest.approx(expected, rel=1e-12)
    assert smooth(values, weight)[0] == 1.0  # debiased: the first point is the first value
    assert smooth([5.0] * 50, 0.999) == pytest.approx([5.0] * 50, rel=1e-9)  # no pull to 0


def test_smoothing_weight_zero_is_the_raw_line():
    """A weight of 0 leaves the values as they are (non-finite ones become NaN)."""
    assert smooth([3, 1.5, 2], 0.0) == [3.0, 1.5, 2.0]


def test_smoothing_starts_over_after_a_segment_break():
    """NaN, None and infinities end a segment: NaN in the result, then a fresh average."""
    result = smooth([1.0, 3.0, math.nan, 10.0, 20.0, None, 7.0, math.inf, 8.0], 0.5)
    assert math.isnan(result[2]) and math.isnan(result[5]) and math.isnan(result[7])
    assert result[3] == 10.0 and result[6] == 7.0 and result[8] == 8.0  # each restart debiased
    assert result[4] == pytest.approx((0.25 * 10 + 0.5 * 20) / 0.75)
    assert result[:2] == smooth([1.0, 3.0], 0.5)


@pytest.mark.parametrize("weight", [-0.1, 1.0, 2.0, math.nan])
def test_smoothing_refuses_weights_outside_zero_to_one(weight):
    """The weight must lie in [0, 1)."""
    with pytest.raises(ValueError, match="smoothing weight"):
        smooth([1.0], weight)


@pytest.mark.parametrize(
    "ranges, needed",
    [
        ({"loss": (0.3, 2.4), "learning_rate": (1e-5, 1e-3)}, True),
        ({"loss": (0.3, 2.4), "accuracy": (0.1, 0.95)}, False),
        ({"a": (0, 1.0), "b": (0, PANEL_RATIO)}, False),  # exactly the ratio: one panel
        ({"a": (0, 1.0), "b": (0, PANEL_RATIO * 1.01)}, True),
        ({"a": (-500.0, 10.0), "b": (0.0, 2.0)}, True),  # the scale is the largest magnitude
        ({"steps": (0, 1e6)}, False),  # one key
        ({"a": (0.0, 0.0), "b": (1e-9, 1e9)}, False),  # all zero: no scale to compare
        ({"a": (math.nan, math.nan), "b": (1.0, 2.0), "c": (math.inf, 1.0)}, False),  # no data
        ({}, False),
    ],
)
def test_panels_are_needed_when_scales_differ_more_than_the_ratio(ranges, needed):
    """panels_needed compares the keys' largest magnitudes against PANEL_RATIO."""
    assert panels_needed(ranges) is needed


def test_key_ranges_span_every_run_of_a_key():
    """key_ranges gives each key's finite range over all runs, for panels_needed."""
    from mimir.plot.chart import key_ranges

    columns = {
        ("a", "loss"): {"x": [0, 1, 2], "y": [2.5, math.nan, 0.4]},
        ("b", "loss"): {"x": [0, 1], "y": [3.0, None]},
        ("a", "lr"): {"x": [0, 1], "y": [1e-3, 1e-4]},
        ("a", "empty"): {"x": [0], "y": [math.inf]},
    }
    ranges = key_ranges(columns)
    assert ranges == {"loss": (0.4, 3.0), "lr": (1e-4, 1e-3)}
    assert panels_needed(ranges)


def test_importing_the_chart_does_not_importbokeh():
    """mimir.plot.chart imports Bokeh only when a chart is built."""
    code = "import sys, mimir.plot.chart; assert 'bokeh' not in sys.modules, 'bokeh imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=WAIT)


# -- the chart's models (no browser) ------------------------------------------------------


def _lines(chart: Any, part: str = "smoothed") -> dict[tuple[str, str], Any]:
    return getattr(chart, part)


def test_colour_follows_the_run_and_dash_the_key():
    """Two runs of two keys: one colour per run, one dash per key, legends for runs and keys."""
    bokeh()
    from mimir.plot.chart import build_chart

    lines = [("a", "loss"), ("b", "loss"), ("a", "acc"), ("b", "acc")]
    chart = build_chart("step", lines)
    glyphs = {line: renderer.glyph for line, renderer in chart.smoothed.items()}
    assert glyphs["a", "loss"].line_color == glyphs["a", "acc"].line_color
    assert glyphs["a", "loss"].line_color != glyphs["b", "loss"].line_color
    assert glyphs["a", "loss"].line_dash == glyphs["b", "loss"].line_dash
    assert glyphs["a", "loss"].line_dash != glyphs["a", "acc"].line_dash
    assert all(chart.raw[line].glyph.line_alpha == 0 for line in lines)  # not smoothed: one line
    smoothed = build_chart("step", lines, smoothing=0.6)
    assert all(smoothed.raw[line].glyph.line_alpha == 0.25 for line in lines)  # raw: faint
    assert set(chart.sources) == set(lines)
    assert chart.sources["a", "loss"].name == line_source_name("a", "loss") == "mimir:a:loss"
    assert dict(chart.sources["b", "acc"].data) == {"x": [], "y": []}
    legends = {
        legend.name: [item.label.value for item in legend.items]
        for legend in chart.figures[0].legend
    }
    assert legends == {"mimir:legend:run": ["a", "b"], "mimir:legend:key": ["loss", "acc"]}
    assert chart.panels == [["loss", "acc"]] and len(chart.figures) == 1


def test_up_to_twenty_runs_have_colours_of_their_own():
    """Past ten runs, the palette has twenty colours before any repeats."""
    bokeh()
    from mimir.plot.chart import build_chart

    chart = build_chart("step", [(f"run {i}", "loss") for i in range(20)])
    assert len({renderer.glyph.line_color for renderer in chart.smoothed.values()}) == 20


def test_one_run_gets_a_colour_per_key_and_a_legend_entry_per_line():
    """With one run, each key has its own colour, solid, and its own legend entry."""
    bokeh()
    from mimir.plot.chart import build_chart

    chart = build_chart("step", [("", "loss"), ("", "acc")], title="run 7")
    loss, acc = (chart.smoothed["", key].glyph for key in ("loss", "acc"))
    assert loss.line_color != acc.line_color and loss.line_dash == acc.line_dash == []
    assert [item.label.value for item in chart.figures[0].legend[0].items] == ["loss", "acc"]
    assert chart.sources["", "loss"].name == "mimir:loss"
    assert chart.figures[0].title.text == "run 7"


def test_panels_per_key_share_the_x_range():
    """panels=True, or ranges that differ >100x, give a panel per key on one x range."""
    bokeh()
    from mimir.plot.chart import build_chart

    lines = [("a", "loss"), ("a", "lr"), ("b", "loss"), ("b", "lr")]
    ranges = {"loss": (0.2, 2.5), "lr": (1e-5, 1e-3)}
    for chart in (
        build_chart("step", lines, panels=True),
        build_chart("step", lines, ranges=ranges),
    ):
        assert chart.panels == [["loss"], ["lr"]]
        assert [fig.x_range for fig in chart.figures] == [chart.x_range, chart.x_range]
        assert chart.figures[0].y_range is not chart.figures[1].y_range
        assert chart.figures[1].yaxis[0].axis_label == "lr"
    assert len(build_chart("step", lines, ranges={"loss": (0, 2), "lr": (0, 1)}).figures) == 1
    assert len(build_chart("step", lines, panels=False, ranges=ranges).figures) == 1


def test_a_time_axis_has_no_log_x_toggle():
    """x_axis="datetime" draws a time axis, and log x makes no sense there."""
    bokeh()
    from bokeh.models import DatetimeAxis

    from mimir.plot.chart import build_chart

    chart = build_chart("time", [("a", "loss")], x_axis="datetime", log_x=True)
    assert isinstance(chart.figures[0].xaxis[0], DatetimeAxis)
    assert chart.log_x is None and chart.log_y is not None


@pytest.mark.parametrize(
    "lines, options, message",
    [
        ([], {}, "at least one"),
        ([("a", "y"), ("a", "y")], {}, "once"),
        ([("a", "y")], {"x_axis": "log"}, "x_axis"),
        ([("a", "y")], {"smoothing": 1.0}, "smoothing"),
    ],
)
def test_build_chart_refuses_what_it_cannot_draw(lines, options, message):
    """No lines, a line twice, an unknown x axis or a smoothing weight of 1 are ValueErrors."""
    bokeh()
    from mimir.plot.chart import build_chart

    with pytest.raises(ValueError, match=message):
        build_chart("x", lines, **options)


# -- the browser ------------------------------------------------------------------------


def _open(driver: Any, chart: Any, path: Path) -> None:
    """Write ``chart`` as a standalone page, open it and wait until BokehJS drew it."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    path.write_text(file_html(chart.layout, INLINE, "Mímir chart"), encoding="utf-8")
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get(path.as_uri())
    _until(driver, lambda: driver.execute_script(IDLE_JS), "the page to render")


def _until(driver: Any, condition: Callable[[], Any], what: str) -> Any:
    """Poll ``condition()`` until it is truthy (WAIT seconds at most); return its value."""
    from selenium.webdriver.support.wait import WebDriverWait

    seen: list[Any] = []

    def check(_: Any) -> Any:
        seen.append(condition())
        return seen[-1]

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(check)
    except Exception as error:
        raise AssertionError(
            f"waited for {what}; last saw {seen[-1] if seen else None!r}"
        ) from error


def _problems(driver: Any) -> list[dict]:
    """What the page logged as errors or warnings since the last call."""
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


#: JavaScript: whether BokehJS has rendered the document (and finished laying it out).
IDLE_JS = """
if (!window.Bokeh || !Bokeh.documents || Bokeh.documents.length === 0) return false;
const doc = Bokeh.documents[0];
return doc.is_idle === true || doc._notified_idle === true;
"""

#: JavaScript: the y values the smoothed line of the named source draws (NaN as null).
DRAWN_JS = """
const doc = Bokeh.documents[0];
const renderer = doc.get_model_by_name(arguments[0] + ":smoothed");
const view = Bokeh.index.find_one(renderer);
if (view == null || view.glyph.y == null) return null;
return Array.from(view.glyph.y, (v) => Number.isFinite(v) ? v : null);
"""

#: JavaScript: set a model's property (arguments: name, property, JSON value).
SET_JS = """
Bokeh.documents[0].get_model_by_name(arguments[0])[arguments[1]] = JSON.parse(arguments[2]);
"""


def _set(driver: Any, name: str, attribute: str, value: Any) -> None:
    import json

    driver.execute_script(SET_JS, name, attribute, json.dumps(value))


def _drawn(driver: Any, run: str, key: str) -> list[float | None] | None:
    return driver.execute_script(DRAWN_JS, line_source_name(run, key))


def _close(drawn: list[float | None] | None, expected: list[float]) -> bool:
    """Whether the drawn values equal ``expected`` (NaN as None) to 1e-9."""
    if drawn is None or len(drawn) != len(expected):
        return False
    for got, want in zip(drawn, expected, strict=True):
        if math.isnan(want):
            if got is not None:
                return False
        elif got is None or abs(got - want) > 1e-9 * max(1.0, abs(want)):
            return False
    return True


def _noisy(run: int, n: int, *, gap_at: int | None = None) -> dict[str, list[float]]:
    """A deterministic noisy falling curve; a NaN row at ``gap_at`` (a segment break)."""
    xs: list[float] = []
    ys: list[float] = []
    for i in range(n):
        noise = 0.05 * math.sin(i * 12.9898 + run) * math.cos(i * 4.1414)
        xs.append(float(i))
        ys.append(0.9 * math.exp(-i / (60 + 20 * run)) + 0.1 * run + 0.1 + noise)
    if gap_at is not None:
        xs[gap_at] = ys[gap_at] = math.nan
    return {"x": xs, "y": ys}


def _figure_element(driver: Any, index: int = 0) -> Any:
    return driver.execute_script(
        "return Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(arguments[0])).el",
        f"mimir:figure:{index}",
    )


def _hover(driver: Any, x: float, index: int = 0, y_fraction: float = 0.5) -> None:
    """Move the mouse over panel ``index`` to data coordinate ``x``."""
    from selenium.webdriver.common.action_chains import ActionChains

    sx, top, height = driver.execute_script(
        """
        const fig = Bokeh.documents[0].get_model_by_name(arguments[0]);
        const view = Bokeh.index.find_one(fig);
        const frame = view.frame;
        return [frame.x_scale.compute(arguments[1]), frame.bbox.top, frame.bbox.height];
        """,
        f"mimir:figure:{index}",
        x,
    )
    element = _figure_element(driver, index)
    size = element.size  # Selenium's offsets count from the element's centre
    sy = top + height * y_fraction
    ActionChains(driver).move_to_element_with_offset(
        element, round(sx - size["width"] / 2), round(sy - size["height"] / 2)
    ).perform()


def _readout(driver: Any) -> str:
    return driver.execute_script(
        "return Bokeh.documents[0].get_model_by_name('mimir:readout').text"
    )


def test_two_runs_overlaid_in_chromium(browser, tmp_path):
    """Two runs of one key: two lines in two colours, a legend naming the runs, no errors."""
    from mimir.plot.chart import build_chart

    chart = build_chart("iteration", [("baseline", "loss"), ("wider", "loss")])
    chart.sources["baseline", "loss"].data = _noisy(0, 300)
    chart.sources["wider", "loss"].data = _noisy(1, 300)
    _open(browser, chart, tmp_path / "two-runs.html")
    state = browser.execute_script(
        """
        const doc = Bokeh.documents[0];
        const line = (run) => doc.get_model_by_name(`mimir:${run}:loss:smoothed`);
        const colour = (run) => line(run).glyph.line_color;
        const legend = doc.get_model_by_name("mimir:legend:run");
        const view = Bokeh.index.find_one(doc.get_model_by_name("mimir:figure:0"));
        return {
          colours: [colour("baseline"), colour("wider")],
          legend: legend.items.map((item) => item.label.value),
          points: ["baseline", "wider"].map((run) => Bokeh.index.find_one(
            doc.get_model_by_name(`mimir:${run}:loss:smoothed`)).glyph.y.length),
          height: view.el.getBoundingClientRect().height,
          window: window.innerHeight,
          scroll: doc.get_model_by_name("mimir:figure:0").toolbar.active_scroll != null,
        };
        """
    )
    assert state["colours"][0] != state["colours"][1]
    assert state["legend"] == ["baseline", "wider"]
    assert state["points"] == [300, 300]
    assert state["height"] > 0.7 * state["window"]  # the chart fills the window
    assert state["scroll"]  # wheel zoom is on
    width_js = """
        const glyph = Bokeh.documents[0].get_model_by_name(arguments[0] + ":smoothed").glyph;
        return glyph.line_width.value ?? glyph.line_width;
    """
    name = line_source_name("wider", "loss")
    _until(browser, lambda: browser.execute_script(width_js, name) == 2, "wide lines")
    browser.execute_script(  # a dense line is drawn thin: wide ones are slow to draw
        "const source = Bokeh.documents[0].get_model_by_name(arguments[0]);"
        "source.stream({x: arguments[1], y: arguments[1].map((x) => 1 / x)});",
        name,
        list(range(300, 6000)),
    )
    _until(browser, lambda: browser.execute_script(width_js, name) == 1, "a thin dense line")
    assert browser.execute_script(width_js, line_source_name("baseline", "loss")) == 2
    assert _problems(browser) == []


def test_smoothing_slider_smooths_in_the_page_as_python_does(browser, tmp_path):
    """The slider smooths in the browser exactly as smooth(); restarts at breaks; follows data."""
    from mimir.plot.chart import build_chart

    chart = build_chart("iteration", [("a", "loss"), ("b", "loss")])
    data = _noisy(0, 200, gap_at=120)
    chart.sources["a", "loss"].data = data
    chart.sources["b", "loss"].data = _noisy(1, 200)
    _open(browser, chart, tmp_path / "smoothing.html")
    ys = data["y"]
    assert _close(_drawn(browser, "a", "loss"), smooth(ys, 0.0))  # no smoothing at first

    _set(browser, "mimir:smoothing_slider", "value", 0.9)
    expected = smooth(ys, 0.9)
    drawn = _until(
        browser,
        lambda: _close(d := _drawn(browser, "a", "loss"), expected) and d,
        "the smoothed line",
    )
    assert drawn[0] == pytest.approx(ys[0], rel=1e-12)  # debiased start: the first value
    assert drawn[120] is None  # the break stays a break
    assert drawn[121] == pytest.approx(ys[121], rel=1e-12)  # and the average starts over
    assert drawn[119] != pytest.approx(ys[119], rel=1e-3)  # smoothed away from the raw value
    assert _close(_drawn(browser, "b", "loss"), smooth(_noisy(1, 200)["y"], 0.9))
    raw = browser.execute_script(
        """
        const doc = Bokeh.documents[0];
        const view = Bokeh.index.find_one(doc.get_model_by_name("mimir:figure:0"));
        const source = doc.get_model_by_name("mimir:a:loss");
        const raw = view.renderer_views.values().find(
          (r) => r.model.data_source === source && r.model.name == null);
        return [Array.from(source.data.y, (v) => Number.isFinite(v) ? v : null),
                raw.model.glyph.line_alpha.value ?? raw.model.glyph.line_alpha];
        """
    )
    assert raw == [[None if math.isnan(y) else y for y in ys], 0.25]  # raw: untouched, faint

    # Streamed points are smoothed on: the page follows a growing run.
    more = _noisy(0, 260)
    browser.execute_script(
        "const source = Bokeh.documents[0].get_model_by_name(arguments[0]);"
        "source.stream({x: arguments[1], y: arguments[2]});",
        line_source_name("a", "loss"),
        more["x"][200:],
        more["y"][200:],
    )
    grown = smooth(ys + more["y"][200:], 0.9)
    _until(browser, lambda: _close(_drawn(browser, "a", "loss"), grown), "the streamed points")

    # Replaced data (a refined view, a new run) is smoothed anew.
    replaced = _noisy(2, 50)
    browser.execute_script(
        "const source = Bokeh.documents[0].get_model_by_name(arguments[0]);"
        "source.data = {x: arguments[1], y: arguments[2]};",
        line_source_name("a", "loss"),
        replaced["x"],
        replaced["y"],
    )
    fresh = smooth(replaced["y"], 0.9)
    _until(browser, lambda: _close(_drawn(browser, "a", "loss"), fresh), "the replaced data")

    _set(browser, "mimir:smoothing_slider", "value", 0.0)
    _until(
        browser,
        lambda: _close(_drawn(browser, "a", "loss"), replaced["y"]),
        "the raw line again",
    )
    assert _problems(browser) == []


def test_readout_names_run_and_key_and_gives_every_value_at_the_cursor(browser, tmp_path):
    """Hovering shows one readout listing each run and key with its value at the cursor's x."""
    from mimir.plot.chart import build_chart

    lines = [("baseline", "loss"), ("wider", "loss"), ("baseline", "acc"), ("wider", "acc")]
    chart = build_chart("iteration", lines)
    values = {line: float(10 * (i + 1)) for i, line in enumerate(lines)}
    for line, source in chart.sources.items():
        xs = list(range(0, 100_001, 1000))
        source.data = {"x": xs, "y": [values[line] + x / 100_000 for x in xs]}
    _open(browser, chart, tmp_path / "readout.html")
    _hover(browser, 50_200)  # nearest point: 50,000
    text = _until(browser, lambda: "wider" in (t := _readout(browser)) and t, "the readout")
    for (run, key), value in values.items():
        row = f"<td>{run}</td><td>{key}</td><td>{value + 0.5:g}</td>"
        assert row in text, (row, text)
    assert "<b>iteration</b> 50,000" in text
    shown = browser.execute_script(
        """
        const t = Bokeh.documents[0].get_model_by_name("mimir:tooltip:0");
        const view = Bokeh.index.find_one(t);
        const box = view.el.getBoundingClientRect();
        return t.position != null && view.el.isConnected && box.width > 50 && box.height > 30;
        """
    )
    assert shown  # floating next to the cursor

    # A hidden run leaves the readout.
    _set(browser, "mimir:toggle:run:wider", "visible", False)
    _until(
        browser,
        lambda: (
            not browser.execute_script(
                "return Bokeh.documents[0].get_model_by_name('mimir:wider:acc:smoothed').visible"
            )
        ),
        "the run to hide",
    )
    _hover(browser, 30_000)
    text = _until(browser, lambda: "30,000" in (t := _readout(browser)) and t, "a new readout")
    assert "wider" not in text and "baseline" in text
    assert _problems(browser) == []


def test_legends_toggle_runs_and_keys_together(browser, tmp_path):
    """A line shows when both its run and its key are shown in the legends."""
    from mimir.plot.chart import build_chart

    lines = [("a", "loss"), ("b", "loss"), ("a", "acc"), ("b", "acc")]
    chart = build_chart("iteration", lines)
    for index, source in enumerate(chart.sources.values()):
        source.data = _noisy(index, 50)
    _open(browser, chart, tmp_path / "legends.html")
    visible_js = """
        const doc = Bokeh.documents[0];
        return arguments[0].map((name) => [
          doc.get_model_by_name(name + ":smoothed").visible,
          Bokeh.index.find_one(doc.get_model_by_name("mimir:figure:0")).renderer_views
            .values().find((r) => r.model.data_source.name == name && r.model.name == null)
            .model.visible,
        ]);
    """
    names = [line_source_name(run, key) for run, key in lines]

    def shown() -> list[bool]:
        pairs = browser.execute_script(visible_js, names)
        assert all(smoothed == raw for smoothed, raw in pairs)  # raw and smoothed go together
        return [smoothed for smoothed, _ in pairs]

    assert shown() == [True, True, True, True]
    for toggle, value, expected in [
        ("mimir:toggle:key:acc", False, [True, True, False, False]),
        ("mimir:toggle:run:b", False, [True, False, False, False]),
        ("mimir:toggle:key:acc", True, [True, False, True, False]),  # b stays hidden
        ("mimir:toggle:run:b", True, [True, True, True, True]),
    ]:
        _set(browser, toggle, "visible", value)
        _until(browser, lambda expected=expected: shown() == expected, f"{toggle} = {value}")
    assert _problems(browser) == []


def test_ticks_are_never_scientific_for_steps_up_to_a_trillion(browser, tmp_path):
    """The x formatter writes 999,999 and 1T, and whole tick lists without 'e+'."""
    from mimir.plot.chart import build_chart

    chart = build_chart("step", [("a", "loss")])
    chart.sources["a", "loss"].data = {"x": [0, 10**12], "y": [1.0, 2.0]}
    _open(browser, chart, tmp_path / "ticks.html")
    cases = {
        "single": [[999_999], [10**12], [10**6], [123_456_789]],
        "lists": [
            [0, 200_000, 400_000, 600_000, 800_000, 1_000_000],
            [0, 2 * 10**11, 4 * 10**11, 6 * 10**11, 8 * 10**11, 10**12],
            [1_000_000, 1_000_200, 1_000_400],
            [999_990, 999_995, 1_000_000],
            [0, 20, 40, 60],
        ],
    }
    formatted = browser.execute_script(
        """
        const f = Bokeh.documents[0].get_model_by_name("mimir:x_format");
        return arguments[0].map((ticks) => f.doFormat(ticks, {}));
        """,
        cases["single"] + cases["lists"],
    )
    assert formatted[:4] == [["999,999"], ["1T"], ["1M"], ["123,456,789"]]
    assert formatted[4] == ["0", "0.2M", "0.4M", "0.6M", "0.8M", "1.0M"]
    assert formatted[5] == ["0", "0.2T", "0.4T", "0.6T", "0.8T", "1.0T"]
    assert formatted[6] == ["1,000,000", "1,000,200", "1,000,400"]  # in full when close
    assert formatted[7] == ["999,990", "999,995", "1,000,000"]
    assert formatted[8] == ["0", "20", "40", "60"]
    labels = browser.execute_script(  # what the axis shows for 0 to 10^12
        """
        const axis = Bokeh.documents[0].get_model_by_name("mimir:figure:0").below[0];
        const view = Bokeh.index.find_one(axis);
        const ticks = view.tick_coords.major[0];
        return axis.formatter.doFormat(ticks, {});
        """
    )
    assert labels and all("e" not in label for label in labels), labels
    y_labels = browser.execute_script(
        "return Bokeh.documents[0].get_model_by_name('mimir:y_format')"
        ".doFormat([0, 0.00002, 0.00004], {}).concat("
        "Bokeh.documents[0].get_model_by_name('mimir:y_format').doFormat([0.25, 0.5, 0.75], {}))"
    )
    assert y_labels == ["0", "2e-5", "4e-5", "0.25", "0.50", "0.75"]
    assert _problems(browser) == []


def test_log_toggles_switch_the_axes_in_the_page(browser, tmp_path):
    """The log y and log x buttons switch scale, ticks and range, and back, without errors."""
    from mimir.plot.chart import build_chart

    chart = build_chart("step", [("a", "loss"), ("b", "loss")])
    chart.sources["a", "loss"].data = {"x": [1, 10, 100, 1000], "y": [1.0, 0.1, 0.01, 0.001]}
    chart.sources["b", "loss"].data = {"x": [1, 10, 100, 1000], "y": [2.0, 0.2, 0.02, 0.002]}
    _open(browser, chart, tmp_path / "log.html")
    state_js = """
        const fig = Bokeh.documents[0].get_model_by_name("mimir:figure:0");
        const view = Bokeh.index.find_one(fig);
        return [fig.x_scale.type, fig.y_scale.type, fig.left[0].ticker.type,
                view.frame.y_scale.type, fig.y_range.start];
    """
    assert browser.execute_script(state_js)[:4] == [
        "LinearScale",
        "LinearScale",
        "BasicTicker",
        "LinearScale",
    ]
    browser.execute_script(  # zoom in on x, as the wheel or a box would
        "const fig = Bokeh.documents[0].get_model_by_name('mimir:figure:0');"
        "const view = Bokeh.index.find_one(fig);"
        "view.update_range({xrs: new Map([[fig.x_range, {start: 5, end: 500}]]),"
        " yrs: new Map([[fig.y_range, {start: 0.5, end: 1.5}]])});"
    )
    _click(browser, "mimir:log_y")
    state = _until(  # and the y range fitted to the data on a log scale (when next drawn)
        browser,
        lambda: (s := browser.execute_script(state_js))[3] == "LogScale" and 0 < s[4] <= 1e-3 and s,
        "a log y scale",
    )
    assert state[1:3] == ["LogScale", "LogTicker"]
    x_range = browser.execute_script(
        "const r = Bokeh.documents[0].get_model_by_name('mimir:figure:0').x_range;"
        "return [r.start, r.end]"
    )
    assert x_range == [5, 500]  # the x zoom stays
    _click(browser, "mimir:log_x")
    _until(browser, lambda: browser.execute_script(state_js)[0] == "LogScale", "a log x scale")
    _until(  # log x shows the whole run again, as the reset tool does
        browser,
        lambda: (
            (
                r := browser.execute_script(
                    "const r = Bokeh.documents[0].get_model_by_name('mimir:figure:0').x_range;"
                    "return [r.start, r.end]"
                )
            )[0]
            <= 1
            and r[1] >= 1000
        ),
        "the whole x range",
    )
    browser.save_screenshot(str(artifact("chart-log.png")))
    _click(browser, "mimir:log_y")
    state = _until(
        browser,
        lambda: (s := browser.execute_script(state_js))[3] == "LinearScale" and s,
        "a linear y scale again",
    )
    assert state[2] == "BasicTicker"
    assert _problems(browser) == []


def _click(driver: Any, name: str) -> None:
    """Click the widget named ``name`` (its button, inside the widget's shadow root)."""
    button = driver.execute_script(
        """
        const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(arguments[0]));
        return view.shadow_el.querySelector("button") ?? view.el;
        """,
        name,
    )
    button.click()


def test_panels_when_scales_differ_share_x_and_toggles(browser, tmp_path):
    """Loss and learning rate get a panel each, on one x range; a run hides in both."""
    from mimir.plot.chart import build_chart, panels_needed

    lines = [("a", "loss"), ("b", "loss"), ("a", "lr"), ("b", "lr")]
    data = {
        ("a", "loss"): _noisy(0, 100),
        ("b", "loss"): _noisy(1, 100),
        ("a", "lr"): {"x": list(range(100)), "y": [1e-3 * 0.97**i for i in range(100)]},
        ("b", "lr"): {"x": list(range(100)), "y": [5e-4 * 0.97**i for i in range(100)]},
    }
    ranges = {"loss": (0.1, 1.3), "lr": (1e-3 * 0.97**99, 1e-3)}
    assert panels_needed(ranges)
    chart = build_chart("iteration", lines, ranges=ranges)
    for line, source in chart.sources.items():
        source.data = data[line]
    _open(browser, chart, tmp_path / "panels.html")
    state = browser.execute_script(
        """
        const doc = Bokeh.documents[0];
        const figs = [0, 1].map((i) => doc.get_model_by_name(`mimir:figure:${i}`));
        const frames = figs.map((f) => Bokeh.index.find_one(f).frame.bbox);
        return [figs[0].x_range === figs[1].x_range, frames[0].left, frames[1].left,
                frames[0].right, frames[1].right, figs.map((f) => f.y_range.end)];
        """
    )
    same_range, left0, left1, right0, right1, ends = state
    assert same_range and left0 == left1 and right0 == right1  # x axes linked and aligned
    assert ends[0] > 1 and ends[1] < 0.01  # each panel scaled to its key
    _hover(browser, 40, index=1)
    text = _until(browser, lambda: "lr" in (t := _readout(browser)) and t, "the lr readout")
    assert "<td>loss</td>" not in text  # the readout of the panel under the cursor
    _set(browser, "mimir:toggle:run:b", "visible", False)  # run b's entry in the top legend
    hidden = _until(
        browser,
        lambda: (
            (
                v := browser.execute_script(
                    "const d = Bokeh.documents[0];"
                    "return ['b:loss', 'b:lr', 'a:lr'].map((n) => d.get_model_by_name("
                    "`mimir:${n}:smoothed`).visible)"
                )
            )[1]
            is False
            and v
        ),
        "run b to hide in both panels",
    )
    assert hidden == [False, False, True]
    assert _problems(browser) == []


def test_time_axis_readout_shows_the_time(browser, tmp_path):
    """x_axis="datetime": ms since the epoch on a time axis; the readout prints the time."""
    from mimir.plot.chart import build_chart

    start = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    chart = build_chart("time", [("a", "loss"), ("b", "loss")], x_axis="datetime")
    for run, source in zip("ab", chart.sources.values(), strict=True):
        xs = [start + 60_000 * i for i in range(120)]
        source.data = {"x": xs, "y": [1.0 + (run == "b") + i / 100 for i in range(120)]}
    _open(browser, chart, tmp_path / "time.html")
    _hover(browser, start + 60_000 * 60)
    text = _until(browser, lambda: "2023" in (t := _readout(browser)) and t, "the time readout")
    assert "2023-11-14 23:13:20" in text
    assert _problems(browser) == []


def test_screenshot_of_two_runs_compared(browser, tmp_path):
    """A two-run comparison, smoothed, with the readout open: the docs' screenshot."""
    from plot_data import entry

    from mimir.plot.chart import build_chart

    def run(shift: float, n: int) -> dict[str, dict[str, list[float]]]:
        columns: dict[str, dict[str, list[float]]] = {
            "training_error": {"x": [], "y": []},
            "validation_error": {"x": [], "y": []},
        }
        for i in range(n):
            values = entry(i)
            for key, points in columns.items():
                if key in values:
                    wobble = 0.035 * math.sin(i * 7.31 + shift * 50) * math.cos(i * 2.17)
                    points["x"].append(i)
                    points["y"].append(values[key] * (1 + shift) + wobble)
        return columns

    runs = {"lr=0.1": run(0.0, 1000), "lr=0.03": run(0.35, 800)}
    lines = [(name, key) for key in ("training_error", "validation_error") for name in runs]
    chart = build_chart("iteration", lines, smoothing=0.8, title="Two runs compared")
    for (name, key), source in chart.sources.items():
        source.data = runs[name][key]
    _open(browser, chart, tmp_path / "compare.html")
    _hover(browser, 420, y_fraction=0.35)
    _until(browser, lambda: "lr=0.03" in _readout(browser), "the readout")
    _until(
        browser,
        lambda: browser.execute_script(
            "const t = Bokeh.documents[0].get_model_by_name('mimir:tooltip:0');"
            "return Bokeh.index.find_one(t).el.getBoundingClientRect().width > 50"
        ),
        "the readout to show",
    )
    screenshot = artifact("compare-runs.png")
    browser.save_screenshot(str(screenshot))
    assert _problems(browser) == []
    if not DOCS_SCREENSHOT.exists() or os.environ.get("MIMIR_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)


def test_elapsed_time_axis_ticks_and_readout_are_durations(browser, tmp_path):
    """x_axis="elapsed": seconds since the start, ticked and read out as m:ss and h:mm:ss."""
    from mimir.plot.chart import build_chart

    chart = build_chart("elapsed", [("a", "loss")], x_axis="elapsed")
    xs = [30.0 * i for i in range(300)]  # two and a half hours
    chart.sources["a", "loss"].data = {"x": xs, "y": [1.0 / (1 + i) for i in range(300)]}
    _open(browser, chart, tmp_path / "elapsed.html")
    labels = browser.execute_script(
        """
        const axis = Bokeh.documents[0].get_model_by_name("mimir:figure:0").below[0];
        const view = Bokeh.index.find_one(axis);
        return axis.formatter.doFormat(view.tick_coords.major[0], {});
        """
    )
    assert labels and all(":" in label for label in labels), labels
    assert set(labels) <= {f"{h}:{m:02d}" for h in range(3) for m in range(0, 60, 5)}, labels
    formatted = browser.execute_script(
        """
        const f = Bokeh.documents[0].get_model_by_name("mimir:elapsed_format");
        return [f.doFormat([0, 15, 30, 45], {}), f.doFormat([0, 600, 1200], {}),
                f.doFormat([3600, 5400, 7200], {}), f.doFormat([0, 0.5, 1], {})];
        """
    )
    assert formatted == [
        ["0 s", "15 s", "30 s", "45 s"],
        ["0:00", "10:00", "20:00"],
        ["1:00", "1:30", "2:00"],
        ["0.0 s", "0.5 s", "1.0 s"],
    ]
    _hover(browser, 3690.0)
    text = _until(browser, lambda: "1:01:30" in (t := _readout(browser)) and t, "the readout")
    assert "<th>run</th>" in text
    assert _problems(browser) == []


@contextmanager
def _bokeh_server(modify_doc: Callable[[Any], None]) -> Iterator[str]:
    """A Bokeh server on a free loopback port, on its own thread, serving ``modify_doc``."""
    import asyncio
    import threading

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    started: list[Any] = []
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = Server(
            {"/": Application(FunctionHandler(modify_doc))},
            port=0,
            address="127.0.0.1",
            allow_websocket_origin=["127.0.0.1"],
        )
        server.start()
        started.append(server)
        ready.set()
        server.io_loop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(WAIT)
    server = started[0]
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.io_loop.add_callback(server.io_loop.stop)
        thread.join(WAIT)
        server.stop()


def test_live_page_smooths_streamed_points_and_keeps_the_mouse_to_itself(browser, caplog):
    """On a Bokeh server, points streamed from Python are smoothed; hovering sends nothing back."""
    from mimir.plot.chart import build_chart

    received: list[str] = []  # what the page sent to the server
    documents: list[Any] = []
    first = _noisy(0, 100)

    def modify_doc(doc: Any) -> None:
        chart = build_chart("iteration", [("a", "loss"), ("b", "loss")], smoothing=0.5)
        chart.sources["a", "loss"].data = first
        chart.sources["b", "loss"].data = _noisy(1, 100)
        doc.add_root(chart.layout)
        documents.append((doc, chart))

        def changed(event: Any) -> None:
            if getattr(event, "setter", None) is not None:  # from the browser
                received.append(f"{type(event.model).__name__}.{getattr(event, 'attr', '')}")

        doc.on_change(changed)

    with _bokeh_server(modify_doc) as url:
        browser.get_log("browser")
        browser.get(url)
        _until(browser, lambda: browser.execute_script(IDLE_JS), "the page to render")
        _until(browser, lambda: _close(_drawn(browser, "a", "loss"), smooth(first["y"], 0.5)), "a")
        doc, chart = documents[0]
        more = _noisy(0, 150)
        rows = {"x": more["x"][100:], "y": more["y"][100:]}
        doc.add_next_tick_callback(lambda: chart.sources["a", "loss"].stream(rows))
        grown = smooth(more["y"], 0.5)
        _until(browser, lambda: _close(_drawn(browser, "a", "loss"), grown), "the streamed points")
        received.clear()
        for x in (20, 40, 60, 80):
            _hover(browser, x)
        _until(browser, lambda: "<td>b</td>" in _readout(browser), "the readout")
        _set(browser, "mimir:smoothing_slider", "value", 0.8)
        _until(browser, lambda: "Slider.value" in received, "the slider's value on the server")
        assert set(received) == {"Slider.value"}, received  # nothing from the mouse
        received.clear()
        _click(browser, "mimir:log_y")  # what the page changes is valid on the server too
        _until(browser, lambda: "Toggle.active" in received, "the toggle on the server")
        _set(browser, "mimir:toggle:run:b", "visible", False)
        _until(browser, lambda: "GlyphRenderer.visible" in received, "the hidden run")
        _hover(browser, 50)
        assert _problems(browser) == []
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert errors == [], [r.getMessage() for r in errors]
