"""Keep the most recent entries in memory and read them back like a list.

Run with ``python examples/memory.py``. Nothing is written to disk.
"""

import mimir

# maxlen bounds memory: only the 10 newest entries are kept, however long the run.
# formatter=None turns the console output off.
logger = mimir.Logger(maxlen=10, formatter=None)
for iteration in range(100):
    logger.log({"iteration": iteration, "training_error": 1.0 / (iteration + 1)})

assert len(logger) == 10
assert logger[-1]["iteration"] == 99  # the newest entry
assert logger[0]["iteration"] == 90  # the oldest one still held
recent = logger[-3:]  # slices give a list of entries
print("last three iterations:", [entry["iteration"] for entry in recent])

best = min(logger, key=lambda entry: entry["training_error"])
print(f"best of the last {len(logger)}: iteration {best['iteration']}")
logger.close()
