"""Runs: the logs being compared, found, named, split and loaded the same way everywhere.

``mimir summary``, :func:`mimir.to_frame` and the plots of several runs all start
here:

* :func:`find_logs` turns what the user typed (files, globs, folders) into log files;
* :func:`run_names` gives each file a short, unique name;
* :func:`split_by_source` turns a collected log (the entries of many processes,
  each tagged by ``mimir collect`` with its ``source``) into one run per process;
* :func:`segment_starts` finds where a restarted run, appended to the same file,
  starts over;
* :func:`check_keys` says which keys a run does have when asked for one it lacks;
* :func:`load_runs` does all of it and keeps each run's values column by column,
  in compact arrays where they are numbers (:class:`Run`).

Only the standard library and :mod:`mimir.reader` are used here.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from mimir.gzlog.files import LogFiles
from mimir.reader import MalformedLogError, iter_lines, loads_line

__all__ = [
    "NO_SOURCE",
    "X_KEYS",
    "Column",
    "NoEntriesError",
    "Run",
    "UnknownKeyError",
    "check_keys",
    "default_x",
    "find_logs",
    "is_number",
    "load_runs",
    "run_names",
    "segment_starts",
    "source_label",
    "split_by_source",
]

#: The run name of the entries of a collected log that carry no source.
NO_SOURCE = "(no source)"

_UNSOURCED = (NO_SOURCE, None)

#: The keys tried, in this order, for the x axis when none is given.
X_KEYS = ("iteration", "step", "epoch")

_LOG_SUFFIXES = (".jsonl.gz", ".jsonl", ".gz")
_FOLDER_PATTERNS = ("*.jsonl", "*.jsonl.gz")
_GLOB_CHARS = frozenset("*?[")
_SHOWN_KEYS = 40  # keys listed in an UnknownKeyError at most
_INT53 = 1 << 53  # integers a float holds exactly


# -- errors -----------------------------------------------------------------------------------


class UnknownKeyError(ValueError):
    """A key asked for (``--x trainig_error``) is in no entry of a run.

    A :class:`ValueError`: the key is a wrong argument, as a misspelt option value
    is, not a missing item of a mapping; its message is a sentence (a
    :class:`KeyError` would print it in quotes) and the command line reports it like
    every other bad value. The message lists the keys the run does have and
    suggests the closest. Attributes: ``keys`` (those missing), ``found``,
    ``where`` and ``suggestions`` (missing key -> closest key found).
    """

    def __init__(
        self,
        keys: Sequence[str],
        found: Collection[str],
        where: str,
        suggestions: Mapping[str, str] | None = None,
    ) -> None:
        self.keys = list(keys)
        self.found = sorted(found)
        self.where = where
        self.suggestions = dict(suggestions or {})
        super().__init__(self._message())

    def _message(self) -> str:
        if len(self.keys) == 1:
            what = f"the key {self.keys[0]!r}"
        else:
            what = "the keys " + ", ".join(map(repr, self.keys))
        if self.found:
            shown = ", ".join(self.found[:_SHOWN_KEYS])
            if len(self.found) > _SHOWN_KEYS:
                shown += f" and {len(self.found) - _SHOWN_KEYS} more"
        else:
            shown = "none"
        message = f"no entry of {self.where} has {what}; keys found: {shown}"
        if len(self.keys) == 1 and self.suggestions:
            message += f"; did you mean {self.suggestions[self.keys[0]]!r}?"
        elif self.suggestions:
            hints = ", ".join(f"{close!r} for {key!r}" for key, close in self.suggestions.items())
            message += f"; did you mean {hints}?"
        return message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.keys, self.found, self.where, self.suggestions))


class NoEntriesError(MalformedLogError):
    """A file given as a log holds no JSON entry at all (``notes.txt``, a ``.csv``).

    A :class:`~mimir.MalformedLogError` (so a :class:`ValueError`), since what was
    read is not a log; but its message says that the whole file is not one, rather
    than pointing at its first line as if the rest were fine. An empty file is not
    this error: it is a log that has no entry yet.
    """

    def __init__(self, filename: str, lineno: int, line: bytes) -> None:
        start = line.strip()[:60].decode("utf-8", "replace")
        ValueError.__init__(
            self,
            f"{filename}: not a Mímir log: no line of it is a JSON entry (line {lineno} is"
            f" {start!r}); a log has one JSON object per line (.jsonl or .jsonl.gz)",
        )
        self.filename = filename
        self.lineno = lineno
        self.line = line

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.filename, self.lineno, self.line))


def check_keys(wanted: Sequence[str], found: Collection[str], where: str) -> None:
    """Raise :class:`UnknownKeyError` unless every key of ``wanted`` is in ``found``.

    ``where`` names what was searched, e.g. ``"run.jsonl"``; the message reads
    ``no entry of run.jsonl has the key 'trainig_error'; keys found: iteration,
    training_error; did you mean 'training_error'?``.
    """
    present = set(found)
    missing = [key for key in dict.fromkeys(wanted) if key not in present]
    if not missing:
        return
    candidates = sorted(present, key=str)
    suggestions = {}
    for key in missing:
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        if not close:  # a difference of case ("Loss"), or a prefix ("acc"), is close too
            folded = key.casefold()
            close = [c for c in candidates if c.casefold() == folded] or sorted(
                (c for c in candidates if c.casefold().startswith(folded)), key=len
            )
        if close:
            suggestions[key] = close[0]
    raise UnknownKeyError(missing, present, where, suggestions)


# -- finding and naming logs ------------------------------------------------------------------


def _folder_logs(folder: Path) -> list[Path]:
    found = {path for pattern in _FOLDER_PATTERNS for path in folder.glob(pattern)}
    return sorted(path for path in found if not path.is_dir())


def find_logs(specs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The log files named by ``specs``, in order, each once.

    A spec is a file, a glob (``runs/*.jsonl.gz``, ``runs/**/*.jsonl``) or a folder,
    which stands for its ``*.jsonl`` and ``*.jsonl.gz`` files (not those of its
    subfolders), sorted by name; a folder matched by a glob is taken the same way.
    A spec that matches nothing raises :class:`FileNotFoundError` naming it. A file
    named twice (or by two specs) is kept at its first place. The files a compressed
    log keeps beside it (``run.jsonl.dict``, ``run.jsonl.lock.k`` ...) are left out
    when the log itself is named, as ``runs/*`` does.
    """
    if isinstance(specs, (str, os.PathLike)):
        raise TypeError(f"specs must be a sequence of paths, not the single path {specs!r}")
    paths: list[Path] = []
    seen: set[str] = set()
    for spec in specs:
        text = os.fspath(spec)
        path = Path(text)
        if path.is_dir():
            matches = _folder_logs(path)
            if not matches:
                deeper = [
                    repr(os.path.join(text, "**", pattern))
                    for pattern in _FOLDER_PATTERNS
                    if any(path.rglob(pattern))
                ]
                hint = f" (its subfolders do: {' and '.join(deeper)})" if deeper else ""
                raise FileNotFoundError(
                    f"{text}: the folder holds no .jsonl or .jsonl.gz file{hint}"
                )
        elif os.path.lexists(text):
            matches = [path]
        elif _GLOB_CHARS & set(text):
            matches = []
            for name in sorted(glob.glob(text, recursive=True)):
                match = Path(name)
                matches.extend(_folder_logs(match) if match.is_dir() else [match])
            if not matches:
                raise FileNotFoundError(f"{text}: no file matches")
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
        for match in matches:
            identity = os.path.realpath(match)
            if identity not in seen:
                seen.add(identity)
                paths.append(match)
    logs = {os.path.realpath(path) for path in paths if path.name.endswith(".gz")}
    return [path for path in paths if not _side_file(path, logs)]


_SIDE_SUFFIXES = (".add", ".dict", ".temp", ".lock", ".lock.new", ".lock.k", ".repairs", ".new")


def _side_file(path: Path, logs: set[str]) -> bool:
    """Whether ``path`` is one of the files a compressed log in ``logs`` keeps beside it.

    ``mimir summary runs/*`` names ``run.jsonl.dict`` (a copy of recent entries the
    compressor uses) and ``run.jsonl.lock.k`` along with ``run.jsonl.gz``: only the
    log is a run.
    """
    name = os.path.realpath(path)
    for suffix in _SIDE_SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            log = stem if stem.endswith(".gz") else stem + ".gz"
            if log in logs and name in vars(LogFiles.of(log)).values():
                return True
    return False


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _LOG_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def run_names(
    paths: Sequence[str | os.PathLike[str]], names: Sequence[str] | None = None
) -> list[str]:
    """A short name for each log: its file name without ``.jsonl``, ``.jsonl.gz`` or ``.gz``.

    Names are unique: when two files would get the same name, each is prefixed with
    as many of its parent folders as it takes (``a/run``, ``b/run``); two files of
    one folder that differ only in their suffix keep it (``run.jsonl``,
    ``run.jsonl.gz``). ``names``, when given, are used instead and must be one per
    path (:class:`ValueError` otherwise).
    """
    if names is not None:
        if isinstance(names, str):
            raise TypeError(f"names must be a sequence of names, not the single name {names!r}")
        if len(names) != len(paths):
            raise ValueError(
                f"{len(names)} {'name' if len(names) == 1 else 'names'} for"
                f" {len(paths)} {'log' if len(paths) == 1 else 'logs'}: give one name per log"
            )
        return [str(name) for name in names]
    files = [Path(os.path.abspath(os.fspath(path))) for path in paths]
    depth = [0] * len(files)  # parent folders in front of the name
    full = [False] * len(files)  # the whole file name, suffix included
    copy = [""] * len(files)  # one file named twice: ~2, ~3 ...
    while True:
        result = [
            _name(path, d, f) + c for path, d, f, c in zip(files, depth, full, copy, strict=True)
        ]
        groups: dict[str, list[int]] = {}
        for index, name in enumerate(result):
            groups.setdefault(name, []).append(index)
        clashes = [group for group in groups.values() if len(group) > 1]
        if not clashes:
            return result
        for group in clashes:
            if len({files[i].parent for i in group}) > 1:
                for i in group:
                    if depth[i] < len(files[i].parts) - 1:
                        depth[i] += 1
                    else:
                        full[i] = True
            elif not all(full[i] for i in group):
                for i in group:
                    full[i] = True  # one folder: the suffixes tell them apart
            else:  # one file named twice
                for number, i in enumerate(group[1:], 2):
                    copy[i] = f"~{number}"


def _name(path: Path, depth: int, full: bool) -> str:
    parents = path.parts[-1 - depth : -1] if depth else ()
    return "/".join([*parents, path.name if full else _stem(path)]).replace("//", "/")


# -- sources and segments ---------------------------------------------------------------------


def source_label(value: Any) -> str:
    """The run name of one ``source`` value as ``mimir collect`` writes it.

    ``{"host": "gpu3", "pid": 4242, "name": "rank3"}`` is ``rank3``; a source without
    a name is ``host:pid`` (``gpu3:4242``); a string is itself; ``None`` (no source)
    is :data:`NO_SOURCE`; anything else its JSON text.
    """
    return _source_group(value)[0]


def _source_group(value: Any) -> tuple[str, Any]:
    """(label, host) of a source value: the entries of one group make one run.

    A named process is one run whatever its pid (a restarted rank continues its run,
    see :func:`segment_starts`); the host tells apart processes of one name on
    different machines.
    """
    if value is None:
        return NO_SOURCE, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str) and name:
            return name, json.dumps(value.get("host"))
        if "host" in value or "pid" in value:
            return f"{value.get('host', '?')}:{value.get('pid', '?')}", None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")), None


class _SourceGroups:
    """:func:`_source_group`, remembered for the source values seen (a log has few)."""

    def __init__(self) -> None:
        self.known: dict[Any, tuple[str, Any]] = {}

    def __call__(self, value: Any) -> tuple[str, Any]:
        if type(value) is not dict:
            return _source_group(value)
        try:
            key = tuple(value.items())
            group = self.known.get(key)
        except TypeError:  # a list or dict inside: not hashable
            return _source_group(value)
        if group is None:
            group = self.known[key] = _source_group(value)
        return group


def _group_names(groups: Iterable[tuple[str, Any]]) -> dict[tuple[str, Any], str]:
    """The run name of each source group: its label, with ``@host`` where hosts share a name."""
    groups = list(groups)
    hosts: dict[str, int] = {}
    for label, _ in groups:
        hosts[label] = hosts.get(label, 0) + 1
    names = {}
    used: set[str] = set()
    for label, host in groups:
        name = label
        if hosts[label] > 1 and host is not None:
            name = f"{label}@{json.loads(host)}"
        while name in used:
            name += "~"
        used.add(name)
        names[(label, host)] = name
    return names


def split_by_source(
    entries: Iterable[Mapping[str, Any]], key: str = "source"
) -> dict[str, list[Mapping[str, Any]]]:
    """The entries of a collected log, by the process that logged them.

    ``mimir collect`` adds ``"source": {"host", "pid", "name"}`` to each entry; each
    source becomes a list of its entries in their order, under the name
    :func:`source_label` gives it (``rank3``, or ``gpu3:4242`` without a name;
    processes of one name on two hosts give ``rank3@gpu1`` and ``rank3@gpu2``).
    Entries without the key go under :data:`NO_SOURCE`. Sources come in the order
    of their first entry. The entries are not copied and keep their ``source`` key.
    """
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    group_of = _SourceGroups()
    for entry in entries:
        group = group_of(entry.get(key))
        found = groups.get(group)
        if found is None:
            found = groups[group] = []
        found.append(entry)
    names = _group_names(groups)
    return {names[group]: found for group, found in groups.items()}


def segment_starts(xs: Sequence[float]) -> list[int]:
    """The indices at which ``xs`` goes backwards, after a leading 0.

    A run restarted (from a checkpoint, or from scratch) that appends to the same log
    starts its x over: each such place starts a new segment, so that plots do not
    draw a line back across the run and summaries can tell. Equal values do not
    start a segment; neither does a NaN or a value that is not a number.
    """
    starts = [0]
    previous = None
    for index, x in enumerate(xs):
        if not is_number(x) or x != x:  # NaN
            continue
        if previous is not None and x < previous:
            starts.append(index)
        previous = x
    return starts


def default_x(keys: Collection[str]) -> str | None:
    """The x key when none is given: the first of :data:`X_KEYS` in ``keys``, else None.

    None means the entry's index in its run (0, 1, 2 ...).
    """
    for key in X_KEYS:
        if key in keys:
            return key
    return None


def is_number(value: Any) -> bool:
    """An int or a float (a bool is neither): a value a key can be summarized or plotted by."""
    kind = type(value)
    return kind is float or kind is int or (kind is not bool and isinstance(value, (int, float)))


# -- runs -------------------------------------------------------------------------------------


@dataclass
class Column:
    """The values of one key in a run: ``values[i]`` is that of entry ``rows[i]``.

    Entries without the key have no place in it, so a key logged every 100th
    iteration costs 1/100th of the memory. ``rows`` is a :class:`range` when the
    entries with the key follow each other (``range(run.length)`` when every entry
    has it), an ``array('q')`` otherwise. ``values`` is an ``array('q')`` when they
    are all integers (of up to 53 bits), an ``array('d')`` when they are all numbers
    (NaN and infinities included; integers then become floats), and a list otherwise
    (strings, booleans, None for JSON null, lists, dicts).
    """

    rows: Sequence[int]
    values: Sequence[Any]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def numeric(self) -> bool:
        """Whether every value is a number (then ``values`` is an array)."""
        return isinstance(self.values, array)


_MISSING = object()  # an entry without the key
_CHUNK = 4096  # entries gathered before they are spread into columns


class _ColumnBuilder:
    """A column being filled a chunk of entries at a time, as compact as its values allow."""

    __slots__ = ("kind", "rows", "start", "values")

    def __init__(self, start: int) -> None:
        self.start = start  # the first row; rows stay start, start+1 ... while rows is None
        self.rows: array[int] | None = None
        self.values: Any = array("q")
        self.kind = "q"  # then "d" (numbers), then "list" (anything)

    def extend(self, first: int, values: list[Any]) -> None:
        """Add ``values``, those of rows ``first``, ``first + 1`` ... (``_MISSING``: none)."""
        if _MISSING in values:  # identity first: a fast scan
            rows: Sequence[int] = [first + i for i, v in enumerate(values) if v is not _MISSING]
            values = [value for value in values if value is not _MISSING]
            if rows[-1] - rows[0] + 1 == len(rows):  # still one stretch of rows
                rows = range(rows[0], rows[-1] + 1)
        else:
            rows = range(first, first + len(values))
        if not self.values:
            self.start = rows[0]
        if self.rows is not None:
            self.rows.extend(rows)
        elif not isinstance(rows, range) or rows.start != self.start + len(self.values):
            self._sparse().extend(rows)  # rows skipped: they are listed from now on
        self._add(values)

    def _sparse(self) -> array[int]:
        if self.rows is None:
            self.rows = array("q", range(self.start, self.start + len(self.values)))
        return self.rows

    def _add(self, values: list[Any]) -> None:
        kind = self.kind
        if kind != "list":
            types = set(map(type, values))
            if types <= {int, float}:
                ints = values if float not in types else [v for v in values if type(v) is int]
                if not ints or (min(ints) >= -_INT53 and max(ints) <= _INT53):
                    if float in types and kind == "q":
                        self.values = array("d", self.values)
                        self.kind = "d"
                    self.values.extend(values)
                    return
            self.values = list(self.values)
            self.kind = "list"
        self.values.extend(values)

    def finish(self) -> Column:
        if self.rows is None:
            return Column(range(self.start, self.start + len(self.values)), self.values)
        return Column(self.rows, self.values)


@dataclass
class Run:
    """One run: the entries of a log, or of one process of a collected log.

    Values are kept by key (:attr:`columns`, see :class:`Column`) rather than as one
    dict per entry: a million entries of five numbers take about 40 MB instead of
    half a gigabyte. :meth:`entries` gives the dicts back.
    """

    name: str
    path: Path
    source: str | None = None  # the source's label within a collected log, None for a whole file
    length: int = 0  # number of entries
    columns: dict[str, Column] = field(default_factory=dict)
    found: set[str] = field(default_factory=set)  # every key of every entry (loaded or not)

    @property
    def where(self) -> str:
        """The run as messages name it: the file, and the source within it."""
        return str(self.path) if self.source is None else f"{self.path} (source {self.source})"

    def keys(self) -> list[str]:
        """The keys loaded, in the order they first appear."""
        return list(self.columns)

    def check_keys(self, wanted: Sequence[str]) -> None:
        """Raise :class:`UnknownKeyError` unless every entry key of ``wanted`` is in the run."""
        check_keys(wanted, self.found, self.where)

    def _column(self, key: str) -> Column:
        """The column of ``key``; an error saying why if there is none."""
        column = self.columns.get(key)
        if column is None:
            self.check_keys([key])
            raise ValueError(
                f"the key {key!r} of {self.where} was not loaded"
                " (load_runs(keys=...) leaves out the keys not named, and the source key"
                " of a collected log)"
            )
        return column

    def column(self, key: str, missing: Any = None) -> list[Any]:
        """The value of ``key`` for every entry, ``missing`` where an entry lacks it."""
        col = self._column(key)
        if col.rows == range(self.length):
            return list(col.values)
        dense = [missing] * self.length
        for row, value in zip(col.rows, col.values, strict=True):
            dense[row] = value
        return dense

    def xy(self, x: str | None, y: str) -> tuple[list[Any], list[Any]]:
        """The (x, y) pairs of the entries that have both keys; x None: the entry index."""
        ycol = self._column(y)
        if x is None:
            return list(ycol.rows), list(ycol.values)
        xcol = self._column(x)
        if xcol.rows == range(self.length):
            xvalues = xcol.values
            return [xvalues[row] for row in ycol.rows], list(ycol.values)
        at = dict(zip(xcol.rows, xcol.values, strict=True))
        xs, ys = [], []
        for row, value in zip(ycol.rows, ycol.values, strict=True):
            if row in at:
                xs.append(at[row])
                ys.append(value)
        return xs, ys

    def x_values(self, x: str | None) -> tuple[Sequence[int], Sequence[Any]]:
        """(rows, values) of the x key; with x None, every entry's index for both."""
        if x is None:
            indices = range(self.length)
            return indices, indices
        column = self._column(x)
        return column.rows, column.values

    def segment_starts(self, x: str | None) -> list[int]:
        """The entries (indices in the run) where x goes backwards, after a leading 0."""
        rows, values = self.x_values(x)
        return [0] + [rows[i] for i in segment_starts(values)[1:]]

    def entries(self) -> Iterator[dict[str, Any]]:
        """The entries as dicts again, one at a time, in order (with the keys loaded)."""
        cursors = [[key, iter(col.rows), iter(col.values), -1] for key, col in self.columns.items()]
        for cursor in cursors:
            cursor[3] = next(cursor[1], -1)
        for row in range(self.length):
            entry = {}
            for cursor in cursors:
                if cursor[3] == row:
                    entry[cursor[0]] = next(cursor[2])
                    cursor[3] = next(cursor[1], -1)
            yield entry


class _RunBuilder:
    __slots__ = ("columns", "found", "keys", "length", "path", "pending", "skip")

    def __init__(self, path: Path, keys: Collection[str] | None, skip: str | None) -> None:
        self.path = path
        self.keys = keys
        self.skip = skip
        self.length = 0  # entries spread into columns
        self.pending: list[dict[str, Any]] = []
        self.columns: dict[str, _ColumnBuilder] = {}
        self.found: dict[str, None] = {}  # every key, in the order they first appear

    def add(self, entry: dict[str, Any]) -> None:
        self.pending.append(entry)
        if len(self.pending) >= _CHUNK:
            self._spread()

    def _spread(self) -> None:
        chunk, self.pending = self.pending, []
        if not chunk:
            return
        first = self.length
        self.length += len(chunk)
        keys = dict.fromkeys(chain.from_iterable(chunk))
        self.found.update(keys)
        columns = self.columns
        for key in keys:
            if key == self.skip or (self.keys is not None and key not in self.keys):
                continue
            column = columns.get(key)
            if column is None:
                column = columns[key] = _ColumnBuilder(first)
            column.extend(first, [entry.get(key, _MISSING) for entry in chunk])

    def finish(self, name: str, source: str | None) -> Run:
        self._spread()
        columns = {key: col.finish() for key, col in self.columns.items()}
        return Run(name, self.path, source, self.length, columns, set(self.found))


def _read_entries(path: Path, errors: str) -> Iterator[dict[str, Any]]:
    """The entries of one log; :class:`NoEntriesError` if it has lines but none is an entry."""
    filename = os.fspath(path)
    loads = loads_line
    good = False
    lines = iter_lines(filename, errors)
    for lineno, line in lines:
        try:
            entry = loads(line)
        except (ValueError, RecursionError) as error:
            entry = error
        if type(entry) is dict:
            good = True
            yield entry
            continue
        if not good and not _any_entry(lines):
            raise NoEntriesError(filename, lineno, line)
        if isinstance(entry, BaseException):
            reason = f"not a JSON entry ({entry})"
        else:
            reason = f"not an entry: a JSON {type(entry).__name__}, not an object"
        raise MalformedLogError(filename, lineno, f"{reason}: {line[:80]!r}")


def _any_entry(lines: Iterator[tuple[int, bytes]]) -> bool:
    """Whether any of the remaining lines is a JSON object (to tell a log from another file)."""
    for _, line in lines:
        if line.lstrip()[:1] == b"{":
            try:
                if type(json.loads(line)) is dict:
                    return True
            except (ValueError, RecursionError):
                continue
    return False


def load_runs(
    specs: Sequence[str | os.PathLike[str]],
    names: Sequence[str] | None = None,
    split_source: bool = True,
    *,
    keys: Collection[str] | None = None,
    source_key: str = "source",
    errors: str = "strict",
) -> list[Run]:
    """Read the runs of the logs ``specs`` names (files, globs, folders: :func:`find_logs`).

    Each file is a run named by :func:`run_names` (or by ``names``, one per file).
    With ``split_source``, a collected log (entries carrying ``source_key``) is one
    run per source, named ``<file's name>/<source>`` (:func:`split_by_source`); the
    source key itself is then not kept as a column. ``keys`` loads only those keys
    (the others still count in :attr:`Run.found`, for messages). ``errors`` is that
    of :func:`mimir.load`: ``"partial"`` reads a damaged log up to the damage.

    Raises :class:`FileNotFoundError` for a spec matching nothing,
    :class:`NoEntriesError` for a file that is not a log at all,
    :class:`~mimir.MalformedLogError` / :class:`~mimir.DamagedLogError` as
    :func:`mimir.load` does.
    """
    paths = find_logs(specs)
    file_names = run_names(paths, names)
    wanted = None if keys is None else frozenset(keys)
    skip = source_key if split_source else None
    runs: list[Run] = []
    for path, file_name in zip(paths, file_names, strict=True):
        if not split_source:
            whole = _RunBuilder(path, wanted, skip)
            for entry in _read_entries(path, errors):
                whole.add(entry)
            runs.append(whole.finish(file_name, None))
            continue
        groups: dict[tuple[str, Any], _RunBuilder] = {}
        group_of = _SourceGroups()
        for entry in _read_entries(path, errors):
            value = entry.get(source_key)
            group = _UNSOURCED if value is None else group_of(value)
            builder = groups.get(group)
            if builder is None:
                builder = groups[group] = _RunBuilder(path, wanted, skip)
            builder.add(entry)
        if not groups:  # an empty log: one run without entries
            runs.append(_RunBuilder(path, wanted, skip).finish(file_name, None))
        elif list(groups) == [_UNSOURCED]:  # not a collected log
            runs.append(groups[_UNSOURCED].finish(file_name, None))
        else:
            for group, name in _group_names(groups).items():
                runs.append(groups[group].finish(f"{file_name}/{name}", name))
    return runs
