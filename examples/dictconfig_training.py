"""Configure a training script's logging from a plain dict with ``logging.config.dictConfig``.

The dict holds only strings, numbers and booleans, so it could equally be loaded
from a JSON or YAML file. The training code itself only uses the standard
``logging`` API. Run with ``python examples/dictconfig_training.py``; it writes
``train.jsonl`` in the current directory.
"""

import logging
import logging.config
import math
import pathlib

import mimir

pathlib.Path("train.jsonl").unlink(missing_ok=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # Metric dicts are written as they are; other records become {"message": ...}.
        "entries": {"()": "mimir.JSONFormatter"},
        "console": {"()": "mimir.console.ConsoleFormatter"},
    },
    "handlers": {
        "file": {
            "class": "mimir.JSONLFileHandler",
            "filename": "train.jsonl",
            "flush_interval": 0.5,
            "formatter": "entries",
        },
        "memory": {"class": "mimir.MemoryHandler", "maxlen": 50, "formatter": "entries"},
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "console",
            "level": "WARNING",  # only warnings reach the terminal
        },
    },
    "loggers": {
        "train": {"level": "INFO", "handlers": ["file", "memory", "console"], "propagate": False},
    },
}


def train(steps: int) -> None:
    """A stand-in for a training loop: it only talks to the standard logging API."""
    log = logging.getLogger("train")
    for iteration in range(steps):
        training_error = math.exp(-iteration / 30)
        log.info({"iteration": iteration, "training_error": training_error})
        if iteration % 25 == 24:
            log.info("checkpoint saved", extra={"iteration": iteration})
    log.warning("finished after %d iterations", steps)


logging.config.dictConfig(LOGGING)
train(100)

# Handlers configured by name can be found on the logger (or, from Python 3.12,
# with logging.getHandlerByName("memory")).
handlers = {handler.name: handler for handler in logging.getLogger("train").handlers}
memory = handlers["memory"]  # the last 50 records of "train", as entries
newest = next(entry for entry in reversed(memory) if "training_error" in entry)
print("newest metrics in memory:", newest)

handlers["file"].flush()  # otherwise written within flush_interval, and at exit
entries = mimir.load("train.jsonl")
metrics = [entry for entry in entries if "training_error" in entry]
messages = [entry for entry in entries if "message" in entry]
print(f"train.jsonl: {len(metrics)} metric entries, {len(messages)} messages")
print("e.g.", messages[0])
