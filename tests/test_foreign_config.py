"""Other code reconfigures logging while Mímir logs (P6): every later entry still arrives."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path

import pytest

import mimir

zmq = pytest.importorskip("zmq")

from mimir.stream import subscribe  # noqa: E402

FILE_CONFIG = """\
[loggers]
keys=root

[handlers]
keys=console

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=console

[handler_console]
class=StreamHandler
level=WARNING
formatter=plain
args=(sys.stderr,)

[formatter_plain]
format=%(levelname)s %(message)s
"""


def foreign_dictconfig() -> None:
    """What a library or framework does at import or start-up."""
    logging.config.dictConfig(
        {
            "version": 1,
            "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING"}},
            "root": {"handlers": ["console"], "level": "WARNING"},
        }
    )


def foreign_fileconfig(tmp_path: Path) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text(FILE_CONFIG)
    logging.config.fileConfig(ini)


FOREIGN = {
    "dictConfig": lambda tmp_path: foreign_dictconfig(),
    "fileConfig": foreign_fileconfig,
    "shutdown": lambda tmp_path: logging.shutdown(),
}


@pytest.mark.parametrize("name", [None, "train"], ids=["private", "named"])
@pytest.mark.parametrize("foreign", list(FOREIGN))
def test_p6_every_output_of_a_logger_survives_foreign_configuration(
    tmp_path: Path, foreign: str, name: str | None
) -> None:
    """P6: after another dictConfig, fileConfig or logging.shutdown, file, memory and
    stream of a mimir.Logger all receive every later entry."""
    plain = mimir.Logger(
        name=name,
        filename=tmp_path / "run.jsonl",
        maxlen=1000,
        stream=True,
        stream_maxlen=1000,
        stream_address="tcp://127.0.0.1:0",
        replay_address="tcp://127.0.0.1:0",
        formatter=None,
    )
    compressed = mimir.Logger(filename=tmp_path / "run.jsonl.gz", formatter=None)
    entries = [{"iteration": i, "training_error": 1 / (i + 1)} for i in range(300)]
    with plain, compressed:
        for entry in entries[:100]:
            plain.log(entry)
            compressed.log(entry)
        FOREIGN[foreign](tmp_path)
        for entry in entries[100:200]:
            plain.log(entry)
            compressed.log(entry)
        FOREIGN[foreign](tmp_path)  # twice: the reopened outputs are closed again
        for entry in entries[200:]:
            plain.log(entry)
            compressed.log(entry)
        assert list(plain) == entries  # memory
        plain.stream.flush(10)
        with subscribe(plain.stream.address, plain.stream.replay_address, timeout=10) as sub:
            streamed = [next(sub) for _ in range(300)]
            assert sub.restarts == 0
        assert streamed == entries
    assert mimir.load(tmp_path / "run.jsonl") == entries
    assert mimir.load(tmp_path / "run.jsonl.gz") == entries


def test_p6_a_second_dictconfig_reconfigures_mimir_handlers_without_losing_entries(
    tmp_path: Path,
) -> None:
    """P6: dictConfig-built Mímir handlers, replaced by a second dictConfig, lose nothing."""

    def configure(suffix: str) -> None:
        logging.config.dictConfig(
            {
                "version": 1,
                "formatters": {"entry": {"()": "mimir.JSONFormatter"}},
                "handlers": {
                    "plain": {
                        "class": "mimir.JSONLFileHandler",
                        "filename": str(tmp_path / "app.jsonl"),
                        "formatter": "entry",
                        "flush_interval": 60,  # only close() writes: nothing may be lost there
                    },
                    "compressed": {
                        "class": "mimir.GzlogFileHandler",
                        "filename": str(tmp_path / f"app{suffix}.jsonl.gz"),
                        "formatter": "entry",
                        "flush_interval": 60,
                    },
                },
                "loggers": {
                    "mimir.test.app": {"handlers": ["plain", "compressed"], "level": "INFO"}
                },
            }
        )

    app = logging.getLogger("mimir.test.app")
    configure("")
    for i in range(50):
        app.info({"i": i})
    configure("-2")  # closes the first handlers: their buffers are written
    for i in range(50, 100):
        app.info({"i": i})
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert [e["i"] for e in mimir.load(tmp_path / "app.jsonl")] == list(range(100))
    assert [e["i"] for e in mimir.load(tmp_path / "app.jsonl.gz")] == list(range(50))
    assert [e["i"] for e in mimir.load(tmp_path / "app-2.jsonl.gz")] == list(range(50, 100))


def test_p5_no_entry_reaches_a_file_opened_after_a_foreign_close(tmp_path: Path) -> None:
    """P5 through a Logger: dictConfig closes its file; an application opens another
    file (which gets the freed descriptor); the Logger's entries go to its own log."""
    data = tmp_path / "data.csv"
    logger = mimir.Logger(filename=tmp_path / "run.jsonl", formatter=None)
    logger.log({"x": 0})
    foreign_dictconfig()
    with open(data, "w") as csv:  # the descriptor freed by the close, most likely
        csv.write("a,b\n")
        csv.flush()
        logger.log({"x": 1})
        logging.shutdown()  # interpreter exit flushes every handler
        csv.write("1,2\n")
    logger.close()
    assert data.read_text() == "a,b\n1,2\n"
    assert mimir.load(tmp_path / "run.jsonl") == [{"x": 0}, {"x": 1}]
