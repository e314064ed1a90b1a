"""mimir.to_frame: the entries of runs as one pandas DataFrame, and the error without pandas."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from run_logs import write_log

import mimir
from mimir.runs import UnknownKeyError

needs_pandas = pytest.mark.skipif(
    importlib.util.find_spec("pandas") is None, reason="pandas is not installed"
)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """runs/a.jsonl (validation every other entry) and runs/b.jsonl.gz (a text key)."""
    write_log(
        tmp_path / "runs" / "a.jsonl",
        [
            {"iteration": i, "loss": 1.0 / (i + 1)} | ({"val": i / 10} if i % 2 else {})
            for i in range(4)
        ],
    )
    write_log(
        tmp_path / "runs" / "b.jsonl.gz",
        [
            {"iteration": i, "loss": 2.0 - i, "phase": "warm-up" if i == 0 else "main"}
            for i in range(3)
        ],
    )
    return tmp_path / "runs"


@needs_pandas
def test_to_frame_has_a_row_per_entry_with_run_and_segment(runs: Path) -> None:
    """Runs in order, a categorical run column, segment 0, NaN where a key is missing."""
    frame = mimir.to_frame(runs)
    assert list(frame.columns) == ["run", "segment", "iteration", "loss", "val", "phase"]
    assert list(frame["run"]) == ["a"] * 4 + ["b"] * 3
    assert list(frame["run"].cat.categories) == ["a", "b"]
    assert list(frame["segment"]) == [0] * 7
    assert list(frame["iteration"]) == [0, 1, 2, 3, 0, 1, 2]
    assert list(frame["loss"]) == [1.0, 0.5, 1 / 3, 0.25, 2.0, 1.0, 0.0]
    assert [v if not math.isnan(v) else None for v in frame["val"]] == [
        None, 0.1, None, 0.3, None, None, None
    ]  # fmt: skip
    assert list(frame["phase"].iloc[4:]) == ["warm-up", "main", "main"]
    assert frame["phase"].iloc[:4].isna().all()
    assert frame.groupby("run", observed=True)["loss"].min().to_dict() == {"a": 0.25, "b": 0.0}


@needs_pandas
def test_to_frame_of_one_log_matches_pandas_reading_it(runs: Path) -> None:
    """For a single log, the key columns are what pandas.DataFrame(mimir.load(path)) gives."""
    import pandas

    path = runs / "a.jsonl"
    frame = mimir.to_frame(path)
    expected = pandas.DataFrame(mimir.load(path))
    pandas.testing.assert_frame_equal(frame.drop(columns=["run", "segment"]), expected)
    assert frame["iteration"].dtype == "int64"


@needs_pandas
def test_to_frame_names_globs_keys_and_x(runs: Path) -> None:
    """names= renames runs, a glob is a spec, keys= keeps those keys, x= must exist."""
    frame = mimir.to_frame([str(runs / "*.gz"), runs / "a.jsonl"], names=["B", "A"], keys=["loss"])
    assert list(frame.columns) == ["run", "segment", "loss"]
    assert list(frame["run"].cat.categories) == ["B", "A"]
    with pytest.raises(UnknownKeyError) as caught:
        mimir.to_frame(runs, x="iteraton")
    assert str(caught.value) == (
        "no entry of the 2 runs has the key 'iteraton'; keys found: iteration, loss, phase,"
        " val; did you mean 'iteration'?"
    )
    with pytest.raises(UnknownKeyError, match=f"no entry of {runs / 'a.jsonl'} has the key 'los'"):
        mimir.to_frame(runs / "a.jsonl", keys=["los"])
    only_a = mimir.to_frame(runs, keys=["val"])  # in one run only: NaN in the other
    assert only_a["val"].isna().tolist() == [True, False, True, False, True, True, True]


@needs_pandas
def test_restarted_run_gets_a_second_segment(tmp_path: Path) -> None:
    """A run appended after a restart from step 3 is segment 1 from there on."""
    path = write_log(tmp_path / "run.jsonl.gz", [{"step": s, "loss": 10 - s} for s in range(6)])
    write_log(path, [{"step": s, "loss": 5.0} for s in range(3, 6)])
    frame = mimir.to_frame(path)
    assert list(frame["segment"]) == [0] * 6 + [1] * 3
    last = frame[frame["segment"] == frame["segment"].max()]
    assert list(last["step"]) == [3, 4, 5]
    assert mimir.to_frame(path, x="step").equals(frame)


@needs_pandas
def test_collected_log_is_split_by_source(tmp_path: Path) -> None:
    """A collected log gives a run per process, named <file>/<source>, without the source."""
    entries = [
        {"step": s, "loss": s * (r + 1), "source": {"host": "h", "pid": 5 + r, "name": f"rank{r}"}}
        for s in range(3)
        for r in range(2)
    ]
    path = write_log(tmp_path / "all.jsonl", entries)
    frame = mimir.to_frame(path)
    assert list(frame["run"]) == ["all/rank0"] * 3 + ["all/rank1"] * 3
    assert list(frame["loss"]) == [0, 1, 2, 0, 2, 4]
    assert "source" not in frame.columns
    whole = mimir.to_frame(path, split_source=False)
    assert list(whole["run"].unique()) == ["all"]
    assert whole["source"].iloc[1] == {"host": "h", "pid": 6, "name": "rank1"}


@needs_pandas
def test_a_key_named_run_needs_other_column_names(tmp_path: Path) -> None:
    """Entries with a key "run" are refused with the fix; run_column= gives another name."""
    path = write_log(tmp_path / "x.jsonl", [{"run": 7, "loss": 1.0}])
    with pytest.raises(ValueError, match=r"has a key 'run'.*run_column="):
        mimir.to_frame(path)
    frame = mimir.to_frame(path, run_column="name")
    assert list(frame.columns) == ["name", "segment", "run", "loss"]


@needs_pandas
def test_notes_txt_is_refused(tmp_path: Path) -> None:
    """A text file gives the NoEntriesError naming it, as everywhere runs are read."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a log\n")
    with pytest.raises(mimir.MalformedLogError, match=r"notes\.txt: not a Mímir log"):
        mimir.to_frame(notes)


def run_without_pandas(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``import pandas`` fails."""
    prelude = "import sys\nsys.modules['pandas'] = None  # import pandas raises ImportError\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_pandas_the_error_says_what_to_install(runs: Path) -> None:
    """to_frame raises ImportError naming the extra; import mimir itself still works."""
    result = run_without_pandas(
        f"""
        import mimir
        try:
            mimir.to_frame({str(runs)!r})
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        'mimir.to_frame needs pandas, which is not installed: pip install "mimir-logger[pandas]"\n'
    )


def test_import_mimir_does_not_import_pandas() -> None:
    """pandas is imported by the first to_frame call, not by import mimir or dir(mimir)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mimir; dir(mimir); f = mimir.to_frame; import mimir.runs, mimir.summary;"
            " print('pandas' in sys.modules, 'numpy' in sys.modules, f.__module__)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.split() == ["False", "False", "mimir.frame"], result.stderr
    assert "to_frame" in mimir.__all__
