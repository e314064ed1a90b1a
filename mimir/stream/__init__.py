"""Live entries over ZeroMQ: publishing, following, forwarding and collecting.

Public here, for clients of a stream: :func:`subscribe` (an iterator of entries,
recent ones replayed first), :func:`follow` (a function called with each entry
from a thread), :class:`Subscription`, :class:`Follower` and the warnings they
give (:class:`StreamGapWarning`, :class:`PublisherRestartWarning`).

The modules, bottom first:

* :mod:`mimir.stream.protocol`: the frames of every message (stream entries,
  heartbeats, subscriptions, replay requests and replies, forwarded entries), how
  they are encoded and decoded. Pure bytes and :mod:`struct`: it imports no pyzmq,
  and decoding never unpickles or evaluates anything; malformed input raises
  :class:`~mimir.stream.protocol.ProtocolError`.
* :mod:`mimir.stream.transport`: sockets and their safety: importing pyzmq,
  binding (a free port for ``*`` or ``0``), the loopback check and the warning for
  an address bound beyond it, CURVE keys, the authenticator, and the handshake
  monitor that counts refused connections.
* ``mimir.stream._sender``: the sender core both ZeroMQ handlers build on (a line
  queue swapped out whole by a background thread, drop accounting with one report
  per streak, drain on close, reopen after close, fork handling).
* :mod:`mimir.stream.publisher` (:class:`~mimir.ZMQStreamHandler`),
  :mod:`mimir.stream.subscriber` (:func:`subscribe`, :func:`follow`),
  :mod:`mimir.stream.forwarder` (:class:`~mimir.ZMQForwardHandler`) and
  :mod:`mimir.stream.collector` (:class:`~mimir.Collector`).

Imports point down only: protocol and transport import nothing of Mímir; the
sender core imports the base handler and the protocol; the collector writes
through the file handlers. The package is named ``stream``, not ``zmq``, so that
it never shadows pyzmq's ``zmq`` package. Importing it imports no pyzmq: that
happens when a socket is made, and a missing pyzmq is an error that says what to
install (``pip install "mimir-logger[zmq]"``).
"""

from __future__ import annotations

from mimir.stream.subscriber import (
    Follower,
    PublisherRestartWarning,
    StreamGapWarning,
    StreamWarning,
    Subscription,
    follow,
    subscribe,
)

__all__ = [
    "Follower",
    "PublisherRestartWarning",
    "StreamGapWarning",
    "StreamWarning",
    "Subscription",
    "follow",
    "subscribe",
]
