"""Human-readable console output of entries."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ConsoleFormatter", "render_entry"]

_INDENT = "  "


def _scalar(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return repr(value)


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
