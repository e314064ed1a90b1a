"""Quickstart: log one dict of metrics per iteration; each entry is printed as it arrives.

Run with ``python examples/quickstart.py``. Nothing is written to disk.
"""

import math

import mimir

logger = mimir.Logger()  # by default, entries are printed to standard output
for iteration in range(20):
    training_error = math.exp(-iteration / 5)
    logger.log({"iteration": iteration, "training_error": training_error})
logger.close()
