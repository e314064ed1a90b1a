"""The wire protocol: every message round-trips; malformed input raises ProtocolError only."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

import pytest

from mimir.stream import protocol
from mimir.stream.protocol import (
    KIND_ANNOUNCE,
    KIND_ENTRIES,
    KIND_FORWARD,
    KIND_HEARTBEAT,
    ProtocolError,
    batch_end,
    decode_forward,
    decode_identity,
    decode_replay_reply,
    decode_replay_request,
    decode_spans,
    decode_stream,
    decode_subscription,
    encode_announcement,
    encode_entries,
    encode_heartbeat,
    encode_identity,
    encode_replay_reply,
    encode_replay_request,
    line_offset,
    stream_header,
)

RUN_ID = "0123456789abcdef0123456789abcdef"
LINES = b'{"i":7}\n{"i":8}\n{"i":9}\n'


def test_entries_round_trip():
    """An entries message decodes to its run id and its one run of lines."""
    frames = encode_entries(stream_header(KIND_ENTRIES, RUN_ID), 7, 3, LINES)
    assert len(frames[0]) == protocol.HEADER_SIZE
    assert frames[0][1:].decode("ascii") == RUN_ID
    kind, run, runs = decode_stream(frames)
    assert (kind, run) == (KIND_ENTRIES, RUN_ID.encode())
    assert runs == [(7, [b'{"i":7}', b'{"i":8}', b'{"i":9}'])]


def test_entries_frame_layout_is_the_documented_one():
    """The index frame is first_seq (8 bytes) then count (4 bytes), big-endian."""
    _, index, lines = encode_entries(stream_header(KIND_ENTRIES, RUN_ID), 7, 2, b"a\nb\n")
    assert index == bytes.fromhex("000000000000000700000002")
    assert lines == b"a\nb\n"


def test_heartbeat_round_trip():
    """A heartbeat decodes to its run id and the last sequence number published."""
    frames = encode_heartbeat(RUN_ID, 12345)
    assert frames[0][:1] == KIND_HEARTBEAT
    assert decode_stream(frames) == (KIND_HEARTBEAT, RUN_ID.encode(), 12345)


def _decode_stream_before_announcements(frames: Sequence[bytes]) -> tuple[bytes, bytes, object]:
    """decode_stream as it was before announcements, kept to check compatibility."""
    header = frames[0] if frames else b""
    kind = header[:1]
    if len(header) == 33:
        if kind == b"E" and len(frames) == 3 and len(frames[1]) == 12:
            return kind, header[1:], decode_spans(frames[1], frames[2])
        if kind == b"H" and len(frames) == 2 and len(frames[1]) == 8:
            return kind, header[1:], struct.unpack(">Q", frames[1])[0]
    raise ProtocolError("not a Mímir stream message")


def test_heartbeat_in_the_old_layout_still_decodes():
    """A heartbeat built by hand as before announcements ("H" + run id | 8 bytes) decodes."""
    old = [b"H" + RUN_ID.encode(), struct.pack(">Q", 42)]
    assert decode_stream(old) == (KIND_HEARTBEAT, RUN_ID.encode(), 42)
    assert encode_heartbeat(RUN_ID, 42) == old  # and a new publisher still sends exactly that


def test_clients_before_announcements_read_every_message_but_the_announcement():
    """The old decoder reads new heartbeats and entries; an announcement is one malformed message.

    Clients from before announcements count a message they cannot decode in
    ``bad_messages`` and drop it, so they keep working with a new publisher.
    """
    heartbeat = encode_heartbeat(RUN_ID, 7)
    entries = encode_entries(stream_header(KIND_ENTRIES, RUN_ID), 7, 3, LINES)
    assert _decode_stream_before_announcements(heartbeat) == decode_stream(heartbeat)
    assert _decode_stream_before_announcements(entries) == decode_stream(entries)
    with pytest.raises(ProtocolError):
        _decode_stream_before_announcements(encode_announcement(RUN_ID, "tcp://127.0.0.1:5556"))


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:5556", "tcp://0.0.0.0:5556", "tcp://[::]:5556", "ipc:///tmp/mimir-replay"],
)
def test_announcement_round_trip(address):
    """An announcement decodes to its run id and the replay address, as encoded."""
    frames = encode_announcement(RUN_ID, address)
    assert frames == [b"A" + RUN_ID.encode(), address.encode("ascii")]
    assert decode_stream(frames) == (KIND_ANNOUNCE, RUN_ID.encode(), address)


def test_announcement_of_no_replay_is_an_empty_frame():
    """A publisher that keeps no replay announces an empty address, decoded as None."""
    frames = encode_announcement(RUN_ID, None)
    assert frames == [b"A" + RUN_ID.encode(), b""]
    assert decode_stream(frames) == (KIND_ANNOUNCE, RUN_ID.encode(), None)


def test_announcement_ignores_frames_added_after_the_address():
    """Frames after the address are reserved for later additions: a decoder skips them."""
    frames = [*encode_announcement(RUN_ID, "tcp://h:1"), b"later", b"\xff\x00"]
    assert decode_stream(frames) == (KIND_ANNOUNCE, RUN_ID.encode(), "tcp://h:1")


@pytest.mark.parametrize(
    "address",
    [
        b"tcp://h\xc3\xa9:1",  # not ASCII
        b"tcp://h :1",  # a space
        b"tcp://h:1\n",  # a control character
        b"h:5556",  # no scheme
        b"://h:1",  # empty scheme
        b"tcp://",  # nothing after the scheme
        b"t-p://h:1",  # not a scheme
        b"tcp://" + b"h" * protocol.MAX_ANNOUNCED_ADDRESS,  # too long
    ],
)
def test_malformed_announced_address_is_a_protocol_error(address):
    """Only printable ASCII of the form scheme://endpoint, at most 1024 bytes, is an address."""
    with pytest.raises(ProtocolError, match="malformed announced address"):
        decode_stream([b"A" + RUN_ID.encode(), address])
    with pytest.raises(ProtocolError, match="not a Mímir stream message"):
        decode_stream([b"A" + RUN_ID.encode()])  # no address frame at all


def test_an_address_too_long_to_announce_is_refused_when_encoding():
    """encode_announcement refuses what decoders would reject."""
    with pytest.raises(ValueError, match="longer than"):
        encode_announcement(RUN_ID, "ipc://" + "x" * protocol.MAX_ANNOUNCED_ADDRESS)


def test_fuzzed_announcements_raise_protocol_error_only():
    """Random address frames decode to an address of printable ASCII, or raise ProtocolError."""
    rng = random.Random(5556)
    header = b"A" + RUN_ID.encode()
    alphabet = b"tcpi:/*[]0123456789.abc \x00\x7f\xff"
    decoded = 0
    for _ in range(20_000):
        size = rng.choice((0, 1, 6, 12, 20, 40, 1024, 1025))
        if rng.random() < 0.5:
            frame = rng.randbytes(size)
        else:
            frame = b"tcp://" + bytes(rng.choice(alphabet) for _ in range(size))
        try:
            kind, run, address = decode_stream([header, frame, *([b"x"] * rng.randint(0, 2))])
        except ProtocolError:
            continue
        decoded += 1
        assert (kind, run) == (KIND_ANNOUNCE, RUN_ID.encode())
        assert address is None or (address.isprintable() and "://" in address)
        assert address is None or address.encode("ascii") == frame
    assert decoded > 1000


def test_subscription_and_unsubscription():
    """XPUB delivers b"\\x01"+topic for a subscription, b"\\x00"+topic when one leaves."""
    assert decode_subscription([b"\x01"]) is True
    assert decode_subscription([b"\x01topic"]) is True
    assert decode_subscription([b"\x00"]) is False
    for frames in ([b""], [b"\x02"], [b"\x01", b"x"], [b"REPLAY"]):
        with pytest.raises(ProtocolError):
            decode_subscription(frames)


@pytest.mark.parametrize("after", [0, 1, 2**64 - 1])
@pytest.mark.parametrize("envelope", [[b"peer"], [b"peer", b""]], ids=["dealer", "req"])
def test_replay_request_round_trip(after, envelope):
    """A request, from a DEALER or a REQ (empty delimiter), gives its envelope and ``after``."""
    request = encode_replay_request(after)
    assert len(request) == (6 if after == 0 else 14)
    assert decode_replay_request([*envelope, request]) == (envelope, after)


def test_replay_request_rejects_other_messages():
    """Anything but REPLAY or REPLAY+8 bytes, or a non-empty delimiter, is malformed."""
    for frames in (
        [b"peer", b"REPLAX"],
        [b"peer", b"REPLAY" + b"\0" * 7],
        [b"peer", b"x", b"REPLAY"],
        [b"REPLAY"],
        [b"peer", b"", b"", b"REPLAY"],
    ):
        with pytest.raises(ProtocolError):
            decode_replay_request(frames)


def test_replay_reply_round_trip():
    """A reply with two runs (a gap between) and with none decodes to what was encoded."""
    frames = encode_replay_reply([b"peer"], RUN_ID, 3, 9, [(3, 2), (7, 1)], [b"a\nb\n", b"c\n"])
    assert frames[0] == b"peer"
    assert decode_replay_reply(frames[1:]) == (
        RUN_ID.encode(),
        3,
        9,
        [(3, [b"a", b"b"]), (7, [b"c"])],
    )
    empty = encode_replay_reply([], RUN_ID, 10, 9, [], [])
    assert decode_replay_reply(empty) == (RUN_ID.encode(), 10, 9, [])


@pytest.mark.parametrize("name", [None, "rank3"])
def test_forward_round_trip(name):
    """A forwarded message gives its identity (host, pid, run, name) and its lines."""
    header = encode_identity("gpu3", 4242, name, RUN_ID)
    assert header[:1] == KIND_FORWARD
    frames = encode_entries(header, 5, 3, LINES)
    assert decode_forward(frames) == (header, 5, 3, LINES)
    expected = {"host": "gpu3", "pid": 4242, "run": RUN_ID}
    if name is not None:
        expected["name"] = name
    assert decode_identity(header) == expected


def test_forward_rejections_say_why():
    """The collector's reasons: frame count, kind or size, counts against lines, identity."""
    good = encode_entries(encode_identity("h", 1, None, RUN_ID), 1, 3, LINES)
    with pytest.raises(ProtocolError, match="2 frames instead of 3"):
        decode_forward(good[:2])
    with pytest.raises(ProtocolError, match="not a Mímir forward message"):
        decode_forward([b"E" + good[0][1:], *good[1:]])
    with pytest.raises(ProtocolError, match="not a Mímir forward message"):
        decode_forward([good[0] + b" " * 1024, *good[1:]])
    with pytest.raises(ProtocolError, match="entry count and lines disagree"):
        decode_forward([good[0], good[1], LINES[:-1]])
    for identity in (b'F{"host":"h","pid":"1","run":"r"}', b"F[]", b"F\xff", b'F{"x":1}'):
        with pytest.raises(ProtocolError, match="malformed sender identity"):
            decode_identity(identity)


def test_batches_are_cut_after_a_newline():
    """A batch ends after the last newline within the limit, or after one long entry."""
    data = b"aaa\nbb\ncccccccc\nd\n"
    assert batch_end(data, 0, len(data), 100) == len(data)
    assert batch_end(data, 0, len(data), 8) == 7  # "aaa\nbb\n"
    assert batch_end(data, 7, len(data), 4) == 16  # one entry longer than the limit
    assert line_offset(data, 0) == 0
    assert line_offset(data, 2) == 7
    assert line_offset(data, 4) == len(data)


def _valid_messages() -> list[list[bytes]]:
    header = stream_header(KIND_ENTRIES, RUN_ID)
    return [
        encode_entries(header, 7, 3, LINES),
        encode_heartbeat(RUN_ID, 3),
        encode_announcement(RUN_ID, "tcp://0.0.0.0:5556"),
        encode_replay_reply([], RUN_ID, 3, 9, [(3, 2), (7, 1)], [b"a\nb\n", b"c\n"]),
        [b"peer", encode_replay_request(5)],
        [b"\x01"],
        encode_entries(encode_identity("h", 1, "n", RUN_ID), 1, 3, LINES),
    ]


DECODERS = [
    decode_stream,
    decode_subscription,
    decode_replay_request,
    decode_replay_reply,
    decode_forward,
    lambda frames: decode_identity(frames[0]),
    lambda frames: decode_spans(frames[0], frames[-1]),
]


def _mutations(rng: random.Random):
    """Random frames, valid messages cut short, with bytes flipped or frames dropped."""
    for _ in range(3000):
        yield [
            rng.randbytes(rng.choice((0, 1, 8, 12, 16, 33, 40))) for _ in range(rng.randint(1, 5))
        ]
    for message in _valid_messages():
        for index, frame in enumerate(message):
            for cut in range(len(frame)):
                yield [*message[:index], frame[:cut], *message[index + 1 :]]
            for _ in range(50):
                if frame:
                    flipped = bytearray(frame)
                    flipped[rng.randrange(len(frame))] = rng.randrange(256)
                    yield [*message[:index], bytes(flipped), *message[index + 1 :]]
            yield message[:index] + message[index + 1 :] or [b""]
        yield [*message, b"extra"]


def test_fuzzed_frames_raise_protocol_error_only():
    """Random bytes, truncations and flipped bytes: each decoder returns or raises ProtocolError."""
    rng = random.Random(20261130)
    cases = 0
    for frames in _mutations(rng):
        for decode in DECODERS:
            cases += 1
            try:
                decode(frames)
            except ProtocolError:
                pass
    assert cases > 20_000


def test_protocol_error_is_a_value_error():
    """Receivers that caught ValueError before keep working."""
    assert issubclass(ProtocolError, ValueError)
