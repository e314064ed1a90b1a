"""The wire protocol: every message round-trips; malformed input raises ProtocolError only."""

from __future__ import annotations

import random

import pytest

from mimir.stream import protocol
from mimir.stream.protocol import (
    KIND_ENTRIES,
    KIND_FORWARD,
    KIND_HEARTBEAT,
    ProtocolError,
    batch_end,
    decode_forward,
    decode_identity,
    decode_replay_reply,
    decode_replay_request,
    decode_runs,
    decode_stream,
    decode_subscription,
    encode_entries,
    encode_heartbeat,
    encode_identity,
    encode_replay_reply,
    encode_replay_request,
    line_offset,
    run_id_of,
    stream_header,
)

RUN_ID = "0123456789abcdef0123456789abcdef"
LINES = b'{"i":7}\n{"i":8}\n{"i":9}\n'


def test_entries_round_trip():
    """An entries message decodes to its run id and its one run of lines."""
    frames = encode_entries(stream_header(KIND_ENTRIES, RUN_ID), 7, 3, LINES)
    assert len(frames[0]) == protocol.HEADER_SIZE
    assert run_id_of(frames[0]) == RUN_ID
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
    lambda frames: decode_runs(frames[0], frames[-1]),
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
