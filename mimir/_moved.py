"""The module paths of Mímir 0.1, kept working for one release after the move to subpackages.

``import mimir.zmq_handler`` (or ``"class": "mimir.zmq_handler.ZMQStreamHandler"``
in a dictConfig) gives the module at its new place, with a
:class:`DeprecationWarning` that names it. Only these names are looked up here;
the finder is installed by ``mimir/__init__`` once, at the end of
:data:`sys.meta_path`, so it is asked only about modules no other finder knows.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module path -> the module that took its place.
MOVED = {
    "mimir.jsonl": "mimir.files.plain",
    "mimir.gzlog_handler": "mimir.files.compressed",
    "mimir.zmq_handler": "mimir.stream.publisher",
    "mimir.forward": "mimir.stream.forwarder",
    "mimir.collector": "mimir.stream.collector",
    "mimir.plot_server": "mimir.plot.server",
    "mimir.collector_cli": "mimir.cli.collect",
    "mimir.plot_cli": "mimir.cli.plot",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds each old module path of :data:`MOVED` and loads the module at its new place."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} is now {new}; the old name will be removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


def install() -> None:
    """Add the finder to :data:`sys.meta_path`, unless it is there already."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
