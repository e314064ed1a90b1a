"""Mímir: logging for machine-learning experiments, built on the standard library's logging.

Log dicts of metrics with :class:`mimir.Logger`, or attach Mímir's handlers and
formatter to any :mod:`logging` set-up (``logging.config.dictConfig`` included).
"""

from mimir import serialization
from mimir._json import SerializationError
from mimir.formatter import JSONFormatter
from mimir.gzlog_handler import GzlogFileHandler
from mimir.jsonl import JSONLFileHandler
from mimir.logger import Logger
from mimir.memory import MemoryHandler
from mimir.reader import DamagedLogError, MalformedLogError, PartialReadWarning, load
from mimir.reader import open_log as open

__version__ = "0.1.0"

__all__ = [
    "DamagedLogError",
    "GzlogFileHandler",
    "JSONFormatter",
    "JSONLFileHandler",
    "Logger",
    "MalformedLogError",
    "MemoryHandler",
    "PartialReadWarning",
    "SerializationError",
    "__version__",
    "load",
    "open",
    "serialization",
]
