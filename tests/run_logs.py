"""Logs of runs for the tests of comparing runs (mimir.runs, summary, to_frame)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mimir


def write_log(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Write ``entries`` with Mímir itself (plain or compressed by the name); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with mimir.Logger(filename=path, formatter=None) as logger:
        for entry in entries:
            logger.log(entry)
    return path
