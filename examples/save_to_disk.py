"""Stream entries to a line-delimited JSON file, then read them back.

Run with ``python examples/save_to_disk.py``; it writes ``log.jsonl`` in the current
directory.
"""

import pathlib

import mimir

path = pathlib.Path("log.jsonl")
path.unlink(missing_ok=True)  # Mímir appends to an existing log: start afresh

# Entries are buffered and written by a background thread about once a second;
# close() writes whatever is still buffered.
logger = mimir.Logger(filename=path, formatter=None)
for iteration in range(100):
    logger.log({"iteration": iteration, "training_error": 1.0 / (iteration + 1)})
logger.close()

print(path.read_text().splitlines()[0])  # one JSON object per line

entries = mimir.load(path)
best = min(entries, key=lambda entry: entry["training_error"])
print(f"{len(entries)} entries; lowest training error {best['training_error']:.4f}")
