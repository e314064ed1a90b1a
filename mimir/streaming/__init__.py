"""The ZeroMQ layer's shared parts: the wire protocol, the transport, the sender core.

* :mod:`mimir.streaming.protocol`: the frames of every message (stream entries,
  heartbeats, subscriptions, replay requests and replies, forwarded entries), how
  they are encoded and decoded. Pure bytes and :mod:`struct`: it imports no pyzmq,
  and decoding never unpickles or evaluates anything; malformed input raises
  :class:`~mimir.streaming.protocol.ProtocolError`.
* :mod:`mimir.streaming.transport`: sockets and their safety: importing pyzmq,
  binding (a free port for ``*`` or ``0``), the loopback check and the warning for
  an address bound beyond it, CURVE keys, the authenticator, and the handshake
  monitor that counts refused connections.
* :mod:`mimir.streaming._sender`: the sender core both ZeroMQ handlers build on
  (a line queue swapped out whole by a background thread, drop accounting with one
  report per streak, drain on close, reopen after close, fork handling).

The handlers, the subscriber and the collector keep their public modules, which
import from here: :mod:`mimir.zmq_handler` (:class:`~mimir.ZMQStreamHandler`),
:mod:`mimir.forward` (:class:`~mimir.ZMQForwardHandler`), :mod:`mimir.stream`
(the subscriber) and :mod:`mimir.collector` (:class:`~mimir.Collector`). Imports
point down only: protocol and transport import nothing of Mímir; the sender core
imports the base handler (:mod:`mimir._handler`), :mod:`mimir._fork` and the
protocol; nothing here imports the modules above.

The package is named ``streaming``, not ``zmq``, so that it never shadows pyzmq's
``zmq`` package. Importing it imports no pyzmq: that happens when a socket is made.
"""
