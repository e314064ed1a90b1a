"""Runs as one pandas DataFrame: :func:`mimir.to_frame`.

pandas is imported when :func:`to_frame` is called, never by ``import mimir``;
without it, the call raises :class:`ImportError` saying what to install
(``pip install "mimir-logger[pandas]"``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from mimir.runs import X_KEYS, Run, check_keys, default_x, load_runs

if TYPE_CHECKING:
    import pandas

__all__ = ["to_frame"]

_INSTALL = 'pip install "mimir-logger[pandas]"'


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise ImportError(
            f"mimir.to_frame needs pandas, which is not installed: {_INSTALL}"
        ) from error
    return pandas


def to_frame(
    files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    x: str | None = None,
    names: Sequence[str] | None = None,
    keys: Collection[str] | None = None,
    split_source: bool = True,
    source_key: str = "source",
    errors: str = "strict",
    run_column: str = "run",
    segment_column: str = "segment",
) -> pandas.DataFrame:
    """All entries of the runs in ``files``, as one DataFrame with a row per entry.

    ``files`` is a log, a glob (``"runs/*.jsonl.gz"``), a folder (its ``.jsonl`` and
    ``.jsonl.gz`` files) or a list of them; each file is a run named after it
    (:func:`mimir.runs.run_names`, or ``names``, one per file), and a log collected
    from many processes is a run per process (``<file>/<source>``) unless
    ``split_source`` is false.

    The columns: ``run`` (categorical, the runs in their order), ``segment`` (0, then
    1, 2 ... each time ``x`` goes backwards within a run: a run restarted into the
    same log), then one per key, in the order the keys first appear. ``x`` defaults
    to ``iteration``, else ``step``, else ``epoch`` (a run with none of them is one
    segment, as is a run without ``x``). ``keys`` keeps only those keys (and ``x``).
    A key given (``keys``, ``x``) that no run has raises
    :class:`mimir.runs.UnknownKeyError`, which lists the keys found.
    An entry without a key has NaN there (None in a column of text), as in
    ``pandas.DataFrame(mimir.load(path))``. ``run_column`` and ``segment_column``
    rename the two added columns, e.g. when entries have a key ``run``.

    >>> frame = mimir.to_frame("runs/")  # doctest: +SKIP
    >>> frame.groupby("run")["training_error"].min()  # doctest: +SKIP
    """
    pandas = _pandas()
    import numpy

    if run_column == segment_column:
        raise ValueError(f"run_column and segment_column are both {run_column!r}")
    specs = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    shown = None if keys is None else {*keys, *([x] if x is not None else [])}
    wanted = None if shown is None else {*shown, *X_KEYS}  # the default x, for segments
    runs = load_runs(
        specs,
        names,
        split_source=split_source,
        keys=wanted,
        source_key=source_key,
        errors=errors,
    )
    asked = [*(keys or ()), *([x] if x is not None else [])]
    if asked:  # a key some runs lack is fine (NaN there); one that none has is a mistake
        found = set().union(*(run.found for run in runs))
        where = runs[0].where if len(runs) == 1 else f"the {len(runs)} runs"
        check_keys(asked, found, where)
    for run in runs:
        clash = {run_column, segment_column} & set(run.columns)
        if clash:
            raise ValueError(
                f"{run.where} has a key {sorted(clash)[0]!r}, the name of a column to_frame"
                " adds: pass run_column= and segment_column= names the entries do not use"
            )
    frames = [_run_frame(run, x, shown, segment_column, pandas, numpy) for run in runs]
    if frames:
        frame = pandas.concat(frames, ignore_index=True, sort=False)
    else:  # pragma: no cover - load_runs gives a run for every file found
        frame = pandas.DataFrame({segment_column: numpy.zeros(0, dtype="int64")})
    lengths = [run.length for run in runs]
    codes = numpy.repeat(numpy.arange(len(runs), dtype="int32"), lengths)
    frame.insert(
        0, run_column, pandas.Categorical.from_codes(codes, categories=[r.name for r in runs])
    )
    return frame


def _run_frame(
    run: Run,
    x: str | None,
    shown: Collection[str] | None,
    segment_column: str,
    pandas: Any,
    numpy: Any,
) -> Any:
    """One run's rows: its segment numbers, then its columns, each the run's length."""
    length = run.length
    segments = numpy.zeros(length, dtype="int64")
    key = x if x is not None else default_x(run.columns)
    if key is not None and key in run.columns:
        for start in run.segment_starts(key)[1:]:
            segments[start:] += 1
    data: dict[str, Any] = {segment_column: segments}
    for name, column in run.columns.items():
        if shown is None or name in shown:
            data[name] = _dense(column, length, numpy)
    return pandas.DataFrame(data, copy=False)


def _dense(column: Any, length: int, numpy: Any) -> Any:
    """A column's values, the run's length: numbers as a numpy array (NaN where missing),
    anything else as a list (None where missing) for pandas to infer its type."""
    values = column.values
    complete = isinstance(column.rows, range) and len(column.rows) == length
    if column.numeric:
        dtype = "int64" if values.typecode == "q" else "float64"
        numbers = numpy.frombuffer(values, dtype=dtype) if len(values) else numpy.zeros(0, dtype)
        if complete:
            return numbers.copy()
        dense = numpy.full(length, numpy.nan)
        dense[numpy.asarray(column.rows, dtype="int64")] = numbers
        return dense
    if complete:
        return list(values)
    dense = [None] * length
    for row, value in zip(column.rows, values, strict=True):
        dense[row] = value
    return dense
