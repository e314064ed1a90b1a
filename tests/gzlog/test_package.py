"""The gzlog engine is a file format: its modules import nothing of Mímir and not logging."""

from __future__ import annotations

import ast
from pathlib import Path

import mimir.gzlog

PACKAGE = Path(mimir.gzlog.__file__).parent
PUBLIC = [
    "Gzlog",
    "GzlogError",
    "GzlogCorruptError",
    "GzlogWarning",
    "GzlogLockWaitWarning",
    "GzlogState",
    "HEADER",
    "EMPTY_LOG",
    "MAX_APPEND",
    "MAX_TAIL",
    "check",
    "recover",
    "crc32_combine",
    "file_kind",
    "read_snapshot",
    "describe_lock_holder",
    "writer_active",
    "parse_state",
    "pending_operation",
    "DEFLATE_START",
]


def imported_modules(path: Path) -> list[str]:
    """Every module a source file imports (absolute names; relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("mimir.gzlog" + (f".{node.module}" if node.module else ""))
            else:
                names.append(node.module or "")
    return names


def test_engine_imports_nothing_of_mimir_and_not_logging() -> None:
    """No module of mimir/gzlog/ imports from mimir outside mimir.gzlog, nor logging."""
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) >= 6
    for source in sources:
        for name in imported_modules(source):
            top = name.split(".")[0]
            assert top != "logging", f"{source.name} imports {name}"
            if top == "mimir":
                assert name == "mimir.gzlog" or name.startswith("mimir.gzlog."), (
                    f"{source.name} imports {name}"
                )


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """Inside the package, modules import only public names of each other."""
    for source in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mimir"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{source.name} imports {private} from {node.module}"


def test_public_api_is_re_exported() -> None:
    """``from mimir.gzlog import ...`` keeps offering every public name."""
    for name in PUBLIC:
        assert name in mimir.gzlog.__all__, name
        assert getattr(mimir.gzlog, name) is not None


#: The modules of the package, each importing only modules before it (the package docstring's map).
LAYERS = ["errors", "format", "files", "deflate", "validation", "lock", "engine", "inspection"]


def test_modules_import_only_modules_listed_before_them() -> None:
    """The package's map holds: each module imports only modules listed above it."""
    assert sorted([*LAYERS, "__init__"]) == sorted(p.stem for p in PACKAGE.glob("*.py"))
    for position, name in enumerate(LAYERS):
        for imported in imported_modules(PACKAGE / f"{name}.py"):
            if imported.startswith("mimir.gzlog."):
                below = imported.split(".")[2]
                assert below in LAYERS[:position], f"{name} imports {below}"
