"""Analyse a log with pandas, after reading it with ``mimir.load`` or ``pandas.read_json``.

Run with ``python examples/analyse_with_pandas.py``; it first writes a short
synthetic run to ``run.jsonl`` in the current directory.
"""

import math
import pathlib
import random

import pandas

import mimir

# A run to analyse: training error every iteration, validation every 10th.
path = pathlib.Path("run.jsonl")
path.unlink(missing_ok=True)
rng = random.Random(0)
with mimir.Logger(filename=path, formatter=None) as logger:
    for iteration in range(200):
        training_error = 0.05 + math.exp(-iteration / 50) * (1 + rng.gauss(0, 0.1))
        entry = {"iteration": iteration, "training_error": training_error}
        if iteration % 10 == 9:
            entry["validation_error"] = entry["training_error"] + 0.05
        logger.log(entry)

# Either way gives one row per entry and one column per key; keys missing from an
# entry are NaN.
frame = pandas.DataFrame(mimir.load(path))
same = pandas.read_json(path, lines=True)
assert frame.shape == same.shape == (200, 3)

frame = frame.set_index("iteration")
best = frame["training_error"].idxmin()
print(f"best iteration {best}: training error {frame.loc[best, 'training_error']:.4f}")

smoothed = frame["training_error"].rolling(20).mean()
print(f"smoothed training error at the end: {smoothed.iloc[-1]:.4f}")

validation = frame["validation_error"].dropna()
print(f"{len(validation)} validation points, lowest at iteration {validation.idxmin()}")
