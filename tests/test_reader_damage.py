"""Readers on damaged, truncated and odd files: never a silent partial read (row G16).

Every reader (``mimir.load``, ``mimir.open``, ``iter_lines``, ``mimir cat``,
``mimir check``, the plot feed and ``mimir plot --file -o``) tells a log that is
being written from one that is damaged or truncated, never gives out a line that
is not in the log, and refuses FIFOs and devices at once.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import os
import pickle
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mimir
from mimir import DamagedLogError, MalformedLogError, PartialReadWarning
from mimir.cli import main as mimir_main
from mimir.gzlog import Gzlog
from mimir.plot.server import FileFeed, PointStore
from mimir.reader import iter_lines, open_regular_file

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = [{"i": i, "loss": round(1 / (i + 1), 4), "tag": "t" * (i % 5)} for i in range(36)]
LINES = [json.dumps(entry).encode() + b"\n" for entry in ENTRIES]
RAW = b"".join(LINES)
HALF = len(LINES) // 2  # entries in the compressed part of the gzlog
DEADLINE = 20.0  # seconds a refusal may take before the test fails instead of hanging


# -- the logs ---------------------------------------------------------------------------------


def _build_gzlog(directory: Path) -> bytes:
    """A gzlog of ENTRIES written by the engine: a compressed part and a stored tail."""
    directory.mkdir()
    path = directory / "run.jsonl.gz"
    log = Gzlog(path)
    try:
        log.append(b"".join(LINES[:HALF]))
        log.compress()
        log.append(b"".join(LINES[HALF:]))
    finally:
        log.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The bytes of the same log as a gzlog, a plain gzip file and a plain .jsonl."""
    gzlog = _build_gzlog(tmp_path_factory.mktemp("source") / "gzlog")
    assert gzip.decompress(gzlog) == RAW
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="run.jsonl", mode="wb", fileobj=buffer, mtime=0) as file:
        file.write(RAW)  # with a file name in its header, as gzip.open writes it
    return {"gzlog": gzlog, "gzip": buffer.getvalue(), "jsonl": RAW}


def _name(kind: str) -> str:
    return "run.jsonl" if kind == "jsonl" else "run.jsonl.gz"


def _first_stored(gzlog: bytes) -> int:
    """File offset of the LEN field of the gzlog's first stored block (its ``first``)."""
    return struct.unpack_from("<Q", gzlog, 16)[0]


# -- the readers, each returning what it gave out and the error it ended with -----------------


Outcome = tuple[list[bytes], BaseException | None]


def _load(path: Path) -> Outcome:
    try:
        return [_line(entry) for entry in mimir.load(path)], None
    except MalformedLogError as error:
        return [], error


def _load_partial(path: Path) -> Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = [_line(entry) for entry in mimir.load(path, errors="partial")]
    partial = [w.message for w in caught if issubclass(w.category, PartialReadWarning)]
    return got, partial[0] if partial else None


def _open(path: Path) -> Outcome:
    got: list[bytes] = []
    try:
        with mimir.open(path) as entries:
            for entry in entries:
                got.append(_line(entry))
    except MalformedLogError as error:
        return got, error
    return got, None


def _feed(path: Path) -> Outcome:
    store = PointStore("i", ["loss"], rollover=None)
    try:
        FileFeed(store, str(path)).read_new()
        error = None
    except DamagedLogError as caught:
        error = caught
        assert "showing" in store.status and str(path) in store.status
    xs = store.since("loss", (-1, 0))[2]["x"]
    assert store.entries == len(xs)
    return [LINES[x] if x < len(LINES) else b"?" for x in xs], error


def _line(entry: Any) -> bytes:
    return json.dumps(entry).encode() + b"\n"


READERS: dict[str, Callable[[Path], Outcome]] = {
    "load": _load,
    "load-partial": _load_partial,
    "open": _open,
    "plot-feed": _feed,
}


def _cat(path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> tuple[int, bytes, bytes]:
    """``mimir cat PATH`` in this process: (status, stdout, stderr)."""
    status = mimir_main(["cat", str(path)])
    out, err = capfdbinary.readouterr()
    return status, out, err


def _is_prefix(got: list[bytes]) -> bool:
    return got == LINES[: len(got)]


def _within(seconds: float, function: Callable[[], Any]) -> Any:
    """Run ``function`` in a thread; its result (or raise its exception) if it ends in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = function()
        except BaseException as error:  # handed to the test
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- G16: truncation at every byte offset -----------------------------------------------------


@pytest.mark.parametrize("kind", ["gzlog", "gzip", "jsonl"])
@pytest.mark.parametrize("reader", list(READERS))
def test_truncation_at_every_offset(tmp_path: Path, logs: dict[str, bytes], kind: str, reader: str):
    """Cut at every byte: a compressed log raises (or with errors="partial" gives exactly a
    prefix), a plain one gives its complete lines; never fewer entries in silence."""
    data = logs[kind]
    path = tmp_path / _name(kind)
    read = READERS[reader]
    prefixes = set()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        got, error = read(path)
        assert _is_prefix(got), (cut, got[-1:])
        prefixes.add(error.entries_read if isinstance(error, DamagedLogError) else len(got))
        if kind == "jsonl":
            assert error is None and len(got) == data[:cut].count(b"\n"), cut
        elif reader == "load-partial":
            assert isinstance(error, PartialReadWarning), cut
            assert error.error.entries_read == len(got)
        else:
            assert isinstance(error, DamagedLogError), (cut, len(got))
            assert error.filename == str(path)
            if reader != "load":
                assert error.entries_read == len(got)
    path.write_bytes(data)
    assert read(path) == (LINES, None)
    assert 0 in prefixes and max(prefixes) >= HALF  # the readable prefix is really given


@pytest.mark.parametrize("kind", ["gzlog", "gzip", "jsonl"])
def test_cat_at_every_offset(
    tmp_path: Path, logs: dict[str, bytes], kind: str, capfdbinary: pytest.CaptureFixture[bytes]
):
    """``mimir cat`` of a cut log prints a prefix of the true lines and, if compressed, exits 1."""
    data = logs[kind]
    path = tmp_path / _name(kind)
    longest = 0
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        status, out, err = _cat(path, capfdbinary)
        printed = out.splitlines(keepends=True)
        assert _is_prefix(printed), cut
        longest = max(longest, len(printed))
        if kind == "jsonl":
            assert status == 0 and len(printed) == data[:cut].count(b"\n"), cut
        else:
            assert status == 1, cut
            assert str(path).encode() in err and f"printed {len(printed)} ".encode() in err, err
    assert longest >= HALF


def test_truncated_gzlog_says_how_long_it_should_be(tmp_path: Path, logs: dict[str, bytes]):
    """A cut gzlog's error names the file, the cut, the size its header promises and the count."""
    data = logs["gzlog"]
    path = tmp_path / "run.jsonl.gz"
    cut = len(data) - 30
    path.write_bytes(data[:cut])
    with pytest.raises(DamagedLogError) as info:
        mimir.load(path)
    error = info.value
    assert f"the file is {cut:,} bytes, its gzlog header says {len(data):,}" in str(error)
    assert str(path) in str(error)
    assert error.offset == cut
    assert 0 < error.entries_read < len(ENTRIES)
    assert error.lineno == error.entries_read + 1
    assert f"{error.entries_read} entries (up to line {error.entries_read})" in str(error)
    assert isinstance(error, MalformedLogError) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.offset, copy.entries_read) == (str(error), cut, error.entries_read)


def test_real_mimir_cat_on_a_truncated_gzlog(tmp_path: Path, logs: dict[str, bytes]):
    """The installed ``mimir cat`` prints the readable prefix, names the damage, exits 1."""
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(logs["gzlog"][:-100])
    result = subprocess.run(
        [sys.executable, "-m", "mimir", "cat", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    printed = result.stdout.splitlines(keepends=True)
    assert result.returncode == 1
    assert printed and _is_prefix(printed)
    assert f"printed {len(printed)} entries before it".encode() in result.stderr
    assert b"truncated" in result.stderr and b"Traceback" not in result.stderr
    partial = subprocess.run(
        [sys.executable, "-m", "mimir", "cat", "--partial", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (partial.returncode, partial.stdout) == (0, result.stdout)


def test_plot_report_of_a_truncated_log_fails(tmp_path: Path, logs: dict[str, bytes]):
    """``mimir plot --file CUT.gz -o report.html`` exits 1 with the damage and writes nothing."""
    pytest.importorskip("bokeh")
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(logs["gzip"][:-40])
    output = tmp_path / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mimir",
            "plot",
            "i",
            "loss",
            "--file",
            str(path),
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mimir plot: error:" in result.stderr and "truncated" in result.stderr
    assert not output.exists()


# -- bit flips --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gzlog", "gzip"])
def test_bit_flips_never_give_a_line_that_is_not_in_the_log(
    tmp_path: Path, logs: dict[str, bytes], kind: str, capfdbinary: pytest.CaptureFixture[bytes]
):
    """A flipped bit at 250 random places: each reader raises, or gives the whole log; what it
    gives before raising is a prefix of the true lines, and so is what ``mimir cat`` prints."""
    data = logs[kind]
    path = tmp_path / _name(kind)
    rng = random.Random(16)
    raised = read_fine = 0
    for _ in range(250):
        position, bit = rng.randrange(len(data)), rng.randrange(8)
        flipped = bytearray(data)
        flipped[position] ^= 1 << bit
        path.write_bytes(bytes(flipped))
        where = (position, bit)
        strict, error = _load(path)
        if error is None:
            assert strict == LINES, where
            read_fine += 1
        else:
            assert isinstance(error, DamagedLogError), (where, error)
            raised += 1
        partial, _ = _load_partial(path)
        assert _is_prefix(partial), where
        assert _is_prefix(_open(path)[0]), where
        assert _is_prefix(_feed(path)[0]), where
        status, out, _ = _cat(path, capfdbinary)
        printed = out.splitlines(keepends=True)
        assert _is_prefix(printed), where
        assert status == (0 if error is None else 1), where
    assert raised > 150 and read_fine > 0  # flips in the MTIME or 'ap' bytes read fine


def test_damaged_stored_tail_keeps_the_verified_compressed_part(
    tmp_path: Path, logs: dict[str, bytes]
):
    """A flip in a gzlog's stored tail: strict raises; partial gives exactly the entries its
    header's checksum vouches for (the compressed part)."""
    data = bytearray(logs["gzlog"])
    data[_first_stored(logs["gzlog"]) + 4 + 10] ^= 0x04  # inside the first stored line
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedLogError) as info:
        mimir.load(path)
    assert info.value.entries_read == HALF
    assert "match the checksum in the gzlog header" in info.value.reason
    with pytest.warns(PartialReadWarning) as record:
        assert mimir.load(path, errors="partial") == ENTRIES[:HALF]
    assert record[0].filename == __file__  # the warning points at the caller
    assert f"read {HALF} entries and left out the rest" in str(record[0].message)


def test_plain_gzip_with_a_bad_checksum_gives_nothing(tmp_path: Path, logs: dict[str, bytes]):
    """A gzip member whose CRC does not match: no entry of it is given, and the error says so."""
    data = bytearray(logs["gzip"])
    data[-8] ^= 0x01
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(
        DamagedLogError, match="no entry of this gzip member can be verified"
    ) as info:
        mimir.load(path)
    assert info.value.offset is not None and info.value.offset >= len(data) - 8
    with mimir.open(path) as entries, pytest.raises(DamagedLogError):
        next(iter(entries))


def test_bytes_after_the_end_are_damage_but_zero_padding_is_not(tmp_path: Path):
    """Garbage after the last gzip member raises after every entry; zero padding reads fine."""
    path = tmp_path / "run.jsonl.gz"
    two = gzip.compress(b"".join(LINES[:10])) + gzip.compress(b"".join(LINES[10:]))
    path.write_bytes(two + b"\x00" * 16)
    assert [_line(e) for e in mimir.load(path)] == LINES
    path.write_bytes(two + b"junk")
    got, error = _open(path)
    assert got == LINES
    assert isinstance(error, DamagedLogError) and error.offset == len(two)
    assert "after the end of the compressed data" in str(error)


# -- garbage and damaged headers --------------------------------------------------------------


@pytest.mark.parametrize("start", [b"", b"\x1f\x8b\x08\x00"], ids=["random", "gzip-magic"])
def test_garbage_named_gz_is_an_error_and_prints_nothing(
    tmp_path: Path, start: bytes, capfdbinary: pytest.CaptureFixture[bytes]
):
    """Random bytes named .jsonl.gz: every reader raises; ``mimir cat`` prints nothing."""
    rng = random.Random(7)
    path = tmp_path / "garbage.jsonl.gz"
    for _ in range(20):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        body = start + (body[:1].replace(b"\x1f", b"\x00") + body[1:] if not start else body)
        path.write_bytes(body)
        with pytest.raises(DamagedLogError):
            mimir.load(path)
        status, out, err = _cat(path, capfdbinary)
        assert (status, out) == (1, b""), err
        assert mimir_main(["check", str(path)]) == 1
        capfdbinary.readouterr()


@pytest.mark.parametrize("byte", [10, 11])
@pytest.mark.parametrize("bit", range(8))
def test_flipped_extra_length_is_an_error(
    tmp_path: Path,
    logs: dict[str, bytes],
    byte: int,
    bit: int,
    capfdbinary: pytest.CaptureFixture[bytes],
):
    """A flipped bit in the gzip header's XLEN: load raises instead of returning [];
    ``mimir cat`` prints nothing."""
    data = bytearray(logs["gzlog"])
    data[byte] ^= 1 << bit
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedLogError):
        mimir.load(path)
    status, out, _ = _cat(path, capfdbinary)
    assert (status, out) == (1, b"")


# -- deep nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jsonl", "gzlog", "gzip"])
def test_deep_nesting_is_a_malformed_line(tmp_path: Path, kind: str):
    """A line of 100,000 '[': MalformedLogError naming its line from load and open, never
    RecursionError; the plot feed keeps every other entry."""
    data = b"".join(LINES[:5]) + b"[" * 100_000 + b"\n" + b"".join(LINES[5:])
    path = tmp_path / _name(kind)
    if kind == "gzlog":
        log = Gzlog(path)
        log.append(data)
        log.close()
    else:
        path.write_bytes(gzip.compress(data) if kind == "gzip" else data)
    with pytest.raises(MalformedLogError) as info:
        mimir.load(path)
    assert not isinstance(info.value, DamagedLogError)
    assert info.value.lineno == 6 and "nested too deeply" in str(info.value)
    got, error = _open(path)
    assert got == LINES[:5] and isinstance(error, MalformedLogError)
    store = PointStore("i", ["loss"], rollover=None)
    with pytest.warns(UserWarning, match="line 6: not a JSON entry"):
        assert FileFeed(store, str(path)).read_new() == len(LINES)
    assert store.since("loss", (-1, 0))[2]["x"] == list(range(len(LINES)))


# -- FIFOs, devices, sockets, directories -----------------------------------------------------


@pytest.fixture
def odd_files(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """FIFOs named as logs, /dev/null and /dev/zero (also as .gz), a socket, a directory."""
    files = {}
    for name in ("x.jsonl.gz", "x.jsonl"):
        os.mkfifo(tmp_path / name)
        files[f"fifo {name}"] = tmp_path / name
    for device in ("null", "zero"):
        link = tmp_path / f"{device}.jsonl.gz"
        link.symlink_to(f"/dev/{device}")
        files[f"/dev/{device} as .gz"] = link
        files[f"/dev/{device}"] = Path(f"/dev/{device}")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s.jsonl"))
    files["socket"] = tmp_path / "s.jsonl"
    (tmp_path / "d.jsonl").mkdir()
    files["directory"] = tmp_path / "d.jsonl"
    yield files
    server.close()
    for name in ("x.jsonl.gz", "x.jsonl"):  # free a reader a regression left blocked
        try:
            os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def _refusals() -> dict[str, Callable[[Path], Any]]:
    def cat(path: Path) -> Any:
        return mimir_main(["cat", str(path)])

    def check(path: Path) -> Any:
        return mimir_main(["check", str(path)])

    def feed(path: Path) -> Any:
        return FileFeed(PointStore("i", ["loss"]), str(path)).read_new()

    return {
        "load": mimir.load,
        "open": mimir.open,
        "iter_lines": lambda path: list(iter_lines(path)),
        "open_regular_file": open_regular_file,
        "plot-feed": feed,
        "cat": cat,
        "check": check,
    }


@pytest.mark.parametrize("reader", list(_refusals()))
def test_non_regular_files_are_refused_at_once(
    odd_files: dict[str, Path], reader: str, capfd: pytest.CaptureFixture[str]
):
    """FIFOs, devices, a socket and a directory: an immediate error saying what the file is."""
    function = _refusals()[reader]
    for label, path in odd_files.items():
        if reader in ("cat", "check"):
            assert _within(DEADLINE, lambda p=path: function(p)) == 1, label
            err = capfd.readouterr().err
            assert f"mimir {reader}: error:" in err and "not a regular file" in err, (label, err)
        else:
            with pytest.raises(OSError, match="not a regular file"):
                _within(DEADLINE, lambda p=path: function(p))


def test_real_commands_refuse_a_fifo_without_hanging(odd_files: dict[str, Path]):
    """The installed ``mimir cat``, ``check`` and ``plot --file`` exit 1 at once on a FIFO."""
    fifo = odd_files["fifo x.jsonl.gz"]
    commands = [
        ["cat", str(fifo)],
        ["check", str(fifo)],
        ["plot", "i", "loss", "--file", str(fifo)],
    ]
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "mimir", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, (command, result.stderr)
        assert "is a FIFO (named pipe), not a regular file" in result.stderr, command


# -- closing, choices, check ------------------------------------------------------------------


def test_readers_close_what_they_open(tmp_path: Path, logs: dict[str, bytes]):
    """No ResourceWarning: a plain gzip file read whole, a damaged one, abandoned iterators."""
    path = tmp_path / "run.jsonl.gz"
    path.write_bytes(logs["gzip"])
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(logs["gzip"][:-50])
    plain = tmp_path / "run.jsonl"
    plain.write_bytes(RAW)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(mimir.load(path)) == len(ENTRIES)
        with pytest.raises(DamagedLogError):
            mimir.load(cut)
        for target in (path, plain):
            for _ in mimir.open(target):
                break  # abandoned without close()
            lines = iter_lines(target)
            next(lines)
            del lines
            mimir.open(target)  # never iterated
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_errors_must_be_strict_or_partial(tmp_path: Path):
    """Any other errors= value is a ValueError naming the choices, before the file is read."""
    path = tmp_path / "run.jsonl"
    path.write_bytes(RAW)
    for function in (mimir.load, mimir.open, iter_lines):
        with pytest.raises(ValueError, match="errors must be 'strict' or 'partial', not 'ignore'"):
            function(path, errors="ignore")
    assert len(mimir.load(path, errors="partial", parse_float=str)) == len(ENTRIES)


def test_check_reports_a_malformed_middle_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """``mimir check`` on a .jsonl whose line 4 is not JSON exits 1 and names line 4; the torn
    last line of a healthy one is reported as incomplete, not as an error."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(LINES[:3]) + b"{oops\n" + b"".join(LINES[3:]))
    assert mimir_main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"MALFORMED: {bad}, line 4: not a JSON entry" in out
    assert "status: malformed (1 line is not JSON" in out
    assert f"entries: {len(LINES)}" in out
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(RAW + b'{"i": 99')
    assert mimir_main(["check", str(torn)]) == 0
    out = capsys.readouterr().out
    assert "last line: incomplete (8 bytes" in out and "status: healthy" in out


def test_real_mimir_check_names_the_bad_line(tmp_path: Path):
    """The installed ``mimir check`` does not call healthy a .jsonl that ``mimir.load`` rejects."""
    path = tmp_path / "nested.jsonl"
    path.write_bytes(LINES[0] + b"[" * 100_000 + b"\n")
    with pytest.raises(MalformedLogError):
        mimir.load(path)
    result = subprocess.run(
        [shutil.which("mimir") or "mimir", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "line 2: not a JSON entry (nested too deeply" in result.stdout
    assert "healthy" not in result.stdout


def test_interrupted_gzlog_operation_points_to_mimir_check(tmp_path: Path):
    """A gzlog whose writer died inside a compression: strict names the operation and
    ``mimir check``; partial gives every entry, which the header's checksum vouches for."""

    class Crash(Exception):
        """The writer dies here."""

    def die(point: str, count: int) -> None:
        if point == "compress.chunk":
            raise Crash(point)

    path = tmp_path / "run.jsonl.gz"
    lines = [json.dumps({"seq": i, "pad": "p" * 200}).encode() + b"\n" for i in range(500)]
    log = Gzlog(path, hooks=die)
    log.append(b"".join(lines))
    with pytest.raises(Crash):
        log.compress()
    with pytest.raises(DamagedLogError, match="interrupted during a compress") as info:
        mimir.load(path)
    assert "`mimir check`" in str(info.value) and info.value.entries_read == 500
    with pytest.warns(PartialReadWarning):
        assert [_line(e) for e in mimir.load(path, errors="partial")] == lines


def test_a_big_gzip_file_is_checked_before_and_read_after(tmp_path: Path):
    """Data too big to keep while checking (over 64 MiB) is decompressed twice: the whole
    file reads back, a cut one gives a prefix then raises, a bad CRC gives no line."""
    line = b'{"pad": "' + b"x" * 990 + b'"}\n'
    count = 70_000  # 70 MB of data, a few hundred kB compressed
    data = gzip.compress(line * count, compresslevel=1)
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(data)
    assert sum(1 for _ in iter_lines(path)) == count
    path.write_bytes(data[: len(data) // 2])
    seen = 0
    with pytest.raises(DamagedLogError, match="truncated") as info:
        for _, got in iter_lines(path):
            assert got == line
            seen += 1
    assert 0 < seen == info.value.entries_read < count
    with pytest.warns(PartialReadWarning, match=f"read {seen:,} entries"):
        assert sum(1 for _ in iter_lines(path, errors="partial")) == seen
    damaged = bytearray(data)
    damaged[-8] ^= 0x10
    path.write_bytes(bytes(damaged))
    with pytest.raises(DamagedLogError, match="CRC-32"):
        next(iter_lines(path))
