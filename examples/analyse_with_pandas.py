"""Analyse a log with pandas: ``mimir.to_frame`` reads it as a table, one row per entry.

Needs pandas, which Mímir installs with its ``pandas`` extra:
``pip install "mimir-logger[pandas]"``. Run with
``python examples/analyse_with_pandas.py``; it first writes a short synthetic run
to ``run.jsonl`` in the current directory.
"""

import math
import pathlib
import random
import sys

import mimir

try:
    import pandas
except ImportError:
    sys.exit('This example needs pandas: pip install "mimir-logger[pandas]"')

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

# One row per entry and one column per key (NaN where an entry lacks the key), plus
# the run's name and its segment (which goes up where a restarted run starts over).
# mimir.to_frame takes several logs, globs or folders at once, e.g. "runs/*.jsonl.gz";
# pandas.read_json reads a single plain or compressed log the same way.
frame = mimir.to_frame(path)
same = pandas.read_json(path, lines=True)
assert list(frame.columns) == ["run", "segment", *same.columns]
assert frame.shape == (200, 5)
print(frame.groupby("run", observed=True)["training_error"].min())

frame = frame.set_index("iteration")
best = frame["training_error"].idxmin()
print(f"best iteration {best}: training error {frame.loc[best, 'training_error']:.4f}")

smoothed = frame["training_error"].rolling(20).mean()
print(f"smoothed training error at the end: {smoothed.iloc[-1]:.4f}")

validation = frame["validation_error"].dropna()
print(f"{len(validation)} validation points, lowest at iteration {validation.idxmin()}")
