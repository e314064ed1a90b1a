"""The import rules of docs/architecture.rst, checked on the source of every module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mimir"

# Bottom first; a module's layer is that of the longest prefix listed.
LAYERS = {
    "mimir.gzlog": 1,
    "mimir._fork": 2,
    "mimir._json": 2,
    "mimir.formatter": 2,
    "mimir._record": 2,
    "mimir._handler": 2,
    "mimir._buffered": 2,
    "mimir.memory": 2,
    "mimir.reader": 2,
    "mimir.runs": 2,
    "mimir.summary": 2,
    "mimir.frame": 2,
    "mimir.console": 2,
    "mimir.serialization": 2,
    "mimir._moved": 2,
    "mimir.files": 3,
    "mimir.stream": 4,
    "mimir.logger": 5,
    "mimir": 5,
    "mimir.plot": 6,
    "mimir.cli": 7,
    "mimir.__main__": 7,
}

# Each with the step that removes it (see docs/architecture.rst).
KNOWN_CIRCLES = set()

OPTIONAL = ("zmq", "bokeh")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def imports(module: str) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                yield base, alias.name, node.lineno


def mimir_dependencies(module: str) -> Iterator[tuple[str, str, int]]:
    """(Mímir module depended on, name taken from it, line)."""
    for base, name, line in imports(module):
        if base != "mimir" and not base.startswith("mimir."):
            continue
        if name and f"{base}.{name}" in MODULES:  # from package import submodule
            yield f"{base}.{name}", "", line
        else:
            yield base, name, line


def test_every_module_has_a_layer() -> None:
    """Every module of the package is placed in a layer of the architecture."""
    assert all(layer(module) for module in MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    """A module imports only modules of its own layer or of those below it."""
    upward = [
        f"line {line}: {target} (layer {layer(target)})"
        for target, _, line in mimir_dependencies(module)
        if layer(target) > layer(module)
    ]
    assert not upward, f"{module} (layer {layer(module)}) imports upward: {upward}"


def test_no_import_circle() -> None:
    """No module reaches itself through its imports, but for the circles named above."""
    graph = {m: {t for t, _, _ in mimir_dependencies(m) if t != m} for m in MODULES}
    circles = set()
    for start in graph:
        stack = [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for target in graph.get(node, ()):
                if target == start:
                    circles.add(frozenset(path))
                elif target not in path and len(path) < 8:
                    stack.append((target, (*path, target)))
    assert circles <= KNOWN_CIRCLES, sorted(map(sorted, circles - KNOWN_CIRCLES))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_of_other_modules(module: str) -> None:
    """No module takes another module's private names, nor logging's or python-json-logger's."""
    taken = []
    for base, name, line in imports(module):
        foreign = base in ("logging", "pythonjsonlogger") or base.startswith(
            ("logging.", "pythonjsonlogger.", "mimir")
        )
        private = name.startswith("_") and not name.startswith("__")
        if foreign and private and f"{base}.{name}" not in MODULES and base != module:
            taken.append(f"line {line}: {base}.{name}")
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "logging"
            and node.attr.startswith("_")
        ):
            taken.append(f"line {node.lineno}: logging.{node.attr}")
    assert not taken, f"{module} uses private names: {taken}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) <= 3))
def test_core_and_files_never_import_pyzmq_or_bokeh(module: str) -> None:
    """The engine, the core and the file handlers work without the optional packages."""
    optional = [
        f"line {line}: {base}"
        for base, _, line in imports(module)
        if base.split(".")[0] in OPTIONAL
    ]
    assert not optional, f"{module} imports {optional}"


def test_nothing_imports_the_command_line() -> None:
    """Only the command line itself (and ``python -m mimir``) imports the CLI modules."""
    cli = {m for m in MODULES if layer(m) == 7}
    users = [
        f"{module} line {line}: {target}"
        for module in MODULES
        if module not in cli
        for target, _, line in mimir_dependencies(module)
        if target in cli
    ]
    assert not users
