"""G6 with real system calls: fail the N-th file-changing call the gzlog engine makes.

``tests/test_gzlog_handler.py`` injects errors at the engine's named hook points; here
the engine's own view of :mod:`os` is replaced by a wrapper that counts every
``open``/``write``/``pwrite``/``pwritev``/``fsync``/``ftruncate``/``rename``/``replace``/
``unlink``/``link`` call and raises ``OSError(EIO or ENOSPC)`` at the N-th one (only that
one, "transient", or from then on until cleared, "persistent"), for every N of a
scenario's clean run. Nothing outside :mod:`mimir.gzlog` sees the wrapper.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mimir
from mimir.files.compressed import GzlogFileHandler
from mimir.gzlog import MAX_TAIL, Gzlog, check, recover

#: The modules of the engine, each with its own handle on ``os``.
ENGINE_MODULES = [
    module
    for name, module in sorted(sys.modules.items())
    if name.startswith("mimir.gzlog.") and hasattr(module, "os")
]
#: The calls that change files, as the engine spells them (``os.<name>``).
WRAPPED = ("open", "write", "pwrite", "pwritev", "fsync", "ftruncate")
WRAPPED += ("rename", "replace", "unlink", "link")
BASE = "run.jsonl"  # the log is BASE + ".gz"; its auxiliary files share BASE
PREFILL_ROOM = 48 << 10  # room left in the template's stored tail: the batch crosses it


class SyscallFaults:
    """Stands in for ``os`` inside :mod:`mimir.gzlog`: counts the wrapped calls, fails the N-th.

    Every other attribute is the real :mod:`os` one. ``arm`` restarts the count; with
    ``nth`` 0 nothing fails (a clean run, whose calls are recorded in ``trace``).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.nth = 0
        self.code = errno.EIO
        self.persistent = False
        self.raised: list[tuple[int, str]] = []
        self.trace: list[str] = []
        for name in WRAPPED:
            if hasattr(os, name):
                setattr(self, name, self._wrap(name, getattr(os, name)))

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            n = self.calls
            self.trace.append(name)
            if self.nth and (n == self.nth or (self.persistent and n > self.nth)):
                self.raised.append((n, name))
                raise OSError(self.code, f"injected {os.strerror(self.code)} (os.{name}, call {n})")
            return real(*args, **kwargs)

        call.__name__ = name
        return call

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def arm(self, nth: int, code: int, persistent: bool) -> None:
        """Restart the count; fail call ``nth`` (and every later one if ``persistent``)."""
        self.calls, self.nth, self.code, self.persistent = 0, nth, code, persistent
        self.raised, self.trace = [], []

    def clear(self) -> None:
        """The fault is over: every later call goes through."""
        self.nth = 0


@pytest.fixture
def syscalls(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyscallFaults]:
    """Replace ``os`` in every module of :mod:`mimir.gzlog` for the test's duration."""
    faults = SyscallFaults()
    for module in ENGINE_MODULES:
        monkeypatch.setattr(module, "os", faults)
    logging.raiseExceptions = False  # handleError stays silent; failures are counted
    yield faults
    faults.clear()


def line(seq: int, size: int) -> bytes:
    """A JSON line of about ``size`` bytes with its newline; its content names its seq."""
    return (json.dumps({"seq": seq, "pad": chr(97 + seq % 26) * size}) + "\n").encode()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    """A log with a compressed part, a dictionary and a stored tail 48 KiB short of 1 MiB."""
    directory = tmp_path_factory.mktemp("template")
    lines: list[bytes] = []

    def chunk(size: int) -> bytes:
        out = []
        while size > 0:
            out.append(line(len(lines), 1900 + len(lines) % 7 * 50))
            lines.append(out[-1])
            size -= len(out[-1])
        return b"".join(out)

    log = Gzlog(directory / f"{BASE}.gz", compression_level=4)
    log.append(chunk(40 << 10))
    log.compress()  # a compressed part longer than the 32 KiB dictionary
    log.append(chunk(MAX_TAIL - PREFILL_ROOM - 2100))
    state = log.state()
    log.close()
    assert state.compressed_bytes > 0 and state.op_name == "none"
    assert MAX_TAIL - 2 * PREFILL_ROOM < state.stored_bytes < MAX_TAIL - PREFILL_ROOM
    assert (directory / f"{BASE}.dict").stat().st_size == 32768
    return directory, lines


SCENARIOS = {
    # (lines of the faulted first flush, of the second flush): sizes in bytes
    "first_flush": ([200] * 12, [100] * 3),
    "compression": ([2900 + i % 5 * 100 for i in range(100)], [150] * 4),
}


def run_case(
    workdir: Path,
    scenario: str,
    template: tuple[Path, list[bytes]],
    faults: SyscallFaults,
    nth: int,
    code: int,
    persistent: bool,
) -> int:
    """One scenario with the fault armed at call ``nth`` (0: none); returns the calls it counted.

    Two flushes run under the fault (the calls counted for N), then, still under it, a
    probe flush that a persistent fault must make fail. Then the fault clears: a copy
    of the files, recovered as any opener would, must hold every acknowledged entry;
    the handler's final flush and close must leave exactly every entry.
    """
    workdir.mkdir()
    path = workdir / f"{BASE}.gz"
    sent: list[bytes] = []
    if scenario == "compression":
        source, sent = template[0], list(template[1])
        for suffix in (".gz", ".dict"):
            shutil.copyfile(source / (BASE + suffix), workdir / (BASE + suffix))
    first, second = SCENARIOS[scenario]
    # The faults wrap this process's os calls: the handler writes from its own thread
    # here (the writer process runs this same handler code).
    handler = GzlogFileHandler(
        path, flush_interval=3600, flush_bytes=64 << 20, writer_process=False
    )
    acked = len(sent)

    def flush(sizes: list[int], what: str) -> None:
        nonlocal acked
        for size in sizes:
            sent.append(line(len(sent), size))
            handler.add_line(sent[-1])
        try:
            handler.flush()
        except Exception as error:  # flush must never raise
            raise AssertionError(f"{what} raised {error!r}") from error
        assert handler.failures <= 1, f"{what}: {handler.failures} failures reported"
        if not handler._batches:  # nothing kept for a retry: all of it acknowledged
            acked = len(sent)
        with open(path, "rb") as file:
            head = file.read()
        if len(head) > 50 and not head[50] >> 3 & 3:  # no operation pending: valid as is
            data = gzip.decompress(head)
            assert data == b"".join(sent[: data.count(b"\n")]), f"{what}: not a prefix"

    try:
        faults.arm(nth, code, persistent)
        flush(first, "first flush")
        flush(second, "second flush")
        counted = faults.calls
        flush([120, 130], "probe flush")
        if nth:
            assert faults.raised, "the fault was never hit"
        if persistent:
            assert handler.failures == 1, f"{handler.failures} reports while the fault lasted"
        elif nth:
            assert acked == len(sent), "a transient fault still kept entries after the retry"
        reported = handler.failures
        faults.clear()

        # A fresh opener (on a copy: the handler's retry is checked below) sees every
        # acknowledged entry, and entries only once, in order, whole.
        snap = workdir / "snap"
        snap.mkdir()
        for suffix in (".gz", ".add", ".dict", ".temp"):
            if (workdir / (BASE + suffix)).exists():
                shutil.copyfile(workdir / (BASE + suffix), snap / (BASE + suffix))
        recover(snap / f"{BASE}.gz")
        data = gzip.decompress((snap / f"{BASE}.gz").read_bytes())
        held = data.count(b"\n")
        assert data == b"".join(sent[:held]), "recovered copy: not a prefix of the entries"
        assert held >= acked, f"recovered copy lost acknowledged entries ({held} < {acked})"

        handler.flush()
        assert not handler._batches, "the final flush left entries unwritten"
        handler.close()
        assert handler.failures == reported, "a failure was reported after the fault cleared"
        assert handler.dropped == 0
    finally:
        faults.clear()
        handler.close()

    run = subprocess.run(["gzip", "-t", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, f"gzip -t: {run.stderr.strip()}"
    assert gzip.decompress(path.read_bytes()) == b"".join(sent), "final file differs"
    assert [entry["seq"] for entry in mimir.load(path)] == list(range(len(sent)))
    report = check(path)
    assert report["valid"] and report["op"] == "none", report
    shutil.rmtree(workdir)  # a failing case keeps its files for inspection
    return counted


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_clean_run_counts_every_kind_of_call(
    tmp_path: Path, syscalls: SyscallFaults, template: tuple[Path, list[bytes]], scenario: str
) -> None:
    """Without a fault the wrapper sees the engine's calls and the scenario passes its checks."""
    counted = run_case(tmp_path / "clean", scenario, template, syscalls, 0, errno.EIO, False)
    assert counted > 10
    assert os.open is not syscalls.open  # only the engine's view is wrapped
    kinds = {"open", "pwrite", "pwritev", "fsync", "link", "unlink"}
    if scenario == "compression":
        kinds |= {"ftruncate", "rename"}
    assert kinds <= set(syscalls.trace), sorted(set(syscalls.trace))


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_g6_every_call_fails_once(
    tmp_path: Path,
    syscalls: SyscallFaults,
    template: tuple[Path, list[bytes]],
    scenario: str,
    code: int,
    persistent: bool,
) -> None:
    """Failing the N-th call, for every N, never raises, reports once and loses nothing."""
    clean = run_case(tmp_path / "clean", scenario, template, syscalls, 0, code, False)
    names = syscalls.trace[:clean]
    problems = []
    for nth in range(1, clean + 1):
        case = f"N={nth}/{clean} (os.{names[nth - 1]})"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                run_case(tmp_path / str(nth), scenario, template, syscalls, nth, code, persistent)
            except Exception as error:  # collect every failing N
                said = "; ".join(str(w.message)[:120] for w in caught)
                problems.append(f"{case}: {error}" + (f" [warnings: {said}]" if said else ""))
    mode = "persistent" if persistent else "transient"
    assert not problems, f"{scenario}, {errno.errorcode[code]}, {mode}:\n" + "\n".join(problems)
