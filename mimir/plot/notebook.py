"""Live plots of a run in Jupyter: :func:`notebook_plot`.

The plot follows a stream (:func:`mimir.stream.follow`) on a thread and pushes
its changes to the notebook, so the kernel stays free for other cells.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

from mimir.plot.figure import build_figure, entries_to_rows, import_bokeh

__all__ = ["NotebookPlot", "notebook_plot"]


class NotebookPlot:
    """A live plot in a Jupyter notebook, made by :func:`notebook_plot`.

    A thread (:func:`mimir.stream.follow`) receives the entries; another one adds
    them to the data sources every ``interval`` seconds and pushes the change to
    the notebook (``push_notebook``). The kernel stays free for other cells.

    Attributes:
        figure: the Bokeh figure.
        sources: ``{y_key: ColumnDataSource}``; read them under :attr:`lock`.
        lock: held while the plot changes its sources.
        received: entries received so far.
        follower: the :class:`mimir.stream.Follower` (its ``subscription`` has
            the stream's counters: ``gaps``, ``missed``, ``restarts`` ...).
        error: the exception that stopped the stream or the updates, or None.
    """

    def __init__(
        self,
        x_key: str,
        y_keys: Sequence[str],
        address: str,
        replay_address: str | None,
        *,
        log_y: bool = False,
        rollover: int | None = 10_000,
        title: str | None = None,
        height: int = 400,
        interval: float = 0.2,
        resources: Any = None,
        **stream_options: Any,
    ) -> None:
        if rollover is not None and (isinstance(rollover, bool) or rollover < 1):
            raise ValueError(f"rollover must be a positive int or None, got {rollover!r}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        import_bokeh()
        from bokeh.io import output_notebook
        from bokeh.io.notebook import show_doc
        from bokeh.io.state import State

        from mimir.stream import follow

        self.x_key = x_key
        self.y_keys = list(y_keys)
        self.log_y = log_y
        self.rollover = rollover
        self.interval = float(interval)
        self.figure, self.sources = build_figure(
            x_key, self.y_keys, log_y=log_y, title=title, height=height
        )
        self.lock = threading.Lock()
        self.received = 0
        self.error: BaseException | None = None
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._warned: set[str] = set()
        self._stop = threading.Event()
        if isinstance(resources, str):
            from bokeh.resources import Resources

            resources = Resources(mode=resources)
        # Loads BokehJS in the notebook (from Bokeh's CDN unless resources says otherwise).
        output_notebook(resources=resources, hide_banner=True)
        # A document of our own, not curdoc(): this thread changes it while the user's
        # cells may show and change other plots.
        state = State()
        state.output_notebook()
        self.handle = show_doc(self.figure, state, notebook_handle=True)
        self.follower = follow(address, self._receive, replay_address, **stream_options)
        self._thread = threading.Thread(target=self._run, name="mimir-notebook-plot", daemon=True)
        self._thread.start()

    def _receive(self, entry: dict[str, Any]) -> None:
        with self._pending_lock:
            self._pending.append(entry)

    def _run(self) -> None:
        from bokeh.io import push_notebook

        while not self._stop.wait(self.interval):
            try:
                self._update(push_notebook)
            except Exception as error:  # keep plotting what arrives; say why once
                if self.error is None:
                    self.error = error
                    warnings.warn(f"live plot: {error!r}", RuntimeWarning, stacklevel=1)
            if self.error is None and self.follower.error is not None:
                self.error = self.follower.error
        try:
            self._update(push_notebook)  # what arrived before stop()
        except Exception:
            pass

    def _update(self, push_notebook: Any) -> None:
        with self._pending_lock:
            entries, self._pending = self._pending, []
        if not entries:
            return
        rows = entries_to_rows(
            entries, self.x_key, self.y_keys, log_y=self.log_y, warned=self._warned
        )
        with self.lock:
            self.received += len(entries)
            for key, columns in rows.items():
                if columns["x"]:
                    self.sources[key].stream(columns, rollover=self.rollover)
            push_notebook(handle=self.handle)

    def points(self, y_key: str | None = None) -> int:
        """How many points series ``y_key`` (default: the first) shows now."""
        key = self.y_keys[0] if y_key is None else y_key
        with self.lock:
            return len(self.sources[key].data["x"])

    @property
    def running(self) -> bool:
        """Whether the plot still follows the stream."""
        return self._thread.is_alive() and self.follower.running

    def stop(self, timeout: float = 2.0) -> None:
        """Stop following the stream; the plot keeps what it shows. Idempotent."""
        self._stop.set()
        try:
            self.follower.stop(timeout)
        except Exception as error:  # what stopped the stream early was already kept
            if self.error is None:
                self.error = error
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> NotebookPlot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<mimir.plot.NotebookPlot {self.x_key} vs {', '.join(self.y_keys)}: "
            f"{state}, {self.received} entries>"
        )


def notebook_plot(
    x_key: str,
    *y_keys: str,
    address: str = "tcp://127.0.0.1:5557",
    replay_address: str | None = "tcp://127.0.0.1:5556",
    log_y: bool = False,
    rollover: int | None = 10_000,
    title: str | None = None,
    height: int = 400,
    interval: float = 0.2,
    resources: Any = None,
    **stream_options: Any,
) -> NotebookPlot:
    """Plot a run live in a Jupyter notebook: ``y_keys`` against ``x_key``.

    Example::

        import mimir.plot
        plot = mimir.plot.notebook_plot("iteration", "training_error")
        ...
        plot.stop()

    Shows the entries the publisher (a :class:`~mimir.stream.publisher.ZMQStreamHandler`,
    or ``mimir.Logger(stream=True)``) kept for replay, then every new entry, and
    returns at once: the plot goes on updating while other cells run, until
    :meth:`NotebookPlot.stop`.

    Arguments:
        x_key: the entry key on the x axis (e.g. ``"iteration"``).
        y_keys: one or more keys, one line each; entries lacking a key are skipped
            for its line, values that are not numbers are skipped with a warning.
        address, replay_address: the publisher's addresses (``replay_address=None``:
            live entries only).
        log_y: logarithmic y axis.
        rollover: the most points each line keeps (the oldest go first), so that a
            long run stays responsive; None keeps them all.
        title, height: of the figure.
        interval: seconds between updates of the plot.
        resources: where the notebook loads BokehJS from: Bokeh's CDN by default;
            ``"inline"`` (or :data:`bokeh.resources.INLINE`) puts it in the notebook,
            for machines without internet access.
        stream_options: passed to :func:`mimir.stream.subscribe` (``on_gap``,
            ``curve_server_public_key`` ...).
    """
    if not y_keys:
        raise TypeError("notebook_plot() needs at least one key to plot on the y axis")
    return NotebookPlot(
        x_key,
        y_keys,
        address,
        replay_address,
        log_y=log_y,
        rollover=rollover,
        title=title,
        height=height,
        interval=interval,
        resources=resources,
        **stream_options,
    )
