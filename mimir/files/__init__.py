"""File handlers: entries as JSON lines on disk, plain or compressed.

* :mod:`mimir.files.plain`: :class:`~mimir.JSONLFileHandler`, a plain ``.jsonl``
  file written by a background thread.
* :mod:`mimir.files.compressed`: :class:`~mimir.GzlogFileHandler`, a crash-safe
  gzip file in the gzlog format (:mod:`mimir.gzlog`), written by a writer process
  so that compression never stalls the training loop.
* ``mimir.files._sink``: the write path of a gzlog in this process, and the sink
  interface (append, sync, compress, close, counts) a handler hands batches to.
* ``mimir.files._writer_process``: the writer process, which runs that sink, and its
  client, which offers the same interface through a pipe.

Both handlers build on the core's buffered handler (``mimir._buffered``); neither
imports pyzmq or Bokeh.
"""

from __future__ import annotations

from mimir.files.compressed import GzlogFileHandler
from mimir.files.plain import JSONLFileHandler

__all__ = ["GzlogFileHandler", "JSONLFileHandler"]
