"""``mimir.Logger``: one object that sets up a stdlib logger with Mímir's handlers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mimir._buffered import BufferedHandler
from mimir._handler import Handler
from mimir._json import orjson
from mimir._record import EntryRecordFactory
from mimir.console import ConsoleFormatter, ConsoleHandler
from mimir.formatter import JSONFormatter
from mimir.gzlog_handler import GzlogFileHandler
from mimir.jsonl import JSONLFileHandler
from mimir.memory import MemoryHandler
from mimir.zmq_handler import ZMQStreamHandler

__all__ = ["Logger"]


class _Console:
    """Default of ``formatter=``: print entries readably to standard output."""

    def __repr__(self) -> str:
        return "<console>"


_CONSOLE = _Console()


class _PrivateLogger(logging.Logger):
    """A logger unknown to :mod:`logging`'s manager (so nothing of it outlives its owner).

    The manager clears the level cache of the loggers it knows when levels change
    or :func:`logging.disable` is called; this one therefore does not cache.
    """

    def isEnabledFor(self, level: int) -> bool:
        """Whether a record of ``level`` would be handled, read afresh each time."""
        if self.disabled or self.manager.disable >= level:
            return False
        return level >= (self.level or self.getEffectiveLevel())


class Logger:
    """Log entries (dicts of metrics) to memory, the console and a file.

    Example::

        with mimir.Logger(filename="run.jsonl", maxlen=100) as logger:
            logger.log({"iteration": 0, "training_error": 0.5})
            logger[-1]["training_error"]  # 0.5

    Arguments:
        name: the stdlib logger used is ``mimir.<name>``, which other code can also
            reach with :func:`logging.getLogger`. Without a name the logger is
            private to this object (not registered with :mod:`logging`), so that
            closing it leaves nothing behind.
        filename: write entries to this file as line-delimited JSON: compressed,
            crash-safe gzlog when the name ends in ``.gz`` (:class:`~mimir.GzlogFileHandler`),
            plain otherwise (:class:`~mimir.JSONLFileHandler`).
        maxlen: keep the last ``maxlen`` entries in memory (:class:`~mimir.MemoryHandler`),
            read with ``logger[-1]``, slices, ``len(logger)`` and iteration.
        stream: publish every entry over ZeroMQ (:class:`~mimir.zmq_handler.ZMQStreamHandler`)
            on ``stream_address``, for ``mimir tail``, :mod:`mimir.stream` clients and
            live plots. Needs ``pip install "mimir-logger[zmq]"``.
        stream_maxlen: replay the last ``stream_maxlen`` entries to clients that join
            late, on ``replay_address``; 0 replays nothing.
        stream_address, replay_address: where the stream and the replay are bound
            (loopback by default; port 0 picks a free port, see ``.stream.address``).
        formatter: console output. By default each entry is printed readably to
            standard output; ``None`` prints nothing; a :class:`logging.Formatter` or
            a callable ``entry -> str`` changes how entries are printed.
        lock_timeout: for a compressed log, how many seconds to wait at most for its
            lock while another process holds it (``None``: wait, with a warning that
            names the holder after 2 s); then :class:`~mimir.gzlog.GzlogError`.
        json_kwargs: ``json.dumps`` options for the files and streams
            (``default=``, ``sort_keys=``, ``ensure_ascii=`` ...), see
            :class:`~mimir.JSONFormatter`.

    The stdlib logger is at ``.logger``; it does not propagate to the root logger.
    Its handlers are removed and closed by :meth:`close`. Two Loggers given the
    same name share that stdlib logger, and so each other's handlers.
    """

    def __init__(
        self,
        name: str | None = None,
        filename: str | os.PathLike[str] | None = None,
        maxlen: int = 0,
        stream: bool = False,
        stream_maxlen: int = 0,
        formatter: Any = _CONSOLE,
        stream_address: str = "tcp://127.0.0.1:5557",
        replay_address: str = "tcp://127.0.0.1:5556",
        lock_timeout: float | None = None,
        **json_kwargs: Any,
    ) -> None:
        if stream_maxlen and not stream:
            raise ValueError(f"stream_maxlen={stream_maxlen} needs stream=True")
        self.json_formatter = JSONFormatter(**json_kwargs)
        if name is None:
            self.logger = _PrivateLogger("mimir")
        else:
            self.logger = logging.getLogger(f"mimir.{name}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self._make_record = EntryRecordFactory(self.logger.name, logging.INFO)
        self.handlers: list[logging.Handler] = []
        self.memory: MemoryHandler | None = None
        self.stream: ZMQStreamHandler | None = None
        self._line_handlers: list[BufferedHandler | ZMQStreamHandler] = []
        self._closed = False
        try:
            if maxlen:
                self.memory = self._add(MemoryHandler(maxlen))
            if filename is not None and os.fspath(filename).endswith(".gz"):
                self._line_handlers.append(
                    self._add(GzlogFileHandler(filename, lock_timeout=lock_timeout))
                )
            elif filename is not None:
                self._line_handlers.append(self._add(JSONLFileHandler(filename)))
            if stream:
                self.stream = self._add(
                    ZMQStreamHandler(stream_address, replay_address, replay=stream_maxlen)
                )
                self._line_handlers.append(self.stream)
            console = _console_handler(formatter)
            if console is not None:
                self.handlers.append(console)
                self.logger.addHandler(console)
        except BaseException:
            self.close()
            raise
        # Entries skip LogRecord creation while the set-up is exactly what this object
        # built: its own Mímir handlers, unchanged, no console, a formatter that adds
        # nothing. See log().
        self._direct: Callable[[Mapping[str, Any]], bool] | None = None
        if (
            console is None
            and type(self.json_formatter) is JSONFormatter
            and self.json_formatter._plain
        ):
            self._direct = self._direct_path()

    def _add(self, handler: Any) -> Any:
        handler.setFormatter(self.json_formatter)
        handler.on_change = self._handler_changed
        self.handlers.append(handler)
        self.logger.addHandler(handler)
        return handler

    def log(self, entry: Mapping[str, Any]) -> None:
        """Log one entry: a mapping such as ``{"iteration": 7, "training_error": 0.31}``."""
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise TypeError(
                f"Logger.log() takes a mapping such as {{'iteration': 7, 'loss': 0.31}}, "
                f"got {type(entry).__name__}: {entry!r:.80}"
            )
        direct = self._direct
        if direct is None or not direct(entry):
            logger = self.logger
            if logger.isEnabledFor(logging.INFO):
                logger.handle(self._make_record(entry))

    def _direct_path(self) -> Callable[[Mapping[str, Any]], bool]:
        """The function that hands an entry straight to the handlers (see log()).

        While the stdlib logger holds exactly this object's handlers, has no filters
        and is enabled for INFO, the result is the same as logger.handle() would
        give: building and dispatching a LogRecord costs more than everything else a
        logging call does, and with nothing else attached nobody can observe the
        record. Otherwise it does nothing and returns False. Everything it needs is
        bound once here, so that an entry costs little more than its JSON encoding.
        """
        logger = self.logger
        own_handlers = self.handlers
        manager = logger.manager
        info = logging.INFO
        remember = self.memory.add_entry if self.memory is not None else None
        handlers = tuple(self._line_handlers)
        adders = tuple(handler.add_line for handler in handlers)
        encode_line = self.json_formatter.encoder.encode_line
        fast = self.json_formatter.encoder.orjson_line_arguments()
        dumps = orjson.dumps if fast is not None else None
        default, option = fast if fast is not None else (None, 0)
        make_record = self._make_record

        def log_direct(entry: Mapping[str, Any]) -> bool:
            if logger.handlers != own_handlers or logger.filters:
                return False
            quick = 0 < logger.level <= info and manager.disable < info and not logger.disabled
            if not quick and not logger.isEnabledFor(info):
                return True  # disabled: nothing to do, as logger.handle() would
            if remember is not None:
                entry = dict(entry)  # the ring keeps a copy, as the formatter would build
                remember(entry)
            if not adders:
                return True
            line = None
            if dumps is not None:
                try:
                    line = dumps(entry, default=default, option=option)
                except (TypeError, RecursionError):
                    pass
            if line is None or b"null" in line:  # NaN, big integers...: the encoder decides
                try:
                    line = encode_line(entry)
                except RecursionError:
                    raise
                except Exception:
                    record = make_record(entry)
                    for handler in handlers:
                        handler.handleError(record)
                    return True
            for add_line in adders:
                try:
                    add_line(line)
                except RecursionError:
                    raise
                except Exception:
                    handlers[adders.index(add_line)].handleError(make_record(entry))
            return True

        return log_direct

    def _handler_changed(self) -> None:
        """One of this object's handlers got a filter, level or formatter: use records."""
        self._direct = None

    # -- the memory ring, as a sequence -------------------------------------------

    def _ring(self) -> MemoryHandler:
        if self.memory is None:
            raise IndexError(
                "this Logger keeps no entries in memory; pass maxlen=N to keep the last N"
            )
        return self.memory

    def __getitem__(self, index: int | slice) -> Any:
        return self._ring()[index]

    def __len__(self) -> int:
        return 0 if self.memory is None else len(self.memory)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(()) if self.memory is None else iter(self.memory)

    # -- life cycle -----------------------------------------------------------------

    def flush(self) -> None:
        """Write out everything buffered by the handlers."""
        for handler in self.handlers:
            handler.flush()

    def close(self) -> None:
        """Flush and close every handler and detach it from the stdlib logger. Idempotent."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            if isinstance(handler, Handler):
                handler.on_change = None
            try:
                handler.flush()
                handler.close()
            except Exception as error:  # close the others, then report the first
                errors.append(error)
        if errors:
            raise errors[0]

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.handlers)} handlers"
        return f"<mimir.Logger {self.logger.name!r} ({state})>"


def _console_handler(formatter: Any) -> logging.Handler | None:
    if formatter is None:
        return None
    if formatter is _CONSOLE:
        formatter = ConsoleFormatter()
    elif isinstance(formatter, logging.Formatter):
        pass
    elif callable(formatter):
        formatter = ConsoleFormatter(render=formatter)
    else:
        raise TypeError(
            "formatter= takes None, a logging.Formatter, or a callable entry -> str; "
            f"got {type(formatter).__name__}"
        )
    handler = ConsoleHandler()
    handler.setFormatter(formatter)
    return handler
