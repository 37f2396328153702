"""gRPC's decoders on their own: the length-prefixed message framer (``GrpcMessages``),
schema-less protobuf and bounded decompression, bytes in and values out, with no HTTP/2,
kitchen or chef. The messages are the ones grpcio sent in tests/data/grpc-calls.pcap, as
its ground truth records them (bytes and protobuf fields); compressed ones are made by
Python's gzip/zlib. Hostile input (cut short, lying lengths, bad flags, bombs) must give a
flagged result, never an exception. And the decoder side imports nothing of the framework.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from netdumplings.chefs.grpc import Budget, GrpcMessages, decode_protobuf, decompress
from netdumplings.chefs.grpc.metadata import percent_decode, status_name, timeout_seconds

from conftest import expected

TRUTH = expected("grpc-calls.pcap")


def framed(message: bytes, compressed: bool = False, length: int | None = None) -> bytes:
    """One gRPC length-prefixed message (flag byte, 4-byte big-endian length, bytes)."""
    size = len(message) if length is None else length
    return bytes([int(compressed)]) + size.to_bytes(4, "big") + message


def recorded(direction: str) -> list[tuple[bytes, dict[str, Any]]]:
    """(message bytes, its ground-truth record) of every call, in capture order."""
    return [(bytes.fromhex(m["hex"]), m) for call in TRUTH["calls"]
            for m in call[f"{direction}_messages"]]


def feed(sink: GrpcMessages, data: bytes, step: int) -> GrpcMessages:
    for i in range(0, len(data), step):
        sink.feed(data[i:i + step])
    return sink


@pytest.mark.parametrize("step", [1, 3, 7, 4096])
def test_recorded_messages_come_out_whole_however_the_data_is_cut(step: int) -> None:
    messages = recorded("response")
    assert len(messages) >= 5
    stream = b"".join(framed(m, truth["grpc_frame"]["compressed"]) for m, truth in messages)
    sink = feed(GrpcMessages(), stream, step)
    assert (sink.count, sink.length, sink.partial, sink.bad) == (len(messages), len(stream),
                                                                 False, False)
    assert [bytes(m["data"]) for m in sink.messages] == [m for m, _ in messages]
    assert [m["length"] for m in sink.messages] == [t["length"] for _, t in messages]


def test_recorded_messages_decode_as_their_protobuf_fields() -> None:
    for message, truth in recorded("request") + recorded("response"):
        fields = decode_protobuf(message)
        assert fields is not None, truth
        assert [{"field": f["field"], "value": f["value"]} for f in fields] == \
            truth["protobuf_fields"]


def test_a_gzip_message_inflates_and_decodes() -> None:
    message, truth = recorded("response")[0]
    data, size = decompress(gzip.compress(message), "gzip", 65536)
    assert (data, size) == (message, len(message))
    assert decode_protobuf(data) is not None
    deflated = zlib.compress(message)
    assert decompress(deflated, "deflate", 65536) == (message, len(message))
    assert decompress(message, "snappy", 65536) == (message, None)    # not ours: as it came


def test_grpc_metadata_values() -> None:
    assert status_name(0) == "OK" and status_name(5) == "NOT_FOUND" and status_name(99) == "CODE_99"
    assert timeout_seconds("250m") == 0.25 and timeout_seconds("1H") == 3600.0
    assert timeout_seconds("123456789S") is None and timeout_seconds("5x") is None
    assert percent_decode("no%20dish%20%E2%9C%93") == "no dish \u2713"


# -- hostile input -----------------------------------------------------------------


def test_a_message_cut_short_is_counted_and_flagged_partial() -> None:
    message, _ = recorded("response")[0]
    sink = feed(GrpcMessages(), framed(message)[:-4], 2)
    assert sink.count == 1 and sink.partial
    (m,) = sink.messages
    assert m["length"] == len(message) and bytes(m["data"]) == message[:-4]
    half_prefix = feed(GrpcMessages(), b"\x00\x00\x00", 1)
    assert half_prefix.count == 0 and half_prefix.partial


def test_a_lying_length_keeps_only_what_the_caps_allow() -> None:
    budget = Budget(1000)
    sink = GrpcMessages(max_bytes=600, max_messages=2, budget=budget)
    sink.feed(framed(b"\x08\x01" * 2000, length=0xFFFFFFFF))     # "4 GB", 4000 bytes came
    (m,) = sink.messages
    assert (m["length"], len(m["data"]), sink.count) == (0xFFFFFFFF, 600, 1)
    assert sink.partial and budget.left == 400
    other = GrpcMessages(max_bytes=600, max_messages=2, budget=budget)   # same connection
    other.feed(framed(bytes(900)))
    assert len(other.messages[0]["data"]) == 400 and budget.left == 0
    sink.release()
    assert budget.left == 600


def test_a_flag_byte_that_is_not_grpc_marks_the_stream_bad() -> None:
    sink = feed(GrpcMessages(), b"\x07\x00\x00\x00\x02ab" + framed(b"\x08\x01"), 1)
    assert sink.bad and sink.count == 2 and sink.messages[0]["flag"] == 7


def test_messages_past_the_kept_count_are_still_counted() -> None:
    sink = GrpcMessages(max_bytes=16, max_messages=3)
    sink.feed(b"".join(framed(bytes([8, i])) for i in range(10)))
    assert sink.count == 10 and len(sink.messages) == 3 and sink.length == 70


@pytest.mark.parametrize("data", [
    b"\x0a\x7f" + b"short",                  # a length past the end
    b"\x08" + b"\xff" * 11,                  # a varint that never ends
    b"\x00\x01",                             # field number 0
    b"\x0b\x01",                             # a group (wire type 3)
    b"\x09\x01\x02",                         # fixed64 cut short
])
def test_bytes_that_are_not_protobuf_give_none(data: bytes) -> None:
    assert decode_protobuf(data) is None


def test_protobuf_caps_hold_against_deep_and_wide_input() -> None:
    deep = b"\x08\x01"
    for _ in range(40):                      # 40 messages, each inside the next
        deep = b"\x0a" + bytes([len(deep)]) + deep
    fields = decode_protobuf(deep, max_depth=4)
    depth = 0
    while fields is not None and "message" in fields[0]:
        fields, depth = fields[0]["message"], depth + 1
    assert depth == 3 and fields is not None and "hex" in fields[0]   # deeper: shown as bytes
    wide = decode_protobuf(b"\x08\x01" * 1000, max_fields=10)
    assert wide is not None and len(wide) == 11 and wide[-1]["truncated"]


def test_a_decompression_bomb_stops_at_the_limit_and_bad_gzip_is_refused() -> None:
    bomb = gzip.compress(bytes(50 << 20))
    data, size = decompress(bomb, "gzip", 65536)
    assert size == len(data) == 65536
    assert decompress(b"not gzip at all", "gzip", 65536) == (b"not gzip at all", None)
