"""The documentation runs: every example script and every Python block of the README and docs.

Each script or block runs in a fresh process with a temporary directory as its
working directory, so that it is checked exactly as a reader would run it: as is,
on its own, writing only where it stands.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import mimir
from mimir.serialization import deserialize_numpy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
JQ = shutil.which("jq")


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run Python with ``args`` in ``cwd``; fail the test if it errs or logs an error."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = f"status {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "Traceback" not in result.stderr, report
    assert "--- Logging error ---" not in result.stderr, report
    return result


def files_in(directory: Path) -> set[str]:
    """The names of the files an example left in its working directory."""
    return {path.name for path in directory.iterdir()}


# -- examples/*.py: each with a check of what it really did ---------------------------


def check_quickstart(cwd: Path, stdout: str) -> None:
    printed = [line for line in stdout.splitlines() if line.startswith("iteration:")]
    assert len(printed) == 20
    assert printed[0] == "iteration: 0  training_error: 1"
    assert files_in(cwd) == set()


def check_memory(cwd: Path, stdout: str) -> None:
    assert "last three iterations: [97, 98, 99]" in stdout
    assert files_in(cwd) == set()


def check_save_to_disk(cwd: Path, stdout: str) -> None:
    entries = mimir.load(cwd / "log.jsonl")
    assert len(entries) == 100
    assert entries[-1] == {"iteration": 99, "training_error": 0.01}
    assert files_in(cwd) == {"log.jsonl"}


def check_numpy_entries(cwd: Path, stdout: str) -> None:
    entries = mimir.load(cwd / "arrays.jsonl", object_hook=deserialize_numpy)
    assert len(entries) == 5
    assert all(entry["weights"].shape == (3, 3) for entry in entries)
    assert all(isinstance(entry["weight_norm"], float) for entry in entries)
    assert files_in(cwd) == {"arrays.jsonl"}


def check_context_manager(cwd: Path, stdout: str) -> None:
    entries = mimir.load(cwd / "run.jsonl")
    assert [entry["iteration"] for entry in entries] == list(range(51))
    assert math.isnan(entries[-1]["training_error"])
    assert files_in(cwd) == {"run.jsonl"}


def check_dictconfig_training(cwd: Path, stdout: str) -> None:
    entries = mimir.load(cwd / "train.jsonl")
    metrics = [entry for entry in entries if "training_error" in entry]
    assert [entry["iteration"] for entry in metrics] == list(range(100))
    assert entries[25] == {"message": "checkpoint saved", "iteration": 24}
    assert entries[-1] == {"message": "finished after 100 iterations"}
    assert len(entries) == 105
    assert "finished after 100 iterations" in stdout  # the WARNING reached the console
    assert files_in(cwd) == {"train.jsonl"}


def check_existing_pipeline(cwd: Path, stdout: str) -> None:
    entries = mimir.load(cwd / "app.jsonl")
    assert len(entries) == 6
    assert entries[0] == {"iteration": 0, "training_error": 1.0}
    assert entries[-1] == {"message": "retrying https://example.org/dataset.tar"}
    assert "WARNING urllib3: retrying https://example.org/dataset.tar" in stdout
    assert files_in(cwd) == {"app.jsonl"}


def check_analyse_with_pandas(cwd: Path, stdout: str) -> None:
    assert len(mimir.load(cwd / "run.jsonl")) == 200
    assert "best iteration" in stdout
    assert "20 validation points" in stdout
    assert files_in(cwd) == {"run.jsonl"}


EXAMPLE_CHECKS: dict[str, Callable[[Path, str], None]] = {
    "quickstart": check_quickstart,
    "memory": check_memory,
    "save_to_disk": check_save_to_disk,
    "numpy_entries": check_numpy_entries,
    "context_manager": check_context_manager,
    "dictconfig_training": check_dictconfig_training,
    "existing_pipeline": check_existing_pipeline,
    "analyse_with_pandas": check_analyse_with_pandas,
}


def test_every_example_is_checked():
    """Every script in examples/ has a check here, and every check has its script."""
    assert sorted(path.stem for path in EXAMPLES.glob("*.py")) == sorted(EXAMPLE_CHECKS)


@pytest.mark.parametrize("name", sorted(EXAMPLE_CHECKS))
def test_example_runs_and_does_what_it_says(name, tmp_path):
    """The example script exits cleanly in an empty directory and leaves the expected result."""
    result = run_python([str(EXAMPLES / f"{name}.py")], cwd=tmp_path)
    EXAMPLE_CHECKS[name](tmp_path, result.stdout)


@pytest.mark.parametrize("name", sorted(EXAMPLE_CHECKS))
def test_example_can_run_twice_in_the_same_directory(name, tmp_path):
    """Running an example again in the same directory gives the same result, not an appended one."""
    run_python([str(EXAMPLES / f"{name}.py")], cwd=tmp_path)
    result = run_python([str(EXAMPLES / f"{name}.py")], cwd=tmp_path)
    EXAMPLE_CHECKS[name](tmp_path, result.stdout)


# -- README.md ------------------------------------------------------------------------


def markdown_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """The ```language fenced blocks of a Markdown file, with the line each starts on."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == f"```{language}":
            start = index + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            blocks.append((start + 1, "\n".join(lines[start:end]) + "\n"))
            index = end
        index += 1
    return blocks


README_PYTHON = markdown_blocks(README, "python")


def test_readme_opens_with_the_set_up_commands():
    """After its title and description, the README opens with the set-up and test commands."""
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert first_block is not None
    assert first_block.group(1) == (
        'pip install . && mimir demo\npip install -e ".[test]" && python -m pytest\n'
    )
    before = text[: first_block.start()].strip().splitlines()
    assert before[0] == "# Mímir"
    assert len([line for line in before if line.strip()]) == 2  # title, one-line description


def test_readme_has_python_examples():
    """The README's Python examples were found (so the test below is not vacuous)."""
    assert len(README_PYTHON) >= 8


@pytest.mark.parametrize(
    "code", [code for _, code in README_PYTHON], ids=[f"line{n}" for n, _ in README_PYTHON]
)
def test_readme_python_block_runs_as_is(code, tmp_path):
    """A Python block of the README runs on its own in an empty directory without any error."""
    run_python(["-c", code], cwd=tmp_path)


# -- docs/*.rst -----------------------------------------------------------------------


def rst_python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ``.. code-block:: python`` blocks of a reStructuredText file, with their line."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        code = "\n".join(row for row in code.splitlines() if not row.startswith(":"))
        blocks.append((index + 1, code.strip("\n") + "\n"))
    return blocks


DOCS_PYTHON = [
    (f"{path.stem}-line{line}", code)
    for path in sorted(DOCS.glob("*.rst"))
    for line, code in rst_python_blocks(path)
]


def test_docs_have_python_examples():
    """The documentation's Python blocks were found (so the test below is not vacuous)."""
    assert len(DOCS_PYTHON) >= 10


@pytest.mark.parametrize(
    "code", [code for _, code in DOCS_PYTHON], ids=[name for name, _ in DOCS_PYTHON]
)
def test_docs_python_block_runs_as_is(code, tmp_path):
    """A Python block of the docs runs on its own in an empty directory without any error."""
    run_python(["-c", code], cwd=tmp_path)


@pytest.mark.parametrize(
    "include",
    sorted(
        {
            match
            for path in DOCS.glob("*.rst")
            for match in re.findall(r"literalinclude:: \.\./(\S+)", path.read_text())
        }
    ),
)
def test_docs_include_existing_examples(include):
    """Every file the documentation includes exists in the repository."""
    assert (ROOT / include).is_file()


# -- jq recipes -----------------------------------------------------------------------


def shell_commands() -> list[str]:
    """The ``mimir cat ... | jq ...`` commands shown in the README and in docs/reading.rst."""
    commands = [
        line
        for _, block in markdown_blocks(README, "bash")
        for line in block.splitlines()
        if line.startswith("mimir cat")
    ]
    reading = (DOCS / "reading.rst").read_text(encoding="utf-8")
    commands += [
        line.strip() for line in reading.splitlines() if line.strip().startswith("mimir cat")
    ]
    return [command for command in commands if "jq" in command]


@pytest.mark.skipif(JQ is None, reason="jq is not installed")
@pytest.mark.parametrize("command", shell_commands())
def test_documented_jq_recipe_works(command, tmp_path):
    """A documented `mimir cat | jq` recipe succeeds on a demo log and prints something."""
    run_python(["-m", "mimir", "demo", "--delay", "0", "--output", "run.jsonl"], cwd=tmp_path)
    shutil.copy(tmp_path / "run.jsonl", tmp_path / "log.jsonl")
    command = command.replace("mimir cat", f"{sys.executable} -m mimir cat")
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


# -- the Sphinx build -----------------------------------------------------------------


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    """The documentation builds with Sphinx, warnings treated as errors."""
    pytest.importorskip("sphinx")
    pytest.importorskip("furo")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"),
            *("-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "html" / "index.html").is_file()
