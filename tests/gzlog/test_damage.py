"""Writers meet damaged logs and failures that never clear (G14, G17), and bounded lock waits."""

from __future__ import annotations

import fcntl
import glob
import gzip
import json
import logging
import os
import random
import shutil
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import pytest

import mimir
from mimir.files.compressed import GzlogFileHandler
from mimir.gzlog import Gzlog, GzlogError, GzlogLockWaitWarning, GzlogWarning, check


def metrics(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"iteration": i, "training_error": round(1 / (i + 1), 6)}
        for i in range(start, start + count)
    ]


def as_lines(entries: list[dict[str, Any]]) -> bytes:
    return b"".join((json.dumps(e, separators=(",", ":")) + "\n").encode() for e in entries)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, int]:
    """A small log with a compressed part and a stored tail: (its bytes, its first stored block)."""
    path = tmp_path_factory.mktemp("pristine") / "run.jsonl.gz"
    log = Gzlog(path)
    log.append(as_lines(metrics(0, 2000)))
    log.compress()
    log.append(as_lines(metrics(2000, 2000)))
    log.compress()
    log.append(as_lines(metrics(4000, 50)))  # an uncompressed tail behind the compressed part
    first = log.state().first
    log.close()
    assert gzip.decompress(path.read_bytes()) == as_lines(metrics(0, 4050))
    return path.read_bytes(), first


def flip(data: bytes, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


def moved_aside(path: Path) -> list[Path]:
    return [Path(p) for p in glob.glob(f"{path}.corrupt-*")]


def readable_phrase(aside: Path) -> str:
    """What the warning must say of the entries that can still be read from ``aside``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mimir.PartialReadWarning)
        readable = len(mimir.load(aside, errors="partial"))
    if readable:
        return f"{readable} of its entries are still readable"
    return "none of its entries can be verified any more"


def test_g14_bit_flips_in_the_compressed_part(tmp_path: Path, pristine: tuple[bytes, int]) -> None:
    """A flipped bit anywhere in the compressed part: moved aside whole, never appended to."""
    data, first = pristine
    rng = random.Random(14)
    bits = rng.sample(range(51 * 8, (first - 2) * 8), 200)
    new = metrics(10_000, 5)
    for n, bit in enumerate(bits):
        folder = tmp_path / str(n)
        folder.mkdir()
        path = folder / "run.jsonl.gz"
        damaged = flip(data, bit)
        path.write_bytes(damaged)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            handler = GzlogFileHandler(path, flush_interval=0, writer_process=False)
            for line in as_lines(new).splitlines(keepends=True):
                handler.add_line(line)
            handler.close()
        aside = moved_aside(path)
        assert len(aside) == 1, f"bit {bit}: moved aside {aside}"
        assert aside[0].read_bytes() == damaged, f"bit {bit}: the damaged file was changed"
        assert gzip.decompress(path.read_bytes()) == as_lines(new), f"bit {bit}"
        assert (handler.written, handler.dropped, handler.failures) == (5, 0, 0)
        said = [str(w.message) for w in caught if issubclass(w.category, GzlogWarning)]
        assert len(said) == 1 and str(aside[0]) in said[0], said
        assert readable_phrase(aside[0]) in said[0], said


def test_g14_logger_moves_a_damaged_log_aside_in_the_writer_process(
    tmp_path: Path, pristine: tuple[bytes, int]
) -> None:
    """Through mimir.Logger and its writer process, the warning reaches the training process."""
    data, first = pristine
    path = tmp_path / "run.jsonl.gz"
    damaged = flip(data, (first - 40) * 8 + 3)
    path.write_bytes(damaged)
    with (
        pytest.warns(GzlogWarning, match="moved whole to .*corrupt") as caught,
        mimir.Logger(filename=path, formatter=None) as logger,
    ):
        for entry in metrics(0, 100):
            logger.log(entry)
        handler = logger.handlers[0]
        assert handler.writer_pid is not None
    message = str(caught[0].message)
    assert str(path) in message
    (aside,) = moved_aside(path)
    assert readable_phrase(aside) in message
    assert aside.read_bytes() == damaged
    assert mimir.load(path) == metrics(0, 100)
    assert (handler.written, handler.dropped) == (100, 0)


def test_g14_the_training_loop_never_waits_for_the_verification(tmp_path: Path) -> None:
    """log() returns while the writer still waits to verify: the check is off the loop's path."""
    path = tmp_path / "run.jsonl.gz"
    with Gzlog(path) as log:
        log.append(as_lines(metrics(0, 100)))
    holder = os.open(f"{tmp_path}/run.jsonl.lock.k", os.O_RDWR)
    try:
        logger = mimir.Logger(filename=path, formatter=None)  # opened before the lock is taken
        fcntl.flock(holder, fcntl.LOCK_EX)  # the writer's verification now has to wait
        for entry in metrics(100, 1000):
            logger.log(entry)
        handler = logger.handlers[0]
        handler.lock.acquire()  # emit is not running: everything is in the buffer or beyond
        handler.lock.release()
        assert handler.written == 0  # nothing could be verified, so nothing was appended
        assert gzip.decompress(path.read_bytes()) == as_lines(metrics(0, 100))
    finally:
        os.close(holder)  # the writer verifies, then appends
    logger.close()
    assert mimir.load(path) == metrics(0, 1100)
    assert (handler.written, handler.dropped) == (1000, 0)


def test_g14_a_stale_dictionary_is_replaced_before_the_first_compression(tmp_path: Path) -> None:
    """A P.dict left by another run is rewritten from the verified log before it is used."""
    other = tmp_path / "other" / "run.jsonl.gz"
    other.parent.mkdir()
    with Gzlog(other) as log:
        log.append(as_lines(metrics(50_000, 3000)))
        log.compress()
    path = tmp_path / "run.jsonl.gz"
    with Gzlog(path) as log:
        log.append(as_lines(metrics(0, 3000)))
        log.compress()
    shutil.copy(other.parent / "run.jsonl.dict", tmp_path / "run.jsonl.dict")  # stale
    with mimir.Logger(filename=path, formatter=None) as logger:
        for entry in metrics(3000, 60_000):  # several compressions
            logger.log(entry)
    assert mimir.load(path) == metrics(0, 63_000)
    assert check(path)["valid"]


@pytest.mark.parametrize("writer_process", [True, False], ids=["writer-process", "in-process"])
def test_g17_a_failure_that_never_clears(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], writer_process: bool
) -> None:
    """P.add is a directory: appends fail; at close written + dropped == logged, and it says so."""
    path = tmp_path / "run.jsonl.gz"
    handler = GzlogFileHandler(path, flush_interval=0.05, writer_process=writer_process)
    os.mkdir(tmp_path / "run.jsonl.add")
    logger = logging.getLogger(f"mimir.test.g17.{writer_process}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for entry in metrics(0, 300):
        logger.info(entry)
    handler.flush()
    assert handler.written + handler.dropped + handler.pending_entries == 300
    assert handler.written == 0
    handler.close()
    logger.removeHandler(handler)
    assert (handler.written, handler.dropped, handler.pending_entries) == (0, 300, 0)
    err = capfd.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "300 entries could not be written before close() and are lost" in err, err[-2000:]
    assert "kept" not in last
    assert handler.failures >= 2  # the first failed write, and the loss at close
    assert mimir.load(path) == []


def test_g17_dropped_and_written_add_up_when_the_failure_clears(tmp_path: Path) -> None:
    """A failure that clears before close: every entry written exactly once, none counted twice."""
    logging.raiseExceptions = False
    path = tmp_path / "run.jsonl.gz"
    blocker = tmp_path / "run.jsonl.add"
    handler = GzlogFileHandler(path, flush_interval=0.05)
    blocker.mkdir()
    for line in as_lines(metrics(0, 200)).splitlines(keepends=True):
        handler.add_line(line)
    handler.flush()
    assert handler.written == 0 and handler.pending_entries == 200
    blocker.rmdir()
    handler.close()
    assert (handler.written, handler.dropped, handler.pending_entries) == (200, 0, 0)
    assert mimir.load(path) == metrics(0, 200)


def test_jsonl_loss_at_close_is_counted_and_said(
    full_disk: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A plain log that cannot be written: the entries are counted as dropped at close."""
    handler = mimir.JSONLFileHandler(full_disk, flush_interval=0)
    for line in as_lines(metrics(0, 7)).splitlines(keepends=True):
        handler.add_line(line)
    assert handler.pending_entries == 7
    handler.close()
    assert (handler.written, handler.dropped) == (0, 7)
    assert "7 entries could not be written before close() and are lost" in capfd.readouterr().err


def test_lock_timeout_bounds_the_constructor_wait(tmp_path: Path) -> None:
    """Logger(lock_timeout=...) fails with an error naming the lock when another holds it."""
    path = tmp_path / "run.jsonl.gz"
    Gzlog(path).close()
    (tmp_path / "run.jsonl.lock").write_bytes(b"")  # zlib's gzlog.c leaves an empty lock
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GzlogWarning)  # the wait itself is tested in the engine
        with pytest.raises(GzlogError, match=r"timed out .* lock") as info:
            mimir.Logger(filename=path, formatter=None, lock_timeout=0.2)
    assert "run.jsonl.lock" in str(info.value)
    with pytest.raises(ValueError, match="lock_timeout"):
        GzlogFileHandler(path, lock_timeout=-1)


def test_a_damaged_header_is_moved_aside_at_construction(tmp_path: Path) -> None:
    """Damage the quick check sees is handled in the constructor, with the same warning."""
    path = tmp_path / "run.jsonl.gz"
    with Gzlog(path) as log:
        log.append(as_lines(metrics(0, 10)))
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0x10  # inside the stored tail: its CRC no longer matches
    path.write_bytes(bytes(damaged))
    with pytest.warns(GzlogWarning, match="moved whole to") as caught:
        handler = GzlogFileHandler(path, writer_process=False, flush_interval=0)
    handler.add_line(as_lines(metrics(10, 1)))
    handler.close()
    (aside,) = moved_aside(path)
    assert aside.read_bytes() == bytes(damaged)
    assert readable_phrase(aside) in str(caught[0].message)
    assert zlib.decompress(path.read_bytes(), 31) == as_lines(metrics(10, 1))


def test_the_warning_counts_what_the_header_still_vouches_for(
    tmp_path: Path, pristine: tuple[bytes, int]
) -> None:
    """A damaged tail behind an intact compressed part: the warning counts its 4,000 entries."""
    data, _ = pristine
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(flip(data, (len(data) - 30) * 8))  # in the uncompressed tail
    with pytest.warns(GzlogWarning, match="4000 of its entries are still readable"):
        GzlogFileHandler(path, writer_process=False).close()


def test_a_long_lock_wait_in_the_writer_process_is_said_in_the_training_process(
    tmp_path: Path, wait_until: Any
) -> None:
    """The writer's lock-wait warning reaches the training process while the wait goes on."""
    path = tmp_path / "run.jsonl.gz"
    handler = GzlogFileHandler(path, flush_interval=60)
    holder = os.open(tmp_path / "run.jsonl.lock.k", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            handler.add_line(b'{"i":0}\n')
            flushing = threading.Thread(target=handler.flush)  # waits for the writer
            flushing.start()
            said = wait_until(
                lambda: [w for w in caught if issubclass(w.category, GzlogLockWaitWarning)],
                timeout=30,
            )
        finally:
            os.close(holder)
        flushing.join(30)
    assert (
        said and "waiting" in str(said[0].message) and f"pid {os.getpid()}" in str(said[0].message)
    )
    assert not flushing.is_alive()
    handler.close()
    assert mimir.load(path) == [{"i": 0}]
