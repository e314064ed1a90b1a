"""The chart that compares runs: lines by run and key, smoothing, readout, panels, log toggles.

:func:`build_chart` makes the Bokeh layout every view shows (the live server, the
HTML report, the notebook): one :class:`~bokeh.models.ColumnDataSource` per line,
a line being one key of one run. The caller fills and streams the sources (a
row of NaN breaks a line: a restarted run); the page does the rest without a
round trip to Python, so a Bokeh server hears only the slider, the toggles and
the legends:

* colour follows the run and line dash follows the key; legends toggle runs
  and keys;
* a smoothing slider (exponential moving average, debiased, as TensorBoard's)
  draws a smoothed line over the raw one, which stays visible, faint;
* a readout at the cursor names each line and gives its value at the cursor's x;
* integer-friendly ticks, log-y and log-x toggles, wheel zoom, and one panel
  per key when the keys' scales differ by more than :data:`PANEL_RATIO`;
* an x axis of numbers, of wall-clock time or of elapsed time.

:func:`smooth` is the smoothing in Python, the reference the page's JavaScript
follows; :func:`panels_needed` decides between one panel and one per key, from
the value ranges :func:`key_ranges` finds.
Bokeh is imported only when a chart is made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mimir.plot.figure import PALETTE, import_bokeh

__all__ = [
    "PANEL_RATIO",
    "Chart",
    "build_chart",
    "key_ranges",
    "line_source_name",
    "panels_needed",
    "smooth",
]

#: Keys whose scales differ by more than this factor get a panel each.
PANEL_RATIO = 100.0

#: Dash patterns of the keys, in order (repeated past the last).
_DASHES = ("solid", "dashed", "dotted", "dotdash", "dashdot", [10, 3, 2, 3, 2, 3])
_RAW_ALPHA = 0.25  # the raw line under the smoothed one
_LINE_WIDTH = 2  # of a line, in pixels ...
_DENSE_POINTS = 5000  # ... but 1 for a line of more points (a browser draws those 10x faster)
_KEY_SWATCH = "#555555"  # the colour of a key's entry in the key legend


def line_source_name(run: str, key: str) -> str:
    """The ``name`` of the data source of key ``key`` of run ``run`` (``get_model_by_name``)."""
    return f"mimir:{run}:{key}" if run else f"mimir:{key}"


# -- decisions made in Python --------------------------------------------------------------


def smooth(values: Iterable[float | None], weight: float) -> list[float]:
    """TensorBoard's smoothing: a debiased exponential moving average of ``values``.

    ``s_t = weight * s_(t-1) + (1 - weight) * y_t``, divided by ``1 - weight**t`` so
    that the start is not pulled towards zero; ``t`` counts from 1 at the start of
    each segment. A value that is not a finite number (NaN, infinity, None) ends a
    segment: it stays NaN in the result and the average starts over after it.
    The page's JavaScript computes exactly this.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight!r}")
    result: list[float] = []
    last = 0.0
    count = 0
    for value in values:
        if value is None or not math.isfinite(value):
            result.append(math.nan)
            last = 0.0
            count = 0
            continue
        if weight == 0.0:
            result.append(float(value))
            continue
        last = weight * last + (1.0 - weight) * value
        count += 1
        result.append(last / (1.0 - weight**count))
    return result


def panels_needed(ranges: Mapping[str, tuple[float, float]]) -> bool:
    """Whether keys with these value ranges ``{key: (lo, hi)}`` need a panel each.

    The scale of a key is the largest magnitude it reaches, ``max(|lo|, |hi|)``;
    panels are needed when two keys' scales differ by more than :data:`PANEL_RATIO`
    (a loss near 2 and a learning rate near 1e-4, say). A key whose values are all
    zero, or whose range is not finite (no data yet), does not count.
    """
    scales = []
    for lo, hi in ranges.values():
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        scale = max(abs(lo), abs(hi))
        if scale > 0:
            scales.append(scale)
    return len(scales) > 1 and max(scales) > PANEL_RATIO * min(scales)


def key_ranges(
    columns: Mapping[tuple[str, str], Mapping[str, Iterable[Any]]],
) -> dict[str, tuple[float, float]]:
    """``{key: (lo, hi)}`` of the finite ``"y"`` values of every run's line of each key.

    ``columns`` maps ``(run, key)`` to the columns of a line (``{"x": ..., "y": ...}``,
    as a data source holds them); a key with no finite value is left out. The
    result is what :func:`panels_needed` and ``build_chart(ranges=...)`` take.
    """
    found: dict[str, tuple[float, float]] = {}
    for (_, key), data in columns.items():
        finite = [v for v in data.get("y", ()) if v is not None and math.isfinite(v)]
        if not finite:
            continue
        lo, hi = min(finite), max(finite)
        if key in found:
            lo, hi = min(lo, found[key][0]), max(hi, found[key][1])
        found[key] = (lo, hi)
    return found


# -- the chart -------------------------------------------------------------------------------


@dataclass
class Chart:
    """What :func:`build_chart` made.

    Attributes:
        layout: what to show (controls, then the figure or the panels).
        sources: ``{(run, key): ColumnDataSource}`` with columns ``x`` and ``y``, for
            the caller to fill (``source.data = ...``) and stream; a row of NaN
            ends a segment (a line is not drawn across it, smoothing starts over).
        x_range: the x range every panel shares.
        figures: the figures, one per panel, top first.
        panels: the keys of each figure (one list per figure).
        slider: the slider of the smoothing weight.
        log_x, log_y: the toggles of the log axes (``log_x`` is None on a time axis).
        smoothed: ``{(run, key): renderer}`` of the smoothed lines.
        raw: ``{(run, key): renderer}`` of the raw lines.
    """

    layout: Any
    sources: dict[tuple[str, str], Any]
    x_range: Any
    figures: list[Any]
    panels: list[list[str]] = field(default_factory=list)
    slider: Any = None
    log_x: Any = None
    log_y: Any = None
    smoothed: dict[tuple[str, str], Any] = field(default_factory=dict)
    raw: dict[tuple[str, str], Any] = field(default_factory=dict)


# Exponential smoothing of a column (xs: the y values of a line), as smooth() does.
_SMOOTH_JS = """
const w = weight;
const n = xs.length;
if (!(w > 0)) return xs;
const out = new Float64Array(n);
let last = 0, count = 0;
for (let i = 0; i < n; i++) {
  const y = xs[i];
  if (y == null || !Number.isFinite(y)) { out[i] = NaN; last = 0; count = 0; continue; }
  last = w * last + (1 - w) * y;
  count += 1;
  out[i] = last / (1 - Math.pow(w, count));
}
return out;
"""

# A line's width: wide unless it has so many points that a wide line is slow to draw.
_WIDTH_JS = """
for (const [source, renderer] of lines) {
  const width = source.get_length() > dense ? 1 : wide;
  const now = renderer.glyph.line_width;
  const value = now != null && now.value !== undefined ? now.value : now;
  if (value !== width) renderer.glyph.line_width = width;
}
"""

# The slider moves the weight of the one transform every smoothed line uses.
_SLIDER_JS = """
transform.args = Object.assign({}, transform.args, {weight: cb_obj.value});
const alpha = cb_obj.value > 0 ? raw_alpha : 0;  // unsmoothed, the raw line is the line
for (const r of raw) {
  const now = r.glyph.line_alpha;
  const value = now != null && now.value !== undefined ? now.value : now;
  if (value !== alpha) r.glyph.line_alpha = alpha;
}
"""

# Ticks: integers written out in full (thousands separated by commas) below a million,
# then in M/G/T with as many decimals as the tick spacing needs (at most 3, else in
# full); fractions with the decimals the spacing needs; 'e' only below 1e-4; never 'e+'.
_TICK_JS = """
const finite = ticks.filter((t) => Number.isFinite(t));
const grouped = (v, digits) => v.toLocaleString("en-US",
  {minimumFractionDigits: digits, maximumFractionDigits: digits});
const decimals = (step) => {
  if (!(step > 0)) return 0;
  let d = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  const off = (d) => Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6 * step * 10 ** d;
  while (d < 15 && off(d)) d++;
  return d;
};
const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"]];
const scaled = (v, unit, suffix, step) => {
  if (v === 0) return "0";
  return grouped(v / unit, decimals(step / unit)) + suffix;
};
const one = (v) => {
  // A tick on its own (log axes): exact, in the largest unit that divides it.
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) {
    for (const [unit, suffix] of units)
      if (Math.abs(v) >= unit && Number.isInteger(v / unit)) return grouped(v / unit, 0) + suffix;
    if (Math.abs(v) < 1e15) return grouped(v, 0);
  }
  if (Math.abs(v) >= 1e-4 && Math.abs(v) < 1e15) return String(Number(v.toPrecision(12)));
  return v.toExponential().replace("e+", "e");
};
if (log || finite.length < 2) return one(tick);
const big = Math.max(...finite.map(Math.abs));
const step = Math.abs(finite[1] - finite[0]);
for (const [unit, suffix] of units)  // in a unit when 3 decimals of it tell the ticks apart
  if (big >= unit && step >= unit / 1000) return scaled(tick, unit, suffix, step);
if (Number.isInteger(step) && finite.every(Number.isInteger)) return grouped(tick, 0);
if (big >= 1e-4) return grouped(tick, decimals(step));
if (tick === 0) return "0";
const digits = Math.max(0, decimals(step / 10 ** Math.floor(Math.log10(big))));
return tick.toExponential(digits).replace("e+", "e");
"""

# Ticks of elapsed seconds: 45 s, 1:30 (m:ss), 2:00:00 (h:mm:ss), on steps of 1, 2, 5,
# 10, 15, 20 or 30 seconds, minutes or hours (see _duration_ticker).
_DURATION_TICK_JS = """
const finite = ticks.filter((t) => Number.isFinite(t));
const big = Math.max(0, ...finite.map(Math.abs));
const step = finite.length > 1 ? Math.abs(finite[1] - finite[0]) : 1;
const pad = (v) => String(v).padStart(2, "0");
const sign = tick < 0 ? "-" : "";
const a = Math.abs(tick);
if (big < 60) {
  const digits = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step) - 1e-9));
  return sign + a.toFixed(digits) + " s";
}
const whole = Math.round(a);
const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), sec = whole % 60;
if (big < 3600) return `${sign}${m}:${pad(sec)}`;
return `${sign}${h}:${pad(m)}` + (step % 60 === 0 ? "" : `:${pad(sec)}`);
"""

# Toggles: a line is visible when every group it belongs to (its run, its key) is shown.
_GROUPS_JS = """
for (const group of groups) {
  if (group.includes(cb_obj))
    for (const copy of group) if (copy.visible !== cb_obj.visible) copy.visible = cb_obj.visible;
}
for (const [renderers, toggles] of lines) {
  const visible = toggles.every((g) => groups[g][0].visible);
  for (const r of renderers) r.visible = visible;
}
"""

# The log toggles: swap each figure's scale, ticker and tick format, then fit the view.
_LOG_JS = """
const log = cb_obj.active;
for (const [fig, axis, grid, lin_parts, log_parts, range] of parts) {
  const [scale, ticker, formatter] = log ? log_parts : lin_parts;
  if (!log && range.scale_hint !== undefined) range.scale_hint = "auto";
  axis.ticker = ticker;
  axis.formatter = formatter;
  if (grid != null) grid.ticker = ticker;
  if (dim == "x") fig.x_scale = scale; else fig.y_scale = scale;
}
// Log y: fit the y axis to the data again, the x axis keeps its zoom. Log x: reset the
// view, as the reset tool does (and with its Reset event, which whoever refines the
// data on zoom hears).
for (const [fig, , , , , range] of parts) {
  const view = window.Bokeh?.index?.find_one?.(fig);
  if (dim == "x" || view == null || !("have_updated_interactively" in range)) {
    fig.reset.emit();
    continue;
  }
  range.have_updated_interactively = false;
  view.invalidate_dataranges = true;
  view.request_paint();
}
"""

# The readout: at the cursor's x, each visible line's nearest point (binary search
# within each segment), its smoothed and raw values.
_READOUT_JS = """
const cx = cb_obj.x;
const hide = () => {
  for (const t of tooltips) t.position = null;
  for (const s of spans) s.location = null;
  for (const d of dots) if (d.data.x.length) d.data = {x: [], y: [], color: []};
};
if (cb_obj.event_name == "mouseleave" || cx == null || !Number.isFinite(cx)) {
  hide();
  return;
}
const escape = (s) => String(s).replace(/[&<>"']/g,
  (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const number = (v) => {
  if (v == null || !Number.isFinite(v)) return "–";
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a >= 1e-4 && a < 1e15) return String(Number(v.toPrecision(6)));
  return v.toExponential(4);
};
const pad = (v) => String(v).padStart(2, "0");
const duration = (v) => {
  const sign = v < 0 ? "-" : "";
  const a = Math.abs(v);
  if (a < 60) return sign + String(Number(a.toPrecision(4))) + " s";
  const whole = Math.round(a);
  const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), sec = whole % 60;
  return sign + (h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`);
};
const at = (v) => {
  if (mode == "datetime")
    return new Date(v).toISOString().replace("T", " ").replace(/\\.000Z$|Z$/, "");
  return mode == "elapsed" ? duration(v) : number(v);
};
const segments = (source, xs, ys) => {
  // [start, end) of the runs of finite rows; kept on the source while its data stays
  const n = xs.length;
  const key = [xs, ys, n, xs[0], xs[n - 1], ys[0], ys[n - 1]];
  const cached = source._mimir_segments;
  if (cached != null && cached.key.every((k, i) => Object.is(k, key[i]))) return cached.value;
  const value = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(xs[i]) || ys[i] == null || !Number.isFinite(ys[i])) {
      if (i > start) value.push([start, i]);
      start = i + 1;
    }
  }
  if (n > start) value.push([start, n]);
  source._mimir_segments = {key, value};
  return value;
};
const nearest = (xs, segs) => {
  // [index, segment start] of the point nearest cx (binary search in each segment)
  let best = [-1, 0], distance = Infinity;
  for (const [lo, hi] of segs) {
    let a = lo, b = hi - 1;
    while (a < b) { const m = (a + b) >> 1; if (xs[m] < cx) a = m + 1; else b = m; }
    for (const i of [a - 1, a]) {
      if (i >= lo && i < hi) {
        const d = Math.abs(xs[i] - cx);
        if (d <= distance) { distance = d; best = [i, lo]; }
      }
    }
  }
  return best;
};
const w = transform.args.weight;
const smoothed_at = (ys, start, i) => {
  // the smoothed value at i: the average from the segment's start (as smooth() does)
  if (!(w > 0)) return ys[i];
  let last = 0;
  for (let j = start; j <= i; j++) last = w * last + (1 - w) * ys[j];
  return last / (1 - Math.pow(w, i - start + 1));
};
const rows = [];
const dx = [], dy = [], dc = [];
for (const [run, key, source, renderer, color, dash] of lines) {
  if (!renderer.visible) continue;
  const xs = source.data.x, ys = source.data.y;
  if (xs == null || ys == null || xs.length == 0) continue;
  const [i, start] = nearest(xs, segments(source, xs, ys));
  if (i < 0) continue;
  const y = smoothed_at(ys, start, i);
  dx.push(xs[i]); dy.push(y); dc.push(color);
  rows.push([run, key, y, ys[i], xs[i], color, dash]);
}
if (rows.length == 0) { hide(); return; }
for (const s of spans) s.location = cx;
for (const d of dots) if (d !== own_dots && d.data.x.length) d.data = {x: [], y: [], color: []};
own_dots.data = {x: dx, y: dy, color: dc};
const same = rows.every((r) => r[4] === rows[0][4]);
const where = same ? rows[0][4] : cx;
let html = `<div class="mimir-readout"><div><b>${escape(x_key)}</b> ${escape(at(where))}</div>`;
const named = rows.some((r) => r[0] !== "");
html += "<table><tr><th></th>" + (named ? "<th>run</th>" : "") + "<th>key</th>";
html += w > 0 ? "<th>smoothed</th>" : "";
html += "<th>value</th>" + (same ? "" : "<th>" + escape(x_key) + "</th>") + "</tr>";
for (const [run, key, y, raw, x, color, dash] of rows) {
  const style = `display:inline-block;width:18px;border-top:3px ${dash};border-color:${color}`;
  html += `<tr><td><span style="${style}"></span></td>`;
  html += (named ? `<td>${escape(run)}</td>` : "") + `<td>${escape(key)}</td>`;
  if (w > 0) html += `<td>${escape(number(y))}</td>`;
  html += `<td>${escape(number(raw))}</td>` + (same ? "" : `<td>${escape(at(x))}</td>`) + "</tr>";
}
html += "</table></div>";
readout.text = html;
for (const t of tooltips) if (t !== tooltip) t.position = null;
tooltip.position = [cb_obj.sx, cb_obj.sy];
"""

_READOUT_CSS = """
.mimir-readout { font: 12px sans-serif; }
.mimir-readout table { border-collapse: collapse; }
.mimir-readout th, .mimir-readout td { padding: 1px 6px; text-align: left; white-space: nowrap; }
.mimir-readout th { font-weight: normal; color: #666; }
"""


def _dash_css(dash: Any) -> str:
    return (
        {"dashed": "dashed", "dotted": "dotted"}.get(dash, "solid")
        if isinstance(dash, str)
        else "dashed"
    )


def _duration_ticker() -> Any:
    """Ticks of elapsed seconds at whole seconds, minutes and hours (1, 2, 5, 10, 15, 20, 30)."""
    from bokeh.models import AdaptiveTicker, CompositeTicker

    sixty = [1, 2, 5, 10, 15, 20, 30]
    return CompositeTicker(
        tickers=[
            AdaptiveTicker(mantissas=[1, 2, 5], base=10, min_interval=1e-3, max_interval=1),
            AdaptiveTicker(mantissas=sixty, base=60, min_interval=1, max_interval=30),
            AdaptiveTicker(mantissas=sixty, base=60, min_interval=60, max_interval=1800),
            AdaptiveTicker(mantissas=[*sixty, 60], base=60, min_interval=3600),
        ]
    )


def build_chart(
    x_key: str,
    lines: Sequence[tuple[str, str]],
    *,
    log_y: bool = False,
    log_x: bool = False,
    panels: bool | None = None,
    title: str | None = None,
    x_axis: str = "linear",
    smoothing: float = 0.0,
    height: int | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Chart:
    """The chart of ``lines``, ``(run, key)`` pairs, against ``x_key``.

    Each line gets an empty data source (columns ``x`` and ``y``) named
    :func:`line_source_name`, in :attr:`Chart.sources`, for the caller to fill.

    Arguments:
        x_key: the name of the x axis.
        lines: one ``(run, key)`` per line; ``run`` names the run (``""`` for a
            single unnamed run).
        log_y, log_x: start with a logarithmic y (x) axis; the page has toggles.
        panels: one panel per key (True), one panel for all (False), or decide
            from ``ranges`` with :func:`panels_needed` (None; one panel when
            ``ranges`` is not given).
        title: of the chart, above it (default: none; each panel is titled with
            its key).
        x_axis: ``"linear"``; ``"datetime"`` for x values in milliseconds since the
            epoch (wall-clock time, shown in UTC); ``"elapsed"`` for x values in
            seconds since the start (shown as ``m:ss`` and ``h:mm:ss``). A time
            axis has no log-x toggle.
        smoothing: the initial smoothing weight, in [0, 0.999].
        height: the height of each panel in pixels; None fills the container
            with the chart (put it in a layout with ``sizing_mode="stretch_both"``
            to fill the browser window).
        ranges: ``{key: (lo, hi)}`` of the values (:func:`key_ranges`), when known,
            for ``panels=None``.
    """
    import_bokeh()
    lines = [(str(run), str(key)) for run, key in lines]
    if not lines:
        raise ValueError("give at least one (run, key) line to plot")
    if len(set(lines)) != len(lines):
        raise ValueError("each (run, key) line may be given once")
    if x_axis not in ("linear", "datetime", "elapsed"):
        raise ValueError(f"x_axis must be 'linear', 'datetime' or 'elapsed', got {x_axis!r}")
    if not 0.0 <= smoothing <= 0.999:
        raise ValueError(f"smoothing must be in [0, 0.999], got {smoothing!r}")
    keys = list(dict.fromkeys(key for _, key in lines))
    if panels is None:
        panels = bool(ranges) and len(keys) > 1 and panels_needed(ranges or {})
    builder = _Builder(
        x_key,
        lines,
        panels=bool(panels),
        x_axis=x_axis,
        log_x=log_x and x_axis == "linear",
        log_y=log_y,
        smoothing=float(smoothing),
        height=height,
    )
    for index, shown in enumerate(builder.panel_keys):
        builder.add_panel(index, shown, title)
    builder.add_legends()
    builder.add_readout()
    return builder.chart()


class _Builder:
    """The parts of one chart as they are made (see :func:`build_chart`)."""

    def __init__(
        self,
        x_key: str,
        lines: list[tuple[str, str]],
        *,
        panels: bool,
        x_axis: str,
        log_x: bool,
        log_y: bool,
        smoothing: float,
        height: int | None,
    ) -> None:
        from bokeh.models import CustomJSTickFormatter, CustomJSTransform, DataRange1d, Div

        self.x_key = x_key
        self.lines = lines
        self.x_axis = x_axis
        self.log_x = log_x
        self.log_y = log_y
        self.smoothing = smoothing
        self.height = height
        self.runs = list(dict.fromkeys(run for run, _ in lines))
        self.keys = list(dict.fromkeys(key for _, key in lines))
        self.panel_keys = (
            [[key] for key in self.keys] if panels and len(self.keys) > 1 else [self.keys]
        )
        self.by_run = len(self.runs) > 1  # colour by run; else by key
        self.dashed = self.by_run and len(self.keys) > 1 and len(self.panel_keys) == 1
        self.smoother = CustomJSTransform(
            args={"weight": smoothing},
            v_func=_SMOOTH_JS,
            name="mimir:smoothing",
            syncable=False,  # the slider's value is what a server hears
        )
        self.x_range = DataRange1d(name="mimir:x_range", only_visible=True)
        self.formats = {
            ("x", False): CustomJSTickFormatter(
                code=_TICK_JS, args={"log": False}, name="mimir:x_format"
            ),
            ("x", True): CustomJSTickFormatter(code=_TICK_JS, args={"log": True}),
            ("y", False): CustomJSTickFormatter(
                code=_TICK_JS, args={"log": False}, name="mimir:y_format"
            ),
            ("y", True): CustomJSTickFormatter(code=_TICK_JS, args={"log": True}),
        }
        self.elapsed_format = CustomJSTickFormatter(
            code=_DURATION_TICK_JS, name="mimir:elapsed_format"
        )
        self.sources: dict[tuple[str, str], Any] = {}
        self.raw: dict[tuple[str, str], Any] = {}
        self.smoothed: dict[tuple[str, str], Any] = {}
        self.figures: list[Any] = []
        # What follows the mouse stays in the page (syncable=False): a server hears
        # nothing of it.
        self.readout = Div(
            text="", name="mimir:readout", stylesheets=[_READOUT_CSS], syncable=False
        )
        self.tooltips: list[Any] = []
        self.dots: list[Any] = []
        self.spans: list[Any] = []
        self.panel_lines: list[list[Any]] = []  # per figure: what the readout lists
        self.log_parts: dict[str, list[Any]] = {"x": [], "y": []}  # what a log toggle swaps

    def colour(self, run: str, key: str) -> str:
        """The colour of a line: its run's (its key's, with one run)."""
        from bokeh.palettes import Category20

        index = self.runs.index(run) if self.by_run else self.keys.index(key)
        count = len(self.runs) if self.by_run else len(self.keys)
        palette = PALETTE if count <= len(PALETTE) else Category20[20]  # 20 before repeating
        return palette[index % len(palette)]

    def dash(self, key: str) -> Any:
        return _DASHES[self.keys.index(key) % len(_DASHES)] if self.dashed else "solid"

    def add_panel(self, index: int, shown: list[str], title: str | None) -> None:
        """A figure with the lines of the keys ``shown``, its cursor line, dots and tooltip."""
        from bokeh.models import ColumnDataSource, DataRange1d, Span, Tooltip
        from bokeh.plotting import figure

        several = len(self.panel_keys) > 1
        panel_title = title if index == 0 else None
        if several:
            panel_title = f"{title} — {shown[0]}" if title and index == 0 else shown[0]
        sizing: dict[str, Any] = {"sizing_mode": "stretch_both"}
        if self.height is not None:
            sizing = {"sizing_mode": "stretch_width", "height": int(self.height)}
        x_type = "log" if self.log_x else "linear"
        fig = figure(
            title=panel_title,
            x_range=self.x_range,
            y_range=DataRange1d(only_visible=True),
            x_axis_type="datetime" if self.x_axis == "datetime" else x_type,
            y_axis_type="log" if self.log_y else "linear",
            x_axis_label=self.x_key if index == len(self.panel_keys) - 1 else None,
            y_axis_label=shown[0] if len(shown) == 1 else None,
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_scroll="wheel_zoom",
            min_height=160,
            min_width=300,
            min_border_left=72,  # panels' y axes line up while tick labels fit in it
            name=f"mimir:figure:{index}",
            **sizing,
        )
        fig.toolbar.logo = None
        if self.x_axis == "elapsed":
            fig.xaxis.ticker = _duration_ticker()
            fig.xaxis.formatter = self.elapsed_format
            fig.xgrid.ticker = fig.xaxis[0].ticker
        elif self.x_axis == "linear":
            fig.xaxis.formatter = self.formats["x", self.log_x]
        fig.yaxis.formatter = self.formats["y", self.log_y]
        span = Span(
            location=None, dimension="height", line_color="#888888", line_width=1, syncable=False
        )
        fig.add_layout(span)
        self.spans.append(span)
        self.panel_lines.append(
            [self.add_line(fig, line) for line in self.lines if line[1] in shown]
        )
        dots = ColumnDataSource(data={"x": [], "y": [], "color": []}, syncable=False)
        fig.scatter("x", "y", source=dots, color="color", size=7, line_color="white")
        self.dots.append(dots)
        tooltip = Tooltip(
            content=self.readout,
            position=None,
            attachment="horizontal",
            show_arrow=False,
            interactive=False,
            visible=True,
            name=f"mimir:tooltip:{index}",
            syncable=False,
        )
        fig.elements.append(tooltip)
        self.tooltips.append(tooltip)
        self.add_log_parts(fig)
        self.figures.append(fig)

    def add_line(self, fig: Any, line: tuple[str, str]) -> list[Any]:
        """The raw and the smoothed line of ``(run, key)`` in ``fig``; what the readout needs."""
        from bokeh.models import ColumnDataSource
        from bokeh.transform import transform

        run, key = line
        source = ColumnDataSource(data={"x": [], "y": []}, name=line_source_name(run, key))
        self.sources[line] = source
        style = {"line_color": self.colour(run, key), "line_dash": self.dash(key)}
        self.raw[line] = fig.line(
            "x",
            "y",
            source=source,
            line_alpha=_RAW_ALPHA if self.smoothing > 0 else 0.0,
            line_width=1,
            **style,
        )
        self.smoothed[line] = fig.line(
            "x",
            transform("y", self.smoother),
            source=source,
            name=f"{line_source_name(run, key)}:smoothed",
            line_width=1,  # widened in the page when not dense (_WIDTH_JS)
            **style,
        )
        for renderer in (self.raw[line], self.smoothed[line]):
            renderer.glyph.syncable = False  # widths and alphas set in the page stay there
        colour, dash = style["line_color"], _dash_css(style["line_dash"])
        return [run, key, source, self.smoothed[line], colour, dash]

    def add_log_parts(self, fig: Any) -> None:
        """What the log toggles swap in ``fig``: scale, ticker, tick format (and the range)."""
        from bokeh.models import BasicTicker, LinearScale, LogScale, LogTicker

        for dim in ("x", "y"):
            if dim == "x" and self.x_axis != "linear":
                continue
            axis = fig.xaxis[0] if dim == "x" else fig.yaxis[0]
            grid = fig.xgrid[0] if dim == "x" else fig.ygrid[0]
            linear = [LinearScale(), BasicTicker(), self.formats[dim, False]]
            log = [LogScale(), LogTicker(), self.formats[dim, True]]
            range_ = fig.x_range if dim == "x" else fig.y_range
            self.log_parts[dim].append([fig, axis, grid, linear, log, range_])

    def add_legends(self) -> None:
        """Legends that toggle runs and keys (or lines), synchronised across panels.

        A toggle per group (a run, a key, or a line); a line shows when all its
        groups do. A toggle is an empty renderer, one in each figure with that
        legend, whose legend entry hides it; its copies in other figures follow it.
        """
        from bokeh.models import ColumnDataSource, CustomJS, Legend, LegendItem

        groups: list[tuple[str, str, str, Any]] = []  # (kind, label, colour, dash)
        line_groups: list[list[int]] = []
        if self.by_run:
            groups += [("run", run, self.colour(run, ""), "solid") for run in self.runs]
            if self.dashed:
                groups += [("key", key, _KEY_SWATCH, self.dash(key)) for key in self.keys]
            for run, key in self.lines:
                found = [self.runs.index(run)]
                if self.dashed:
                    found.append(len(self.runs) + self.keys.index(key))
                line_groups.append(found)
            legend_figures = self.figures
        else:
            for index, (run, key) in enumerate(self.lines):
                label = key if len(self.lines) > 1 or not run else f"{run}: {key}"
                groups.append(("line", label, self.colour(run, key), self.dash(key)))
                line_groups.append([index])
            legend_figures = self.figures if len(self.figures) == 1 else []  # titles say it
        if not legend_figures:
            return
        copies: list[list[Any]] = [[] for _ in groups]
        swatch = ColumnDataSource(data={"x": [math.nan], "y": [math.nan]})  # nothing to draw
        top = self.figures[0]
        for fig in legend_figures:
            items: dict[str, list[Any]] = {"run": [], "key": [], "line": []}
            for index, (kind, label, colour, dash) in enumerate(groups):
                renderer = fig.line(
                    "x",
                    "y",
                    source=swatch,
                    line_color=colour,
                    line_dash=dash,
                    line_width=2,
                    name=f"mimir:toggle:{kind}:{label}" if fig is top else None,
                )
                copies[index].append(renderer)
                items[kind].append(LegendItem(label=label, renderers=[renderer]))
            for kind, place in (("run", "right"), ("line", "right"), ("key", "above")):
                if items[kind]:
                    legend = Legend(
                        items=items[kind],
                        title="run" if kind == "run" and self.dashed else None,
                        click_policy="hide",
                        orientation="horizontal" if place == "above" else "vertical",
                        location="top_left" if place == "above" else "top_right",
                        name=f"mimir:legend:{kind}" if fig is top else None,
                    )
                    fig.add_layout(legend, place)
        line_toggles = [
            [[self.raw[line], self.smoothed[line]], found]
            for line, found in zip(self.lines, line_groups, strict=True)
        ]
        callback = CustomJS(args={"groups": copies, "lines": line_toggles}, code=_GROUPS_JS)
        for group in copies:
            for renderer in group:
                renderer.js_on_change("visible", callback)

    def add_readout(self) -> None:
        """The readout at the cursor: each figure's mouse moves fill and place it."""
        from bokeh.models import CustomJS

        for index, fig in enumerate(self.figures):
            hover = CustomJS(
                args={
                    "readout": self.readout,
                    "spans": self.spans,
                    "dots": self.dots,
                    "own_dots": self.dots[index],
                    "tooltips": self.tooltips,
                    "tooltip": self.tooltips[index],
                    "lines": self.panel_lines[index],
                    "transform": self.smoother,
                    "x_key": self.x_key,
                    "mode": self.x_axis,
                },
                code=_READOUT_JS,
            )
            fig.js_on_event("mousemove", hover)
            fig.js_on_event("mouseleave", hover)

    def chart(self) -> Chart:
        """The controls above the figures, wired; the finished :class:`Chart`."""
        from bokeh.layouts import column, row
        from bokeh.models import CustomJS, Slider, Toggle

        slider = Slider(
            start=0.0,
            end=0.999,
            step=0.001,
            value=self.smoothing,
            title="Smoothing",
            name="mimir:smoothing_slider",
            width=260,
        )
        slider.js_on_change(
            "value",
            CustomJS(
                args={
                    "transform": self.smoother,
                    "raw": list(self.raw.values()),
                    "raw_alpha": _RAW_ALPHA,
                },
                code=_SLIDER_JS,
            ),
        )
        # Thin lines when dense: wide ones cost a browser ten times as much to draw.
        widths = CustomJS(
            args={
                "lines": [[self.sources[line], self.smoothed[line]] for line in self.lines],
                "wide": _LINE_WIDTH,
                "dense": _DENSE_POINTS,
            },
            code=_WIDTH_JS,
        )
        self.x_range.js_on_change("start", widths)  # also when first drawn
        for source in self.sources.values():
            source.js_on_change("data", widths)
            source.js_on_change("streaming", widths)
        toggles = {}
        for dim, active in (("y", self.log_y), ("x", self.log_x)):
            if self.log_parts[dim]:
                toggle = Toggle(
                    label=f"log {dim}", active=active, name=f"mimir:log_{dim}", width=70
                )
                toggle.js_on_change(
                    "active",
                    CustomJS(args={"parts": self.log_parts[dim], "dim": dim}, code=_LOG_JS),
                )
                toggles[dim] = toggle
        layout = column(
            row(slider, *toggles.values(), sizing_mode="stretch_width"),
            *self.figures,
            sizing_mode="stretch_both" if self.height is None else "stretch_width",
            name="mimir:chart",
        )
        return Chart(
            layout=layout,
            sources=self.sources,
            x_range=self.x_range,
            figures=self.figures,
            panels=self.panel_keys,
            slider=slider,
            log_x=toggles.get("x"),
            log_y=toggles.get("y"),
            smoothed=self.smoothed,
            raw=self.raw,
        )
