"""The pieces every Mímir plot shares: entries to points, and the Bokeh figure.

:func:`entries_to_rows` turns entries into points per series and
:func:`build_figure` makes the figure (one :class:`~bokeh.models.ColumnDataSource`
per series, named :func:`source_name`). The notebook plot
(:mod:`mimir.plot.notebook`), the server and the report (:mod:`mimir.plot.server`)
use both. Bokeh is imported only when a figure is made: install it with
``pip install "mimir-logger[plot]"``.
"""

from __future__ import annotations

import numbers
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "MIN_BOKEH",
    "PALETTE",
    "PlotValueWarning",
    "build_figure",
    "entries_to_rows",
    "import_bokeh",
    "source_name",
]

#: The oldest Bokeh version Mímir's plots accept.
MIN_BOKEH = (3, 8, 2)

_INSTALL = 'pip install "mimir-logger[plot]" (or pip install "bokeh>=3.8.2")'
#: Colours of lines, in order (Bokeh's Category10): by run in a comparison, by key
#: in a figure of one run, repeated past ten (a comparison turns to Category20).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


_MISSING: Any = object()  # a key an entry lacks


class PlotValueWarning(UserWarning):
    """A series met a value it cannot plot (given once per key)."""


def import_bokeh() -> Any:
    """Import Bokeh (>= 3.8.2), or raise an ImportError that says how to install it."""
    try:
        import bokeh
    except ImportError as error:
        raise ImportError(f"plotting needs Bokeh: install it with {_INSTALL}") from error
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", bokeh.__version__)
    if match is None or tuple(int(part) for part in match.groups()) < MIN_BOKEH:
        raise ImportError(
            f"plotting needs Bokeh >= 3.8.2, found {bokeh.__version__}: upgrade it with {_INSTALL}"
        )
    return bokeh


def source_name(y_key: str, run: str | None = None) -> str:
    """The ``name`` of the data source of a line (for ``get_model_by_name``).

    ``mimir:<key>`` for a single unnamed run (``run`` None or ``""``),
    ``mimir:<run>:<key>`` otherwise (as :func:`mimir.plot.chart.line_source_name`).
    """
    return f"mimir:{run}:{y_key}" if run else f"mimir:{y_key}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(entry: Mapping[str, Any], key: str, warned: set[str]) -> Any:
    """``entry[key]`` if it is a number; None if it is absent, or not a number (reported)."""
    value = entry.get(key)
    if value is None and key not in entry:
        return None
    if not _is_number(value):
        message = f"{key!r} has a value that is not a number ({value!r:.40}): skipped"
        _warn_once(warned, key, message)
        return None
    return value


def _warn_once(warned: set[str] | None, key: str, message: str) -> None:
    if warned is not None:
        if key in warned:
            return
        warned.add(key)
    warnings.warn(message, PlotValueWarning, stacklevel=3)


_PLAIN = frozenset((int, float))
_PLAIN_OR_MISSING = frozenset((int, float, object))


def _plain_rows(
    entries: list[Any], x_key: str, y_keys: Sequence[str], log_y: bool
) -> dict[str, dict[str, list[Any]]] | None:
    """:func:`entries_to_rows` of dicts whose x and y values are all plain numbers, a key
    at a time; None when any is not (the caller then goes entry by entry, and warns)."""
    try:
        xs = [entry[x_key] for entry in entries]
    except (KeyError, TypeError, IndexError):  # an entry without x, or not a dict
        return None
    if not set(map(type, xs)) <= _PLAIN or not all(map(dict.__instancecheck__, entries)):
        return None
    rows = {}
    missing = _MISSING
    for key in y_keys:
        ys = [entry.get(key, missing) for entry in entries]
        kinds = set(map(type, ys))
        if kinds <= _PLAIN:
            rows[key] = {"x": list(xs), "y": ys}
        elif kinds <= _PLAIN_OR_MISSING:
            kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not missing]
            rows[key] = {"x": [x for x, _ in kept], "y": [y for _, y in kept]}
        else:
            return None
        if log_y and rows[key]["y"] and not min(rows[key]["y"]) > 0:
            return None
    return rows


def entries_to_rows(
    entries: Iterable[Mapping[str, Any]],
    x_key: str,
    y_keys: Sequence[str],
    *,
    log_y: bool = False,
    warned: set[str] | None = None,
) -> dict[str, dict[str, list[Any]]]:
    """The points of each series: ``{y_key: {"x": [...], "y": [...]}}``, in entry order.

    The value under each y key is ready for ``ColumnDataSource.stream``. An entry
    lacking a key is skipped for that series (an entry lacking ``x_key``, for all);
    a value that is not a number (a string, a list, ``None``, ``True`` ...), or a
    value that is not positive when ``log_y``, is skipped and reported with a
    :class:`PlotValueWarning`, once per key. Pass the same ``warned`` set on every
    call to report each key once over a whole run (without it: once per call).
    """
    if warned is None:
        warned = set()
    if type(entries) is list:
        fast = _plain_rows(entries, x_key, y_keys, log_y)
        if fast is not None:
            return fast
    rows: dict[str, dict[str, list[Any]]] = {key: {"x": [], "y": []} for key in y_keys}
    targets = [(key, rows[key]["x"].append, rows[key]["y"].append) for key in rows]
    missing = _MISSING
    for entry in entries:
        if type(entry) is not dict and not isinstance(entry, Mapping):
            _warn_once(warned, "", f"skipped an entry that is not a JSON object: {entry!r:.60}")
            continue
        x = entry.get(x_key, missing)
        kind = type(x)
        if kind is not float and kind is not int:  # the fast path: plain numbers
            if x is missing:
                continue
            x = _number(entry, x_key, warned)
            if x is None:
                continue
        for key, add_x, add_y in targets:
            y = entry.get(key, missing)
            kind = type(y)
            if kind is not float and kind is not int:
                if y is missing:
                    continue
                y = _number(entry, key, warned)
                if y is None:
                    continue
            if log_y and not y > 0:
                _warn_once(
                    warned,
                    key,
                    f"{key!r} has a value that a log scale cannot show ({y!r}): skipped",
                )
                continue
            add_x(x)
            add_y(y)
    return rows


def build_figure(
    x_key: str,
    y_keys: Sequence[str],
    *,
    log_y: bool = False,
    title: str | None = None,
    height: int = 400,
    sizing_mode: str | None = "stretch_width",
    width: int = 800,
) -> tuple[Any, dict[str, Any]]:
    """A Bokeh figure with one line per y key; returns ``(figure, {y_key: data source})``.

    Each series has its own :class:`~bokeh.models.ColumnDataSource` with columns
    ``x`` and ``y``, named :func:`source_name` ``(y_key)``. Clicking a legend entry
    hides its line.
    """
    import_bokeh()
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    if not y_keys:
        raise ValueError("give at least one key to plot on the y axis")
    options: dict[str, Any] = {"height": height, "width": width}
    if sizing_mode is not None:
        options["sizing_mode"] = sizing_mode
    fig = figure(
        title=title if title is not None else ", ".join(y_keys),
        x_axis_label=x_key,
        y_axis_type="log" if log_y else "linear",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        name="mimir:figure",
        **options,
    )
    sources: dict[str, Any] = {}
    for index, key in enumerate(y_keys):
        source = ColumnDataSource(data={"x": [], "y": []}, name=source_name(key))
        sources[key] = source
        fig.line(
            "x",
            "y",
            source=source,
            legend_label=key,
            line_width=2,
            color=PALETTE[index % len(PALETTE)],
        )
    fig.add_tools(HoverTool(tooltips=[(x_key, "@x"), ("value", "@y")], mode="mouse"))
    fig.legend.click_policy = "hide"
    fig.legend.location = "top_right"
    return fig, sources
