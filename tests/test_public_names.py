"""The names ``mimir`` offers: loaded lazily, usable in dictConfig, clear when pyzmq is missing."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
import textwrap

import pytest

import mimir
from mimir._moved import MOVED

LAZY = {
    "ZMQStreamHandler": "mimir.stream.publisher",
    "ZMQForwardHandler": "mimir.stream.forwarder",
    "Collector": "mimir.stream.collector",
}


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter; fail the test if it exits with an error."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_import_mimir_loads_neither_pyzmq_nor_bokeh():
    """import mimir, and a Logger without stream=True, import no ZeroMQ or Bokeh module."""
    result = run_python(
        """
        import sys
        import mimir

        logger = mimir.Logger(maxlen=5, formatter=None)
        logger.log({"iteration": 0})
        logger.close()
        heavy = ("mimir.stream.publisher", "mimir.stream.forwarder", "mimir.stream.collector")
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("zmq", "bokeh") or m in heavy))
        """
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("name", "module"), LAZY.items())
def test_lazy_name_resolves_to_its_class(name, module):
    """mimir.<name> is the class defined in its module, and dir(mimir) lists it."""
    value = getattr(mimir, name)
    assert value is getattr(sys.modules[module], name)
    assert value.__name__ == name
    assert name in dir(mimir)
    assert name in mimir.__all__


def test_lazy_names_resolve_in_a_fresh_interpreter():
    """Each lazy name resolves on first access, from `from mimir import X` too."""
    result = run_python(
        """
        import sys
        from mimir import ZMQForwardHandler
        import mimir

        print(ZMQForwardHandler.__module__, "mimir.stream.protocol" in sys.modules)
        print(mimir.ZMQStreamHandler.__module__, mimir.Collector.__module__)
        """
    )
    assert result.stdout.split() == [
        "mimir.stream.forwarder",
        "True",
        "mimir.stream.publisher",
        "mimir.stream.collector",
    ]


def test_unknown_attribute_is_an_attribute_error():
    """A name mimir does not have raises AttributeError naming it, as for any module."""
    with pytest.raises(AttributeError, match="'ZMQHandler'"):
        mimir.ZMQHandler  # noqa: B018


def test_every_name_in_all_exists_and_open_is_not_exported():
    """Every name in __all__ resolves; mimir.open exists but star-import keeps the builtin."""
    for name in mimir.__all__:
        assert getattr(mimir, name) is not None, name
    assert "open" not in mimir.__all__
    assert mimir.open is mimir.reader.open_log
    namespace: dict = {}
    exec("from mimir import *", namespace)
    assert "open" not in namespace
    assert set(LAZY) <= set(namespace)


def test_dictconfig_builds_a_stream_handler_from_its_public_name():
    """{"class": "mimir.ZMQStreamHandler"} builds a handler that publishes what is logged."""
    pytest.importorskip("zmq")
    import mimir.stream

    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "stream": {
                "class": "mimir.ZMQStreamHandler",
                "address": "tcp://127.0.0.1:0",
                "replay_address": "tcp://127.0.0.1:0",
                "replay": 10,
            }
        },
        "loggers": {"mimir.names.stream": {"handlers": ["stream"], "level": "INFO"}},
    }
    logging.config.dictConfig(json.loads(json.dumps(config)))
    log = logging.getLogger("mimir.names.stream")
    (handler,) = log.handlers
    assert type(handler) is mimir.ZMQStreamHandler
    try:
        for i in range(3):
            log.info({"iteration": i})
        handler.flush(10)
        with mimir.stream.subscribe(handler.address, handler.replay_address, timeout=10) as sub:
            assert [next(sub) for _ in range(3)] == [{"iteration": i} for i in range(3)]
    finally:
        log.removeHandler(handler)
        handler.close()


def test_dictconfig_builds_a_forward_handler_for_a_collector(tmp_path, wait_until):
    """{"class": "mimir.ZMQForwardHandler"} sends to a mimir.Collector, which writes the log."""
    pytest.importorskip("zmq")
    path = tmp_path / "collected.jsonl"
    with mimir.Collector("tcp://127.0.0.1:0", filename=path).start() as collector:
        config = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "forward": {
                    "class": "mimir.ZMQForwardHandler",
                    "address": collector.address,
                    "name": "rank0",
                }
            },
            "loggers": {"mimir.names.forward": {"handlers": ["forward"], "level": "INFO"}},
        }
        logging.config.dictConfig(config)
        log = logging.getLogger("mimir.names.forward")
        (handler,) = log.handlers
        assert type(handler) is mimir.ZMQForwardHandler
        for i in range(5):
            log.info({"iteration": i})
        log.removeHandler(handler)
        handler.close()
        assert handler.sent == 5
        assert wait_until(lambda: collector.received == 5, timeout=10)
    entries = mimir.load(path)
    assert [entry["iteration"] for entry in entries] == list(range(5))
    assert {entry["source"]["name"] for entry in entries} == {"rank0"}


def test_missing_pyzmq_is_named_with_what_to_install():
    """Without pyzmq, each ZeroMQ class, dictConfig and Logger(stream=True) say what to install."""
    result = run_python(
        """
        import logging.config
        import sys

        sys.modules["zmq"] = None  # as if pyzmq were not installed
        import mimir

        messages = []
        for build in (
            lambda: mimir.ZMQStreamHandler("tcp://127.0.0.1:0"),
            lambda: mimir.ZMQForwardHandler("tcp://127.0.0.1:5555"),
            lambda: mimir.Collector("tcp://127.0.0.1:0"),
            lambda: mimir.Logger(stream=True, formatter=None, name="nozmq"),
        ):
            try:
                build()
            except ImportError as error:
                messages.append(str(error))
        try:
            logging.config.dictConfig({
                "version": 1,
                "handlers": {"f": {"class": "mimir.ZMQForwardHandler"}},
            })
        except ValueError as error:
            messages.append(str(error.__cause__))
        assert logging.getLogger("mimir.nozmq").handlers == []
        for message in messages:
            print(message)
        """
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    assert all('pip install "mimir-logger[zmq]"' in line for line in lines), result.stdout


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_module_paths_of_0_1_still_import_with_a_deprecation_warning(old, new):
    """``import mimir.zmq_handler`` (and each old path) gives the moved module, and says so."""
    result = run_python(
        f"""
        import importlib, warnings
        warnings.simplefilter("error", DeprecationWarning)
        import mimir
        try:
            importlib.import_module({old!r})
        except DeprecationWarning as warning:
            print("warned:", warning)
        warnings.simplefilter("ignore", DeprecationWarning)
        print(importlib.import_module({old!r}) is importlib.import_module({new!r}))
        """
    )
    assert result.stdout.splitlines() == [
        f"warned: {old} is now {new}; the old name will be removed in the next release",
        "True",
    ]


def test_dictconfig_builds_a_handler_from_a_0_1_module_path(tmp_path):
    """A dictConfig written for 0.1 (``mimir.jsonl.JSONLFileHandler``) still builds the handler."""
    path = tmp_path / "run.jsonl"
    with pytest.warns(DeprecationWarning, match="mimir.jsonl is now mimir.files.plain"):
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "file": {"class": "mimir.jsonl.JSONLFileHandler", "filename": str(path)}
                },
                "loggers": {"mimir.test.moved": {"handlers": ["file"], "level": "INFO"}},
            }
        )
    logger = logging.getLogger("mimir.test.moved")
    handler = logger.handlers[0]
    assert isinstance(handler, mimir.JSONLFileHandler)
    logger.info({"iteration": 1})
    handler.close()
    assert mimir.load(path) == [{"iteration": 1}]
