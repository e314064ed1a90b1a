"""Live plots of runs in Jupyter: :func:`notebook_plot`.

The plot follows one or more streams (:func:`mimir.stream.subscribe`) on
background threads and pushes its changes to the notebook, so the kernel stays
free for other cells. What those threads have to say (a gap in a stream, a key
found in no entry, an error) is shown under the plot, in the cell that made
it, instead of surfacing in whichever cell runs next.
"""

from __future__ import annotations

import html
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from mimir.plot.chart import build_chart
from mimir.plot.figure import import_bokeh
from mimir.plot.server import REPORT_COLUMNS, PointStore, Resolutions, report_resolutions

__all__ = ["NotebookPlot", "notebook_plot"]

_DEPTH = 3  # resolutions of each line: 1000, 4000 and 16000 columns over the whole run
_FINE_SECONDS = 2.0  # the finer resolutions are sent at most this often
_MESSAGES = 20  # messages kept under a plot
_DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"


class _ThreadWarnings:
    """Sends the warnings of some threads to a callback instead of ``sys.stderr``.

    Installed (as :func:`warnings.showwarning`) while a notebook plot runs and
    removed after the last one stops; other threads' warnings pass through.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.targets: dict[threading.Thread, Callable[[str], Any]] = {}
        self.original: Any = None

    def add(self, thread: threading.Thread, target: Callable[[str], Any]) -> None:
        with self.lock:
            if not self.targets:
                self.original = warnings.showwarning
                warnings.showwarning = self.show
            self.targets[thread] = target

    def remove(self, thread: threading.Thread) -> None:
        with self.lock:
            self.targets.pop(thread, None)
            if not self.targets and self.original is not None:
                if warnings.showwarning == self.show:
                    warnings.showwarning = self.original
                self.original = None

    def show(self, message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        target = self.targets.get(threading.current_thread())
        if target is not None:
            target(f"{category.__name__}: {message}")
            return
        original = self.original or warnings.showwarning
        if original is not self.show:
            original(message, category, *args, **kwargs)


_thread_warnings = _ThreadWarnings()


def _comms_handle(base: Any, comms: Any, cell_doc: Any, cell: int | None) -> Any:
    """A ``push_notebook`` handle (``bokeh.io.notebook.CommsHandle``) made on any thread.

    ``CommsHandle()`` looks the cell number up in IPython's history, whose SQLite
    connection belongs to the kernel's main thread: from another thread IPython takes
    the error for a corrupt database and moves the history file aside. The number is
    taken on the caller's thread instead.
    """
    handle = base.__new__(base)
    handle._cellno = cell
    handle._comms = comms
    handle._doc = cell_doc
    cell_doc.hold()  # as CommsHandle(): changes wait for push_notebook
    return handle


class NotebookPlot:
    """A live plot of one or more streams in a Jupyter notebook, made by :func:`notebook_plot`.

    One thread per stream receives the entries into a
    :class:`~mimir.plot.server.PointStore`; another one imports Bokeh, builds the
    chart, shows it in the outputs the call left in its cell, then updates it every
    ``interval`` seconds (``push_notebook``): the whole of each run, decimated to at
    most 4 points per pixel column (first, lowest, highest, last; see
    :mod:`mimir.plot.decimate`). The kernel stays free for other cells.

    The Bokeh objects exist once the plot is shown: :attr:`ready` is set then, and
    :meth:`wait_ready` waits for it. Before, :attr:`figure` and :attr:`handle` are
    None and :attr:`sources` is empty; the other attributes exist from the start.

    Attributes:
        ready: a :class:`threading.Event`, set once the plot is shown.
        figure: the Bokeh layout shown (chart and the messages under it).
        sources: ``{(run, key): ColumnDataSource}``; read them under :attr:`lock`.
        handle: the ``push_notebook`` handle of the plot.
        lock: held while the plot changes its sources.
        store: every point received (:class:`~mimir.plot.server.PointStore`).
        received: entries received so far.
        subscriptions: the :class:`mimir.stream.Subscription` of each stream (their
            ``gaps``, ``missed``, ``restarts`` ...).
        messages: what the background threads had to say (warnings, errors), newest
            last; shown under the plot.
        error: the exception that stopped a stream or the updates, or None.
    """

    def __init__(
        self,
        x_key: str,
        y_keys: Sequence[str],
        addresses: Sequence[str],
        replay_addresses: Sequence[str | None],
        *,
        names: Sequence[str] | None = None,
        log_y: bool = False,
        panels: bool | None = None,
        x_axis: str | None = None,
        title: str | None = None,
        height: int = 400,
        interval: float = 0.2,
        resources: Any = None,
        **stream_options: Any,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if len(replay_addresses) != len(addresses):
            raise ValueError(
                f"{len(replay_addresses)} replay addresses for {len(addresses)} addresses: "
                "give one per address (None: live entries only)"
            )
        if names is None:
            names = [""] if len(addresses) == 1 else [a.split("://", 1)[-1] for a in addresses]
        elif isinstance(names, str) or len(names) != len(addresses):
            raise ValueError("give one name per address (names=[...])")
        import_bokeh()  # only its package (a few ms): says at once when Bokeh is missing
        from IPython import get_ipython
        from IPython.display import display

        self.x_key = x_key
        self.y_keys = list(y_keys)
        self.addresses = list(addresses)
        self.names = list(names)
        self.log_y = log_y
        self.panels = panels
        self.title = title
        self.height = height
        self.interval = float(interval)
        self.store = PointStore(x_key, self.y_keys, log_y=log_y, x_axis=x_axis)
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.messages: list[str] = []
        self.subscriptions: list[Any] = []
        self.ready = threading.Event()
        self.figure: Any = None
        self.sources: dict[tuple[str, str], Any] = {}
        self.resolutions: Resolutions | None = None
        self.handle: Any = None
        self._settled = threading.Event()  # shown, or failed to
        self._cell = getattr(get_ipython(), "execution_count", None)
        self._stop = threading.Event()
        self._shown: dict[tuple[str, str], int] = {}
        self._fine: dict[tuple[str, str], int] = {}  # counts when finer resolutions were sent
        self._fine_at = 0.0
        self._lines = [(run, key) for run in self.names for key in self.y_keys]
        # Three outputs, in the order Bokeh shows a plot: BokehJS, the plot's <div>, and the
        # script that draws into it. The background thread fills them in (update_display).
        self._displays = [
            display({"text/html": html_text}, raw=True, display_id=True)
            for html_text in ("", '<div style="color:#888">Loading the plot\u2026</div>', "")
        ]
        self._threads = [
            threading.Thread(
                target=self._receive,
                args=(address, replay, name, stream_options),
                name=f"mimir-notebook-stream-{index}",
                daemon=True,
            )
            for index, (address, replay, name) in enumerate(
                zip(self.addresses, replay_addresses, self.names, strict=True)
            )
        ]
        self._thread = threading.Thread(
            target=self._run, args=(resources,), name="mimir-notebook-plot", daemon=True
        )
        for thread in [*self._threads, self._thread]:
            _thread_warnings.add(thread, self._say)  # before it runs: no warning goes astray
            thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the plot is shown: True once it is, False if ``timeout`` seconds pass first.

        Raises the exception that kept the plot from being shown (also in :attr:`error`).
        """
        if not self._settled.wait(timeout):
            return False
        if not self.ready.is_set():
            raise RuntimeError("the plot could not be shown") from self.error
        return True

    def _show(self, resources: Any) -> None:
        """Import Bokeh, build the chart and show it in the outputs made by ``__init__``."""
        from bokeh.core.templates import AUTOLOAD_NB_JS
        from bokeh.embed.bundle import bundle_for_objs_and_resources
        from bokeh.embed.notebook import notebook_content
        from bokeh.io.notebook import (
            EXEC_MIME_TYPE,
            HTML_MIME_TYPE,
            JS_MIME_TYPE,
            LOAD_MIME_TYPE,
            CommsHandle,
            get_comms,
        )
        from bokeh.io.state import State, curstate
        from bokeh.layouts import column
        from bokeh.models import Div
        from bokeh.resources import Resources
        from bokeh.settings import settings
        from bokeh.util.serialization import make_id

        if resources is None or isinstance(resources, str):
            resources = Resources(mode=resources or settings.resources())
        # Loads BokehJS in the notebook (from Bokeh's CDN unless resources says otherwise),
        # as bokeh.io.output_notebook(hide_banner=True) does.
        curstate().output_notebook()
        bundle = bundle_for_objs_and_resources(None, resources)
        load = {
            JS_MIME_TYPE: AUTOLOAD_NB_JS.render(
                bundle=bundle, elementid=None, force=True, timeout=5000, register_mime=True
            ),
            LOAD_MIME_TYPE: AUTOLOAD_NB_JS.render(
                bundle=bundle, elementid=None, force=True, timeout=5000, register_mime=False
            ),
        }
        self._displays[0].update(load, raw=True)
        with self.lock:
            chart = build_chart(
                self.x_key,
                self._lines,
                x_axis=self.store.x_axis,
                log_y=self.log_y,
                title=self.title,
                height=self.height,
                panels=self.panels,
            )
            self.sources = chart.sources
            self.resolutions = self._resolutions(chart)
            self._message_div = Div(text="", name="mimir:messages")
            self._chart_box = column(chart.layout, sizing_mode="stretch_width")
            self.figure = column(self._chart_box, self._message_div, sizing_mode="stretch_width")
        self._update(None)  # what arrived meanwhile is in the first drawing
        # A document of our own, not curdoc(): this thread changes it while the user's
        # cells may show and change other plots. As bokeh.io.notebook.show_doc, but into
        # the outputs made by __init__.
        state = State()
        state.output_notebook()
        state.document.add_root(self.figure)
        target = make_id()
        script, div, cell_doc = notebook_content(self.figure, target)
        self._displays[1].update({HTML_MIME_TYPE: div}, raw=True)
        self._displays[2].update(
            {JS_MIME_TYPE: script, EXEC_MIME_TYPE: ""},
            metadata={EXEC_MIME_TYPE: {"id": self.figure.id}},
            raw=True,
        )
        handle = _comms_handle(CommsHandle, get_comms(target), cell_doc, self._cell)
        state.document.callbacks.on_change_dispatch_to(handle)
        self.handle = handle
        self.ready.set()

    def _resolutions(self, chart: Any) -> Resolutions:
        return Resolutions(chart, {line: _DEPTH for line in chart.sources})

    # -- background threads ------------------------------------------------------------

    def _say(self, message: str) -> None:
        """Show ``message`` under the plot (from any thread)."""
        with self.lock:
            if self.messages and self.messages[-1] == message:
                return
            self.messages.append(message)
            del self.messages[:-_MESSAGES]

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._say(f"stopped: {error!r}")

    def _receive(self, address: str, replay: str | None, run: str, options: dict[str, Any]) -> None:
        from mimir.stream import subscribe

        try:
            subscription = subscribe(address, replay, timeout=self.interval / 2, **options)
        except Exception as error:
            self._fail(error)
            return
        self.subscriptions.append(subscription)
        batch: list[Any] = []
        try:
            with subscription:
                while not self._stop.is_set():
                    try:
                        batch.append(next(subscription))
                    except TimeoutError:
                        pass
                    else:
                        if len(batch) < 1000:
                            continue
                    if batch:
                        self.store.add(batch, run)
                        batch = []
        except Exception as error:
            self._fail(error)
        if batch:
            self.store.add(batch, run)

    def _run(self, resources: Any) -> None:
        try:
            self._show(resources)
        except Exception as error:
            self._fail(error)
            self._stop.set()
            failed = html.escape(f"mimir: the plot could not be shown: {error!r}")
            try:
                self._displays[1].update(
                    {"text/html": f'<div style="color:#b00">{failed}</div>'}, raw=True
                )
            except Exception:
                pass
        finally:
            self._settled.set()
        if self.ready.is_set():
            from bokeh.io import push_notebook

            while not self._stop.wait(self.interval):
                try:
                    self._update(push_notebook)
                except Exception as error:  # keep plotting what arrives; say why once
                    if self.error is None:
                        self._fail(error)
        for thread in self._threads:
            thread.join(2.0)
        if self.ready.is_set():
            try:
                self._update(push_notebook)  # what arrived before stop()
            except Exception:
                pass
        for thread in [*self._threads, self._thread]:
            _thread_warnings.remove(thread)

    def _update(self, push_notebook: Any) -> None:
        """Bring the chart up to date; push the changes with ``push_notebook`` (if given)."""
        assert self.resolutions is not None
        changed = False
        lines = self.store.lines()
        new = [line for line in lines if line not in self._lines]
        with self.lock:
            if new:  # runs split by source: a new chart with every line
                self._lines = [*[line for line in self._lines if line[0] in self.names], *new]
                self._lines = list(dict.fromkeys([*self._lines, *lines]))
                chart = build_chart(
                    self.x_key,
                    self._lines,
                    x_axis=self.store.x_axis,
                    log_y=self.log_y,
                    title=self.title,
                    height=self.height,
                    panels=self.panels,
                    ranges=self.store.ranges(),
                )
                self.sources = chart.sources
                self.resolutions = self._resolutions(chart)
                self._shown = {}
                self._fine = {}
                self._chart_box.children = [chart.layout]
                changed = True
            counts = {line: self.store.count(line) for line in self.sources}
            if any(self._shown.get(line) != count for line, count in counts.items()):
                self.resolutions.set_extent(self.store.bounds())
            for line, count in counts.items():
                if self._shown.get(line) != count:
                    self.resolutions.set(line, 0, self.store.view(line, columns=REPORT_COLUMNS))
                    self._shown[line] = count
                    changed = True
            now = time.monotonic()
            stale = [line for line, count in counts.items() if self._fine.get(line) != count]
            if stale and now - self._fine_at >= _FINE_SECONDS:  # for zooming in: a few at a time
                self._fine_at = now
                finer = report_resolutions(self.store, list(self.sources))
                for line in stale:
                    for k, level in enumerate(finer[line][1:_DEPTH], 1):
                        self.resolutions.set(line, k, level)
                    self._fine[line] = counts[line]
                changed = True
            problem = self.store.problem(f"the entries received from {', '.join(self.addresses)}")
            parts = [*self.messages, *([problem] if problem else [])]
            text = "<br>".join(f'<span style="color:#b00">{html.escape(m)}</span>' for m in parts)
            if self._message_div.text != text:
                self._message_div.text = text
                changed = True
            if changed and push_notebook is not None:
                push_notebook(handle=self.handle)

    # -- the user's side ---------------------------------------------------------------

    @property
    def received(self) -> int:
        """Entries received so far, from every stream."""
        return self.store.entries

    def points(self, y_key: str | None = None, run: str | None = None) -> int:
        """How many points line ``(run, y_key)`` has (default: the first run and key)."""
        key = self.y_keys[0] if y_key is None else y_key
        return self.store.count((self.names[0] if run is None else run, key))

    def shown(self, y_key: str | None = None, run: str | None = None) -> int:
        """How many points line ``(run, y_key)`` shows now (at most 4 per pixel column)."""
        key = self.y_keys[0] if y_key is None else y_key
        line = (self.names[0] if run is None else run, key)
        with self.lock:
            source = self.sources.get(line)
            return 0 if source is None else len(source.data["x"])

    @property
    def running(self) -> bool:
        """Whether the plot still follows its streams."""
        return self._thread.is_alive() and any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop following the streams; the plot keeps what it shows. Idempotent."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout + 2.0)

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
    address: str | Sequence[str] = _DEFAULT_ADDRESS,
    replay_address: str | Sequence[str | None] | None = None,
    names: Sequence[str] | None = None,
    log_y: bool = False,
    panels: bool | None = None,
    x_axis: str | None = None,
    title: str | None = None,
    height: int = 400,
    interval: float = 0.2,
    resources: Any = None,
    **stream_options: Any,
) -> NotebookPlot:
    """Plot runs live in a Jupyter notebook: ``y_keys`` against ``x_key``.

    Example::

        import mimir.plot
        plot = mimir.plot.notebook_plot("iteration", "training_error")
        ...
        plot.stop()

    Shows the entries the publisher (a :class:`~mimir.stream.publisher.ZMQStreamHandler`,
    or ``mimir.Logger(stream=True)``) kept for replay, then every new entry, and
    returns at once, without importing Bokeh's models: the call leaves a placeholder
    in the cell, and a background thread imports Bokeh, builds the chart and shows
    it there (:meth:`NotebookPlot.wait_ready` waits for it). The plot goes on
    updating while other cells run, until :meth:`NotebookPlot.stop`. Each line shows
    its whole run, decimated to at most 4 points per pixel column so that spikes stay
    visible.

    Arguments:
        x_key: the entry key on the x axis (e.g. ``"iteration"``).
        y_keys: one or more keys, one line each; entries lacking a key are skipped
            for its line, values that are not numbers are skipped with a warning.
        address: the publisher's address, or a list of them: one run each (entries
            from ``mimir collect`` are split by source too).
        replay_address: the publisher's replay address, or a list, one per
            address; None (the default): the one each publisher announces on its
            stream. ``replay=False`` follows live entries only.
        names: the name of each run, one per address (default: the addresses).
        log_y: start with a logarithmic y axis (the page has a toggle).
        panels: one panel per key on a shared x axis (True), one for all (False);
            None: one per key when the keys' scales differ by over 100x (decided
            when a new run appears, from the entries received).
        x_axis: ``"linear"``, ``"datetime"`` (wall-clock time, x in seconds since
            the epoch) or ``"elapsed"`` (seconds since each run's first entry);
            default: ``"datetime"`` when ``x_key`` is ``"wall_time"``.
        title, height: of the chart (height: of each panel, in pixels).
        interval: seconds between updates of the plot.
        resources: where the notebook loads BokehJS from: Bokeh's CDN by default;
            ``"inline"`` (or :data:`bokeh.resources.INLINE`) puts it in the notebook,
            for machines without internet access.
        stream_options: passed to :func:`mimir.stream.subscribe` (``on_gap``,
            ``curve_server_public_key`` ...).

    A key found in none of the entries received, a gap in a stream and any other
    problem of the background threads is shown in red under the plot (and kept in
    :attr:`NotebookPlot.messages`): keys can only be checked once entries arrive. A
    plot that cannot be shown (e.g. ``resources`` names no Bokeh resources mode)
    says why in red in its place, and :meth:`NotebookPlot.wait_ready` raises.
    """
    if not y_keys:
        raise TypeError("notebook_plot() needs at least one key to plot on the y axis")
    if "rollover" in stream_options:
        stream_options.pop("rollover")
        warnings.warn(
            "notebook_plot(rollover=...) is deprecated and ignored: the plot shows the whole "
            "run, at most 4 points per pixel column",
            DeprecationWarning,
            stacklevel=2,
        )
    addresses = [address] if isinstance(address, str) else list(address)
    if not addresses:
        raise ValueError("give at least one address")
    if replay_address is None or isinstance(replay_address, str):
        if len(addresses) > 1 and replay_address is not None:
            raise ValueError("with several addresses, give replay_address as a list, one each")
        replays: list[str | None] = [replay_address] * len(addresses)
    else:
        replays = list(replay_address)
    return NotebookPlot(
        x_key,
        y_keys,
        addresses,
        replays,
        names=names,
        log_y=log_y,
        panels=panels,
        x_axis=x_axis,
        title=title,
        height=height,
        interval=interval,
        resources=resources,
        **stream_options,
    )
