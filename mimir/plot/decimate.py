"""Whole runs at bounded cost: the points of a line decimated so that extremes survive.

A line is drawn with at most four points per pixel column, chosen by the **M4**
rule: in each column, the first and last points, and the points with the
smallest and the largest y, in x order. A line drawn through them covers
exactly the pixels the line through every point covers, so a single spike in
10^6 points is still drawn, and the first and last points keep the lines
between columns where they were.

:class:`Line` keeps every point of one line (8 + 8 bytes each) and, beside
them, a pyramid of summaries: level ``k`` holds the first, smallest, largest
and last point of every block of :data:`BLOCK` points of level ``k - 1``, so
each level is 16 times smaller than the one below. :meth:`Line.view` answers
"the M4 points of the x range [x0, x1] in N columns" from the finest level that
has at most 64 points per column in that range (so more than 4): its cost
depends on N, not on the length of the run, so a 10^7-point line is refined on
every zoom. A summary point keeps its own x, so the extremes of the range are
exact; in a column a block straddles, the block's extremes may fall into its
neighbour's column, which then shows them.
The pyramid grows with the line (complete blocks only), in amortised constant
time per point.

Within a line, an x that goes backwards (a run restarted, appended to the same
log) starts a new *segment*; segments are kept and decimated apart, and a
view separates them with a row of NaN so that no line is drawn from the end
of one segment back to the start of the next.

This module needs numpy, which Bokeh requires: ``pip install "mimir-logger[plot]"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["BLOCK", "Line", "import_numpy", "m4"]

#: Points of one level summarised by four points of the next.
BLOCK = 64
#: Points per column kept by M4.
_DENSITY = 4
#: A level is used for a view when it has at most this many points per column in range
#: (so at least a 16th of it: more than 4 points per column, as the finer level had too many).
_LEVEL_DENSITY = 64


def import_numpy() -> Any:
    """Import numpy, or raise an ImportError that says how to install it."""
    try:
        import numpy
    except ImportError as error:
        raise ImportError(
            'plotting needs numpy (Bokeh brings it): pip install "mimir-logger[plot]"'
        ) from error
    return numpy


def m4(xs: Any, ys: Any, x0: float, x1: float, columns: int) -> Any:
    """The indices of the M4 points of ``xs``, ``ys`` (x sorted) in ``columns`` columns.

    The columns split [x0, x1] evenly; points outside it go to the first or last
    column. Each column keeps its first, lowest, highest and last point; the
    indices come back sorted, each once. When there are no more than four points
    per column, every index is kept.
    """
    np = import_numpy()
    count = len(xs)
    if count <= _DENSITY * columns or count < 3:
        return np.arange(count)
    width = x1 - x0
    if not width > 0:  # a single x: one column
        column = np.zeros(count, dtype=np.int64)
    else:
        column = ((np.asarray(xs) - x0) * (columns / width)).astype(np.int64)
        np.clip(column, 0, columns - 1, out=column)
    starts = np.flatnonzero(np.diff(column)) + 1
    starts = np.concatenate(([0], starts))
    counts = np.diff(np.concatenate((starts, [count])))
    group = np.repeat(np.arange(len(starts)), counts)  # each point's column, numbered
    ys = np.asarray(ys)
    keep = [starts, starts + counts - 1]
    for reduce in (np.minimum, np.maximum):  # the first point at each column's extreme
        extreme = reduce.reduceat(ys, starts)
        at = np.flatnonzero(ys == np.repeat(extreme, counts))
        first = np.ones(len(at), dtype=bool)
        first[1:] = group[at[1:]] != group[at[:-1]]
        keep.append(at[first])
    return np.unique(np.concatenate(keep))


class _Level:
    """Points in x order, in arrays that grow by doubling."""

    __slots__ = ("consumed", "size", "x", "y")

    def __init__(self, np: Any) -> None:
        self.x = np.empty(256)
        self.y = np.empty(256)
        self.size = 0
        self.consumed = 0  # points of this level summarised by the next

    def append(self, np: Any, xs: Any, ys: Any) -> None:
        need = self.size + len(xs)
        if need > len(self.x):
            capacity = max(need, 2 * len(self.x))
            for name in ("x", "y"):
                grown = np.empty(capacity)
                grown[: self.size] = getattr(self, name)[: self.size]
                setattr(self, name, grown)
        self.x[self.size : need] = xs
        self.y[self.size : need] = ys
        self.size = need


class _Segment:
    """One segment of a line (x never goes backwards) and its pyramid of summaries."""

    def __init__(self, np: Any) -> None:
        self.levels = [_Level(np)]

    def extend(self, np: Any, xs: Any, ys: Any) -> None:
        self.levels[0].append(np, xs, ys)
        index = 0
        while index < len(self.levels):
            level = self.levels[index]
            blocks = (level.size - level.consumed) // BLOCK
            if not blocks:
                break
            if index + 1 == len(self.levels):
                self.levels.append(_Level(np))
            start, stop = level.consumed, level.consumed + blocks * BLOCK
            values = level.y[start:stop].reshape(blocks, BLOCK)
            picks = np.empty((blocks, 4), dtype=np.int64)
            picks[:, 0] = 0
            picks[:, 1] = values.argmin(axis=1)
            picks[:, 2] = values.argmax(axis=1)
            picks[:, 3] = BLOCK - 1
            picks.sort(axis=1)
            picks += (np.arange(blocks, dtype=np.int64) * BLOCK + start)[:, None]
            picks = picks.ravel()
            self.levels[index + 1].append(np, level.x[picks], level.y[picks])
            level.consumed = stop
            index += 1

    @property
    def first(self) -> float:
        return float(self.levels[0].x[0])

    @property
    def last(self) -> float:
        level = self.levels[0]
        return float(level.x[level.size - 1])

    def points(self, np: Any, depth: int) -> tuple[Any, Any]:
        """Level ``depth`` followed by what it does not summarise yet (tails of the finer ones)."""
        xs, ys = [], []
        for index in range(depth, -1, -1):
            level = self.levels[index]
            start = 0 if index == depth else level.consumed
            xs.append(level.x[start : level.size])
            ys.append(level.y[start : level.size])
        if len(xs) == 1:
            return xs[0], ys[0]
        return np.concatenate(xs), np.concatenate(ys)

    def view(self, np: Any, x0: float, x1: float, columns: int) -> tuple[Any, Any]:
        budget = _LEVEL_DENSITY * columns
        depth = 0
        for depth in range(len(self.levels)):
            xs = self.levels[depth].x[: self.levels[depth].size]
            inside = np.searchsorted(xs, x1, "right") - np.searchsorted(xs, x0, "left")
            if inside <= budget:
                break
        xs, ys = self.points(np, depth)
        lo = max(int(np.searchsorted(xs, x0, "left")) - 1, 0)  # one point beyond each edge
        hi = min(int(np.searchsorted(xs, x1, "right")) + 1, len(xs))
        xs, ys = xs[lo:hi], ys[lo:hi]
        keep = m4(xs, ys, x0, x1, columns)
        xs, ys = xs[keep], ys[keep]
        if depth and len(xs) > 1:  # a summary repeats a point that is first and lowest, say
            new = np.empty(len(xs), dtype=bool)
            new[0] = True
            np.not_equal(xs[1:], xs[:-1], out=new[1:])
            new[1:] |= ys[1:] != ys[:-1]
            xs, ys = xs[new], ys[new]
        return xs, ys


class Line:
    """Every point of one line, in segments, with the summaries that make views cheap.

    Not thread-safe: guard it with a lock when it is fed and read from several threads.
    """

    def __init__(self) -> None:
        self._np = import_numpy()
        self.segments: list[_Segment] = []
        self.count = 0  # points added

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        """Add points in order; an x below the one before it starts a new segment.

        Points whose x or y is not finite (NaN, infinity) are left out.
        """
        np = self._np
        x = np.asarray(xs, dtype=float)
        y = np.asarray(ys, dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        if not finite.all():
            x, y = x[finite], y[finite]
        if not len(x):
            return
        cuts = (np.flatnonzero(x[1:] < x[:-1]) + 1).tolist()
        if not self.segments or x[0] < self.segments[-1].last:
            self.segments.append(_Segment(np))
        start = 0
        for cut in [*cuts, len(x)]:
            if start:
                self.segments.append(_Segment(np))
            self.segments[-1].extend(np, x[start:cut], y[start:cut])
            start = cut
        self.count += len(x)

    def points(self) -> tuple[Any, Any]:
        """Every point, in the order added: ``(xs, ys)`` arrays (segments one after another)."""
        np = self._np
        levels = [segment.levels[0] for segment in self.segments]
        if not levels:
            return np.empty(0), np.empty(0)
        return (
            np.concatenate([level.x[: level.size] for level in levels]),
            np.concatenate([level.y[: level.size] for level in levels]),
        )

    def bounds(self) -> tuple[float, float] | None:
        """The smallest and largest x, or None for a line with no points."""
        if not self.segments:
            return None
        return min(s.first for s in self.segments), max(s.last for s in self.segments)

    def view(
        self, x0: float | None = None, x1: float | None = None, columns: int = 2000
    ) -> dict[str, Any]:
        """``{"x": array, "y": array}``: the M4 points of [x0, x1] (default: everything).

        At most about ``4 * columns`` points per segment, plus one beyond each edge
        so that the line runs on off screen; segments are separated by a NaN row.
        """
        np = self._np
        if not self.segments:
            return {"x": np.empty(0), "y": np.empty(0)}
        bounds = self.bounds()
        assert bounds is not None
        lo = bounds[0] if x0 is None else x0
        hi = bounds[1] if x1 is None else x1
        xs: list[Any] = []
        ys: list[Any] = []
        gap = np.array([math.nan])
        for segment in self.segments:
            if segment.last < lo or segment.first > hi:
                continue
            x, y = segment.view(np, lo, hi, columns)
            if xs:
                xs.append(gap)
                ys.append(gap)
            xs.append(x)
            ys.append(y)
        if not xs:
            return {"x": np.empty(0), "y": np.empty(0)}
        return {"x": np.concatenate(xs), "y": np.concatenate(ys)}
