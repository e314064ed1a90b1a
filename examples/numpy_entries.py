"""Log NumPy arrays in entries and get them back as arrays.

Run with ``python examples/numpy_entries.py``; it writes ``arrays.jsonl`` in the
current directory.
"""

import json
import pathlib

import numpy

import mimir
from mimir.serialization import deserialize_numpy, serialize_numpy

path = pathlib.Path("arrays.jsonl")
path.unlink(missing_ok=True)
rng = numpy.random.default_rng(0)
weights = [rng.standard_normal((3, 3)) for _ in range(5)]

# NumPy scalars are written as plain numbers; whole arrays need default=.
with mimir.Logger(filename=path, formatter=None, default=serialize_numpy) as logger:
    for iteration, w in enumerate(weights):
        norm = numpy.linalg.norm(w)  # a numpy.float64
        logger.log({"iteration": iteration, "weight_norm": norm, "weights": w})

# object_hook turns the encoded arrays back into arrays, dtype and shape included.
entries = mimir.load(path, object_hook=deserialize_numpy)
for entry, w in zip(entries, weights, strict=True):
    assert isinstance(entry["weights"], numpy.ndarray)
    assert numpy.array_equal(entry["weights"], w)
print(f"{len(entries)} entries, last weight norm {entries[-1]['weight_norm']:.3f}")

# The file is ordinary JSON lines: the standard json module reads it the same way.
with path.open(encoding="utf-8") as file:
    first = json.loads(file.readline(), object_hook=deserialize_numpy)
print("first weights:\n", first["weights"])
