"""What each run holds, in a few numbers: the core of ``mimir summary``.

For each run (see :mod:`mimir.runs`): its number of entries, the range of its x
key and how many segments it has (a run restarted into the same log starts a
new one), and for each numeric key the count, minimum, maximum and last value.

>>> for summary in mimir.summary.summarize_logs(["runs/"]):  # doctest: +SKIP
...     print(summary["run"], summary["keys"]["training_error"]["min"])
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Sequence
from typing import Any

from mimir.runs import Run, check_keys, default_x, is_number, load_runs

__all__ = ["check_x", "format_json", "format_table", "summarize", "summarize_logs"]


def _stats(values: Sequence[Any]) -> dict[str, Any] | None:
    """count, nan, min, max, last of the numbers among ``values``; None if there are none."""
    if isinstance(values, array):  # all numbers (see mimir.runs.Column)
        numbers: Sequence[Any] = values
        ordered: Sequence[Any] = values
        if values.typecode == "d" and not math.isfinite(sum(values)):  # a NaN or infinity
            ordered = array("d", (value for value in values if value == value))
    else:
        numbers = [value for value in values if is_number(value)]
        ordered = [value for value in numbers if value == value]  # NaN is not ordered
    if not numbers:
        return None
    return {
        "count": len(numbers),
        "nan": len(numbers) - len(ordered),
        "min": min(ordered) if ordered else None,
        "max": max(ordered) if ordered else None,
        "last": numbers[-1],
    }


def summarize(run: Run, x: str | None = None, *, require_x: bool = True) -> dict[str, Any]:
    """The summary of one run, as a dict that :func:`format_json` writes as it is.

    ``x`` is the key whose range is given; None picks ``iteration``, else ``step``,
    else ``epoch`` (:func:`mimir.runs.default_x`), else the entry index (``"key":
    None``). A key given that no entry has raises :class:`mimir.runs.UnknownKeyError`;
    with ``require_x=False`` its range is None instead (``"min": None, "max": None``),
    for runs compared with others that have it.

    ``{"run", "path", "source", "entries", "x": {"key", "min", "max", "segments"},
    "keys": {key: {"count", "nan", "min", "max", "last"}}, "other_keys": [...]}``:
    ``keys`` holds every key with a number in some entry (booleans are not numbers),
    in the order they first appear; ``count`` is how many entries have a number
    there, ``nan`` how many of those are NaN; ``min`` and ``max`` leave NaN out (an
    infinity is a value like another), ``last`` is the last number, NaN or not.
    ``other_keys`` are the keys never holding a number (text, lists, null).
    """
    if x is None:
        x = default_x(run.columns)
    elif require_x:
        run.check_keys([x])
    has_x = x is None or x in run.columns
    xstats = _stats(run.x_values(x)[1]) if run.length and has_x else None
    keys: dict[str, Any] = {}
    other: list[str] = []
    for key, column in run.columns.items():
        stats = _stats(column.values)
        if stats is None:
            other.append(key)
        else:
            keys[key] = stats
    return {
        "run": run.name,
        "path": os.fspath(run.path),
        "source": run.source,
        "entries": run.length,
        "x": {
            "key": x,
            "min": xstats["min"] if xstats else None,
            "max": xstats["max"] if xstats else None,
            "segments": len(run.segment_starts(x if has_x else None)) if run.length else 0,
        },
        "keys": keys,
        "other_keys": other,
    }


def summarize_logs(
    specs: Sequence[str | os.PathLike[str]],
    *,
    names: Sequence[str] | None = None,
    x: str | None = None,
    split_source: bool = True,
    source_key: str = "source",
    errors: str = "strict",
) -> list[dict[str, Any]]:
    """:func:`summarize` each run of the logs ``specs`` names (see :func:`mimir.runs.load_runs`).

    An ``x`` key that some runs lack gives them no x range; one that no run has
    raises :class:`mimir.runs.UnknownKeyError`.
    """
    runs = load_runs(specs, names, split_source=split_source, source_key=source_key, errors=errors)
    if x is not None:
        check_x(runs, x)
    return [summarize(run, x, require_x=False) for run in runs]


def check_x(runs: Sequence[Run], x: str) -> None:
    """Raise :class:`mimir.runs.UnknownKeyError` if no run has the key ``x``."""
    if runs:
        where = runs[0].where if len(runs) == 1 else f"the {len(runs)} runs"
        check_keys([x], set().union(*(run.found for run in runs)), where)


# -- output -----------------------------------------------------------------------------------


def _json_number(value: Any) -> Any:
    """NaN and the infinities as strings ("NaN", "Infinity", "-Infinity"): strict JSON."""
    if type(value) is float and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    out = dict(summary)
    out["x"] = {k: _json_number(v) for k, v in summary["x"].items()}
    out["keys"] = {
        key: {k: _json_number(v) for k, v in stats.items()}
        for key, stats in summary["keys"].items()
    }
    return out


def format_json(summaries: Sequence[dict[str, Any]]) -> str:
    """The summaries as JSON lines, one object per run, in strict JSON.

    JSON has no NaN or infinity: they are written as the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"`` (as protobuf's JSON mapping does), so that
    every JSON parser reads the output and jq can select them.
    """
    return "".join(
        json.dumps(_jsonable(summary), ensure_ascii=False, allow_nan=False) + "\n"
        for summary in summaries
    )


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if type(value) is float:
        if value != value:
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def _row(key: str, stats: dict[str, Any], with_nan: bool) -> list[str]:
    counts = [f"{stats['count']:,}", *([f"{stats['nan']:,}"] if with_nan else [])]
    return [key, *counts, *(_number(stats[k]) for k in ("min", "max", "last"))]


def _header(summary: dict[str, Any]) -> str:
    where = summary["path"]
    if summary["source"] is not None:
        where += f" (source {summary['source']})"
    entries = summary["entries"]
    if not entries:
        return f"{summary['run']}: {where}, no entries"
    text = f"{summary['run']}: {where}, {entries:,} {'entry' if entries == 1 else 'entries'}"
    x = summary["x"]
    key = x["key"] if x["key"] is not None else "entry index"
    if x["min"] is None:
        text += f", no numbers under {key}"
    else:
        text += f", {key} {_number(x['min'])} to {_number(x['max'])}"
    if x["segments"] > 1:
        back = x["segments"] - 1
        text += f" in {x['segments']} segments ({key} goes back {back} time{'s' * (back > 1)})"
    return text


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The summaries as text: a line per run, then its numeric keys as a table.

    The columns line up across all runs, so that runs compare at a glance; the
    ``nan`` column is shown only when some run has a NaN.
    """
    with_nan = any(s["nan"] for summary in summaries for s in summary["keys"].values())
    columns = ["key", "count", *(["nan"] if with_nan else []), "min", "max", "last"]
    tables = [
        [_row(key, stats, with_nan) for key, stats in summary["keys"].items()]
        for summary in summaries
    ]
    widths = [
        max(len(row[i]) for row in [columns, *(row for rows in tables for row in rows)])
        for i in range(len(columns))
    ]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  " + "  ".join([first, *rest])

    out: list[str] = []
    for summary, rows in zip(summaries, tables, strict=True):
        if out:
            out.append("")
        out.append(_header(summary))
        if rows:
            out.append(line(columns))
            out.extend(map(line, rows))
        elif summary["entries"]:
            out.append("  (no numeric keys)")
        if summary["other_keys"]:
            out.append("  other keys: " + ", ".join(summary["other_keys"]))
    return "\n".join(out) + "\n" if out else ""
