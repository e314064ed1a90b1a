"""``mimir.Logger``: one object that sets up a stdlib logger with Mímir's handlers."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mimir._buffered import BufferedHandler
from mimir._handler import Handler
from mimir._json import orjson
from mimir._record import EntryRecordFactory
from mimir.console import ConsoleFormatter, ConsoleHandler, ProgressHandler
from mimir.files.compressed import GzlogFileHandler
from mimir.files.plain import JSONLFileHandler
from mimir.formatter import JSONFormatter
from mimir.memory import MemoryHandler

if TYPE_CHECKING:  # imported when stream=True only: pyzmq is optional
    from mimir.stream.publisher import ZMQStreamHandler

__all__ = ["Logger"]


class _Console:
    """Default of ``formatter=``: print entries readably to standard output."""

    def __repr__(self) -> str:
        return "<console>"


_CONSOLE = _Console()

# formatter="progress": the compact console of mimir.console.ProgressHandler.
_PROGRESS = "progress"


class _WallTimeFormatter(JSONFormatter):
    """A :class:`~mimir.JSONFormatter` that adds when each record was made (``wall_time=``).

    The time is the record's ``created`` (seconds since the epoch, a float), under
    ``key``, unless the entry already has that key: then the entry is left as it is.
    """

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wall_time_key = key

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: Mapping[str, Any],
    ) -> None:
        """The fields of :class:`~mimir.JSONFormatter`, then the time if the key is free."""
        super().add_fields(log_data, record, message_dict)
        log_data.setdefault(self.wall_time_key, record.created)


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

        with mimir.Logger("run.jsonl", maxlen=100) as logger:
            logger.log({"iteration": 0, "training_error": 0.5})
            logger[-1]["training_error"]  # 0.5

    Arguments (all but ``filename`` keyword-only):
        filename: write entries to this file as line-delimited JSON: compressed,
            crash-safe gzlog when the name ends in ``.gz`` (:class:`~mimir.GzlogFileHandler`),
            plain otherwise (:class:`~mimir.JSONLFileHandler`).
        name: the stdlib logger used is ``mimir.<name>``, which other code can also
            reach with :func:`logging.getLogger`. Without a name the logger is
            private to this object (not registered with :mod:`logging`), so that
            closing it leaves nothing behind.
        maxlen: keep the last ``maxlen`` entries in memory (:class:`~mimir.MemoryHandler`),
            read with ``logger[-1]``, slices, ``len(logger)`` and iteration; 0 keeps
            none, ``None`` keeps every entry (memory then grows with the run).
        stream: publish every entry over ZeroMQ (:class:`~mimir.stream.publisher.ZMQStreamHandler`)
            on ``stream_address``, for ``mimir tail``, :mod:`mimir.stream` clients and
            live plots. Needs ``pip install "mimir-logger[zmq]"``.
        stream_maxlen: replay the last ``stream_maxlen`` entries to clients that join
            late, on ``replay_address``; 0 replays nothing.
        stream_address, replay_address: where the stream and the replay are bound
            (loopback by default; port 0 picks a free port, see ``.stream.address``).
        formatter: console output. By default each entry is printed readably to
            standard output; ``None`` prints nothing; a :class:`logging.Formatter` or
            a callable ``entry -> str`` changes how entries are printed.
            ``"progress"`` keeps up with a training loop
            (:class:`~mimir.ProgressHandler`): in a terminal, one status line
            redrawn at most 10 times a second with the count, the rate and the newest
            values; elsewhere a line every 10,000 entries or 10 seconds.
        wall_time: add to every entry the wall-clock time at which it was logged, as
            seconds since the epoch (a float, as :func:`time.time`), under the key
            ``"wall_time"`` (or under the key given as a string, ``wall_time="t"``), in
            memory, files and streams; plots can use it as an x axis of dates or, less
            the first value, of elapsed time. The console does not show it. An entry
            that already has the key keeps its own value. Off by default: entries are
            then exactly what was logged.
        lock_timeout: for a compressed log, how many seconds to wait at most for its
            lock while another process holds it (``None``: wait, with a warning that
            names the holder after 2 s); then :class:`~mimir.gzlog.GzlogError`.
        json_kwargs: options of :class:`~mimir.JSONFormatter` for the files and
            streams: the ``json.dumps`` ones (``default=``, ``sort_keys=``,
            ``ensure_ascii=`` ...) and python-json-logger's. Any other name is a
            :class:`TypeError` that lists the valid ones.

    The stdlib logger is at ``.logger``; it does not propagate to the root logger.
    Handlers can be added to it, removed or reconfigured like those of any
    logger, by code or by :func:`logging.config.dictConfig`: every entry goes to
    the handlers attached at that moment. Its level, filters and
    :func:`logging.disable` apply as usual, but not its ``disabled`` flag: that is
    what :func:`~logging.config.dictConfig` and :func:`~logging.config.fileConfig`
    set on every logger they do not name (``disable_existing_loggers``), so a
    library configuring its own logging at start-up would silence the run. The
    next entry logged through this object clears it. :meth:`close` removes and closes the
    handlers in :attr:`handlers`: those this object made, and any you append.
    Two Loggers given the same name share that stdlib logger, and so each
    other's handlers.

    A constructor that fails leaves nothing behind: whatever it had opened is
    closed, and the stdlib logger is not touched.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        maxlen: int | None = 0,
        stream: bool = False,
        stream_maxlen: int = 0,
        formatter: Any = _CONSOLE,
        stream_address: str = "tcp://127.0.0.1:5557",
        replay_address: str = "tcp://127.0.0.1:5556",
        lock_timeout: float | None = None,
        wall_time: bool | str = False,
        **json_kwargs: Any,
    ) -> None:
        _check_json_kwargs(json_kwargs)
        wall_time_key = _wall_time_key(wall_time)
        if stream_maxlen and not stream:
            raise ValueError(f"stream_maxlen={stream_maxlen} needs stream=True")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        console_formatter = _console_formatter(formatter)
        self.json_formatter = (
            JSONFormatter(**json_kwargs)
            if wall_time_key is None
            else _WallTimeFormatter(wall_time_key, **json_kwargs)
        )
        #: The handlers this object made, in order (memory, stream, file, console);
        #: :meth:`flush` and :meth:`close` act on every handler in this list.
        self.handlers: list[logging.Handler] = []
        self.memory: MemoryHandler | None = None
        self.stream: ZMQStreamHandler | None = None
        self._closed = False
        line_handlers: list[BufferedHandler | ZMQStreamHandler] = []
        try:
            if maxlen is None or maxlen:
                self.memory = self._own(MemoryHandler(maxlen))
            if stream:  # before the file: a port in use then leaves no new file behind
                from mimir.stream.publisher import ZMQStreamHandler

                self.stream = self._own(
                    ZMQStreamHandler(stream_address, replay_address, replay=stream_maxlen)
                )
                line_handlers.append(self.stream)
            if filename is not None and os.fspath(filename).endswith(".gz"):
                line_handlers.append(
                    self._own(GzlogFileHandler(filename, lock_timeout=lock_timeout))
                )
            elif filename is not None:
                line_handlers.append(self._own(JSONLFileHandler(filename)))
            progress: ProgressHandler | None = None
            if console_formatter is _PROGRESS:
                progress = ProgressHandler()
                progress.on_change = self._handler_changed
                self.handlers.append(progress)
            elif console_formatter is not None:
                console = ConsoleHandler()
                console.setFormatter(console_formatter)
                self.handlers.append(console)
        except BaseException:
            self._closed = True
            with contextlib.suppress(Exception):  # the first error is the one to see
                _close_all(self.handlers)
            raise
        # Only now, with everything open, is the stdlib logger touched.
        if name is None:
            self.logger: logging.Logger = _PrivateLogger("mimir")
        else:
            self.logger = logging.getLogger(f"mimir.{name}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        for handler in self.handlers:
            self.logger.addHandler(handler)
        self._make_record = EntryRecordFactory(self.logger.name, logging.INFO)
        # Entries skip LogRecord creation while the set-up is what this object built:
        # no console but the progress one, a formatter that adds nothing. See log()
        # and _direct_path().
        self._direct: Callable[[Mapping[str, Any]], bool] | None = None
        if (console_formatter is None or progress is not None) and _adds_nothing(
            self.json_formatter
        ):
            self._direct = self._direct_path(tuple(self.handlers), tuple(line_handlers), progress)

    def _own(self, handler: Any) -> Any:
        handler.setFormatter(self.json_formatter)
        handler.on_change = self._handler_changed
        self.handlers.append(handler)
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
            if logger.disabled:
                logger.disabled = False  # by another configuration: see the class docstring
            if logger.isEnabledFor(logging.INFO):
                logger.handle(self._make_record(entry))

    def _direct_path(
        self,
        attached: tuple[logging.Handler, ...],
        line_handlers: tuple[BufferedHandler | ZMQStreamHandler, ...],
        progress: ProgressHandler | None = None,
    ) -> Callable[[Mapping[str, Any]], bool]:
        """The function that hands an entry straight to the handlers (see log()).

        While the stdlib logger holds exactly the handlers this object attached, the
        logger has no filter and does not propagate, and none of these handlers got a
        filter, a level or a formatter (they tell :meth:`_handler_changed`), the
        result is the same as logger.handle() would give: building and dispatching a
        LogRecord costs more than everything else a logging call does, and with
        nothing else attached nobody can observe the record. Otherwise it does
        nothing and returns False.

        The handlers are compared with ``attached``, a snapshot no one else can
        reach (by identity, and length), never with :attr:`handlers`, which users
        append to. The logger's handlers, filters, propagation, level and
        ``disabled``, and :func:`logging.disable`, are read afresh at every entry, so
        a change made by any route takes effect at the next one.
        """
        logger = self.logger
        expected = list(attached)  # compared with ==: identity of each, then length
        manager = logger.manager
        info = logging.INFO
        formatter = self.json_formatter
        remember = self.memory.add_entry if self.memory is not None else None
        stamp = formatter.wall_time_key if isinstance(formatter, _WallTimeFormatter) else None
        copy = remember is not None or stamp is not None
        wall_clock = time.time
        clock = progress.clock if progress is not None else None
        handlers = line_handlers
        adders = tuple(handler.add_line for handler in handlers)
        encode_line = formatter.encoder.encode_line
        fast = formatter.encoder.orjson_line_arguments()
        dumps = orjson.dumps if fast is not None else None
        default, option = fast if fast is not None else (None, 0)
        make_record = self._make_record

        def log_direct(entry: Mapping[str, Any]) -> bool:
            if logger.handlers != expected or logger.filters or logger.propagate:
                return False
            quick = 0 < logger.level <= info and manager.disable < info and not logger.disabled
            if not quick:
                if logger.disabled:
                    logger.disabled = False  # as in log()
                if not logger.isEnabledFor(info):
                    return True  # below the level: nothing to do, as logger.handle() would
            if progress is not None:  # ProgressHandler.add_entry(entry), inline: O(1)
                progress.latest = entry
                count = progress.count + 1
                progress.count = count
                if count >= progress.due_count or clock() >= progress.due_time:
                    progress.due()
            if copy:
                entry = dict(entry)  # as the formatter would build: the caller's stays as is
                if stamp is not None and stamp not in entry:
                    entry[stamp] = wall_clock()
                if remember is not None:
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
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            if isinstance(handler, Handler):
                handler.on_change = None
        _close_all(self.handlers)

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.handlers)} handlers"
        return f"<mimir.Logger {self.logger.name!r} ({state})>"


def _close_all(handlers: list[logging.Handler]) -> None:
    """Flush and close every handler; then raise the first error, if any."""
    errors = []
    for handler in handlers:
        try:
            handler.flush()
            handler.close()
        except Exception as error:  # close the others, then report the first
            errors.append(error)
    if errors:
        raise errors[0]


def _console_formatter(formatter: Any) -> logging.Formatter | str | None:
    """The formatter of the console handler that ``formatter=`` asks for, or None.

    ``"progress"`` asks for the progress console instead (returned as is).
    """
    if formatter is None:
        return None
    if formatter is _CONSOLE:
        return ConsoleFormatter()
    if isinstance(formatter, str):
        if formatter == _PROGRESS:
            return _PROGRESS
        raise ValueError(
            f"formatter={formatter!r} is not a console style; the only one is 'progress' "
            "(a status line for training loops)"
        )
    if isinstance(formatter, logging.Formatter):
        return formatter
    if callable(formatter):
        return ConsoleFormatter(render=formatter)
    raise TypeError(
        "formatter= takes None, 'progress', a logging.Formatter, or a callable entry -> str; "
        f"got {type(formatter).__name__}"
    )


def _adds_nothing(formatter: JSONFormatter) -> bool:
    """Whether ``formatter`` writes a structured entry as logged (``wall_time`` aside).

    The direct path adds the wall-clock time itself, as :class:`_WallTimeFormatter` would.
    """
    return type(formatter) in (JSONFormatter, _WallTimeFormatter) and formatter.plain


def _wall_time_key(wall_time: Any) -> str | None:
    """The key ``wall_time=`` asks for, or None; refuse anything but a bool or a key."""
    if wall_time is True:
        return "wall_time"
    if wall_time is False or wall_time is None:
        return None
    if isinstance(wall_time, str) and wall_time:
        return wall_time
    raise TypeError(
        "wall_time= takes True (the key 'wall_time'), False, or a non-empty string naming "
        f"the key; got {wall_time!r}"
    )


def _keyword_names(function: Callable[..., Any]) -> list[str]:
    """The parameters of ``function`` that can be passed by keyword, in order."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(function).parameters.values()
    return [p.name for p in parameters if p.kind in kinds and p.name != "self"]


def _formatter_options() -> list[str]:
    """The keyword arguments :class:`~mimir.JSONFormatter` accepts, read from its classes.

    Each ``__init__`` along the MRO that passes ``**kwargs`` on adds its base's,
    so options added to the formatter or to python-json-logger are found too.
    """
    names: list[str] = []
    for klass in JSONFormatter.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        names += [name for name in _keyword_names(init) if name not in names]
        if not any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(init).parameters.values()
        ):
            break
    return names


def _check_json_kwargs(json_kwargs: Mapping[str, Any]) -> None:
    """Raise a TypeError naming each keyword argument neither Logger nor the formatter takes."""
    if not json_kwargs:
        return
    options = _formatter_options()
    unknown = [key for key in json_kwargs if key not in options]
    if not unknown:
        return
    own = _keyword_names(Logger.__init__)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, own + options, n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    plural = "s" if len(unknown) > 1 else ""
    raise TypeError(
        f"Logger() got an unexpected keyword argument{plural} {', '.join(hints)}; "
        f"it takes {', '.join(own)}, and JSONFormatter's options {', '.join(options)}"
    )
