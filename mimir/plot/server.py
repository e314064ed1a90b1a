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
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from mimir.plot.chart import Chart, build_chart
from mimir.plot.decimate import Line, import_numpy
from mimir.plot.figure import entries_to_rows, import_bokeh
from mimir.reader import DamagedLogError, iter_lines, loads_line, open_regular_file
from mimir.runs import (
    NoEntriesError,
    UnknownKeyError,
    check_keys,
    find_logs,
    run_names,
    split_by_source,
)

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency, kept optional
    _orjson = None

__all__ = [
    "COLUMNS",
    "FileFeed",
    "PointStore",
    "Resolutions",
    "StreamFeed",
    "allowed_hosts",
    "make_document",
    "report_resolutions",
    "serve",
    "start_server",
    "write_report",
]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_STREAM_BATCH_SECONDS = 0.05  # entries from a stream reach the store in batches this often
_REFRESH_MS = 250  # each tab takes the new points this often
_STATUS_SECONDS = 1.0  # and its status line (a new text lays the page out again) this often
#: The key under which ``mimir.Logger(wall_time=True)`` logs the time (seconds since the epoch).
WALL_TIME_KEY = "wall_time"
#: Pixel columns a live view is decimated for until the page says how wide its plot is.
COLUMNS = 1200
_CHUNK_LINES = 20_000  # lines of a log parsed and added at a time
_CHUNK_BYTES = 4 << 20  # bytes of a plain log read at a time


# -- points ------------------------------------------------------------------------------

#: Lines of a log read at a time: their numbers (blank lines included) and the lines.
_Chunk = tuple[Sequence[int], list[bytes]]


class PointStore:
    """Every point of every line, fed from the feeds' threads and read by the documents.

    A line is one key of one run, ``(run, key)``; a run is a file or a stream
    (the one run of a single input is named ``""``). Entries of a collected log,
    which carry their ``source`` (see :mod:`mimir.runs`), are split into one run
    per source: ``<run>/<source>``, or ``<source>`` for a run named ``""``.
    Each line keeps all its points in a :class:`~mimir.plot.decimate.Line`, which
    hands out any x range decimated to a bounded number of points (:meth:`view`).
    Thread-safe.
    """

    def __init__(
        self,
        x_key: str,
        y_keys: Sequence[str],
        *,
        log_y: bool = False,
        source_key: str = "source",
        x_axis: str | None = None,
        **deprecated: Any,
    ) -> None:
        for name in deprecated:
            if name not in ("rollover", "decimate"):
                raise TypeError(f"PointStore() got an unexpected keyword argument {name!r}")
        if not y_keys:
            raise ValueError("give at least one key to plot on the y axis")
        import_numpy()
        self.x_key = x_key
        self.y_keys = list(y_keys)
        self.log_y = log_y
        self.source_key = source_key
        self.x_axis = x_axis_for(x_key, x_axis)
        self._starts: dict[str, float] = {}  # elapsed time: each run's first x
        self.lock = threading.Lock()
        self.entries = 0  # entries received
        self.version = 0  # changes with every change of the points
        self.status = ""  # what the feeds have to say (waiting, errors, gaps)
        self.panels: bool | None = None  # one panel per key (None: when scales differ)
        self._lines: dict[tuple[str, str], Line] = {}
        self._declared: list[str] = []  # runs shown (without points) before any arrive
        self._found: set[str] = set()
        self._complete = False  # every key asked for was found
        self._warned: set[str] = set()

    def add(self, entries: Sequence[Any], run: str = "") -> None:
        """Add entries (dicts) of ``run``, in order."""
        if not entries:
            return
        groups: dict[str, Sequence[Any]] = {run: entries}
        key = self.source_key
        if any(type(entry) is dict and key in entry for entry in entries):
            split = split_by_source([e for e in entries if type(e) is dict], key)
            groups = {(f"{run}/{name}" if run else name): part for name, part in split.items()}
        wanted = [self.x_key, *self.y_keys]
        for name, part in groups.items():
            rows = entries_to_rows(
                part, self.x_key, self.y_keys, log_y=self.log_y, warned=self._warned
            )
            with self.lock:
                if not self._complete:
                    found = self._found
                    for entry in part:
                        if type(entry) is dict:
                            found.update(entry)
                    self._complete = all(k in found for k in wanted)
                for y_key, columns in rows.items():
                    if columns["x"]:
                        line = self._lines.get((name, y_key))
                        if line is None:
                            line = self._lines[name, y_key] = Line()
                        line.extend(self._x(name, columns["x"]), columns["y"])
                self.entries += len(part)
                self.version += 1

    def _x(self, run: str, xs: list[Any]) -> Any:
        """The x values as the axis wants them: milliseconds for wall-clock time, seconds
        since the run's first entry for elapsed time."""
        if self.x_axis == "linear":
            return xs
        np = import_numpy()
        values = np.asarray(xs, dtype=float)
        if self.x_axis == "datetime":
            return values * 1000.0
        start = self._starts.setdefault(run, float(values[0]))
        return values - start

    def clear(self, run: str = "") -> None:
        """Forget the points of ``run`` and of its sources (it started over)."""
        with self.lock:
            for line in list(self._lines):
                if line[0] == run or (not run or line[0].startswith(f"{run}/")):
                    del self._lines[line]
                    self._starts.pop(line[0], None)
            self.version += 1

    def declare(self, run: str) -> None:
        """Say that ``run`` will come: before any point arrives, the chart shows its keys."""
        with self.lock:
            if run not in self._declared:
                self._declared.append(run)

    def lines(self) -> list[tuple[str, str]]:
        """The lines that have points: ``(run, key)`` in the order they appeared, by run.

        Before the first point: the keys of the declared runs (or of the run ``""``).
        """
        with self.lock:
            found = list(self._lines)
            declared = list(self._declared) or [""]
        if not found:
            return [(run, key) for run in declared for key in self.y_keys]
        runs = list(dict.fromkeys(run for run, _ in found))
        return [(run, key) for run in runs for key in self.y_keys if (run, key) in found]

    def ranges(self) -> dict[str, tuple[float, float]]:
        """``{key: (lowest, highest)}`` y of each key over every run (for the panels)."""
        np = import_numpy()
        found: dict[str, tuple[float, float]] = {}
        with self.lock:
            lines = [(key, line.view(None, None, 256)) for (_, key), line in self._lines.items()]
        for key, data in lines:
            ys = np.asarray(data["y"], dtype=float)
            ys = ys[np.isfinite(ys)]
            if not len(ys):
                continue
            lo, hi = float(ys.min()), float(ys.max())
            if key in found:
                lo, hi = min(lo, found[key][0]), max(hi, found[key][1])
            found[key] = (lo, hi)
        return found

    def count(self, line: tuple[str, str]) -> int:
        """How many points ``line`` has (all of them, not those shown)."""
        with self.lock:
            found = self._lines.get(line)
            return 0 if found is None else found.count

    def points(self, key: str, run: str = "") -> int:
        """How many points line ``(run, key)`` has."""
        return self.count((run, key))

    def view(
        self,
        line: tuple[str, str],
        x0: float | None = None,
        x1: float | None = None,
        columns: int = COLUMNS,
    ) -> dict[str, Any]:
        """The points of ``line`` in [x0, x1] (default: all), decimated to ``columns`` columns."""
        with self.lock:
            found = self._lines.get(line)
            if found is None:
                return {"x": [], "y": []}
            return found.view(x0, x1, columns)

    def since(
        self, key: str, cursor: tuple[int, int], run: str = ""
    ) -> tuple[tuple[int, int], bool, dict[str, list[Any]]]:
        """``(new cursor, replace, {"x": [...], "y": [...]})``: the points of line
        ``(run, key)`` after ``cursor``, every one of them (not decimated).

        Start with the cursor ``(-1, 0)``; ``replace`` is true when the points replace
        everything read before (the first call, or the run started over). Whole numbers
        come back as ints. For reading a store's points in full; views use :meth:`view`.
        """
        with self.lock:
            line = self._lines.get((run, key))
            xs, ys = line.points() if line is not None else ([], [])
            epoch = self.version if line is None else id(line)
        fresh = cursor[0] != epoch
        start = 0 if fresh else cursor[1]

        def plain(values: Any) -> list[Any]:
            return [int(v) if v.is_integer() else v for v in map(float, values[start:])]

        return (epoch, len(xs)), fresh, {"x": plain(xs), "y": plain(ys)}

    def bounds(self) -> tuple[float, float] | None:
        """The smallest and largest x of all lines, or None before the first point."""
        with self.lock:
            found = [b for b in (line.bounds() for line in self._lines.values()) if b]
        if not found:
            return None
        return min(b[0] for b in found), max(b[1] for b in found)

    def check_keys(self, where: str) -> None:
        """Raise :class:`~mimir.runs.UnknownKeyError` if an x or y key is in none of the
        entries added so far (and some were)."""
        with self.lock:
            if self._complete or not self.entries:
                return
            found = set(self._found)
        check_keys([self.x_key, *self.y_keys], found, where)

    def problem(self, where: str) -> str:
        """The message of :meth:`check_keys`, or ``""``."""
        try:
            self.check_keys(where)
        except UnknownKeyError as error:
            return str(error)
        return ""

    def describe(self) -> str:
        """One sentence on what the lines show."""
        return (
            "Each line shows the whole run, at most 4 points per pixel column (the first, "
            "lowest, highest and last: spikes stay visible), refined when you zoom."
        )


def x_axis_for(x_key: str, x_axis: str | None) -> str:
    """The kind of x axis: ``x_axis`` if given (``"linear"``, ``"datetime"``: wall-clock
    time from seconds since the epoch, ``"elapsed"``: seconds since each run's first
    entry), else ``"datetime"`` for :data:`WALL_TIME_KEY` and ``"linear"`` for any other key."""
    if x_axis is None:
        return "datetime" if x_key == WALL_TIME_KEY else "linear"
    if x_axis not in ("linear", "datetime", "elapsed"):
        raise ValueError(f"x_axis must be 'linear', 'datetime' or 'elapsed', got {x_axis!r}")
    return x_axis


# -- feeds -------------------------------------------------------------------------------


class _Feed:
    """What every feed of a :class:`PointStore` has: the store, its run, and a status."""

    def __init__(self, store: PointStore, run: str) -> None:
        self.store = store
        self.run = run
        self._status = ""

    @property
    def status(self) -> str:
        """What this feed has to say (waiting, how many entries, errors); the store's
        :attr:`~PointStore.status` is the last thing a feed said."""
        return self._status

    @status.setter
    def status(self, text: str) -> None:
        self._status = text
        self.store.status = text


class StreamFeed(_Feed):
    """Follows a Mímir stream (:func:`mimir.stream.follow`) into a :class:`PointStore`."""

    def __init__(
        self,
        store: PointStore,
        address: str,
        replay_address: str | None = None,
        *,
        run: str = "",
        **stream_options: Any,
    ) -> None:
        super().__init__(store, run)
        self.address = address
        self.replay_address = replay_address
        self.stream_options = stream_options
        self.gaps = 0
        self.missed = 0
        self.received = 0
        self.status = f"waiting for entries from {address}"
        self._pending: list[Any] = []
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._follower: Any = None
        self._thread: threading.Thread | None = None

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
            self.store.add(entries, self.run)
        except Exception as error:  # never let the thread die on one bad batch
            self.status = f"error: {error!r}"
            return
        self.received += len(entries)
        follower = self._follower
        name = f"{self.run}: " if self.run else ""
        status = f"{name}{self.received:,} entries from {self.address}"
        if self.gaps:
            status += f"; {self.missed:,} entries lost in {self.gaps:,} gaps"
        if follower is not None and follower.error is not None:
            status += f"; stopped: {follower.error}"
        elif not self.received:
            status = f"{name}waiting for entries from {self.address}"
        self.status = status

    def stop(self) -> None:
        self._stop.set()
        if self._follower is not None:
            try:
                self._follower.stop()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(2.0)


class FileFeed(_Feed):
    """Follows a log file as it grows (like ``tail -f``) into a :class:`PointStore`.

    A plain ``.jsonl`` is read on from where the last read ended, complete lines
    only. A compressed log (gzlog, ``.jsonl.gz``) cannot be read from the middle: it
    is read again whole (a consistent snapshot, see :mod:`mimir.reader`) when it
    changes, and the entries already plotted are skipped; reads are spaced at
    least twice as far apart as one read takes. A file that shrinks or is
    replaced (a new run) starts its run over. A damaged or truncated compressed
    log shows its readable entries and says in the status what is wrong (a
    report of it fails); a FIFO or device is refused at once. A file whose lines
    are none of them JSON entries is :class:`~mimir.runs.NoEntriesError`.
    """

    def __init__(self, store: PointStore, path: str, poll: float = 0.2, *, run: str = "") -> None:
        super().__init__(store, run)
        self.path = os.fspath(path)
        self.poll = poll
        self.entries = 0  # entries of the file read so far
        self.status = f"waiting for {self.path}"
        self.done = False  # the last read reached the end of the file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()
        self._first_bad: tuple[int, bytes] | None = None  # before the first entry
        self._lines = 0  # complete lines read so far
        self._offset = 0  # plain files: bytes read so far (up to the end of a line)
        self._identity: tuple[int, int] | None = None
        self._signature: tuple[int, int, int] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mimir-plot-file", daemon=True)
        self._thread.start()

    def read_new(self, limit: int | None = None) -> int:
        """Read what was added since the last call; return how many entries were added.

        With ``limit``, stop once at least that many were added (:attr:`done` then
        tells whether the end was reached). A damaged or truncated compressed log
        raises :class:`~mimir.DamagedLogError` after its readable entries were
        added; a file with lines but no entry among them raises
        :class:`~mimir.runs.NoEntriesError`; a FIFO or device raises
        :class:`OSError` at once.
        """
        try:
            file = open_regular_file(self.path)
        except FileNotFoundError:
            self.status = f"waiting for {self.path}"
            self.done = True
            return 0
        added = 0
        with file:
            stat = os.fstat(file.fileno())
            identity = (stat.st_dev, stat.st_ino)
            signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if signature == self._signature:
                self.done = True
                return 0
            if identity != self._identity or stat.st_size < self._offset:
                if self._identity is not None:  # a new run in its place: start it over
                    self.store.clear(self.run)
                self._lines = self._offset = self.entries = 0
                self._first_bad = None
                self._identity = identity
            compressed = file.read(2) == b"\x1f\x8b" or self.path.endswith(".gz")
            chunks = self._compressed_chunks() if compressed else self._plain_chunks(file)
            self.done = False
            try:
                for chunk in chunks:  # a big log never is in memory as entries at once
                    added += self._add(chunk)
                    if limit is not None and added >= limit:
                        chunks.close()
                        self.status = f"{self.entries:,} entries from {self.path} (reading on)"
                        return added
            except DamagedLogError as error:
                self._signature = signature  # read again when the file changes
                self.status = f"showing {self.entries:,} entries of {self.path}; {error}"
                self.done = True
                raise
        self._signature = signature
        self.done = True
        self.status = f"{self.entries:,} entries from {self.path}"
        if not self.entries and self._first_bad is not None:
            lineno, line = self._first_bad
            self.status = f"{self.path} is not a Mímir log"
            raise NoEntriesError(self.path, lineno, line)
        return added

    def _add(self, chunk: _Chunk) -> int:
        linenos, lines = chunk
        entries = None
        if _orjson is not None and lines:
            try:  # one call for the whole chunk: most chunks are nothing but entries
                parsed = _orjson.loads(b"[" + b",".join(lines) + b"]")
            except ValueError:  # a line that is not JSON (or NaN, which orjson refuses)
                parsed = None
            if parsed is not None and all(type(entry) is dict for entry in parsed):
                entries = parsed
        if entries is None:
            entries = self._parse(linenos, lines)
        self.entries += len(entries)
        self.store.add(entries, self.run)
        return len(entries)

    def _parse(self, linenos: Sequence[int], lines: list[bytes]) -> list[Any]:
        """The entries of ``lines`` one by one; what is not an entry is skipped (and told)."""
        entries = []
        for lineno, line in zip(linenos, lines, strict=True):
            if not line.strip():
                continue
            try:
                entry = loads_line(line)
            except (ValueError, RecursionError) as error:
                if self._first_bad is None:
                    self._first_bad = (lineno, line)
                if (self.entries or entries) and self.path not in self._warned:
                    self._warned.add(self.path)
                    warnings.warn(
                        f"{_malformed(self.path, lineno, line, error)}; skipped", stacklevel=4
                    )
                continue
            if type(entry) is not dict:
                if self._first_bad is None:
                    self._first_bad = (lineno, line)
                continue
            entries.append(entry)
        return entries

    def _compressed_chunks(self) -> Iterator[_Chunk]:
        skip = self._lines
        linenos: list[int] = []
        lines: list[bytes] = []
        try:
            for lineno, line in iter_lines(self.path):
                if lineno > skip:
                    linenos.append(lineno)
                    lines.append(line)
                    if len(lines) >= _CHUNK_LINES:
                        self._lines = lineno
                        yield linenos, lines
                        linenos, lines = [], []
        except DamagedLogError:
            if lines:  # the readable entries before the damage are shown
                self._lines = linenos[-1]
                yield linenos, lines
            raise
        if lines:
            self._lines = linenos[-1]
            yield linenos, lines

    def _plain_chunks(self, file: IO[bytes]) -> Iterator[_Chunk]:
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
            lines = data[:end].split(b"\n")
            lines.pop()  # after the last newline: nothing
            for start in range(0, len(lines), _CHUNK_LINES):
                part = lines[start : start + _CHUNK_LINES]
                first = self._lines + 1
                # handed out whole: read past them before (the caller may stop after it)
                self._lines += len(part)
                self._offset += sum(map(len, part)) + len(part)
                yield range(first, first + len(part)), part
            file.seek(self._offset)

    def _run(self) -> None:
        _lower_priority()
        wait = self.poll
        while True:
            started = time.monotonic()
            try:
                self.read_new(_CHUNK_LINES * 10)
            except DamagedLogError:
                pass  # the status says what could not be read; read again when it changes
            except Exception as error:  # e.g. a FIFO: say so, try again later
                self.status = f"cannot read {self.path}: {error}"
            took = time.monotonic() - started
            wait = 0.0 if not self.done else max(self.poll, 2 * took)
            if self._stop.wait(wait):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


def _lower_priority() -> None:
    """Lower the priority of the calling thread (Linux), so that reading a big log gives
    way to the server answering pages and to a browser on the same machine."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except OSError:
            pass


def _malformed(path: str, lineno: int, line: bytes, error: BaseException) -> str:
    return f"{path}, line {lineno}: not a JSON entry ({error}): {line[:80]!r}"


# -- documents ---------------------------------------------------------------------------


class _Session:
    """One browser tab: shows the store's lines, decimated for the x range in view."""

    def __init__(
        self, doc: Any, store: PointStore, feeds: Sequence[Any], title: str | None
    ) -> None:
        self.doc = doc
        self.store = store
        self.feeds = list(feeds)
        self.title = title
        self.range: tuple[float, float] | None = None  # None: the whole run, following it
        self.lines: list[tuple[str, str]] = []
        self.sources: dict[tuple[str, str], Any] = {}
        self.shown: dict[tuple[str, str], Any] = {}
        self.version = -1
        self.told = 0.0  # when the status line was last refreshed
        self.layout: Any = None
        self.build()

    def build(self) -> None:
        """(Re)make the page's chart for the lines the store has now."""
        from bokeh.events import RangesUpdate, Reset

        self.lines = self.store.lines()
        layout, chart, divs = _layout(self.store, self.lines, self.title)
        for fig in chart.figures:
            fig.on_event(RangesUpdate, self.on_range)
            fig.on_event(Reset, self.on_reset)
        self.mode_div, self.status_div = divs
        self.sources = chart.sources
        self.figures = chart.figures
        self.shown = {}
        self.told = 0.0
        if self.layout is not None:
            self.doc.remove_root(self.layout)
        self.layout = layout
        self.doc.add_root(layout)
        self.refresh()

    def on_range(self, event: Any) -> None:
        """The user zoomed or panned: show the points of the new x range."""
        if event.x0 is None or event.x1 is None:
            return
        x0, x1 = sorted((float(event.x0), float(event.x1)))
        bounds = self.store.bounds()
        if bounds is not None and x0 <= bounds[0] and x1 >= bounds[1]:
            self.range = None  # everything in view: follow the run again
        else:
            self.range = (x0, x1)
        self.pull()

    def on_reset(self, event: Any) -> None:
        self.range = None
        self.pull()

    def pull(self) -> None:
        """Give each line the points of the range in view (on the document's thread)."""
        x0, x1 = self.range if self.range is not None else (None, None)
        columns = self.columns()
        changes = {}
        for line in self.sources:
            stamp = (self.store.count(line), self.range, columns)
            if self.shown.get(line) != stamp:
                changes[line] = (stamp, self.store.view(line, x0, x1, columns))
        if not changes:
            return
        self.doc.hold("combine")  # every line in one message: the page draws once
        try:
            for line, (stamp, data) in changes.items():
                self.sources[line].data = data
                self.shown[line] = stamp
        finally:
            self.doc.unhold()

    def columns(self) -> int:
        """The pixel columns of the plot in the page (which BokehJS tells the server once
        it is drawn); :data:`COLUMNS` until then."""
        try:
            width = int(self.figures[0].inner_width)
        except Exception:  # not drawn yet: the property has no value
            return COLUMNS
        return min(max(width, 100), 8000)

    def refresh(self) -> None:
        """Periodic: new lines, new points, and the status line."""
        if self.store.lines() != self.lines:
            self.build()
            return
        if self.store.version != self.version:
            self.version = self.store.version
            self.pull()
        now = time.monotonic()
        if now - self.told < _STATUS_SECONDS:
            return
        self.told = now
        problem = self.store.problem(_where(self.feeds))
        parts = [feed.status for feed in self.feeds if feed.status]
        status = html.escape("; ".join(parts) or self.store.status)
        if problem:
            status = f'<b style="color:#b00">{html.escape(problem)}</b><br>{status}'
        if self.status_div.text != status:
            self.status_div.text = status


def _where(feeds: Sequence[Any]) -> str:
    """The inputs as messages name them."""
    names = [getattr(feed, "path", None) or getattr(feed, "address", "?") for feed in feeds]
    if not names:
        return "the entries"
    return f"the entries received so far from {', '.join(names)}"


def _layout(
    store: PointStore, lines: Sequence[tuple[str, str]], title: str | None
) -> tuple[Any, Chart, tuple[Any, Any]]:
    from bokeh.layouts import column
    from bokeh.models import Div

    chart = build_chart(
        store.x_key,
        lines,
        x_axis=store.x_axis,
        log_y=store.log_y,
        title=title,
        panels=store.panels,
        ranges=store.ranges(),
    )
    mode_div = Div(text=store.describe(), name="mimir:mode")
    status_div = Div(text=html.escape(store.status), name="mimir:status")
    layout = column(mode_div, chart.layout, status_div, sizing_mode="stretch_both")
    return layout, chart, (mode_div, status_div)


def make_document(
    store: PointStore, title: str | None = None, feeds: Sequence[Any] = ()
) -> Callable[[Any], None]:
    """The Bokeh application function (``doc -> None``) that shows ``store`` live."""

    def modify_doc(doc: Any) -> None:
        session = _Session(doc, store, feeds, title)
        doc.title = title or f"Mímir: {', '.join(store.y_keys)}"
        doc.add_periodic_callback(session.refresh, _REFRESH_MS)

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
    feeds: StreamFeed | FileFeed | Sequence[StreamFeed | FileFeed],
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    allow_hosts: Sequence[str] = (),
    title: str | None = None,
    show: bool = False,
    ready: Callable[[str], Any] | None = None,
    on_problem: Callable[[str], Any] | None = None,
) -> None:
    """Run the plot server until SIGINT/SIGTERM; ``ready(url)`` is called once it listens.

    ``on_problem(message)`` is called once for each new problem with the entries
    received (a key in none of them, see :meth:`PointStore.check_keys`); the pages
    show it too.
    """
    if isinstance(feeds, (StreamFeed, FileFeed)):
        feeds = [feeds]
    feeds = list(feeds)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
                pass
        server, url = start_server(
            make_document(store, title, feeds),
            address=address,
            port=port,
            allow_hosts=allow_hosts,
        )
        started = []
        try:
            for feed in feeds:
                feed.start()
                started.append(feed)
            if ready is not None:
                ready(url)
            if show:
                import webbrowser

                webbrowser.open(url)
            told = ""
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                problem = store.problem(_where(feeds))
                if problem and problem != told and on_problem is not None:
                    on_problem(problem)
                told = problem
        finally:
            for feed in started:
                feed.stop()
            server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


# -- the report ---------------------------------------------------------------------------

#: Columns of the coarsest resolution of a report; each next one has 4 times as many.
REPORT_COLUMNS = 1000
#: Points a report embeds at most, over all its lines and resolutions (about 12 bytes each).
REPORT_POINTS = 260_000

#: Run in the page when the user zooms, pans or resets, and when a resolution changes:
#: each line takes the coarsest resolution with at least one column per pixel of the x
#: range in view (the first, shown as it is, when the range is not known yet).
_PICK_RESOLUTION = """
const start = x_range.start, end = x_range.end;
const [lo, hi] = extent.data.x.length ? extent.data.x : [0, 1];
const full = Math.max(hi - lo, 1e-300);
const pixels = Math.max(plot.inner_width || 1000, 100);
const span = end > start ? (end - start) / full : 1;
for (let i = 0; i < sources.length; i++) {
  const levels = resolutions[i];
  let k = 0;
  while (k < levels.length - 1 && columns[k] * span < pixels && levels[k + 1].get_length() > 0)
    k++;
  const source = sources[i];
  const was = source._mimir_resolution || 0;
  source._mimir_resolution = k;
  if (k === 0 && was === 0 && cb_obj !== levels[0]) continue;  // shows the first already
  const data = levels[k].data;
  source.data = {...source.data, x: data.x, y: data.y};
}
"""


class Resolutions:
    """Each line of a chart at a few resolutions, in data sources of their own, and the
    page's code that shows the one matching the x range in view (no server needed).

    Resolution ``k`` is meant to hold the whole run decimated to
    ``REPORT_COLUMNS * 4**k`` columns (:func:`report_resolutions`); :meth:`set`
    fills one, :meth:`set_extent` tells the page the run's x extent. The chart's own
    sources show resolution 0 until the user zooms.
    """

    def __init__(self, chart: Chart, depth: Mapping[tuple[str, str], int]) -> None:
        from bokeh.events import RangesUpdate, Reset
        from bokeh.models import ColumnDataSource, CustomJS

        self.chart = chart
        self.levels = {
            line: [
                ColumnDataSource(data={"x": [], "y": []}, name=f"{source.name}:resolution{k}")
                for k in range(max(depth.get(line, 1), 1))
            ]
            for line, source in chart.sources.items()
        }
        self.extent = ColumnDataSource(data={"x": []}, name="mimir:extent")
        deepest = max((len(levels) for levels in self.levels.values()), default=1)
        self.pick = CustomJS(
            args={
                "x_range": chart.x_range,
                "sources": list(chart.sources.values()),
                "resolutions": [self.levels[line] for line in chart.sources],
                "columns": [REPORT_COLUMNS * 4**k for k in range(deepest)],
                "extent": self.extent,
                "plot": chart.figures[0],
            },
            code=_PICK_RESOLUTION,
        )
        for fig in chart.figures:
            fig.js_on_event(RangesUpdate, self.pick)
            fig.js_on_event(Reset, self.pick)
        for levels in self.levels.values():
            for level in levels:
                level.js_on_change("data", self.pick)

    def set_extent(self, bounds: tuple[float, float] | None) -> None:
        if bounds is not None and list(self.extent.data["x"]) != list(bounds):
            self.extent.data = {"x": list(bounds)}

    def set(self, line: tuple[str, str], k: int, data: dict[str, Any]) -> None:
        """Resolution ``k`` of ``line`` (resolution 0 goes to the shown source too)."""
        if k == 0:
            self.chart.sources[line].data = dict(data)
        self.levels[line][k].data = dict(data)


def report_resolutions(
    store: PointStore, lines: Sequence[tuple[str, str]], points: int = REPORT_POINTS
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each line's points at the resolutions a report embeds, coarsest first.

    Resolution ``k`` decimates the whole run to ``REPORT_COLUMNS * 4**k`` columns;
    a line gets finer ones while the report's total stays within ``points`` and the
    line still has more points than the last one holds.
    """
    result: dict[tuple[str, str], list[dict[str, Any]]] = {}
    share = max(points // max(len(lines), 1), 4 * REPORT_COLUMNS)
    for line in lines:
        levels = [store.view(line, columns=REPORT_COLUMNS)]
        total = len(levels[0]["x"])
        count = store.count(line)
        columns = REPORT_COLUMNS
        while len(levels[-1]["x"]) < count:
            columns *= 4
            finer = store.view(line, columns=columns)
            if total + len(finer["x"]) > share:
                break
            levels.append(finer)
            total += len(finer["x"])
        result[line] = levels
    return result


def write_report(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    x_key: str,
    y_keys: Sequence[str],
    output: str,
    *,
    names: Sequence[str] | None = None,
    log_y: bool = False,
    title: str | None = None,
    panels: bool | None = None,
    x_axis: str | None = None,
    decimate: int | None = None,
) -> int:
    """Write the plot of the logs ``paths`` as one standalone HTML file; return the entries read.

    ``paths``: files, globs or folders (:func:`mimir.runs.find_logs`); each file is a
    run, named by its file name (:func:`mimir.runs.run_names`) or by ``names``, and
    a collected log is split by source. ``panels``: one panel per key (True), one
    for all (False), or one per key when their scales differ by over 100x (None).
    ``x_axis``: of numbers, wall-clock or elapsed time (:func:`x_axis_for`).
    The file holds BokehJS and the data
    (``bokeh.resources.INLINE``): it opens without a server or a network. Each line
    holds the whole run at a few resolutions (:func:`report_resolutions`, M4
    decimation, :mod:`mimir.plot.decimate`); the page shows the one that matches
    the x range in view, so a zoom brings out the detail. ``decimate`` is ignored
    (deprecated).

    Raises :class:`FileNotFoundError` for a path that matches nothing,
    :class:`~mimir.runs.NoEntriesError` for a file that holds no entry,
    :class:`~mimir.runs.UnknownKeyError` for a key in none of the entries, and
    :class:`~mimir.DamagedLogError` for a damaged log.
    """
    import_bokeh()
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    specs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = find_logs(specs)
    runs = [""] if names is None and len(files) == 1 else run_names(files, names)
    store = PointStore(x_key, y_keys, log_y=log_y, x_axis=x_axis)
    store.panels = panels
    for path, run in zip(files, runs, strict=True):
        feed = FileFeed(store, os.fspath(path), run=run)
        feed.read_new()
        if not feed.entries:  # (lines that are not entries raised NoEntriesError)
            raise ValueError(f"{path}: the log holds no entry yet: nothing to plot")
    store.check_keys(", ".join(map(os.fspath, files)))
    lines = store.lines()
    what = ", ".join(os.path.basename(p) for p in files)
    layout, chart, _ = _layout(store, lines, title)
    layout.children[-1].text = html.escape(f"{store.entries:,} entries of {what}")
    resolutions = report_resolutions(store, lines)
    embedded = Resolutions(chart, {line: len(levels) for line, levels in resolutions.items()})
    embedded.set_extent(store.bounds())
    for line, levels in resolutions.items():
        for k, level in enumerate(levels):
            embedded.set(line, k, level)
    page_title = title or f"Mímir: {', '.join(y_keys)}"
    text = file_html(layout, INLINE, page_title)
    temporary = f"{output}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, output)
    return store.entries
