"""Use a Logger as a context manager: leaving the block writes and closes everything.

Run with ``python examples/context_manager.py``; it writes ``run.jsonl`` in the
current directory.
"""

import pathlib

import mimir

path = pathlib.Path("run.jsonl")
path.unlink(missing_ok=True)

with mimir.Logger(filename=path, maxlen=5, formatter=None) as logger:
    for iteration in range(50):
        logger.log({"iteration": iteration, "training_error": 1.0 / (iteration + 1)})
    print("newest entry in memory:", logger[-1])

# The block is left: all 50 entries are on disk, without an explicit flush.
print(f"{len(mimir.load(path))} entries in {path}")

# The file is closed even when the training loop fails.
try:
    with mimir.Logger(filename=path, formatter=None) as logger:
        logger.log({"iteration": 50, "training_error": float("nan")})
        raise RuntimeError("diverged")
except RuntimeError:
    pass
print("last entry written:", mimir.load(path)[-1])
