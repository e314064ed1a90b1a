"""GzlogFileHandler: compressed ``.jsonl.gz`` logs, with real files and processes."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import multiprocessing
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gzlog_helpers import ALL_POINTS

import mimir
from mimir.files.compressed import GzlogFileHandler
from mimir.gzlog import Gzlog, check, recover

ROOT = Path(__file__).resolve().parents[2]


def gzip_ok(path: Path | str) -> bool:
    """Whether ``gzip -t`` accepts the file."""
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0


def raw_op(path: Path | str) -> int:
    """The operation field of the state on disk, read without opening (recovering) the log."""
    with open(path, "rb") as file:
        return (file.read(51)[50] >> 3) & 3


def lines_of(path: Path | str) -> list[bytes]:
    """Decompress with Python's gzip module; every line must be complete."""
    data = gzip.decompress(Path(path).read_bytes())
    assert not data or data.endswith(b"\n"), "partial last line"
    return data.split(b"\n")[:-1]


def make_handler(path: Path, closing: Any, **kwargs: Any) -> GzlogFileHandler:
    return closing(GzlogFileHandler(path, **kwargs))


def line(seq: int, size: int, who: str = "p") -> bytes:
    """A JSON line of exactly ``size`` bytes plus newline (size >= 40), checkable content."""
    head = json.dumps({"who": who, "seq": seq, "pad": ""})
    pad = max(0, size - len(head))
    return (json.dumps({"who": who, "seq": seq, "pad": chr(97 + seq % 26) * pad}) + "\n").encode()


def check_entry(entry: dict) -> None:
    """Content invented or torn would not have a pad made of one repeated letter."""
    pad = entry["pad"]
    assert pad == chr(97 + entry["seq"] % 26) * len(pad)


# --- basics -------------------------------------------------------------------------


def test_round_trip_through_every_reader(tmp_path: Path, closing: Any) -> None:
    """Entries read back identically with mimir.load, gzip, pandas and zcat | jq."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing)
    logger = logging.getLogger("mimir.test.gz.roundtrip")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    entries = [{"iteration": i, "loss": 1 / (i + 1), "tag": f"é{i}"} for i in range(500)]
    mlog = closing(mimir.Logger(filename=tmp_path / "m.jsonl.gz", formatter=None))
    for entry in entries:
        mlog.log(entry)
    mlog.close()
    assert mimir.load(tmp_path / "m.jsonl.gz") == entries
    for entry in entries:
        logger.info("m", extra=entry)
    handler.close()
    loaded = mimir.load(path)
    assert [{k: e[k] for k in ("iteration", "loss", "tag")} for e in loaded] == entries
    with gzip.open(path, "rt", encoding="utf-8") as file:
        assert [json.loads(x) for x in file] == loaded
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_json(path, lines=True)
    assert list(frame["iteration"]) == list(range(500))
    tools = {name: shutil.which(name) for name in ("zcat", "jq")}
    missing = [name for name, found in tools.items() if found is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found on PATH (the README's test set-up)")
    unzipped = subprocess.run([tools["zcat"], path], capture_output=True, check=True).stdout
    jq = subprocess.run([tools["jq"], "-c", "."], input=unzipped, capture_output=True, check=True)
    assert [json.loads(x) for x in jq.stdout.splitlines()] == loaded


def test_constructor_errors(tmp_path: Path) -> None:
    """A missing directory or a name without .gz is a clear error at construction."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GzlogFileHandler(tmp_path / "nope" / "run.jsonl.gz")
    with pytest.raises(ValueError, match=r"end with '\.gz'"):
        GzlogFileHandler(tmp_path / "run.jsonl")


def test_valid_after_each_flush_and_fully_compressed_after_close(
    tmp_path: Path, closing: Any
) -> None:
    """Sizes from 1 byte to 48 KiB across blocks and compressions; valid at each flush."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing, flush_interval=60)
    rng = random.Random(1)
    expected: list[bytes] = [b"1", b"{}"]
    handler.add_line(b"1\n")
    handler.add_line(b"{}\n")
    sizes = [40, 16383, 16384, 16385, 48 * 1024, 1] + [rng.randrange(40, 49152) for _ in range(300)]
    for seq, size in enumerate(sizes):
        data = line(seq, size) if size >= 40 else b"2\n"
        handler.add_line(data)
        expected.append(data[:-1])
        if seq % 25 == 0:
            handler.flush()
            assert gzip_ok(path)
            assert lines_of(path) == expected
    handler.flush()
    compressions = handler.state().compressed_bytes
    assert compressions > 0 and sum(sizes) > 5 << 20
    handler.close()
    state = Gzlog(path).state()
    assert state.stored_bytes == 0 and state.op_name == "none"
    assert lines_of(path) == expected
    assert check(path)["valid"]
    assert os.path.getsize(path) < sum(sizes) // 3


def test_flush_interval_zero_is_durable_before_emit_returns(tmp_path: Path, closing: Any) -> None:
    """With flush_interval=0 each entry is in the file when emit returns; no thread."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing, flush_interval=0)
    for seq in range(20):
        handler.add_line(line(seq, 60))
        assert len(lines_of(path)) == seq + 1
    assert handler._thread is None


def test_background_thread_writes_without_flush(tmp_path: Path, closing: Any, wait_until) -> None:
    """The flush thread appends within flush_interval."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing, flush_interval=0.02)
    handler.add_line(line(0, 50))
    assert wait_until(lambda: len(lines_of(path)) == 1)


def test_stored_tail_never_exceeds_1_mib(tmp_path: Path, closing: Any) -> None:
    """Over a run crossing several compressions the uncompressed tail stays <= 1 MiB,
    after each flush and at every state write in between."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing, flush_interval=60, writer_process=False)  # hooks here
    at_writes: list[int] = []

    def hook(point: str, n: int) -> None:
        if point == "state.post":
            at_writes.append(handler.state().stored_bytes)

    handler._gzlog._hooks = hook
    rng = random.Random(5)
    seq = peak = 0
    for _ in range(150):
        for _ in range(rng.randrange(1, 60)):
            handler.add_line(line(seq, rng.choice((40, 500, 5000, 30000, 200_000))))
            seq += 1
        handler.flush()
        state = handler.state()
        assert state.stored_bytes <= 1 << 20, state
        peak = max(peak, state.stored_bytes)
    assert handler.state().clen > 5 << 20  # several compressions
    assert max(at_writes) <= 1 << 20 and peak > 900_000
    handler.close()
    assert [json.loads(x)["seq"] for x in lines_of(path)] == list(range(seq))


# --- G3: SIGKILL -------------------------------------------------------------------

KILL_CHILD = r"""
import json, os, random, sys
from mimir.files.compressed import GzlogFileHandler
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
handler = GzlogFileHandler(path, flush_interval=0.002, flush_bytes=64 << 10)
seq = 0
out = os.fdopen(1, "w", buffering=1)
out.write(f"writer {handler.writer_pid}\n")
while True:
    for _ in range(rng.randrange(1, 60)):
        size = rng.choice((10, 100, 1000, 3000, 20000))
        pad = chr(97 + seq % 26) * size
        handler.add_line((json.dumps({"who": "k", "seq": seq, "pad": pad}) + "\n").encode())
        seq += 1
    if rng.random() < 0.3:
        handler.flush()
        out.write(f"{seq}\n")
"""


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie left unreaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def run_kill_trial(directory: Path, seed: int, *, kill_writer: bool = True) -> dict[str, Any]:
    """Start a logging child, SIGKILL it at a random moment, check the log. Returns facts.

    With ``kill_writer`` its writer process is killed at the same moment (the whole
    job killed); otherwise the writer must write what it received and exit by itself.
    """
    rng = random.Random(seed)
    path = Path(directory) / f"kill{seed}.jsonl.gz"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(path), str(seed)],
        stdout=subprocess.PIPE,
        env=env,
    )
    buf = b""
    fd = child.stdout.fileno()
    # wait for the first acknowledgement, then kill at a random moment
    deadline = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.005)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            if deadline is None and buf.count(b"\n") > 1:
                deadline = time.monotonic() + rng.uniform(0.0, 0.25)
        if deadline is not None and time.monotonic() >= deadline:
            break
    writer = int(buf.split(b"\n", 1)[0].split()[1])
    if kill_writer:
        os.kill(writer, signal.SIGKILL)
    child.send_signal(signal.SIGKILL)
    child.wait()
    while chunk := os.read(fd, 65536):
        buf += chunk
    child.stdout.close()
    end = time.monotonic() + 30
    while not gone(writer):
        assert time.monotonic() < end, "the writer process outlived the logging process"
        time.sleep(0.005)
    acks = buf.split(b"\n")[1:]
    acked = max((int(x) for x in acks if x.strip()), default=0)
    op_at_kill = raw_op(path)
    repairs = recover(path)
    valid = gzip_ok(path)
    seqs = [json.loads(x)["seq"] for x in lines_of(path)]
    result = {
        "seed": seed,
        "acked": acked,
        "present": len(seqs),
        "op_at_kill": op_at_kill,
        "repaired": bool(repairs),
        "valid": valid,
        "prefix": seqs == list(range(len(seqs))),
        "lost": max(0, acked - len(seqs)),
    }
    for f in Path(directory).glob(f"kill{seed}.*"):
        f.unlink()
    return result


def test_g3_sigkill_while_logging(tmp_path: Path) -> None:
    """50 SIGKILLs of a logging process and its writer at random moments: file valid, no
    acknowledged entry lost, no duplicate."""
    results = [run_kill_trial(tmp_path, seed) for seed in range(50)]
    bad = [r for r in results if not (r["valid"] and r["prefix"] and r["lost"] == 0)]
    assert not bad, bad
    assert sum(r["acked"] for r in results) > 0
    # some trials must have hit an operation in progress (append or compression)
    assert any(r["op_at_kill"] for r in results) or any(r["repaired"] for r in results)


def test_writer_finishes_after_the_logging_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the logging process alone: its writer writes everything it received,
    leaves the log closed (no operation pending, nothing to repair), and exits."""
    results = [run_kill_trial(tmp_path, seed, kill_writer=False) for seed in range(10)]
    bad = [r for r in results if not (r["valid"] and r["prefix"] and r["lost"] == 0)]
    assert not bad, bad
    assert not any(r["op_at_kill"] or r["repaired"] for r in results), results
    assert all(r["present"] >= r["acked"] > 0 for r in results), results


# --- G6: injected I/O errors ------------------------------------------------------------

POINTS = ALL_POINTS  # every fault-injection point of the engine


class Fault:
    """Hook raising OSError at ``point``: on pass ``nth`` only, or from then on while active."""

    def __init__(self, point: str, code: int, nth: int, persistent: bool) -> None:
        self.point, self.code, self.nth, self.persistent = point, code, nth, persistent
        self.active = True
        self.raised = 0

    def __call__(self, point: str, n: int) -> None:
        if not self.active or point != self.point:
            return
        if n == self.nth or (self.persistent and n >= self.nth):
            self.raised += 1
            raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("point", POINTS)
def test_g6_injected_errors(tmp_path: Path, closing: Any, point: str, code: int, persistent: bool):
    """emit never raises, one report per failure streak, then every entry exactly once."""
    logging.raiseExceptions = False
    path = tmp_path / "run.jsonl.gz"
    # The fault is injected into this process's engine: the handler writes from its
    # own thread here. The writer process runs this same handler code.
    handler = make_handler(path, closing, flush_interval=60, writer_process=False)
    fault = Fault(point, code, nth=2, persistent=persistent)
    handler._gzlog._hooks = fault
    logger = logging.getLogger(f"mimir.test.gz.g6.{point}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    seq = 0
    # ~2.6 MiB in flushes of ~200 KiB: several appends and compressions
    for _ in range(13):
        for _ in range(100):
            logger.info("m", extra={"seq": seq, "pad": chr(97 + seq % 26) * 2000})
            seq += 1
        handler.flush()
        assert raw_op(path) or gzip_ok(path)  # valid unless an operation is pending
    assert fault.raised, "the fault point was never reached"
    assert handler.failures == 1 if persistent else handler.failures <= 1, handler.failures
    fault.active = False
    handler.close()
    assert handler.dropped == 0
    assert gzip_ok(path)
    seqs = [json.loads(x)["seq"] for x in lines_of(path)]
    assert seqs == list(range(seq))


# --- G13: reading while another process writes ---------------------------------------

WRITER_CHILD = r"""
import json, random, sys, time
from mimir.files.compressed import GzlogFileHandler
path, seconds = sys.argv[1], float(sys.argv[2])
rng = random.Random(3)
handler = GzlogFileHandler(path, flush_interval=0.001, flush_bytes=32 << 10)
seq = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    size = rng.choice((5, 500, 5000, 15000))
    handler.add_line((json.dumps({"seq": seq, "pad": chr(97 + seq % 26) * size}) + "\n").encode())
    seq += 1
    time.sleep(0.001)
handler.close()
print(seq)
"""


def test_g13_reader_follows_a_growing_log(tmp_path: Path) -> None:
    """mimir.load / mimir.open during appends and compressions: a clean prefix, never raises."""
    path = tmp_path / "run.jsonl.gz"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, str(path), "3"], stdout=subprocess.PIPE, env=env
    )
    reads = 0
    longest = 0
    try:
        while child.poll() is None:
            if not path.exists():
                continue
            if reads % 2:
                entries = mimir.load(path)
            else:
                with mimir.open(path) as reader:
                    entries = list(reader)
            reads += 1
            assert [e["seq"] for e in entries] == list(range(len(entries)))
            for entry in entries:
                check_entry(entry)
            longest = max(longest, len(entries))
    finally:
        out, _ = child.communicate(timeout=30)
    total = int(out)
    assert reads >= 5 and longest > 0
    final = mimir.load(path)
    assert [e["seq"] for e in final] == list(range(total))
    assert check(path)["compressed_bytes"] > 0


# --- P4: fork --------------------------------------------------------------------------


def test_p4_fork_with_buffered_entries(tmp_path: Path, closing: Any) -> None:
    """A forked child does not write the parent's buffer, logs to the same file; all once."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing, flush_interval=60)
    for seq in range(100):
        handler.add_line(line(seq, 80, "parent"))
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            for seq in range(50):
                handler.add_line(line(seq, 80, "child"))
            handler.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for seq in range(100, 150):
        handler.add_line(line(seq, 80, "parent"))
    handler.close()
    entries = mimir.load(path)
    parent = [e["seq"] for e in entries if e["who"] == "parent"]
    child = [e["seq"] for e in entries if e["who"] == "child"]
    assert parent == list(range(150)) and child == list(range(50))


def _mp_child(path: str, who: str, count: int) -> None:
    handler = GzlogFileHandler(path, flush_interval=0.001, flush_bytes=4096)
    for seq in range(count):
        handler.add_line(line(seq, random.randrange(40, 3000), who))
    handler.close()


def test_p4_multiprocessing_fork_start_method(tmp_path: Path, closing: Any) -> None:
    """multiprocessing's fork start method with entries buffered: no duplicates."""
    path = tmp_path / "run.jsonl.gz"
    handler = make_handler(path, closing, flush_interval=60)
    for seq in range(30):
        handler.add_line(line(seq, 80, "parent"))
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_mp_child, args=(str(path), "child", 40))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    handler.close()
    entries = mimir.load(path)
    assert [e["seq"] for e in entries if e["who"] == "parent"] == list(range(30))
    assert [e["seq"] for e in entries if e["who"] == "child"] == list(range(40))


# --- concurrency ----------------------------------------------------------------------


def test_threads_and_processes_share_one_file(tmp_path: Path, closing: Any) -> None:
    """8 threads and 4 processes log to one file: every entry exactly once, in order per source."""
    path = tmp_path / "run.jsonl.gz"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_mp_child, args=(str(path), f"proc{i}", 800)) for i in range(4)]
    for proc in procs:
        proc.start()
    handler = make_handler(path, closing, flush_interval=0.005)
    logger = logging.getLogger("mimir.test.gz.threads")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    def run(who: str) -> None:
        for seq in range(800):
            logger.info("m", extra={"who": who, "seq": seq, "pad": "x" * (seq % 700)})

    threads = [threading.Thread(target=run, args=(f"thread{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    handler.close()
    assert gzip_ok(path)
    by_source: dict[str, list[int]] = {}
    for entry in mimir.load(path):
        by_source.setdefault(entry["who"], []).append(entry["seq"])
    assert len(by_source) == 12
    for who, seqs in by_source.items():
        assert seqs == list(range(800)), who


def test_compression_level_trades_size_for_speed_and_reads_back_the_same(tmp_path):
    """Every compression level gives the same entries back; level 1 is larger than level 9."""
    lines = [
        json.dumps({"iteration": i, "loss": 1 / (i + 1), "note": "x" * (i % 50)}) + "\n"
        for i in range(40_000)
    ]
    sizes = {}
    for compression_level in (1, 9):
        path = tmp_path / f"level{compression_level}.jsonl.gz"
        handler = GzlogFileHandler(path, compression_level=compression_level)
        for line in lines:
            handler.add_line(line.encode())
        handler.close()
        assert gzip.decompress(path.read_bytes()).decode() == "".join(lines)
        sizes[compression_level] = path.stat().st_size
    assert sizes[1] > sizes[9]
    with pytest.raises(ValueError, match="compression_level"):
        GzlogFileHandler(tmp_path / "bad.jsonl.gz", compression_level=0)
