"""Human-readable console output of entries."""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import shutil
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from pythonjsonlogger import defaults as _pjl

from mimir import _fork
from mimir._handler import Handler

__all__ = ["ConsoleFormatter", "ConsoleHandler", "ProgressHandler", "render_entry"]

_INDENT = "  "


def _scalar(value: Any) -> str:
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # NumPy scalars and 0-d tensors print as plain numbers
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not cost the whole line
        return _pjl.unknown_default(value)


def render_entry(entry: Mapping[str, Any], indent: str = "") -> str:
    """Render an entry for people: scalars on one line, nested mappings indented below.

    >>> print(render_entry({"iteration": 7, "loss": 0.31, "norms": {"w": 1.5, "b": 0.25}}))
    iteration: 7  loss: 0.31
    norms:
      w: 1.5  b: 0.25
    """
    scalars = []
    nested = []
    for key, value in entry.items():
        if isinstance(value, Mapping) and value:
            nested.append((key, value))
        else:
            scalars.append(f"{key}: {_scalar(value)}")
    lines = [indent + "  ".join(scalars)] if scalars else []
    for key, value in nested:
        lines.append(f"{indent}{key}:")
        lines.append(render_entry(value, indent + _INDENT))
    return "\n".join(lines)


class ConsoleFormatter(logging.Formatter):
    """Formats entries with ``render`` (default :func:`render_entry`) and other records as usual.

    ``render`` is any callable taking the entry (a mapping) and returning a string,
    so ``mimir.Logger(formatter=lambda entry: f"{entry['loss']:.3f}")`` works.
    """

    def __init__(
        self,
        render: Callable[[Mapping[str, Any]], str] | None = None,
        fmt: str | None = None,
        datefmt: str | None = None,
    ) -> None:
        super().__init__(fmt, datefmt)
        self.render = render or render_entry

    def format(self, record: logging.LogRecord) -> str:
        """Render mapping messages with ``render``; format anything else with ``fmt``."""
        if isinstance(record.msg, Mapping):
            return self.render(record.msg)
        return super().format(record)


class ConsoleHandler(logging.StreamHandler):
    """Writes records to standard output: the ``sys.stdout`` of the moment of each record.

    Looking ``sys.stdout`` up at each record follows redirections made after the
    handler was created (``contextlib.redirect_stdout``, notebooks, test runners).
    When the reader goes away (``python train.py | head``), printing stops with one
    note on standard error instead of a traceback per entry; the other handlers
    carry on.
    """

    def __init__(self, level: int | str = logging.NOTSET) -> None:
        super().__init__(sys.stdout)
        self.setLevel(level)
        self.closed_by_reader = False

    @property
    def stream(self) -> Any:  # type: ignore[override]
        """The current standard output."""
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always sys.stdout

    def emit(self, record: logging.LogRecord) -> None:
        """Print the record, unless standard output was closed by its reader."""
        if not self.closed_by_reader:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Stop printing quietly on a broken pipe; report anything else as usual."""
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            self.closed_by_reader = True
            if sys.stderr is not None:
                sys.stderr.write("mimir: standard output was closed; console output stopped\n")
            return
        super().handleError(record)


# -- the progress console ---------------------------------------------------------------

_NEVER = sys.maxsize  # an entry count the schedule never reaches
_CLEAR_TO_END = "\x1b[K"  # ANSI: erase from the cursor to the end of the line
_SMOOTHING = 0.3  # weight of the newest interval in the rate shown in a terminal
_FIRST_BACKOFF = 1.0  # seconds without drawing after a failed write, doubled each time...
_MAX_BACKOFF = 60.0  # ...up to this
_MAX_TEXT = 80  # characters shown of a string value, at most
_MAX_DEPTH = 8  # levels of nested mappings shown, at most


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so that it stays on one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _short_float(value: float) -> str:
    """4 significant digits, exponent without padding: ``0.3127``, ``1.235e5``, ``1e-5``."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.4g}"
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text


def _compact(value: Any) -> str:
    """A short text for one value of a status line; never raises."""
    try:
        if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
            value = value.item()  # NumPy scalars and 0-d tensors as plain numbers
        if value is None or isinstance(value, (bool, int)):
            text = str(value)  # integers (iterations, counts) stay exact
            return text if len(text) <= 20 else _short_float(float(value))
        if isinstance(value, numbers.Number) and not isinstance(value, complex):
            return _short_float(float(value))
        if isinstance(value, str):
            text = _printable(value)
        else:
            shape = getattr(value, "shape", None)
            if isinstance(shape, tuple):  # arrays and tensors: their shape, not their data
                return f"<{type(value).__name__} {'x'.join(map(str, shape))}>"
            if isinstance(value, (list, tuple, set, frozenset)):
                return f"[{len(value)} items]"
            text = _printable(repr(value))
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."
    except Exception:  # a broken __repr__ or __float__ must not cost the line
        return f"<{type(value).__name__}>"


def _fields(entry: Mapping[str, Any], limit: float) -> list[str]:
    """``key=value`` for each value of ``entry``, nested keys joined with dots.

    Stops once the fields exceed ``limit`` characters: what would not fit the line
    is not formatted at all.
    """
    fields: list[str] = []
    used = 0

    def walk(mapping: Mapping[Any, Any], prefix: str, depth: int) -> None:
        nonlocal used
        for key, value in mapping.items():
            if used > limit:
                return
            name = prefix + _printable(str(key))
            if isinstance(value, Mapping) and value and depth < _MAX_DEPTH:
                walk(value, name + ".", depth + 1)
                continue
            field = f"{name}={_compact(value)}"
            fields.append(field)
            used += len(field) + 2

    walk(entry, "", 0)
    return fields


def _per_second(rate: float) -> str:
    """An entry rate in 3 significant digits with an SI suffix: ``870/s``, ``12.3k/s``."""
    for suffix in ("", "k", "M"):
        if rate < 999.5:
            return f"{rate:.3g}{suffix}/s"
        rate /= 1000
    return f"{rate:.3g}G/s"


def _char_width(char: str) -> int:
    """Columns ``char`` takes in a terminal: 0 if combining, 2 if wide, else 1."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _fit(text: str, width: int, ellipsis: str) -> str:
    """``text`` cut to ``width`` terminal columns, ending in ``ellipsis`` when cut."""
    if text.isascii() and len(text) <= width:
        return text
    if width <= len(ellipsis):
        ellipsis = ""
    widths = [_char_width(char) for char in text]
    if sum(widths) <= width:
        return text
    room = width - len(ellipsis)
    used = 0
    for index, columns in enumerate(widths):
        if used + columns > room:
            return text[:index] + ellipsis
        used += columns
    return text  # not reached


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:  # no isatty, or a closed stream
        return False


def _ellipsis(stream: Any) -> str:
    """The character that ends a cut line: "…" where the stream's encoding has it."""
    try:
        "…".encode(getattr(stream, "encoding", None) or "ascii")
    except (LookupError, UnicodeError, TypeError):
        return "..."
    return "…"


def _columns(stream: Any) -> int:
    """The width of the terminal ``stream`` writes to (``COLUMNS`` first, as shutil)."""
    if "COLUMNS" not in os.environ:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        if columns > 0:  # a new pseudo-terminal reports 0 until its size is set
            return columns
    return shutil.get_terminal_size().columns


def _check_number(name: str, value: Any, integer: bool, minimum: float, strict: bool) -> None:
    """Refuse ``value`` unless it is a number (an int if ``integer``) above ``minimum``."""
    kind = int if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")


class ProgressHandler(Handler):
    """A console that keeps up with a training loop: one status line instead of a line per entry.

    In a terminal it shows one line, redrawn in place (carriage return, then the
    line, then erase to the end of the line) at most once every ``interval``
    seconds: the number of entries so far, the entry rate (entries per second,
    smoothed), and the latest value of each key of the newest entry (numbers in
    4 significant digits, nested keys joined with dots), cut to the terminal's
    width. At :meth:`close` it is drawn a last time, with the final values and the
    average rate since the first entry, and ended with a newline.

    Anywhere else (a file, a pipe, a notebook, captured output) the same text is
    printed as ordinary lines: one each time the count reaches a multiple of
    ``every``, and one when ``every_seconds`` have passed since the previous line,
    never more often; ``0`` turns either rule off. At :meth:`close`, one last line
    shows the entries not shown yet.

    Records that are not entries (text messages) are printed at once, in full,
    above the status line.

    Logging an entry costs O(1) whatever its size: the entry is kept as it is (not
    copied), a counter is bumped and a monotonic clock is read. Values are
    formatted only when a line is due, on the logging thread. The count takes no
    lock: entries logged by several threads at the same instant may, rarely, be
    counted as one.

    Its arguments are plain keywords, for :func:`logging.config.dictConfig`.

    Args:
        stream: where to write; by default the ``sys.stdout`` of the moment of each
            line, as :class:`ConsoleHandler` (``"ext://sys.stderr"`` in dictConfig).
        interval: seconds between two redraws of the status line, at least.
        every: in a file or pipe, print a line at every multiple of ``every`` entries.
        every_seconds: in a file or pipe, print a line when this many seconds have
            passed since the previous one and new entries came.
        width: columns of a line; 0 (default) fits the terminal
            (:func:`shutil.get_terminal_size`, ``COLUMNS``) and leaves lines written
            elsewhere whole.
        level: the handler's level.

    A line that cannot be written never raises into the caller: the error goes to
    :meth:`handleError` (counted in ``failures``) and drawing pauses, 1 s after the
    first failure, doubling up to a minute while failures go on. When the reader of
    a pipe goes away, drawing stops for good with one note on standard error.
    """

    #: The clock of the schedule: monotonic seconds. May be replaced on an instance.
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(
        self,
        stream: Any = None,
        interval: float = 0.1,
        every: int = 10_000,
        every_seconds: float = 10.0,
        width: int = 0,
        level: int | str = logging.NOTSET,
    ) -> None:
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise TypeError(f"stream must have a write() method, got {type(stream).__name__}")
        _check_number("interval", interval, integer=False, minimum=0, strict=True)
        _check_number("every", every, integer=True, minimum=0, strict=False)
        _check_number("every_seconds", every_seconds, integer=False, minimum=0, strict=False)
        _check_number("width", width, integer=True, minimum=0, strict=False)
        super().__init__(level)
        #: The stream given, or None: the ``sys.stdout`` of the moment.
        self.stream = stream
        self.interval = float(interval)
        self.every = every
        self.every_seconds = float(every_seconds)
        self.width = width
        #: True once the reader of the output went away (a broken pipe).
        self.closed_by_reader = False
        self._start()
        self._backoff = 0.0
        self._closed = False
        _fork.reset_after_fork(self)

    def _start(self) -> None:
        """Start from no entries and nothing drawn."""
        #: Entries received so far, and the newest one.
        self.count = 0
        self.latest: Mapping[str, Any] | None = None
        #: The schedule of the hot path: :meth:`due` is called when ``count`` reaches
        #: ``due_count`` or ``clock()`` reaches ``due_time``.
        self.due_count = 1
        self.due_time = -math.inf
        self._lock = threading.Lock()  # one thread draws at a time
        self._output_info: tuple[Any, bool, str] | None = None  # stream, terminal?, ellipsis
        self._drawn_on: Any = None  # the terminal stream whose status line is not ended yet
        self._status = ""  # the status line last drawn
        self._shown = 0  # the count last shown
        self._next_line_count = self.every or _NEVER
        self._next_line_time: float | None = None
        self._first: tuple[float, int] | None = None  # clock and count at the first draw
        self._last: tuple[float, int] = (0.0, 0)  # clock and count at the last rate
        self._rate: float | None = None

    def _after_fork_in_child(self) -> None:
        # The parent's entries and status line are the parent's to show: a child
        # starts from none, and prints nothing at exit unless it logs entries itself.
        self._start()

    # -- the hot path ------------------------------------------------------------------

    def add_entry(self, entry: Mapping[str, Any]) -> None:
        """Take one entry (kept, not copied) and draw if a line is due. Never raises.

        These steps are the whole per-entry cost, and public so that a caller
        that must save the cost of this call may run them inline, as
        :class:`mimir.Logger` does: ``latest = entry``, ``count += 1``, and
        :meth:`due` if ``count >= due_count or clock() >= due_time``.
        """
        self.latest = entry
        count = self.count + 1
        self.count = count
        if count >= self.due_count or self.clock() >= self.due_time:
            self.due()

    def emit(self, record: logging.LogRecord) -> None:
        """Take an entry (a mapping message); print any other record at once."""
        try:
            msg = record.msg
            if type(msg) is dict or isinstance(msg, Mapping):
                self.add_entry(msg)
            else:
                self._message(record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    # -- drawing -------------------------------------------------------------------------

    def due(self) -> None:
        """Draw or print what is due now (the hot path calls it when the schedule says so)."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is drawing at this moment
        try:
            self._update(self.clock())
        except RecursionError:
            raise
        except Exception:
            self._failed()
        finally:
            self._lock.release()

    def _update(self, now: float) -> None:
        """Draw or print what is due at ``now`` and plan the next time (lock held)."""
        if self.closed_by_reader:
            self.due_count, self.due_time = _NEVER, math.inf
            return
        self._closed = False  # entries after close() start a new line, ended at the next close
        if self._first is None:
            self._first = self._last = (now, self.count)
        stream, terminal, ellipsis = self._output()
        if stream is None:  # no sys.stdout (pythonw): look again later
            self.due_count, self.due_time = _NEVER, now + 1.0
            return
        if terminal:
            self._draw(stream, ellipsis, now, final=False)
            self.due_count, self.due_time = _NEVER, now + self.interval
        else:
            every, seconds = self.every, self.every_seconds
            if self._next_line_time is None:
                self._next_line_time = now + seconds
            count = self.count
            if (every and count >= self._next_line_count) or (
                seconds and now >= self._next_line_time and count > self._shown
            ):
                self._print_line(stream, ellipsis, now, final=False)
                self._next_line_time = now + seconds
            if every:
                self._next_line_count = (count // every + 1) * every
            self.due_count = self._next_line_count if every else _NEVER
            self.due_time = self._next_line_time if seconds else math.inf
        self._backoff = 0.0

    def _output(self) -> tuple[Any, bool, str]:
        """The stream to write to, whether it is a terminal, and its ellipsis."""
        stream = self.stream if self.stream is not None else sys.stdout
        info = self._output_info
        if info is None or info[0] is not stream:
            with contextlib.suppress(Exception):  # that stream may be gone: no matter
                self._end_status()  # a status line left on another stream
            info = self._output_info = (stream, _is_terminal(stream), _ellipsis(stream))
        return info

    def _end_status(self) -> None:
        """End the status line drawn last, if any, with a newline."""
        drawn, self._drawn_on = self._drawn_on, None
        if drawn is not None:
            drawn.write("\n")
            drawn.flush()

    def _text(self, now: float, final: bool, smooth: bool, limit: float) -> str:
        """The status: count, rate and the newest entry's values."""
        count = self.count
        first_time, first_count = self._first or (now, count)
        if final:
            elapsed = now - first_time  # the average since the first entry, if any came after
            rate = (count - first_count) / elapsed if elapsed > 0 and count > first_count else None
        else:
            last_time, last_count = self._last
            elapsed = now - last_time
            if elapsed > 0:
                recent = (count - last_count) / elapsed
                if smooth and self._rate is not None:
                    recent = _SMOOTHING * recent + (1 - _SMOOTHING) * self._rate
                self._rate = recent
                self._last = (now, count)
            rate = self._rate
        parts = ["1 entry" if count == 1 else f"{count:,} entries"]
        if rate is not None:
            parts.append(_per_second(rate))
        latest = self.latest
        if latest is not None:
            parts += _fields(latest, limit)
        return "  ".join(parts)

    def _draw(self, stream: Any, ellipsis: str, now: float, final: bool) -> None:
        """Redraw the status line in place."""
        width = max((self.width or _columns(stream)) - 1, 1)  # the last column would wrap
        line = _fit(self._text(now, final, smooth=True, limit=width), width, ellipsis)
        stream.write("\r" + line + _CLEAR_TO_END)
        stream.flush()
        self._drawn_on = stream
        self._status = line
        self._shown = self.count

    def _print_line(self, stream: Any, ellipsis: str, now: float, final: bool) -> None:
        """Print the status as one ordinary line."""
        width = self.width
        text = self._text(now, final, smooth=False, limit=width or math.inf)
        stream.write((_fit(text, width, ellipsis) if width else text) + "\n")
        stream.flush()
        self._shown = self.count

    def _message(self, record: logging.LogRecord) -> None:
        """Print a text record in full, above the status line."""
        text = self.format(record)
        with self._lock:
            if self.closed_by_reader:
                return
            stream, terminal, _ = self._output()
            if stream is None:
                return
            if terminal and self._drawn_on is stream:
                text = text.replace("\n", _CLEAR_TO_END + "\n")
                stream.write(f"\r{text}{_CLEAR_TO_END}\n{self._status}{_CLEAR_TO_END}")
            else:
                stream.write(text + "\n")
            stream.flush()

    # -- failures and the end ------------------------------------------------------------

    def _failed(self) -> None:
        """A line could not be written: report it and pause drawing (lock held)."""
        error = sys.exc_info()[1]
        self._drawn_on = None  # its end cannot be written either
        self._backoff = min(max(self._backoff * 2, _FIRST_BACKOFF), _MAX_BACKOFF)
        self.report(
            f"{type(self).__name__} could not write its progress line "
            f"({type(error).__name__}: {error}); trying again in {self._backoff:g} s"
        )
        if not self.closed_by_reader:
            self.due_count, self.due_time = _NEVER, self.clock() + self._backoff

    def handleError(self, record: logging.LogRecord | None) -> None:
        """Count the failure; on a broken pipe, stop printing with one note."""
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            self.failures += 1
            if not self.closed_by_reader:
                self.closed_by_reader = True
                self.due_count, self.due_time = _NEVER, math.inf
                if sys.stderr is not None:
                    try:
                        sys.stderr.write("mimir: the progress output was closed; it stopped\n")
                    except Exception:
                        pass
            return
        super().handleError(record)

    def close(self) -> None:
        """Draw the status a last time and end it with a newline (elsewhere: a last line).

        Idempotent; entries that still come after it start a new status line.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._finish()
                except RecursionError:
                    raise
                except Exception:
                    self._drawn_on = None
                    self.report(f"{type(self).__name__} could not write its last line")
                if not self.closed_by_reader:
                    self.due_count = 0  # the next entry, if any, reopens
        super().close()

    def _finish(self) -> None:
        if self.count == 0 or self.closed_by_reader:
            return
        stream, terminal, ellipsis = self._output()
        if stream is None:
            return
        now = self.clock()
        if terminal:
            self._draw(stream, ellipsis, now, final=True)
            self._end_status()
        elif self.count > self._shown:
            self._print_line(stream, ellipsis, now, final=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.count:,} entries>"
