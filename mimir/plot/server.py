"""The Bokeh server behind ``mimir plot``: live lines from a stream or a growing log file.

Entries reach a :class:`PointStore` from a background thread (a
:class:`StreamFeed` or a :class:`FileFeed`); the store keeps a bounded number of
points per series, shared by every browser tab. Each tab is a Bokeh document with
one :class:`~bokeh.models.ColumnDataSource` per series: the feed asks the document
to pull the new points through ``add_next_tick_callback`` (the only thread-safe
way into a document), and a periodic callback refreshes the status line and
catches up if a wake-up was missed. :func:`write_report` writes a finished log as
one standalone HTML file.

The server listens on 127.0.0.1 unless told otherwise, and refuses requests whose
``Host`` header, and WebSocket connections whose ``Origin``, are not the server's
own address (DNS-rebinding and cross-site WebSocket hijacking).
"""

from __future__ import annotations

import asyncio
import html
import os
import signal
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import IO, Any

from mimir.plot.figure import build_figure, entries_to_rows, import_bokeh
from mimir.reader import (
    DamagedLogError,
    MalformedLogError,
    iter_lines,
    open_regular_file,
    parse_line,
)

__all__ = [
    "FileFeed",
    "PointStore",
    "StreamFeed",
    "allowed_hosts",
    "make_document",
    "serve",
    "start_server",
    "write_report",
]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_STREAM_BATCH_SECONDS = 0.05  # entries from a stream reach the store in batches this often
_STATUS_MS = 1000  # the status line is refreshed this often
_CHUNK_LINES = 20_000  # lines of a log parsed and added at a time
_CHUNK_BYTES = 4 << 20  # bytes of a plain log read at a time


# -- points ------------------------------------------------------------------------------


class _Series:
    """The points of one series: the newest ``rollover``, or the whole run decimated."""

    def __init__(self, rollover: int | None, decimate: int | None) -> None:
        self.decimate = decimate
        self.stride = 1  # decimation: every stride-th point is kept
        self.offered = 0  # decimation: points offered so far
        self.epoch = 0  # changes when the kept points are thinned out
        self.total = 0  # points kept so far in this epoch, counting those rolled over
        maxlen = None if decimate else rollover
        self.xs: deque[Any] = deque(maxlen=maxlen)
        self.ys: deque[Any] = deque(maxlen=maxlen)

    def clear(self) -> None:
        self.xs.clear()
        self.ys.clear()
        self.stride = 1
        self.offered = self.total = 0
        self.epoch += 1  # readers replace what they show

    def extend(self, xs: list[Any], ys: list[Any]) -> None:
        if not self.decimate:
            self.xs.extend(xs)
            self.ys.extend(ys)
            self.total += len(xs)
            return
        for x, y in zip(xs, ys, strict=True):
            if self.offered % self.stride == 0:
                self.xs.append(x)
                self.ys.append(y)
                self.total += 1
                if len(self.xs) > self.decimate:  # keep every other point, twice the stride
                    self.xs = deque(islice(self.xs, 0, None, 2))
                    self.ys = deque(islice(self.ys, 0, None, 2))
                    self.stride *= 2
                    self.epoch += 1
                    self.total = len(self.xs)
            self.offered += 1


class PointStore:
    """The points of every series, fed from one thread and read by the documents; thread-safe.

    With ``decimate=N`` each series keeps the whole run in at most ``N`` points (every
    k-th point, k doubling as the run grows); otherwise it keeps the newest
    ``rollover`` points (all of them with ``rollover=None``).
    """

    def __init__(
        self,
        x_key: str,
        y_keys: Sequence[str],
        *,
        log_y: bool = False,
        rollover: int | None = 10_000,
        decimate: int | None = None,
    ) -> None:
        if rollover is not None and rollover < 1:
            raise ValueError(f"rollover must be at least 1 (or None: keep all), got {rollover}")
        if decimate is not None and decimate < 2:
            raise ValueError(f"decimate must be at least 2 points, got {decimate}")
        self.x_key = x_key
        self.y_keys = list(y_keys)
        self.log_y = log_y
        self.rollover = rollover
        self.decimate = decimate
        self.lock = threading.Lock()
        self.entries = 0  # entries received
        self.status = ""  # what the feed has to say (waiting, errors, gaps)
        self._series = {key: _Series(rollover, decimate) for key in self.y_keys}
        self._warned: set[str] = set()
        self._listeners: list[Callable[[], Any]] = []

    def add(self, entries: Sequence[Any]) -> None:
        """Add entries (dicts) and wake the listeners."""
        if not entries:
            return
        rows = entries_to_rows(
            entries, self.x_key, self.y_keys, log_y=self.log_y, warned=self._warned
        )
        with self.lock:
            self.entries += len(entries)
            for key, columns in rows.items():
                if columns["x"]:
                    self._series[key].extend(columns["x"], columns["y"])
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def clear(self) -> None:
        """Forget every point (a new run): the documents then show an empty plot."""
        with self.lock:
            self.entries = 0
            for series in self._series.values():
                series.clear()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def listen(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` (from the feed's thread) whenever points are added."""
        with self.lock:
            self._listeners.append(listener)

    def unlisten(self, listener: Callable[[], Any]) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def since(self, key: str, cursor: tuple[int, int]) -> tuple[tuple[int, int], bool, dict]:
        """``(new cursor, replace, {"x": [...], "y": [...]})``: the points after ``cursor``.

        Start with the cursor ``(-1, 0)``. When ``replace`` is true the points
        replace everything shown (first call, or the series was thinned out);
        otherwise they are to be appended.
        """
        with self.lock:
            series = self._series[key]
            if cursor[0] != series.epoch:
                data = {"x": list(series.xs), "y": list(series.ys)}
                return (series.epoch, series.total), True, data
            new = min(series.total - cursor[1], len(series.xs))
            if new <= 0:
                return cursor, False, {"x": [], "y": []}
            start = len(series.xs) - new
            data = {
                "x": list(islice(series.xs, start, None)),
                "y": list(islice(series.ys, start, None)),
            }
            return (series.epoch, series.total), False, data

    def points(self, key: str) -> int:
        """How many points series ``key`` keeps now."""
        with self.lock:
            return len(self._series[key].xs)

    def describe(self) -> str:
        """One sentence on what the lines show (rollover or decimation)."""
        if self.decimate:
            with self.lock:
                stride = max(series.stride for series in self._series.values())
            every = "every point" if stride == 1 else f"every {stride:,}th point"
            return (
                f"Decimation: each line shows the whole run in at most {self.decimate:,} "
                f"points (now {every})."
            )
        if self.rollover is None:
            return "Each line shows every point of the run."
        return (
            f"Rollover: each line shows its newest {self.rollover:,} points; older ones scroll off."
        )


# -- feeds -------------------------------------------------------------------------------


class StreamFeed:
    """Follows a Mímir stream (:func:`mimir.stream.follow`) into a :class:`PointStore`."""

    def __init__(
        self,
        store: PointStore,
        address: str,
        replay_address: str | None = None,
        **stream_options: Any,
    ) -> None:
        self.store = store
        self.address = address
        self.replay_address = replay_address
        self.stream_options = stream_options
        self.gaps = 0
        self.missed = 0
        self._pending: list[Any] = []
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: Any = None
        self._thread: threading.Thread | None = None
        store.status = f"waiting for entries from {address}"

    def start(self) -> None:
        from mimir.stream import follow

        self._follower = follow(
            self.address,
            self._receive,
            self.replay_address,
            on_gap=self._on_gap,
            **self.stream_options,
        )
        self._thread = threading.Thread(target=self._run, name="mimir-plot-stream", daemon=True)
        self._thread.start()

    def _receive(self, entry: Any) -> None:
        with self._pending_lock:
            self._pending.append(entry)

    def _on_gap(self, first: int, last: int) -> None:
        self.gaps += 1
        self.missed += last - first + 1

    def _run(self) -> None:
        while not self._stop.wait(_STREAM_BATCH_SECONDS):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        with self._pending_lock:
            entries, self._pending = self._pending, []
        try:
            self.store.add(entries)
        except Exception as error:  # never let the thread die on one bad batch
            self.store.status = f"error: {error!r}"
            return
        follower = self._follower
        status = f"{self.store.entries:,} entries from {self.address}"
        if self.gaps:
            status += f"; {self.missed:,} entries lost in {self.gaps:,} gaps"
        if follower is not None and follower.error is not None:
            status += f"; stopped: {follower.error}"
        elif not self.store.entries:
            status = f"waiting for entries from {self.address}"
        self.store.status = status

    def stop(self) -> None:
        self._stop.set()
        if self._follower is not None:
            try:
                self._follower.stop()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(2.0)


def _parse(lines: Iterable[tuple[int, bytes]], path: str, warned: set[str]) -> list[Any]:
    """The entries of ``(line number, line)`` pairs; a line that is not JSON is skipped.

    Deep nesting is such a line too: the other entries are kept.
    """
    entries = []
    for lineno, line in lines:
        try:
            entries.append(parse_line(line, path, lineno))
        except MalformedLogError as error:
            if path not in warned:
                warned.add(path)
                warnings.warn(f"{error}; skipped", stacklevel=2)
    return entries


class FileFeed:
    """Follows a log file as it grows (like ``tail -f``) into a :class:`PointStore`.

    A plain ``.jsonl`` is read on from where the last read ended, complete lines
    only. A compressed log (gzlog, ``.jsonl.gz``) cannot be read from the middle: it
    is read again whole (a consistent snapshot, see :mod:`mimir.reader`) when it
    changes, and the entries already plotted are skipped; reads are spaced at
    least twice as far apart as one read takes. A file that shrinks or is
    replaced (a new run) starts the plot over. A damaged or truncated compressed
    log shows its readable entries and says in the status what is wrong (a
    report of it fails); a FIFO or device is refused at once.
    """

    def __init__(self, store: PointStore, path: str, poll: float = 0.2) -> None:
        self.store = store
        self.path = os.fspath(path)
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._lines = 0  # complete lines read so far
        self._offset = 0  # plain files: bytes read so far (up to the end of a line)
        self._identity: tuple[int, int] | None = None
        self._signature: tuple[int, int, int] | None = None
        store.status = f"waiting for {self.path}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mimir-plot-file", daemon=True)
        self._thread.start()

    def read_new(self) -> int:
        """Read what was added since the last call; return how many entries were added.

        A damaged or truncated compressed log raises :class:`~mimir.DamagedLogError`
        after its readable entries were added; the status says so. A FIFO or
        device raises :class:`OSError` at once.
        """
        try:
            file = open_regular_file(self.path)
        except FileNotFoundError:
            self.store.status = f"waiting for {self.path}"
            return 0
        with file:
            stat = os.fstat(file.fileno())
            identity = (stat.st_dev, stat.st_ino)
            signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if signature == self._signature:
                return 0
            if identity != self._identity or stat.st_size < self._offset:
                if self._identity is not None:  # a new run in its place: start the plot over
                    self.store.clear()
                self._lines = self._offset = 0
                self._identity = identity
            compressed = file.read(2) == b"\x1f\x8b" or self.path.endswith(".gz")
            lines = self._compressed_lines() if compressed else self._plain_lines(file)
            added = 0
            chunk: list[tuple[int, bytes]] = []
            try:
                for item in lines:  # in chunks: a big log never is in memory as entries at once
                    chunk.append(item)
                    if len(chunk) >= _CHUNK_LINES:
                        added += self._add(chunk)
                        chunk = []
            except DamagedLogError as error:
                added += self._add(chunk)  # the readable entries before the damage
                self._signature = signature  # read again when the file changes
                self.store.status = f"showing {self.store.entries:,} entries; {error}"
                raise
            added += self._add(chunk)
        self._signature = signature
        self.store.status = f"{self.store.entries:,} entries from {self.path}"
        return added

    def _add(self, lines: list[tuple[int, bytes]]) -> int:
        entries = _parse(lines, self.path, self._warned)
        self.store.add(entries)
        return len(entries)

    def _compressed_lines(self) -> Iterator[tuple[int, bytes]]:
        skip = self._lines
        for lineno, line in iter_lines(self.path):
            self._lines = lineno
            if lineno > skip:
                yield lineno, line

    def _plain_lines(self, file: IO[bytes]) -> Iterator[tuple[int, bytes]]:
        file.seek(self._offset)
        while True:
            data = file.read(_CHUNK_BYTES)
            end = data.rfind(b"\n") + 1
            while not end:  # a line longer than a chunk, or one still being written
                more = file.read(_CHUNK_BYTES)
                if not more:
                    return
                cut = more.rfind(b"\n")
                if cut >= 0:
                    end = len(data) + cut + 1
                data += more
            for line in data[:end].splitlines():
                self._lines += 1
                if line.strip():
                    yield self._lines, line
            self._offset += end
            file.seek(self._offset)

    def _run(self) -> None:
        wait = self.poll
        while True:
            started = time.monotonic()
            try:
                self.read_new()
            except DamagedLogError:
                pass  # the status says what could not be read; read again when it changes
            except Exception as error:  # e.g. a FIFO: say so, try again later
                self.store.status = f"cannot read {self.path}: {error}"
            took = time.monotonic() - started
            wait = max(self.poll, 2 * took)
            if self._stop.wait(wait):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


# -- documents ---------------------------------------------------------------------------


class _Session:
    """One browser tab: pulls the store's new points into its own data sources."""

    def __init__(self, doc: Any, store: PointStore, sources: dict[str, Any], divs: Any) -> None:
        self.doc = doc
        self.store = store
        self.sources = sources
        self.mode_div, self.status_div = divs
        self.cursors = {key: (-1, 0) for key in sources}
        self._scheduled = False
        self._lock = threading.Lock()
        self._alive = True

    def wake(self) -> None:
        """Called from the feed's thread: have the document pull on its own thread."""
        with self._lock:
            if self._scheduled or not self._alive:
                return
            self._scheduled = True
        try:
            self.doc.add_next_tick_callback(self.pull)
        except Exception:  # the session is being destroyed
            with self._lock:
                self._scheduled = False

    def pull(self) -> None:
        """Add the new points to the data sources (on the document's thread)."""
        with self._lock:
            self._scheduled = False
        rollover = None if self.store.decimate else self.store.rollover
        for key, source in self.sources.items():
            cursor, replace, data = self.store.since(key, self.cursors[key])
            self.cursors[key] = cursor
            if replace:
                source.data = data
            elif data["x"]:
                source.stream(data, rollover=rollover)

    def refresh(self) -> None:
        """Periodic: catch up, and update the status line."""
        self.pull()
        mode = self.store.describe()
        if self.mode_div.text != mode:
            self.mode_div.text = mode
        status = html.escape(self.store.status)
        if self.status_div.text != status:
            self.status_div.text = status

    def close(self) -> None:
        with self._lock:
            self._alive = False
        self.store.unlisten(self.wake)


def _layout(store: PointStore, title: str | None, status: str) -> tuple[Any, dict, Any]:
    from bokeh.layouts import column
    from bokeh.models import Div

    fig, sources = build_figure(store.x_key, store.y_keys, log_y=store.log_y, title=title)
    mode_div = Div(text=store.describe(), name="mimir:mode")
    status_div = Div(text=html.escape(status), name="mimir:status")
    layout = column(mode_div, fig, status_div, sizing_mode="stretch_width")
    return layout, sources, (mode_div, status_div)


def make_document(store: PointStore, title: str | None = None) -> Callable[[Any], None]:
    """The Bokeh application function (``doc -> None``) that shows ``store`` live."""

    def modify_doc(doc: Any) -> None:
        layout, sources, divs = _layout(store, title, store.status)
        session = _Session(doc, store, sources, divs)
        doc.add_root(layout)
        doc.title = title or f"Mímir: {', '.join(store.y_keys)}"
        session.pull()
        store.listen(session.wake)
        doc.add_periodic_callback(session.refresh, _STATUS_MS)
        doc.on_session_destroyed(lambda context: session.close())

    return modify_doc


# -- the server ----------------------------------------------------------------------------


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _has_port(item: str) -> bool:
    """Whether ``HOST:PORT`` (or ``[IPv6]:PORT``) carries a port."""
    if item.startswith("["):
        return "]:" in item
    return item.count(":") == 1


def allowed_hosts(address: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The ``host:port`` values accepted in ``Host`` and ``Origin`` headers.

    The server's own address (``localhost`` and the loopback addresses too when it
    listens on loopback or on every interface; this host's names when on every
    interface), plus ``extra`` (``HOST`` or ``HOST:PORT``; without a port, the
    server's port).
    """
    hosts: list[str] = []
    if address in _LOOPBACK or address in ("", "0.0.0.0", "::"):
        hosts += [_host_port(h, port) for h in _LOOPBACK]
    if address in ("", "0.0.0.0", "::"):
        for name in {socket.gethostname(), socket.getfqdn()}:
            if name:
                hosts.append(_host_port(name, port))
    elif address not in _LOOPBACK:
        hosts.append(_host_port(address, port))
    for item in extra:
        hosts.append(item if _has_port(item) else _host_port(item.strip("[]"), port))
    seen: dict[str, None] = {}
    for host in hosts:
        seen.setdefault(host.lower(), None)
    return list(seen)


def start_server(
    modify_doc: Callable[[Any], None],
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    allow_hosts: Sequence[str] = (),
) -> tuple[Any, str]:
    """Start a Bokeh server for ``modify_doc`` on the running IOLoop; return (server, URL).

    ``port=0`` picks a free port. Requests whose ``Host`` header, and WebSocket
    connections whose ``Origin``, are not among :func:`allowed_hosts` are refused
    (403).
    """
    import_bokeh()
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import BaseServer
    from bokeh.server.tornado import BokehTornado
    from bokeh.server.util import bind_sockets
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop
    from tornado.web import RequestHandler

    class ForeignHost(RequestHandler):
        def prepare(self) -> None:
            self.set_status(403)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(
                "403: this Mímir plot server answers only requests for its own address "
                f"({', '.join(hosts)}); start it with --allow-host to add one\n"
            )

    class HostCheckingTornado(BokehTornado):
        def find_handler(self, request: Any, **kwargs: Any) -> Any:
            if request.host.lower() not in hosts:
                return self.get_handler_delegate(request, ForeignHost)
            return super().find_handler(request, **kwargs)

    sockets, port = bind_sockets(address, port)
    hosts = allowed_hosts(address, port, allow_hosts)
    shown = "127.0.0.1" if address in ("", "0.0.0.0", "::") else address
    url = f"http://{_host_port(shown, port)}/"
    try:
        tornado_app = HostCheckingTornado(
            {"/": Application(FunctionHandler(modify_doc))},
            extra_websocket_origins=hosts,
            absolute_url=url,
        )
        http_server = HTTPServer(tornado_app, xheaders=False)
        http_server.add_sockets(sockets)
    except Exception:
        for sock in sockets:
            sock.close()
        raise
    server = BaseServer(IOLoop.current(), tornado_app, http_server)
    server.start()
    return server, url


def serve(
    store: PointStore,
    feed: StreamFeed | FileFeed,
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    allow_hosts: Sequence[str] = (),
    title: str | None = None,
    show: bool = False,
    ready: Callable[[str], Any] | None = None,
) -> None:
    """Run the plot server until SIGINT/SIGTERM; ``ready(url)`` is called once it listens."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
                pass
        server, url = start_server(
            make_document(store, title), address=address, port=port, allow_hosts=allow_hosts
        )
        feed.start()
        try:
            if ready is not None:
                ready(url)
            if show:
                import webbrowser

                webbrowser.open(url)
            await stop.wait()
        finally:
            feed.stop()
            server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


# -- the report ---------------------------------------------------------------------------


def write_report(
    path: str,
    x_key: str,
    y_keys: Sequence[str],
    output: str,
    *,
    log_y: bool = False,
    decimate: int | None = None,
    title: str | None = None,
) -> int:
    """Write the plot of the log at ``path`` as a standalone HTML file; return the entries read.

    The file holds BokehJS and the data (``bokeh.resources.INLINE``): it opens
    without a server or a network. Every point is kept, unless ``decimate=N``
    (at most N points per line).
    """
    import_bokeh()
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    store = PointStore(x_key, y_keys, log_y=log_y, rollover=None, decimate=decimate)
    feed = FileFeed(store, path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "no such log file", path)
    feed.read_new()
    source_text = f"{store.entries:,} entries of {os.path.basename(path)}"
    layout, sources, _ = _layout(store, title, source_text)
    for key, source in sources.items():
        _, _, data = store.since(key, (-1, 0))
        source.data = data
    page_title = title or f"Mímir: {', '.join(y_keys)}"
    text = file_html(layout, INLINE, page_title)
    temporary = f"{output}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, output)
    return store.entries
