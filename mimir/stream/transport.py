"""Sockets and their safety, for every ZeroMQ sender and receiver of Mímir.

Importing pyzmq (with an error that says how to install it), binding an address
(port ``*`` or ``0``: a free one), telling whether an address is reachable from
this host only and warning when a server is bound beyond it, loading CURVE keys,
starting the authenticator, and counting the connections refused during the CURVE
handshake (:class:`HandshakeMonitor`).

pyzmq is imported only when a function here is called with it (most take the
``zmq`` module as an argument, from :func:`import_zmq`).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "HandshakeMonitor",
    "bind_endpoint",
    "check_address",
    "client_curve_keys",
    "client_socket",
    "close_context",
    "import_zmq",
    "is_loopback",
    "load_key",
    "load_server_keys",
    "reachable_address",
    "received",
    "server_socket",
    "start_authenticator",
    "warn_if_exposed",
]


def import_zmq() -> Any:
    """Import pyzmq, or raise an ImportError that says how to install it."""
    try:
        import zmq
    except ImportError as error:
        raise ImportError(
            'streaming needs pyzmq: install it with pip install "mimir-logger[zmq]"'
            " (or pip install pyzmq)"
        ) from error
    return zmq


# -- addresses ----------------------------------------------------------------------------


def check_address(address: Any, example: str) -> None:
    """Raise ValueError unless ``address`` looks like a ZeroMQ address (``example`` shows one)."""
    if not isinstance(address, str) or "://" not in address:
        raise ValueError(f"expected a ZeroMQ address such as {example}, got {address!r}")


def is_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint is reachable from this host only.

    ``ipc://`` and ``inproc://`` are local; ``tcp://HOST:PORT`` is local when HOST is
    ``localhost`` or a loopback address. ``*``, ``0.0.0.0``, interface names and
    other addresses are not.
    """
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_any_host(host: str) -> bool:
    """Whether ``host`` (brackets stripped) means every interface: ``*``, ``0.0.0.0``, ``::``."""
    if host == "*":
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def reachable_address(announced: str, connected: str) -> str:
    """``announced``, an endpoint bound by a server, as seen by a client of ``connected``.

    A server bound on every interface announces ``tcp://0.0.0.0:PORT`` (or ``*``,
    ``[::]``): the client reaches it on the host it connected to (``connected``, one
    of the server's endpoints), so that host replaces the wildcard; for a client
    that did not connect over TCP (``ipc://``: the same machine) the loopback
    address does. Any other endpoint is returned unchanged.
    """
    scheme, _, rest = announced.partition("://")
    host, colon, port = rest.rpartition(":")
    if scheme != "tcp" or not colon or not _is_any_host(host.strip("[]")):
        return announced
    connected_scheme, _, connected_rest = connected.partition("://")
    connected_host = connected_rest.rpartition(":")[0]
    if connected_scheme != "tcp" or not connected_host or _is_any_host(connected_host.strip("[]")):
        connected_host = "[::1]" if ":" in host else "127.0.0.1"
    return f"tcp://{connected_host}:{port}"


def bind_endpoint(zmq: Any, sock: Any, address: str, purpose: str) -> str:
    """Bind ``sock`` to ``address`` (port 0 or ``*``: a free port); return the endpoint bound.

    A port in use is an :class:`OSError` that names the address; ``purpose`` says
    what the socket is for in that message ("publish", "collect").
    """
    check_address(address, "tcp://127.0.0.1:5557")
    endpoint = address
    if address.startswith("tcp://") and address.endswith(":0"):
        endpoint = address[:-1] + "*"
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as error:
        if error.errno == errno.EADDRINUSE:
            raise OSError(
                errno.EADDRINUSE,
                f"cannot {purpose} on {address}: address already in use (another run "
                "there? use another port, or port * for a free one)",
            ) from None
        raise OSError(error.errno, f"cannot bind {address}: {error}") from None
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


def warn_if_exposed(
    what: str,
    addresses: Iterable[str | None],
    risk: str,
    peer: str,
    *,
    encrypted: bool,
    authorized: bool,
    stacklevel: int,
) -> None:
    """Warn when a server is bound beyond loopback without ``curve_authorized_keys``.

    ``what`` names the server ("stream"), ``risk`` says what anyone who reaches the
    port can do, ``peer`` who connects ("client"); ``encrypted``: CURVE is on.
    ``stacklevel`` is counted from the caller of this function.
    """
    wide = [address for address in addresses if address and not is_loopback(address)]
    if authorized or not wide:
        return
    how = (
        f"CURVE encrypts the traffic, but any {peer} may connect: pass curve_authorized_keys"
        if encrypted
        else "pass curve_server_secret_key and curve_authorized_keys"
    )
    warnings.warn(
        f"Mímir {what} bound to {', '.join(wide)}: {risk} ({how}, or bind 127.0.0.1 "
        "and use an SSH tunnel)",
        stacklevel=stacklevel + 1,
    )


# -- sockets and CURVE keys ---------------------------------------------------------------


def load_server_keys(zmq: Any, secret_key_file: Any) -> tuple[bytes, bytes] | None:
    """The CURVE key pair of a server from its ``zmq.auth`` secret key file (None: no CURVE)."""
    if secret_key_file is None:
        return None
    if not zmq.has("curve"):
        raise ValueError("this libzmq was built without CURVE support")
    import zmq.auth

    public, secret = zmq.auth.load_certificate(os.fspath(secret_key_file))
    if secret is None:
        raise ValueError(
            f"{os.fspath(secret_key_file)!r} holds no secret key: pass the "
            "'.key_secret' file made by zmq.auth.create_certificates"
        )
    return public, secret


def load_key(value: Any, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) from a key file made by :mod:`zmq.auth`, or a 40-character Z85 key.

    ``what`` names the argument in errors; ``secret``: the file must hold a secret key.
    """
    if isinstance(value, (bytes, str)) and len(value) == 40 and not os.path.exists(value):
        return (value.encode() if isinstance(value, str) else value), None
    import zmq.auth

    path = os.fspath(value)
    if not os.path.isfile(path):
        raise ValueError(f"{what}: no key file {path!r}")
    public, secret_key = zmq.auth.load_certificate(path)
    if secret and secret_key is None:
        raise ValueError(f"{what}: {path!r} holds no secret key (pass the '.key_secret' file)")
    return public, secret_key


def client_curve_keys(
    zmq: Any, server_public_key: Any, client_secret_key: Any
) -> tuple[bytes, bytes, bytes] | None:
    """(server public, client public, client secret) for a CURVE client, or None without.

    Without ``client_secret_key`` the client uses a throw-away key pair.
    """
    if server_public_key is None:
        return None
    if not zmq.has("curve"):
        raise ValueError("this libzmq was built without CURVE support")
    server, _ = load_key(server_public_key, "curve_server_public_key", False)
    if client_secret_key is None:
        return (server, *zmq.curve_keypair())
    public, secret = load_key(client_secret_key, "curve_client_secret_key", True)
    assert secret is not None
    return server, public, secret


def server_socket(zmq: Any, context: Any, kind: int, keys: tuple[bytes, bytes] | None) -> Any:
    """A socket of ``kind`` that closes at once (LINGER 0), a CURVE server with ``keys``."""
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey = keys
        sock.curve_server = True
    return sock


def client_socket(
    zmq: Any, context: Any, kind: int, keys: tuple[bytes, bytes, bytes] | None
) -> Any:
    """A socket of ``kind`` that closes at once (LINGER 0), a CURVE client with ``keys``."""
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys
    return sock


def received(zmq: Any, sock: Any, most: int) -> Iterator[list[bytes]]:
    """The messages ``sock`` already holds (at most ``most``), without waiting."""
    for _ in range(most):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return


def close_context(context: Any, auth: Any) -> None:
    """Stop the authenticator ``auth`` (if any), then terminate ``context`` (if any)."""
    if auth is not None:
        auth.stop()
    if context is not None:
        context.term()


# -- authentication -----------------------------------------------------------------------


class _DeniedAtWarning(logging.LoggerAdapter):
    """The ``zmq.auth`` logger, with authentication denials raised from DEBUG to WARNING."""

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        text = str(msg)
        if text.startswith("DENIED") or (text.startswith("%s") and args[:1] == ("DENIED",)):
            self.warning("authentication refused a client: " + text, *args, **kwargs)
        else:
            super().debug(msg, *args, **kwargs)


def start_authenticator(context: Any, directory: Any) -> Any:
    """Accept only the CURVE clients whose public keys are in ``directory``; denials logged."""
    from zmq.auth.thread import ThreadAuthenticator

    location = os.fspath(directory)
    if not os.path.isdir(location):
        raise ValueError(f"curve_authorized_keys: {location!r} is not a directory")
    auth = ThreadAuthenticator(context, log=_DeniedAtWarning(logging.getLogger("zmq.auth"), {}))
    auth.start()
    auth.configure_curve(domain="*", location=location)
    return auth


class HandshakeMonitor:
    """Counts and logs the connections a CURVE socket refused during the handshake.

    ZeroMQ drops a peer without keys or with the wrong server key before any key
    check runs, so only a socket monitor sees it. Logged on ``logger`` at WARNING,
    at most 5 a second; every refusal is counted in :attr:`refused`.
    """

    def __init__(self, zmq: Any, sock: Any, where: str, logger: logging.Logger) -> None:
        self.refused = 0
        self._sock = sock
        self._where = where
        self._log = logger
        self._window = (0.0, 0)
        self.socket = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        )
        self._kinds = {
            zmq.EVENT_HANDSHAKE_FAILED_AUTH: "authentication refused the client's key",
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the handshake failed (no CURVE keys,"
            " the wrong server key, or not a Mímir peer)",
        }

    def drain(self, zmq: Any) -> None:
        """Count and log the refusals reported so far."""
        from zmq.utils.monitor import recv_monitor_message

        for _ in range(100):
            try:
                event = recv_monitor_message(self.socket, zmq.NOBLOCK)
            except zmq.Again:
                return
            self.refused += 1
            now = time.monotonic()
            start, logged = self._window
            if now - start >= 1.0:
                start, logged = now, 0
            self._window = (start, logged + 1)
            if logged < 5:
                self._log.warning(
                    "refused a connection on %s: %s (%d refused so far)",
                    self._where,
                    self._kinds.get(event["event"], "the handshake failed"),
                    self.refused,
                )

    def close(self) -> None:
        """Stop monitoring and close the monitor socket."""
        try:
            self._sock.disable_monitor()
        except Exception:  # the socket may be closed already
            pass
        self.socket.close(linger=0)
