"""The wire protocol of Mímir's ZeroMQ messages: frame kinds, layouts, encode and decode.

Every sender and receiver of the ZeroMQ layer builds and reads its messages here:
the stream (:class:`~mimir.ZMQStreamHandler` and :mod:`mimir.stream`), its replay
socket, and forwarding (:class:`~mimir.ZMQForwardHandler` to
:class:`~mimir.Collector`). The layouts are documented for other implementations
in ``docs/streaming.rst`` and ``docs/multiprocess.rst``.

Decoding only slices bytes, unpacks fixed-size integers with :mod:`struct` and, for
a forwarded sender's identity, parses JSON: nothing is unpickled or evaluated. A
message that does not follow the protocol raises :class:`ProtocolError` (and
nothing else), which receivers count and drop.

The stream socket carries entries, heartbeats and announcements (:data:`KIND_ANNOUNCE`:
the publisher's replay address, so that a client given only the stream's address
can replay). An announcement is a message kind of its own, not a field of the
heartbeat: the heartbeat keeps its exact layout, so clients that predate
announcements (they count unknown messages as malformed and drop them) still read
every heartbeat.

Entries travel as an *index* (spans of consecutive sequence numbers, :data:`SPAN`
each) and a frame of *lines*: each entry's JSON text followed by one newline.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

__all__ = [
    "HEADER_SIZE",
    "KIND_ANNOUNCE",
    "KIND_ENTRIES",
    "KIND_FORWARD",
    "KIND_HEARTBEAT",
    "KIND_REPLAY",
    "MAX_ANNOUNCED_ADDRESS",
    "MAX_FORWARD_HEADER",
    "MAX_MESSAGE_BYTES",
    "MAX_REQUEST_SIZE",
    "REPLAY_REQUEST",
    "SPAN",
    "ProtocolError",
    "batch_end",
    "decode_forward",
    "decode_identity",
    "decode_replay_reply",
    "decode_replay_request",
    "decode_spans",
    "decode_stream",
    "decode_subscription",
    "encode_announcement",
    "encode_entries",
    "encode_heartbeat",
    "encode_identity",
    "encode_replay_reply",
    "encode_replay_request",
    "line_offset",
    "stream_header",
]


class ProtocolError(ValueError):
    """A message that does not follow the protocol; its text says what is wrong."""


#: Frame 0 of a stream message is one of these kind letters followed by the
#: 32-character run id of the publisher (:data:`HEADER_SIZE` bytes in all).
KIND_ENTRIES = b"E"
KIND_HEARTBEAT = b"H"
KIND_REPLAY = b"R"
#: A stream message announcing the publisher's replay address (sent just before each
#: heartbeat).
KIND_ANNOUNCE = b"A"
#: First byte of frame 0 of every forwarded message; the rest of the frame is the
#: sender's identity as a JSON object (host, pid, run, and name when given).
KIND_FORWARD = b"F"
#: Frame 0 of a stream message: a kind letter and 32 hex digits of run id.
HEADER_SIZE = 33
#: A replay request: these 6 bytes, optionally followed by a sequence number.
REPLAY_REQUEST = b"REPLAY"
#: A span of entries with consecutive sequence numbers: the sequence number of its
#: first entry (8 bytes) and how many entries it holds (4 bytes). Its entries travel
#: in another frame, as JSON lines each ending in a newline.
SPAN = struct.Struct(">QI")
_SEQ = struct.Struct(">Q")
_TWO_SEQS = struct.Struct(">QQ")
#: Largest frame accepted by the stream's server sockets, in bytes (``ZMQ_MAXMSGSIZE``):
#: ZeroMQ disconnects a peer that sends a bigger one. Requests are 6 or 14 bytes; the
#: limit leaves room for the CURVE handshake (about 300 bytes).
MAX_REQUEST_SIZE = 1024
#: Default largest frame a collector accepts; a batch is cut well below it, and one
#: entry longer than it is dropped by the sender.
MAX_MESSAGE_BYTES = 4 << 20
#: Frame 0 of a forwarded message (kind letter + JSON identity) is at most this long.
MAX_FORWARD_HEADER = 1024
#: An announced replay address is at most this many bytes (printable ASCII).
MAX_ANNOUNCED_ADDRESS = 1024

#: A span of decoded entries: the sequence number of the first, and their JSON lines.
Span = tuple[int, list[bytes]]


# -- entries --------------------------------------------------------------------------


def stream_header(kind: bytes, run_id: str) -> bytes:
    """Frame 0 of a stream message: ``kind`` followed by the publisher's run id."""
    return kind + run_id.encode("ascii")


def encode_entries(header: bytes, seq: int, count: int, lines: Any) -> list[Any]:
    """The frames of a message of ``count`` entries numbered from ``seq``.

    ``header`` is frame 0 (:func:`stream_header` or :func:`encode_identity`);
    ``lines`` (bytes or a memoryview) holds the entries, each ending in a newline.
    """
    return [header, SPAN.pack(seq, count), lines]


def batch_end(data: bytes | bytearray, start: int, end: int, limit: int) -> int:
    """Where the message starting at ``data[start]`` ends: at most ``limit`` bytes of lines.

    Cut after the last newline within the limit, or after the first one beyond it
    when a single entry is longer. ``data[start:end]`` holds whole lines.
    """
    if end - start <= limit:
        return end
    stop = data.rfind(b"\n", start, start + limit) + 1
    if stop <= start:
        stop = data.find(b"\n", start + limit) + 1
    return stop


def line_offset(data: bytes | bytearray, lines: int) -> int:
    """The offset just after the first ``lines`` newline-terminated lines of ``data``."""
    offset = 0
    find = data.find
    for _ in range(lines):
        offset = find(b"\n", offset) + 1
    return offset


def decode_spans(index: bytes, data: bytes) -> list[Span]:
    """The spans described by an index frame and a frame of lines.

    ``index`` holds 12 bytes per span (first sequence number, count), in increasing
    order without overlap; ``data`` the lines of all the spans, each ending in a
    newline. Raises :class:`ProtocolError` when the two disagree.
    """
    if len(index) % SPAN.size or (data and data[-1:] != b"\n"):
        raise ProtocolError("malformed index, or lines not ending in a newline")
    lines = data.split(b"\n")
    lines.pop()  # after the final newline
    spans = []
    start = 0
    expected = 1
    for seq, count in SPAN.iter_unpack(index):
        if count == 0 or seq < expected:
            raise ProtocolError("spans empty, out of order or overlapping")
        spans.append((seq, lines[start : start + count]))
        start += count
        expected = seq + count
    if start != len(lines):
        raise ProtocolError("entry counts and lines disagree")
    return spans


# -- the stream socket ------------------------------------------------------------------


def encode_heartbeat(run_id: str, last: int) -> list[bytes]:
    """A heartbeat: the publisher is alive and ``last`` is its last entry published."""
    return [stream_header(KIND_HEARTBEAT, run_id), _SEQ.pack(last)]


def encode_announcement(run_id: str, replay_address: str | None) -> list[bytes]:
    """An announcement: where the publisher serves its replay (None: it keeps no replay).

    The address is the endpoint bound, as ZeroMQ reports it: a publisher bound on
    all interfaces announces ``0.0.0.0`` (or ``::``), which the client replaces by the
    host it reached the stream on.
    """
    address = (replay_address or "").encode("ascii")
    if len(address) > MAX_ANNOUNCED_ADDRESS:
        raise ValueError(f"replay address longer than {MAX_ANNOUNCED_ADDRESS} bytes")
    return [stream_header(KIND_ANNOUNCE, run_id), address]


def _announced_address(frame: bytes) -> str | None:
    """The replay address of an announcement's frame 1 (None when empty); checked."""
    if not frame:
        return None
    if len(frame) > MAX_ANNOUNCED_ADDRESS or not all(0x21 <= byte <= 0x7E for byte in frame):
        raise ProtocolError("malformed announced address")
    address = frame.decode("ascii")
    scheme, separator, rest = address.partition("://")
    if not separator or not scheme.isalnum() or not rest:
        raise ProtocolError("malformed announced address")
    return address


def decode_stream(frames: Sequence[bytes]) -> tuple[bytes, bytes, Any]:
    """(kind, run id as bytes, payload) of a message of the stream socket.

    For :data:`KIND_ENTRIES` the payload is the list of its spans (one); for
    :data:`KIND_HEARTBEAT`, the sequence number of the last entry published; for
    :data:`KIND_ANNOUNCE`, the replay address announced (a str), or None when the
    publisher keeps no replay. Frames after frame 1 of an announcement are reserved
    for later additions and ignored.
    """
    header = frames[0] if frames else b""
    kind = header[:1]
    if len(header) == HEADER_SIZE:
        if kind == KIND_ENTRIES and len(frames) == 3 and len(frames[1]) == SPAN.size:
            return kind, header[1:], decode_spans(frames[1], frames[2])
        if kind == KIND_HEARTBEAT and len(frames) == 2 and len(frames[1]) == _SEQ.size:
            return kind, header[1:], _SEQ.unpack(frames[1])[0]
        if kind == KIND_ANNOUNCE and len(frames) >= 2:
            return kind, header[1:], _announced_address(frames[1])
    raise ProtocolError("not a Mímir stream message")


def decode_subscription(frames: Sequence[bytes]) -> bool:
    """Whether a message read from the XPUB socket subscribes (True) or unsubscribes."""
    kind = frames[0][:1] if len(frames) == 1 else b""
    if kind not in (b"\x00", b"\x01"):
        raise ProtocolError("not a subscription")
    return kind == b"\x01"


# -- the replay socket ------------------------------------------------------------------


def encode_replay_request(after: int = 0) -> bytes:
    """A replay request: every entry kept, or only those numbered above ``after``."""
    return REPLAY_REQUEST + _SEQ.pack(after) if after else REPLAY_REQUEST


def decode_replay_request(frames: Sequence[bytes]) -> tuple[list[bytes], int]:
    """(routing envelope, ``after``) of a request read from the ROUTER socket.

    ``[identity, request]`` from a DEALER, ``[identity, b"", request]`` from a REQ.
    """
    request = frames[-1] if len(frames) in (2, 3) else b""
    if len(frames) == 3 and frames[1]:
        request = b""
    if request == REPLAY_REQUEST:
        return list(frames[:-1]), 0
    if len(request) == len(REPLAY_REQUEST) + _SEQ.size and request.startswith(REPLAY_REQUEST):
        return list(frames[:-1]), _SEQ.unpack_from(request, len(REPLAY_REQUEST))[0]
    raise ProtocolError("not a replay request")


def encode_replay_reply(
    envelope: Sequence[bytes],
    run_id: str,
    first: int,
    last: int,
    spans: Sequence[tuple[int, int]],
    lines: Sequence[bytes],
) -> list[bytes]:
    """A replay reply: the ``spans`` (first seq, count) kept, with their ``lines`` chunks.

    ``first`` is the oldest entry kept (``last + 1`` when none is), ``last`` the
    last entry published before this reply.
    """
    return [
        *envelope,
        stream_header(KIND_REPLAY, run_id),
        _TWO_SEQS.pack(first, last),
        b"".join([SPAN.pack(seq, count) for seq, count in spans]),
        b"".join(lines),
    ]


def decode_replay_reply(frames: Sequence[bytes]) -> tuple[bytes, int, int, list[Span]]:
    """(run id as bytes, first, last, spans) of a reply read from a DEALER socket."""
    if (
        len(frames) == 4
        and len(frames[0]) == HEADER_SIZE
        and frames[0][:1] == KIND_REPLAY
        and len(frames[1]) == _TWO_SEQS.size
    ):
        first, last = _TWO_SEQS.unpack(frames[1])
        return frames[0][1:], first, last, decode_spans(frames[2], frames[3])
    raise ProtocolError("not a Mímir replay reply")


# -- forwarding to a collector ----------------------------------------------------------


def encode_identity(host: str, pid: int, name: str | None, run_id: str) -> bytes:
    """Frame 0 of a forwarded message: :data:`KIND_FORWARD` and the sender's identity."""
    identity: dict[str, Any] = {"host": host, "pid": pid}
    if name is not None:
        identity["name"] = name
    identity["run"] = run_id
    return KIND_FORWARD + json.dumps(identity, separators=(",", ":")).encode()


def decode_identity(header: bytes) -> dict[str, Any]:
    """The sender's identity in frame 0 of a forwarded message: host, pid, run, name."""
    try:
        identity = json.loads(header[1:].decode("utf-8"))
    except (ValueError, RecursionError):  # also UnicodeDecodeError; deep nesting
        identity = None
    if (
        type(identity) is not dict
        or not isinstance(identity.get("host"), str)
        or type(identity.get("pid")) is not int
        or not isinstance(identity.get("run"), str)
        or not isinstance(identity.get("name", ""), str)
        or not set(identity) <= {"host", "pid", "name", "run"}
    ):
        raise ProtocolError("malformed sender identity")
    return identity


def decode_forward(
    frames: Sequence[bytes], max_header: int = MAX_FORWARD_HEADER
) -> tuple[bytes, int, int, bytes]:
    """(frame 0, first seq, count, lines) of a forwarded message.

    Frame 0 is checked for its kind and size only: :func:`decode_identity` reads it
    (once per sender).
    """
    if len(frames) != 3:
        raise ProtocolError(f"{len(frames)} frames instead of 3")
    header, index, data = frames
    if header[:1] != KIND_FORWARD or len(header) > max_header or len(index) != SPAN.size:
        raise ProtocolError("not a Mímir forward message")
    first, count = SPAN.unpack(index)
    if not first or not count or data[-1:] != b"\n" or data.count(b"\n") != count:
        raise ProtocolError("entry count and lines disagree")
    return header, first, count, data
