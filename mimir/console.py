"""Human-readable console output of entries."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pythonjsonlogger import defaults as _pjl

__all__ = ["ConsoleFormatter", "ConsoleHandler", "render_entry"]

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
