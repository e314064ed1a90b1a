"""Plots of runs with Bokeh: live in Jupyter, served to a browser, or as an HTML report.

* :mod:`mimir.plot.figure`: what every plot shares: entries turned into points
  per line (:func:`entries_to_rows`), Bokeh imported with a clear error, and a
  plain figure of one run (:func:`build_figure`).
* :mod:`mimir.plot.chart`: the chart every view shows, comparing runs
  (:func:`~mimir.plot.chart.build_chart`).
* :mod:`mimir.plot.decimate`: whole runs at bounded cost: the M4 decimation
  (first, lowest, highest and last point per pixel column) and :class:`Line`,
  which keeps every point of a line and hands out any x range decimated.
* :mod:`mimir.plot.notebook`: :func:`notebook_plot`, a live plot in Jupyter that
  follows one or more streams.
* :mod:`mimir.plot.server`: the Bokeh server behind ``mimir plot`` (a log file
  followed as it grows, or a stream; several of them, one run each) and the static
  report (:func:`write_report`).

This layer sits on reading logs (:mod:`mimir.reader`, :mod:`mimir.runs`) and the
subscriber (:mod:`mimir.stream`). Importing it imports no Bokeh: that happens when a plot is
made, and a missing Bokeh is an error that says what to install
(``pip install "mimir-logger[plot]"``).
"""

from __future__ import annotations

from mimir.plot.decimate import Line, m4
from mimir.plot.figure import (
    MIN_BOKEH,
    PlotValueWarning,
    build_figure,
    entries_to_rows,
    import_bokeh,
    source_name,
)
from mimir.plot.notebook import NotebookPlot, notebook_plot
from mimir.plot.server import write_report

__all__ = [
    "MIN_BOKEH",
    "Line",
    "NotebookPlot",
    "PlotValueWarning",
    "build_figure",
    "entries_to_rows",
    "import_bokeh",
    "m4",
    "notebook_plot",
    "source_name",
    "write_report",
]
