"""Mímir: logging for machine-learning experiments, built on the standard library's logging.

Log dicts of metrics with :class:`mimir.Logger`, or attach Mímir's handlers and
formatter to any :mod:`logging` set-up (``logging.config.dictConfig`` included).

The ZeroMQ classes (:class:`ZMQStreamHandler`, :class:`ZMQForwardHandler`,
:class:`Collector`) are loaded on first use, so ``import mimir`` imports neither
pyzmq nor Bokeh; ``"class": "mimir.ZMQForwardHandler"`` works in dictConfig.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mimir import _moved, serialization
from mimir._json import SerializationError
from mimir.console import ProgressHandler
from mimir.files import GzlogFileHandler, JSONLFileHandler
from mimir.formatter import JSONFormatter
from mimir.logger import Logger
from mimir.memory import MemoryHandler
from mimir.reader import DamagedLogError, MalformedLogError, PartialReadWarning, load
from mimir.reader import open_log as open  # noqa: F401  (public, not in __all__)

if TYPE_CHECKING:
    from mimir.frame import to_frame
    from mimir.stream.collector import Collector
    from mimir.stream.forwarder import ZMQForwardHandler
    from mimir.stream.publisher import ZMQStreamHandler

__version__ = "0.1.0"

_moved.install()  # the module paths of 0.1 (mimir.zmq_handler ...) keep working, deprecated

# Public names loaded on first access (PEP 562): name -> module defining it.
_LAZY = {
    "Collector": "mimir.stream.collector",
    "ZMQForwardHandler": "mimir.stream.forwarder",
    "ZMQStreamHandler": "mimir.stream.publisher",
    "to_frame": "mimir.frame",
}

# mimir.open stays available, but `from mimir import *` must not shadow the builtin.
__all__ = [
    "Collector",
    "DamagedLogError",
    "GzlogFileHandler",
    "JSONFormatter",
    "JSONLFileHandler",
    "Logger",
    "MalformedLogError",
    "MemoryHandler",
    "PartialReadWarning",
    "ProgressHandler",
    "SerializationError",
    "ZMQForwardHandler",
    "ZMQStreamHandler",
    "__version__",
    "load",
    "serialization",
    "to_frame",
]


def __getattr__(name: str) -> Any:
    """Import the module of a lazily loaded public name on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mimir' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily loaded ones included."""
    return sorted({*globals(), *_LAZY})
