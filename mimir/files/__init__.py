"""File handlers: entries as JSON lines on disk, plain or compressed.

* :mod:`mimir.files.plain`: :class:`~mimir.JSONLFileHandler`, a plain ``.jsonl``
  file written by a background thread.
* :mod:`mimir.files.compressed`: :class:`~mimir.GzlogFileHandler`, a crash-safe
  gzip file in the gzlog format (:mod:`mimir.gzlog`), written by a writer process
  so that compression never stalls the training loop.
* ``mimir.files._writer_process``: that writer process and the pipe to it.

Both handlers build on the core's buffered handler (``mimir._buffered``); neither
imports pyzmq or Bokeh.
"""

from __future__ import annotations

from mimir.files.compressed import GzlogFileHandler
from mimir.files.plain import JSONLFileHandler

__all__ = ["GzlogFileHandler", "JSONLFileHandler"]
