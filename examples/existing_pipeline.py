"""Add Mímir's handlers to an application that already logs to the console.

The console handler stays as it was. A JSON lines file on the root logger now
receives every record: metric dicts as they are, and text records from any
library as ``{"message": ...}``. Run with ``python examples/existing_pipeline.py``;
it writes ``app.jsonl`` in the current directory.
"""

import logging
import pathlib
import sys

import mimir

pathlib.Path("app.jsonl").unlink(missing_ok=True)

# The application's existing set-up: human-readable lines on the console.
logging.basicConfig(
    level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s"
)

# Mímir's handlers go next to it. Without a formatter, a Mímir handler uses a
# default mimir.JSONFormatter.
jsonl = mimir.JSONLFileHandler("app.jsonl")
logging.getLogger().addHandler(jsonl)
memory = mimir.MemoryHandler(maxlen=100)  # only the training metrics
logging.getLogger("train").addHandler(memory)


def fetch(url: str) -> None:
    """Stands in for a third-party library that logs in its own way."""
    logging.getLogger("urllib3").warning("retrying %s", url)


log = logging.getLogger("train")
for iteration in range(5):
    log.info({"iteration": iteration, "training_error": 1.0 / (iteration + 1)})
fetch("https://example.org/dataset.tar")

jsonl.flush()
print("\napp.jsonl:")
print(pathlib.Path("app.jsonl").read_text(), end="")
print("in memory:", len(memory), "entries, newest", memory[-1])
