"""The writer process behind :class:`~mimir.GzlogFileHandler`.

A thread that does file I/O gives up the GIL for every system call and must win it
back afterwards. While the training loop runs pure Python, each of those waits lasts
up to the interpreter's switch interval (5 ms by default), so a writer thread that
makes dozens of system calls per MiB (the fsyncs and state writes of every gzlog
append and compression) falls far behind a fast loop, and ``close()`` pays for the
backlog. The writer process has an interpreter of its own: the handler's thread only
hands it whole batches through a pipe, one system call per batch.

The process drives a :class:`~mimir.files._sink.GzlogSink`: the appends,
verification, retries, drop accounting and compression are those of the handler's
own write path (:class:`~mimir.files._sink.GzlogAppender`), and :class:`WriterProcess`
offers the logging process the same :class:`~mimir.files._sink.Sink` interface. It
ignores SIGINT and SIGTERM and runs in a session of its own: it stops when told to,
or when the pipe from the logging process closes (that process exited or was
killed), after writing everything it received.

Pipe protocol (private; both ends are this module):

* to the writer: frames of a 1-byte kind, a 4-byte little-endian length and a
  payload. ``D`` complete JSON lines; ``S`` (sync: write everything received),
  ``C`` (sync, then compress the stored tail) and ``Q`` (sync, compress, close,
  exit) carry a request number as ASCII digits.
* from the writer: one JSON object per line, each with ``"written": W`` and
  ``"dropped": D`` (entries this writer wrote and dropped so far, counting entries
  it had to give up at close as dropped): ``{"reply": N, ...}`` when request N is
  done (N = 0: the log is open and the writer ready); ``{"report": message,
  "detail": traceback, ...}`` for a failure, as it happens; ``{"warning": message,
  ...}`` for a warning (a damaged log moved aside, a recovery); or the counts alone,
  after each round of writes.

The handler's side counts entries it sent: whatever a writer that died had neither
confirmed written nor dropped is counted as dropped, so ``written + dropped`` always
accounts for every entry handed over.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from mimir.files._sink import GzlogSink
from mimir.gzlog import MAX_TAIL, GzlogLockWaitWarning, GzlogWarning

__all__ = ["WriterProcess", "WriterProcessError"]

_FRAME = struct.Struct("<cI")
_DATA, _SYNC, _COMPRESS, _QUIT = b"D", b"S", b"C", b"Q"
_PIPE_BYTES = 1 << 20  # pipe capacity asked for (Linux's default limit for users)
_MAX_FRAME = 1 << 30  # larger batches go as several frames, split at line ends
_COALESCE = 4 << 20  # at most this many bytes of waiting batches per gzlog commit
_HOLD_SECONDS = 0.05  # lines held back to fill the next append wait at most this long
#: The warnings a writer process passes on, by name.
_WARNINGS = {cls.__name__: cls for cls in (GzlogWarning, GzlogLockWaitWarning, RuntimeWarning)}
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from mimir.files._writer_process import main; main()"
)


class WriterProcessError(OSError):
    """A failure inside the writer process, or the process itself failed."""


class WriterProcess:
    """The handler's side of the writer process: a :class:`~mimir.files._sink.Sink`.

    Starts the process, hands it batches, asks it to sync, compress and close, and
    keeps its counts. Not thread-safe: the handler calls it under its I/O lock.
    ``report(message)`` is called inside an ``except`` block for every failure, the
    writer's own included.
    """

    def __init__(
        self,
        filename: str,
        *,
        flush_interval: float,
        max_buffer_bytes: int,
        compression_level: int,
        report: Callable[[str], None],
        lock_timeout: float | None = None,
    ) -> None:
        self.filename = filename
        self._args = [
            filename,
            repr(flush_interval),
            str(max_buffer_bytes),
            str(compression_level),
            repr(lock_timeout),
        ]
        self._report = report
        self._proc: subprocess.Popen[bytes] | None = None
        self._send_fd = -1
        self._reply_fd = -1
        self._replies = bytearray()
        self._requests = 0
        self.sent = 0  # entries handed to writer processes, all of them
        self.written = 0  # entries they confirmed written
        self.dropped = 0  # entries they dropped, gave up, or died without confirming
        self._counted = (0, 0)  # (written, dropped) before the current writer started
        self._start()

    # -- life cycle ---------------------------------------------------------------

    def _start(self) -> None:
        if not sys.executable:
            raise WriterProcessError("no Python executable to run the writer process")
        to_writer, self._send_fd = os.pipe()
        self._reply_fd, from_writer = os.pipe()
        try:
            set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)
            if set_pipe_size is not None:
                try:  # a batch of up to 1 MiB then goes in without waiting for the writer
                    fcntl.fcntl(self._send_fd, set_pipe_size, _PIPE_BYTES)
                except OSError:
                    pass
            package_root = os.path.dirname(
                os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            )
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, package_root, *self._args],
                stdin=to_writer,
                stdout=from_writer,
                close_fds=True,
                start_new_session=True,  # terminal signals (Ctrl-C) go to the logging process only
            )
        except BaseException:
            self._close_fds()
            raise
        finally:
            os.close(to_writer)
            os.close(from_writer)
        self._replies = bytearray()
        self._poll = select.poll()  # not select(): the fd may be beyond FD_SETSIZE
        self._poll.register(self._reply_fd, select.POLLIN)
        if not self._read_replies(until=0):  # the writer has opened the log
            code = self._proc.wait()
            self._close_fds()
            self._proc = None
            raise WriterProcessError(
                f"the writer process of {self.filename} could not start (exit status {code})"
            )

    def _died(self) -> None:
        """The writer is gone: reap it, report it, start a new one."""
        proc = self._proc
        code = proc.wait() if proc is not None else None
        self._close_fds()
        self._proc = None
        lost = self.sent - self.written - self.dropped
        self.dropped += lost
        self._counted = (self.written, self.dropped)
        try:
            raise WriterProcessError(
                f"the writer process of {self.filename} exited unexpectedly (exit status "
                f"{code}); {lost} entries it had received were not confirmed written and"
                " are counted as dropped (some of them may have reached the log)"
            )
        except WriterProcessError as error:
            self._report(str(error))
        self._start()

    def _close_fds(self) -> None:
        for fd in (self._send_fd, self._reply_fd):
            if fd >= 0:
                os.close(fd)
        self._send_fd = self._reply_fd = -1

    def close(self) -> None:
        """Have the writer write everything, compress its tail and exit; wait for it."""
        if self._proc is None:
            return  # none running (a forked child that logged nothing): nothing to close
        try:
            self.request(_QUIT)
        finally:
            proc = self._proc
            self._close_fds()
            self._proc = None
            if proc is not None:
                proc.wait()

    def forget(self) -> None:
        """In a forked child: drop the parent's pipes without touching the parent's writer."""
        self._close_fds()
        self._proc = None

    @property
    def pid(self) -> int | None:
        """The writer process's pid, or None once closed."""
        return self._proc.pid if self._proc is not None else None

    # -- talking to it ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Entries handed over and neither confirmed written nor dropped yet."""
        return self.sent - self.written - self.dropped

    def append(self, data: bytes | bytearray) -> None:
        """Hand complete lines to the writer (blocks only while its pipe is full)."""
        start = 0
        while len(data) - start > _MAX_FRAME:  # a frame's length field has 32 bits
            end = data.rfind(b"\n", start, start + _MAX_FRAME) + 1 or start + _MAX_FRAME
            with memoryview(data) as view:
                self._send(_DATA, view[start:end])
            self.sent += data.count(b"\n", start, end)  # counted in place, no copy
            start = end
        self._send(_DATA, data[start:] if start else data)
        self.sent += data.count(b"\n", start)
        if not self._read_replies(until=None):
            self._died()  # noticed early; what it had not written is reported lost

    def sync(self) -> None:
        """Return once the writer has written (or failed and reported) everything sent."""
        if self._proc is not None:
            self.request(_SYNC)

    def compress(self) -> None:
        """Sync, then have the writer compress the log's stored tail."""
        self.request(_COMPRESS)

    def request(self, kind: bytes) -> None:
        """Send request ``kind`` and wait for its reply (a dead writer is replaced once)."""
        for _ in range(2):
            self._requests += 1
            self._send(kind, str(self._requests).encode())
            if self._read_replies(until=self._requests):
                return
            self._died()
        raise WriterProcessError(f"the writer process of {self.filename} keeps exiting")

    def _send(self, kind: bytes, payload: bytes | bytearray | memoryview) -> None:
        for attempt in range(2):
            if self._proc is None:
                self._start()
            try:
                self._write_all(_FRAME.pack(kind, len(payload)), payload)
                return
            except BrokenPipeError as error:
                if attempt:
                    raise WriterProcessError(
                        f"the writer process of {self.filename} keeps exiting"
                    ) from error
                self._died()  # the whole frame goes to the new writer: nothing twice

    def _write_all(self, header: bytes, payload: bytes | bytearray | memoryview) -> None:
        with memoryview(payload) as view:
            parts: list[bytes | memoryview] = [header, view]
            while parts:
                wrote = os.writev(self._send_fd, parts)
                while parts and wrote >= len(parts[0]):
                    wrote -= len(parts[0])
                    parts.pop(0)
                if wrote:
                    parts[0] = memoryview(parts[0])[wrote:]

    def _read_replies(self, *, until: int | None) -> bool:
        """Act on what the writer said; with ``until``, wait for that reply.

        Returns False if the writer is gone (its pipe closed) before the reply came.
        """
        while not self._take_messages(until):
            if not self._poll.poll(0 if until is None else None):
                return True
            chunk = os.read(self._reply_fd, 1 << 16)
            if not chunk:
                return False
            self._replies += chunk
        return True

    def _take_messages(self, until: int | None) -> bool:
        """Act on every complete message received; whether reply ``until`` was among them."""
        found = False
        while (end := self._replies.find(b"\n")) >= 0:
            message: dict[str, Any] = json.loads(self._replies[:end])
            del self._replies[: end + 1]
            if "written" in message:
                self.written = self._counted[0] + message["written"]
                self.dropped = self._counted[1] + message["dropped"]
            if "report" in message:
                try:
                    raise WriterProcessError(message.get("detail") or message["report"])
                except WriterProcessError:
                    self._report(message["report"])
            elif "warning" in message:
                category = _WARNINGS.get(message.get("category"), UserWarning)
                warnings.warn(message["warning"], category, stacklevel=2)
            found = found or ("reply" in message and message["reply"] == until)
        return found


# -- the writer process -----------------------------------------------------------------


class _Frames:
    """Frames read from a pipe, complete ones only."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def read(self, timeout: float | None) -> list[tuple[bytes, bytes]]:
        """Every complete frame available, waiting up to ``timeout`` for the first."""
        frames = self._complete()
        wait = timeout
        size = 0
        while not self.eof:
            if frames:
                wait = 0  # take what is already there, without waiting for more
                size = sum(len(payload) for _, payload in frames)
                if size >= _COALESCE:
                    break
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                break
            chunk = os.read(self.fd, _PIPE_BYTES)
            if not chunk:
                self.eof = True
                break
            self.buffer += chunk
            frames += self._complete()
        return frames

    def _complete(self) -> list[tuple[bytes, bytes]]:
        frames = []
        buffer = self.buffer
        start = 0
        while len(buffer) - start >= _FRAME.size:
            kind, length = _FRAME.unpack_from(buffer, start)
            end = start + _FRAME.size + length
            if end > len(buffer):
                break
            frames.append((kind, bytes(buffer[start + _FRAME.size : end])))
            start = end
        del buffer[:start]
        return frames


def main() -> None:
    """Entry point: ``FILENAME FLUSH_INTERVAL MAX_BUFFER LEVEL LOCK_TIMEOUT`` after the root."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    filename, interval, max_buffer, level, lock_timeout = sys.argv[2:7]
    out = sys.stdout.fileno()
    sink: GzlogSink | None = None

    def say(message: dict[str, Any]) -> None:
        if sink is not None:
            message["written"], message["dropped"] = sink.written, sink.dropped
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(out, data) :]
        except BrokenPipeError:  # the logging process is gone: reports go to stderr
            if "report" in message:
                print(f"{message['detail']}mimir: {message['report']}", file=sys.stderr)

    def report(message: str) -> None:
        say({"report": message, "detail": traceback.format_exc()})

    def relay_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        say({"warning": str(message), "category": category.__name__})

    warnings.showwarning = relay_warning  # the logging process shows them
    warnings.simplefilter("always")  # and filters them there
    try:
        sink = GzlogSink(
            filename,
            report=report,
            compression_level=int(level),
            lock_timeout=None if lock_timeout == "None" else float(lock_timeout),
            max_buffer_bytes=int(max_buffer),
        )
    except Exception as error:
        report(f"the writer process could not open {filename}: {error}")
        sys.exit(1)
    say({"reply": 0})  # ready
    try:
        sink.verify()  # before the first append, while the training loop runs on
    except Exception as error:
        report(f"could not verify {filename} ({error}); it is verified again before writing")
    _serve(sink, say, retry_after=float(interval) or 1.0)


def _serve(sink: GzlogSink, say: Callable[[dict[str, Any]], None], retry_after: float) -> None:
    """Write what the pipe brings and answer its requests, until told to quit or it closes."""
    hold_for = min(retry_after, _HOLD_SECONDS)
    frames = _Frames(sys.stdin.fileno())
    held = bytearray()  # lines received, not yet given to the sink
    told = (0, 0)  # the counts last sent

    def write(upto: int) -> None:
        if upto:
            sink.append(held[:upto])
            del held[:upto]

    try:
        while not frames.eof:
            # Held lines wait briefly for more; failed writes are retried every interval.
            wait = hold_for if held else retry_after if sink.unwritten else None
            batch = frames.read(wait)
            if not batch:
                write(len(held))
                if sink.unwritten:
                    sink.sync()
            for kind, payload in batch:
                if kind == _DATA:
                    held += payload
                    continue
                write(len(held))
                sink.sync()
                if kind == _COMPRESS:
                    sink.compress()
                elif kind == _QUIT:
                    sink.close()
                say({"reply": int(payload)})
                if kind == _QUIT:
                    return
            write(_fill_point(held, sink.room))
            if (sink.written, sink.dropped) != told:
                told = (sink.written, sink.dropped)
                say({})  # the counts alone: the logging process reads them as they come
    finally:
        write(len(held))  # the logging process is gone: write what it sent, then stop
        sink.close()


def _fill_point(held: bytearray, room: int) -> int:
    """How many bytes of ``held`` (whole lines) to write now.

    All of them if they fit in the log's uncompressed tail (``room`` bytes left).
    Otherwise the lines that fill the tail, or when not even one fits, up to a
    whole tail's worth after the compression that must come first: the rest waits
    for the next batch, so that each MiB costs one append rather than two.
    """
    if len(held) <= room:
        return len(held)
    cut = held.rfind(b"\n", 0, room) + 1
    if not cut:
        cut = held.rfind(b"\n", 0, MAX_TAIL) + 1 or len(held)
    return cut
