"""Fixtures of the plot tests: a headless Chromium and ZeroMQ publishers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from plot_browser import chromium, make_logger


class _Detach:
    def __init__(self, logger: logging.Logger, handler: logging.Handler) -> None:
        self.logger, self.handler = logger, handler

    def close(self) -> None:
        self.logger.removeHandler(self.handler)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Selenium, shared by the plot tests."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def publishers(closing: Any) -> Callable[[str], tuple[Any, logging.Logger]]:
    """Make ZMQStreamHandlers on ephemeral loopback ports (replaying 1000) and their loggers."""
    pytest.importorskip("zmq")
    from mimir.formatter import JSONFormatter
    from mimir.stream.publisher import ZMQStreamHandler

    def make(name: str) -> tuple[Any, logging.Logger]:
        handler = closing(ZMQStreamHandler("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", replay=1000))
        handler.setFormatter(JSONFormatter())
        logger = make_logger(f"plotpub.{name}", handler)
        closing(_Detach(logger, handler))  # closed first: the next test's logger is clean
        return handler, logger

    return make


@pytest.fixture
def publisher(publishers: Callable[[str], tuple[Any, logging.Logger]]) -> tuple[Any, Any]:
    """A ZMQStreamHandler on ephemeral loopback ports, replaying 1000, and a logger using it."""
    return publishers("main")
