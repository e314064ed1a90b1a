"""``mimir summary`` and mimir.summary: what each run holds, exactly as printed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from run_logs import write_log

from mimir.cli import main
from mimir.runs import UnknownKeyError, load_runs
from mimir.summary import format_json, format_table, summarize, summarize_logs

TABLE = """\
baseline: runs/baseline.jsonl, 5 entries, iteration 0 to 4
  key               count  nan     min  max    last
  iteration             5    0       0    4       4
  training_error        5    0  0.0625    1  0.0625
  validation_error      2    0     0.2  0.6     0.2

lr_high: runs/lr_high.jsonl.gz, 3 entries, iteration 0 to 2
  key               count  nan     min  max    last
  iteration             3    0       0    2       2
  training_error        3    1     1.5    2     nan
  grad_norm             3    0       3  inf       3
  other keys: phase
"""

JSON_LINES = [
    {
        "run": "baseline",
        "path": "runs/baseline.jsonl",
        "source": None,
        "entries": 5,
        "x": {"key": "iteration", "min": 0, "max": 4, "segments": 1},
        "keys": {
            "iteration": {"count": 5, "nan": 0, "min": 0, "max": 4, "last": 4},
            "training_error": {"count": 5, "nan": 0, "min": 0.0625, "max": 1.0, "last": 0.0625},
            "validation_error": {"count": 2, "nan": 0, "min": 0.2, "max": 0.6, "last": 0.2},
        },
        "other_keys": [],
    },
    {
        "run": "lr_high",
        "path": "runs/lr_high.jsonl.gz",
        "source": None,
        "entries": 3,
        "x": {"key": "iteration", "min": 0, "max": 2, "segments": 1},
        "keys": {
            "iteration": {"count": 3, "nan": 0, "min": 0, "max": 2, "last": 2},
            "training_error": {"count": 3, "nan": 1, "min": 1.5, "max": 2.0, "last": "NaN"},
            "grad_norm": {"count": 3, "nan": 0, "min": 3.0, "max": "Infinity", "last": 3.0},
        },
        "other_keys": ["phase"],
    },
]


@pytest.fixture
def two_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """runs/baseline.jsonl and runs/lr_high.jsonl.gz (with a NaN and an infinity), cwd tmp_path."""
    monkeypatch.chdir(tmp_path)
    baseline = []
    for i, error in enumerate([1.0, 0.5, 0.25, 0.125, 0.0625]):
        entry = {"iteration": i, "training_error": error}
        if i % 2:
            entry["validation_error"] = [0.6, 0.2][i // 2]
        baseline.append(entry)
    write_log(tmp_path / "runs" / "baseline.jsonl", baseline)
    values = [(2.0, 10), (1.5, math.inf), (math.nan, 3)]
    write_log(
        tmp_path / "runs" / "lr_high.jsonl.gz",
        [
            {"iteration": i, "training_error": e, "grad_norm": g, "phase": "train"}
            for i, (e, g) in enumerate(values)
        ],
    )
    return tmp_path


def mimir_command(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mimir", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- the output, exactly -------------------------------------------------------------------------


def test_table_of_two_runs_from_the_command(two_runs: Path) -> None:
    """`mimir summary runs` prints the aligned table; nothing on stderr, status 0."""
    result = mimir_command(two_runs, "summary", "runs")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == TABLE


def test_json_of_two_runs_from_the_command(two_runs: Path) -> None:
    """--json prints one strict-JSON object per run, NaN and infinity as strings."""
    result = mimir_command(two_runs, "summary", "runs/baseline.jsonl", "runs/*.gz", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines] == JSON_LINES
    for line in lines:
        json.loads(line, parse_constant=lambda name: pytest.fail(f"not strict JSON: {name}"))


def test_table_and_json_in_process(two_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """mimir.cli.main and the library functions give the same text as the command."""
    assert main(["summary", "runs"]) == 0
    assert capsys.readouterr().out == TABLE
    assert main(["summary", "runs", "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == JSON_LINES
    summaries = summarize_logs(["runs"])
    assert format_table(summaries) == TABLE
    assert [json.loads(line) for line in format_json(summaries).splitlines()] == JSON_LINES
    assert math.isnan(summaries[1]["keys"]["training_error"]["last"])


def test_names_x_and_segments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--name renames runs; --x picks the key; a restarted run shows its segments."""
    path = write_log(
        tmp_path / "run.jsonl", [{"step": s, "epoch": s // 2, "loss": 9 - s} for s in range(6)]
    )
    write_log(path, [{"step": s, "epoch": s // 2, "loss": 1.5} for s in range(2, 6)])  # restarted
    assert main(["summary", str(path), "--name", "first try", "--x", "epoch"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"first try: {path}, 10 entries, epoch 0 to 2 in 2 segments (epoch goes back 1 time)"
    )
    (summary,) = summarize_logs([path])
    assert summary["x"] == {"key": "step", "min": 0, "max": 5, "segments": 2}
    assert summary["keys"]["loss"] == {"count": 10, "nan": 0, "min": 1.5, "max": 9, "last": 1.5}


def test_x_key_in_some_runs_only(two_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--x a key one run lacks: that run has no x range; a key no run has is status 2."""
    assert main(["summary", "runs", "--x", "validation_error"]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line[:1] != " "]
    assert headers == [
        "baseline: runs/baseline.jsonl, 5 entries, validation_error 0.2 to 0.6"
        " in 2 segments (validation_error goes back 1 time)",
        "",
        "lr_high: runs/lr_high.jsonl.gz, 3 entries, no numbers under validation_error",
    ]
    assert main(["summary", "runs", "--x", "phase"]) == 0  # text: no range either
    assert "3 entries, no numbers under phase" in capsys.readouterr().out
    assert main(["summary", "runs", "--x", "epoch"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "mimir summary: error: no entry of the 2 runs has the key 'epoch'; keys found:"
        " grad_norm, iteration, phase, training_error, validation_error\n"
    )


def test_entry_index_when_no_x_key(tmp_path: Path) -> None:
    """Without iteration, step or epoch, the x range is that of the entry index."""
    path = write_log(tmp_path / "loss.jsonl", [{"loss": 3}, {"loss": 2}, {"message": "done"}])
    (summary,) = summarize_logs([path])
    assert summary["x"] == {"key": None, "min": 0, "max": 2, "segments": 1}
    assert summary["other_keys"] == ["message"]
    assert format_table([summary]).splitlines()[0] == (
        f"loss: {path}, 3 entries, entry index 0 to 2"
    )


def test_collected_log_is_summarized_per_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log from mimir collect gives a block per process; --no-split one for the file."""
    entries = [
        {"step": s, "loss": r + s, "source": {"host": "gpu1", "pid": 7 + r, "name": f"rank{r}"}}
        for s in range(3)
        for r in range(2)
    ]
    path = write_log(tmp_path / "collected.jsonl", entries)
    assert main(["summary", str(path), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["run"], s["source"], s["entries"]) for s in out] == [
        ("collected/rank0", "rank0", 3),
        ("collected/rank1", "rank1", 3),
    ]
    assert out[1]["keys"]["loss"]["last"] == 3
    assert main(["summary", str(path), "--json", "--no-split"]) == 0
    (whole,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (whole["run"], whole["entries"], whole["other_keys"]) == ("collected", 6, ["source"])


def test_empty_log_and_no_numbers(tmp_path: Path) -> None:
    """A log with no entry yet, and one with no numbers, are said so."""
    (tmp_path / "new.jsonl").write_bytes(b"")
    write_log(tmp_path / "text.jsonl", [{"message": "hello"}])
    table = format_table(summarize_logs([tmp_path / "new.jsonl", tmp_path / "text.jsonl"]))
    assert table == (
        f"new: {tmp_path / 'new.jsonl'}, no entries\n"
        "\n"
        f"text: {tmp_path / 'text.jsonl'}, 1 entry, entry index 0 to 0\n"
        "  (no numeric keys)\n"
        "  other keys: message\n"
    )


# -- errors: one line each, status 2 for a wrong argument, 1 for bad data -------------------------


def test_misspelt_x_key(two_runs: Path) -> None:
    """--x with a typo: the keys found and the closest, exit status 2."""
    result = mimir_command(two_runs, "summary", "runs/baseline.jsonl", "--x", "trainig_error")
    assert result.returncode == 2
    assert result.stderr == (
        "mimir summary: error: no entry of runs/baseline.jsonl has the key 'trainig_error';"
        " keys found: iteration, training_error, validation_error;"
        " did you mean 'training_error'?\n"
    )
    with pytest.raises(UnknownKeyError):
        summarize(load_runs(["runs/baseline.jsonl"])[0], "trainig_error")


def test_notes_txt_is_not_a_log(two_runs: Path) -> None:
    """A text file: a one-line error naming it, status 1; the other runs are still shown."""
    (two_runs / "notes.txt").write_text("lr 0.1 was best\n")
    result = mimir_command(two_runs, "summary", "notes.txt", "runs/baseline.jsonl")
    assert result.returncode == 1
    assert result.stderr == (
        "mimir summary: error: notes.txt: not a Mímir log: no line of it is a JSON entry"
        " (line 1 is 'lr 0.1 was best'); a log has one JSON object per line"
        " (.jsonl or .jsonl.gz)\n"
    )
    assert result.stdout == (
        "baseline: runs/baseline.jsonl, 5 entries, iteration 0 to 4\n"
        "  key               count     min  max    last\n"
        "  iteration             5       0    4       4\n"
        "  training_error        5  0.0625    1  0.0625\n"
        "  validation_error      2     0.2  0.6     0.2\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs/*.csv"], "runs/*.csv: no file matches"),
        (["missing.jsonl"], "missing.jsonl: no such file or folder"),
        (["runs", "--name", "a"], "1 name for 2 logs: give one name per log"),
    ],
)
def test_usage_errors_exit_2(two_runs: Path, args: list[str], message: str) -> None:
    """A spec matching nothing, or names not matching the logs: status 2 and one line."""
    result = mimir_command(two_runs, "summary", *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"mimir summary: error: {message}\n"


def test_no_file_is_an_argparse_usage_error(two_runs: Path) -> None:
    """`mimir summary` alone prints the usage and exits 2."""
    result = mimir_command(two_runs, "summary")
    assert result.returncode == 2 and "usage: mimir summary" in result.stderr


def test_damaged_log_exit_1_and_partial(two_runs: Path) -> None:
    """A cut compressed log is an error (status 1); --partial summarizes what is readable."""
    data = (two_runs / "runs" / "lr_high.jsonl.gz").read_bytes()
    (two_runs / "cut.jsonl.gz").write_bytes(data[: len(data) - 6])
    result = mimir_command(two_runs, "summary", "cut.jsonl.gz")
    assert result.returncode == 1
    assert result.stderr.startswith("mimir summary: error: cut.jsonl.gz: ")
    assert result.stderr.count("\n") == 1
    partial = mimir_command(two_runs, "summary", "cut.jsonl.gz", "--partial")
    assert partial.returncode == 0
    assert partial.stderr.startswith("mimir summary: warning: cut.jsonl.gz: ")
    assert partial.stdout.startswith("cut: cut.jsonl.gz, ")
