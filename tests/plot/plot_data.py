"""Synthetic training curves for tests/test_plot.py (deterministic, pleasant to look at)."""

from __future__ import annotations

import math
from typing import Any


def entry(iteration: int) -> dict[str, Any]:
    """The entry of ``iteration``: a training error, and a validation error every 10th."""
    noise = 0.006 * math.sin(iteration * 12.9898) * math.cos(iteration * 4.1414)
    training = 0.9 * math.exp(-iteration / 180) + 0.08 + noise
    result: dict[str, Any] = {"iteration": iteration, "training_error": round(training, 5)}
    if iteration % 10 == 0:
        validation = 0.9 * math.exp(-iteration / 220) + 0.13 + noise / 2
        result["validation_error"] = round(validation, 5)
    return result
