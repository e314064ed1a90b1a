"""mimir.runs: finding, naming, splitting and loading the runs that are compared."""

from __future__ import annotations

import json
import math
import pickle
import time
from array import array
from pathlib import Path
from typing import Any

import pytest
from run_logs import write_log

import mimir
from mimir.runs import (
    NO_SOURCE,
    NoEntriesError,
    UnknownKeyError,
    check_keys,
    default_x,
    find_logs,
    load_runs,
    run_names,
    segment_starts,
    source_label,
    split_by_source,
)


def training(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{"iteration": i, "training_error": 1.0 / (i + 1), **extra} for i in range(start, n)]


# -- find_logs ---------------------------------------------------------------------------------


def test_find_logs_takes_files_globs_and_folders(tmp_path: Path) -> None:
    """A file is itself, a glob its matches, a folder its .jsonl and .jsonl.gz files, sorted."""
    runs = tmp_path / "runs"
    for name in ("b.jsonl", "a.jsonl.gz", "c.jsonl"):
        write_log(runs / name, training(2))
    (runs / "notes.txt").write_text("not a log\n")
    (runs / "sub").mkdir()
    write_log(runs / "sub" / "d.jsonl", training(2))
    assert find_logs([runs]) == [runs / "a.jsonl.gz", runs / "b.jsonl", runs / "c.jsonl"]
    assert find_logs([f"{runs}/*.jsonl"]) == [runs / "b.jsonl", runs / "c.jsonl"]
    assert find_logs([str(runs / "c.jsonl")]) == [runs / "c.jsonl"]
    assert find_logs([f"{runs}/**/*.jsonl"]) == [
        runs / "b.jsonl",
        runs / "c.jsonl",
        runs / "sub" / "d.jsonl",
    ]


def test_find_logs_removes_duplicates_keeping_the_first_place(tmp_path: Path) -> None:
    """A file named by two specs (or twice) is listed once, where it first came."""
    write_log(tmp_path / "a.jsonl", training(1))
    write_log(tmp_path / "b.jsonl", training(1))
    found = find_logs(
        [tmp_path / "b.jsonl", str(tmp_path), f"{tmp_path}/../{tmp_path.name}/b.jsonl"]
    )
    assert found == [tmp_path / "b.jsonl", tmp_path / "a.jsonl"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.jsonl", "missing.jsonl: no such file or folder"),
        ("runs/*.jsonl.gz", "runs/*.jsonl.gz: no file matches"),
        ("empty", "empty: the folder holds no .jsonl or .jsonl.gz file"),
    ],
)
def test_find_logs_names_a_spec_that_matches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, message: str
) -> None:
    """A spec matching nothing is a FileNotFoundError whose message names it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError) as caught:
        find_logs([spec])
    assert str(caught.value) == message


def test_find_logs_leaves_out_the_side_files_of_compressed_logs(tmp_path: Path) -> None:
    """`runs/*` names run.jsonl.dict and run.jsonl.lock.k too: only the log is a run."""
    log = write_log(tmp_path / "run.jsonl.gz", training(3))
    side = sorted(p.name for p in tmp_path.iterdir() if p != log)
    assert "run.jsonl.dict" in side  # holds recent entries as plain JSON lines
    assert find_logs([f"{tmp_path}/*"]) == [log]
    assert find_logs([tmp_path / "run.jsonl.dict"]) == [tmp_path / "run.jsonl.dict"]  # alone


def test_find_logs_points_to_the_logs_of_subfolders(tmp_path: Path) -> None:
    """A folder whose logs are all in subfolders says how to name them."""
    write_log(tmp_path / "sweep" / "lr0.1" / "run.jsonl.gz", training(1))
    with pytest.raises(FileNotFoundError) as caught:
        find_logs([tmp_path / "sweep"])
    pattern = f"{tmp_path / 'sweep'}/**/*.jsonl.gz"
    assert str(caught.value) == (
        f"{tmp_path / 'sweep'}: the folder holds no .jsonl or .jsonl.gz file"
        f" (its subfolders do: {pattern!r})"
    )
    assert find_logs([pattern]) == [tmp_path / "sweep" / "lr0.1" / "run.jsonl.gz"]


def test_find_logs_refuses_a_single_string() -> None:
    """find_logs("run.jsonl") would iterate over characters: it is a TypeError instead."""
    with pytest.raises(TypeError, match="sequence of paths"):
        find_logs("run.jsonl")  # type: ignore[arg-type]


# -- run_names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "names"),
    [
        (["runs/a.jsonl", "runs/b.jsonl.gz", "c.gz"], ["a", "b", "c"]),
        (["x/run.jsonl", "y/run.jsonl.gz", "z/other.jsonl"], ["x/run", "y/run", "other"]),
        (["p/x/run.jsonl", "q/x/run.jsonl"], ["p/x/run", "q/x/run"]),
        (
            ["d/run.jsonl", "d/run.jsonl.gz", "e/run.jsonl"],
            ["d/run.jsonl", "d/run.jsonl.gz", "e/run"],
        ),
        (["run.jsonl", "run.jsonl"], ["run.jsonl", "run.jsonl~2"]),
        (["plain.json", "log"], ["plain.json", "log"]),
    ],
)
def test_run_names_are_short_and_unique(paths: list[str], names: list[str]) -> None:
    """The stem; the parent folders where stems collide; the suffix within one folder."""
    assert run_names(paths) == names


def test_run_names_given_must_match_the_logs() -> None:
    """Explicit names are used as they are, one per log; another count is a ValueError."""
    assert run_names(["a.jsonl", "b.jsonl"], ["baseline", "lr=0.1"]) == ["baseline", "lr=0.1"]
    with pytest.raises(ValueError, match="1 name for 2 logs: give one name per log"):
        run_names(["a.jsonl", "b.jsonl"], ["baseline"])


# -- split_by_source -----------------------------------------------------------------------------


def test_split_by_source_keeps_order_and_names_processes() -> None:
    """One list per source in the order of first appearance; names as mimir collect gives them."""
    rank0 = {"host": "gpu1", "pid": 10, "name": "rank0"}
    rank1 = {"host": "gpu1", "pid": 11, "name": "rank1"}
    worker = {"host": "gpu2", "pid": 12}
    entries = [
        {"i": 0, "source": rank1},
        {"i": 1, "source": rank0},
        {"i": 2},
        {"i": 3, "source": worker},
        {"i": 4, "source": rank1},
    ]
    split = split_by_source(entries)
    assert list(split) == ["rank1", "rank0", NO_SOURCE, "gpu2:12"]
    assert [[e["i"] for e in group] for group in split.values()] == [[0, 4], [1], [2], [3]]
    assert split["rank1"][0] is entries[0]  # not copied


def test_split_by_source_restarted_rank_is_one_run_and_hosts_tell_names_apart() -> None:
    """A new pid with the same name continues the run; one name on two hosts is name@host."""
    entries = [
        {"i": 0, "source": {"host": "a", "pid": 1, "name": "rank0"}},
        {"i": 1, "source": {"host": "a", "pid": 2, "name": "rank0"}},  # restarted
        {"i": 2, "source": {"host": "b", "pid": 1, "name": "rank1"}},
        {"i": 3, "source": {"host": "c", "pid": 1, "name": "rank1"}},
    ]
    split = split_by_source(entries)
    assert {k: [e["i"] for e in v] for k, v in split.items()} == {
        "rank0": [0, 1],
        "rank1@b": [2],
        "rank1@c": [3],
    }


def test_split_by_source_other_key_and_labels() -> None:
    """The key is a parameter; a string source is its own label, None is NO_SOURCE."""
    assert list(split_by_source([{"who": "a"}, {"who": "b"}], key="who")) == ["a", "b"]
    assert source_label(None) == NO_SOURCE == "(no source)"
    assert source_label({"host": "h", "pid": 3, "name": ""}) == "h:3"
    assert source_label([1, 2]) == "[1,2]"


# -- segment_starts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xs", "starts"),
    [
        ([], [0]),
        ([0, 1, 2], [0]),
        ([0, 1, 2, 0, 1, 5, 3], [0, 3, 6]),
        ([1, 1, 1], [0]),
        ([0.0, math.nan, 1.0, 0.5], [0, 3]),
        ([5, "x", 4], [0, 2]),
    ],
)
def test_segment_starts(xs: list[Any], starts: list[int]) -> None:
    """A new segment wherever x goes backwards; always 0 first; NaN and text are skipped."""
    assert segment_starts(xs) == starts


def test_restarted_run_appended_to_one_file_has_two_segments(tmp_path: Path) -> None:
    """A run restarted from iteration 50 into the same compressed log starts a segment there."""
    path = write_log(tmp_path / "run.jsonl.gz", training(80))
    write_log(path, training(100, start=50))  # the restart appends
    (run,) = load_runs([path])
    assert run.length == 130
    assert run.segment_starts("iteration") == [0, 80]
    assert run.segment_starts(None) == [0]  # the entry index never goes back


# -- check_keys and UnknownKeyError ------------------------------------------------------------


def test_misspelt_key_message_lists_keys_and_suggests_the_closest() -> None:
    """The message says which keys exist and which was probably meant."""
    found = ["validation_error", "iteration", "training_error"]
    with pytest.raises(UnknownKeyError) as caught:
        check_keys(["iteration", "trainig_error"], found, "run.jsonl")
    assert str(caught.value) == (
        "no entry of run.jsonl has the key 'trainig_error'; keys found: iteration,"
        " training_error, validation_error; did you mean 'training_error'?"
    )
    assert isinstance(caught.value, ValueError)
    assert caught.value.keys == ["trainig_error"]
    assert caught.value.suggestions == {"trainig_error": "training_error"}
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)


def test_unknown_keys_without_a_close_one_and_several() -> None:
    """No suggestion when nothing is close; several keys are listed; a case slip is found."""
    with pytest.raises(UnknownKeyError, match=r"has the key 'zzz'; keys found: loss$"):
        check_keys(["zzz"], {"loss"}, "a.jsonl")
    with pytest.raises(UnknownKeyError) as caught:
        check_keys(["Loss", "acc"], {"loss", "accuracy"}, "b.jsonl")
    assert str(caught.value) == (
        "no entry of b.jsonl has the keys 'Loss', 'acc'; keys found: accuracy, loss;"
        " did you mean 'loss' for 'Loss', 'accuracy' for 'acc'?"
    )
    with pytest.raises(UnknownKeyError, match="keys found: none"):
        check_keys(["x"], (), "empty.jsonl")
    check_keys(["loss"], {"loss"}, "c.jsonl")  # nothing missing: no error


# -- load_runs ---------------------------------------------------------------------------------


def test_load_runs_keeps_numbers_in_compact_columns(tmp_path: Path) -> None:
    """Numbers go to arrays (int or float), sparse keys store only their rows, text stays a list."""
    entries = [
        {"iteration": i, "loss": 1.5 * i, "note": "warm-up" if i < 2 else None}
        | ({"validation": i / 10} if i % 3 == 2 else {})
        for i in range(9)
    ]
    (run,) = load_runs([write_log(tmp_path / "run.jsonl", entries)])
    assert (run.name, run.source, run.length) == ("run", None, 9)
    assert run.keys() == ["iteration", "loss", "note", "validation"]
    iteration = run.columns["iteration"]
    assert iteration.rows == range(9) and iteration.values == array("q", range(9))
    assert run.columns["loss"].values.typecode == "d"
    assert run.columns["validation"].rows == array("q", [2, 5, 8])
    assert not run.columns["note"].numeric and run.columns["note"].values[:3] == ["warm-up"] * 2 + [
        None
    ]
    assert run.column("validation")[:3] == [None, None, 0.2]
    assert run.xy("iteration", "validation") == ([2, 5, 8], [0.2, 0.5, 0.8])
    assert list(run.entries()) == entries
    assert next(run.entries()) == entries[0]  # one at a time


def test_columns_that_start_late_or_stop_early(tmp_path: Path) -> None:
    """A key logged from some entry on, or up to one, keeps its rows across chunks of entries."""
    count = 10_000  # more than one chunk of entries
    entries = [
        {"i": i} | ({"late": i * 2} if i >= 3 else {}) | ({"early": 0.5} if i < 5000 else {})
        for i in range(count)
    ]
    (run,) = load_runs([write_log(tmp_path / "run.jsonl", entries)])
    assert run.columns["late"].rows == range(3, count)
    assert run.columns["early"].rows == range(0, 5000)
    assert run.column("late")[:4] == [None, None, None, 6]
    assert run.column("early", missing=-1)[4999:5001] == [0.5, -1]
    assert run.xy("i", "late")[0][:2] == [3, 4]
    assert run.xy("late", "early")[0][:2] == [6, 8]
    with pytest.raises(ValueError, match=r"'i' of .* was not loaded"):
        load_runs([tmp_path / "run.jsonl"], keys=["late"])[0].column("i")


def test_load_runs_reads_nan_infinity_and_huge_integers_as_json_does(tmp_path: Path) -> None:
    """NaN and infinities (as Mímir writes them) and integers beyond 64 bits keep their values."""
    path = tmp_path / "odd.jsonl"
    path.write_text(
        '{"a": NaN, "b": Infinity, "c": 123456789012345678901234567890, "d": 1e300}\n'
        '{"a": 1.0, "b": -Infinity, "c": 1, "d": true}\n'
    )
    (run,) = load_runs([path])
    assert math.isnan(run.columns["a"].values[0])
    assert list(run.columns["b"].values) == [math.inf, -math.inf]
    assert run.columns["c"].values == [123456789012345678901234567890, 1]
    assert run.columns["d"].values == [1e300, True]  # a bool is not a number here


def test_load_runs_splits_a_collected_log_by_source(tmp_path: Path) -> None:
    """A collected log gives one run per process, named <file>/<source>; others one run each."""
    path = tmp_path / "collected.jsonl"
    lines = []
    for i in range(3):
        for rank in (0, 1):
            source = {"host": "gpu1", "pid": 100 + rank, "name": f"rank{rank}"}
            lines.append({"step": i, "loss": rank + i, "source": source})
    write_log(path, lines)
    write_log(tmp_path / "single.jsonl", training(2))
    runs = load_runs([path, tmp_path / "single.jsonl"])
    assert [(r.name, r.source, r.length) for r in runs] == [
        ("collected/rank0", "rank0", 3),
        ("collected/rank1", "rank1", 3),
        ("single", None, 2),
    ]
    assert runs[1].column("loss") == [1, 2, 3]
    assert "source" not in runs[0].columns and "source" in runs[0].found
    assert runs[0].where == f"{path} (source rank0)"
    (whole,) = load_runs([path], split_source=False)
    assert whole.length == 6 and whole.columns["source"].values[0]["name"] == "rank0"


def test_load_runs_collected_by_a_real_collector(tmp_path: Path) -> None:
    """Entries forwarded by two named processes to mimir's Collector split into two runs."""
    pytest.importorskip("zmq")
    from mimir.stream.collector import Collector
    from mimir.stream.forwarder import ZMQForwardHandler

    path = tmp_path / "collected.jsonl.gz"
    with Collector("tcp://127.0.0.1:0", filename=path, flush_interval=0.05) as collector:
        collector.start()
        for rank in (0, 1):
            handler = ZMQForwardHandler(collector.address, name=f"rank{rank}")
            for i in range(5):
                handler.add_line(json.dumps({"step": i, "loss": rank * 10 + i}).encode() + b"\n")
            handler.close()
        deadline = time.monotonic() + 30
        while collector.received < 10:
            assert time.monotonic() < deadline, "the collector did not receive every entry"
            time.sleep(0.01)
    runs = load_runs([path])
    assert [r.name for r in runs] == ["collected/rank0", "collected/rank1"]
    assert [r.column("loss") for r in runs] == [[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]]
    assert runs[0].where == f"{path} (source rank0)"


def test_load_runs_given_keys_loads_only_those(tmp_path: Path) -> None:
    """keys= keeps memory to the columns asked for; the others still count as found."""
    path = write_log(tmp_path / "run.jsonl", training(4, extra=1))
    (run,) = load_runs([path], keys=["training_error"])
    assert run.keys() == ["training_error"]
    assert run.found == {"iteration", "training_error", "extra"}


def test_a_file_that_is_not_a_log_is_a_no_entries_error(tmp_path: Path) -> None:
    """notes.txt is refused as a whole, by name, not as a bad first line."""
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting notes\n\nlearning rate 0.1 looked best\n")
    with pytest.raises(NoEntriesError) as caught:
        load_runs([notes])
    assert str(caught.value) == (
        f"{notes}: not a Mímir log: no line of it is a JSON entry (line 1 is 'Meeting notes');"
        " a log has one JSON object per line (.jsonl or .jsonl.gz)"
    )
    assert isinstance(caught.value, mimir.MalformedLogError)
    assert pickle.loads(pickle.dumps(caught.value)).filename == str(notes)


def test_a_log_with_a_bad_line_is_malformed_not_empty(tmp_path: Path) -> None:
    """A log whose first line is damaged but has entries after it points at the line."""
    path = tmp_path / "run.jsonl"
    path.write_text('garbage\n{"iteration": 0}\n[1, 2]\n')
    with pytest.raises(mimir.MalformedLogError) as caught:
        load_runs([path])
    assert not isinstance(caught.value, NoEntriesError)
    assert str(caught.value).startswith(f"{path}, line 1: not a JSON entry")
    path.write_text('{"iteration": 0}\n[1, 2]\n')
    with pytest.raises(mimir.MalformedLogError, match="line 2: not an entry: a JSON list"):
        load_runs([path])


def test_an_empty_log_is_a_run_without_entries(tmp_path: Path) -> None:
    """A log just created (nothing logged yet) is a run of length 0, not an error."""
    empty = tmp_path / "new.jsonl"
    empty.write_bytes(b"")
    (run,) = load_runs([empty])
    assert (run.name, run.length, run.columns) == ("new", 0, {})


def test_default_x() -> None:
    """iteration, else step, else epoch, else None (the entry index)."""
    assert default_x({"epoch", "step", "loss"}) == "step"
    assert default_x(["epoch", "iteration"]) == "iteration"
    assert default_x({"loss"}) is None


def test_runs_imports_no_optional_package() -> None:
    """mimir.runs works with the standard library and mimir's core only."""
    import ast

    import mimir.runs

    tree = ast.parse(Path(mimir.runs.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0]
        if isinstance(node, ast.ImportFrom)
        else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    allowed = {"__future__", "array", "collections", "dataclasses", "difflib", "glob"}
    allowed |= {"itertools", "json", "mimir", "orjson", "os", "pathlib", "typing"}
    assert imported <= allowed
