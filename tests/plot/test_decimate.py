"""Decimation: M4 per pixel column, the pyramid of a line, segments, views of any x range."""

from __future__ import annotations

import math
import random

import pytest

np = pytest.importorskip("numpy")

from mimir.plot.decimate import BLOCK, Line, m4  # noqa: E402


def _columns_extremes(xs, ys, x0, x1, columns):
    """{column: (lowest y, highest y)} of the points in [x0, x1], by brute force."""
    found = {}
    for x, y in zip(xs, ys, strict=True):
        if not (x0 <= x <= x1) or math.isnan(x):
            continue
        column = min(int((x - x0) * columns / (x1 - x0)), columns - 1)
        lo, hi = found.get(column, (y, y))
        found[column] = (min(lo, y), max(hi, y))
    return found


def test_m4_keeps_first_lowest_highest_and_last_of_each_column():
    """Each column keeps its first, last, lowest and highest point, in x order, once each."""
    xs = np.arange(20, dtype=float)
    ys = np.array([5, 1, 9, 3, 4, 4, 0, 8, 2, 6] * 2, dtype=float)
    keep = m4(xs, ys, 0, 20, 2)  # two columns of 10 points
    assert keep.tolist() == [0, 2, 6, 9, 10, 12, 16, 19]
    assert m4(xs, ys, 0, 20, 5).tolist() == list(range(20))  # few points: all kept


def test_line_views_are_bounded_and_keep_every_columns_extremes():
    """10^6 points are viewed in at most ~4 per column, with each column's min and max."""
    rng = np.random.default_rng(7)
    count = 1_000_000
    xs = np.arange(count, dtype=float)
    ys = rng.normal(size=count)
    line = Line()
    for start in range(0, count, 30_000):  # fed in chunks, as from a growing file
        line.extend(xs[start : start + 30_000], ys[start : start + 30_000])
    assert line.count == count
    for x0, x1, columns in [(0, count - 1, 1000), (123_456, 654_321, 800), (500_000, 500_900, 300)]:
        view = line.view(x0, x1, columns)
        shown_x, shown_y = np.asarray(view["x"]), np.asarray(view["y"])
        assert len(shown_x) <= 4 * columns + 2
        inside = (shown_x >= x0) & (shown_x <= x1)
        assert (np.diff(shown_x) > 0).all()
        lo, hi = int(np.searchsorted(xs, x0)), int(np.searchsorted(xs, x1, "right"))
        # the extremes of the range survive, at their own x
        assert shown_y[inside].max() == ys[lo:hi].max()
        assert shown_y[inside].min() == ys[lo:hi].min()
        assert shown_x[inside][shown_y[inside].argmax()] == xs[lo:hi][ys[lo:hi].argmax()]


def test_line_view_of_a_narrow_range_has_every_point():
    """Zoomed in far enough, a view holds every raw point of the range (plus one each side)."""
    line = Line()
    xs = list(range(100_000))
    ys = [math.sin(x / 7) for x in xs]
    line.extend(xs, ys)
    view = line.view(50_000, 50_500, 1000)
    assert view["x"].tolist() == list(range(49_999, 50_502))
    assert view["y"].tolist() == ys[49_999:50_502]


def test_pyramid_views_match_brute_force_per_column():
    """Views from the pyramid have the same per-column extremes as all points (random data)."""
    rand = random.Random(3)
    xs, ys = [], []
    x = 0.0
    for _ in range(BLOCK**3 + 123):
        x += rand.random()
        xs.append(x)
        ys.append(rand.gauss(0, 1) + (50 if rand.random() < 1e-4 else 0))
    line = Line()
    line.extend(xs, ys)
    for columns in (100, 700):
        x0, x1 = xs[0], xs[-1]
        view = line.view(x0, x1, columns)
        shown = _columns_extremes(view["x"].tolist(), view["y"].tolist(), x0, x1, columns)
        truth = _columns_extremes(xs, ys, x0, x1, columns)
        assert shown.keys() == truth.keys()
        # per column: the values found are those of the data, and the overall extremes stay
        assert max(hi for _, hi in shown.values()) == max(ys)
        assert min(lo for lo, _ in shown.values()) == min(ys)
        for column, (lo, hi) in shown.items():
            assert truth[column][0] <= lo <= hi <= truth[column][1]


def test_x_going_back_starts_a_segment_separated_by_a_nan_row():
    """A restarted run (x back to 0) is a new segment: no line is drawn back across the plot."""
    line = Line()
    line.extend([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    line.extend([4, 5, 0, 1], [5.0, 6.0, 10.0, 11.0])  # restarted within a chunk
    line.extend([2], [12.0])
    assert len(line.segments) == 2
    view = line.view()
    xs = view["x"].tolist()
    assert xs[:6] == [0, 1, 2, 3, 4, 5] and math.isnan(xs[6]) and xs[7:] == [0, 1, 2]


def test_points_that_are_not_finite_are_left_out():
    """NaN and infinite x or y are not points of the line."""
    line = Line()
    line.extend([0, 1, 2, math.nan, 4], [1.0, math.inf, 3.0, 4.0, math.nan])
    assert line.count == 2
    assert line.view()["x"].tolist() == [0, 2]
    assert line.bounds() == (0, 2)
