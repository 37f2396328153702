"""FluentdForwardDecoder on its own, the way h11 is used: bytes in, ``FluentdMessage`` events
out; no kitchen, no chef, no scapy.

The real bytes are the forward-protocol captures of tests/data (@fluent-org/logger clients
and server, read by ``tcp_streams``); each direction goes to its own decoder and every
message is held against the capture's ``.expected.json``: kind, tag, entries, options,
handshake fields, size. Hostile input (unknown shapes, cut or bogus compression, lying
lengths, garbage between messages, a cut stream) must give an ``error``/``unknown`` message
or a listed problem, never raise.
"""

from __future__ import annotations

import gzip
from typing import Any

import msgpack
import pytest

from netdumplings.chefs.fluentd.decoder import FluentdForwardDecoder
from netdumplings.chefs.fluentd.events import FluentdMessage
from netdumplings.chefs.msgpack_stream.values import EventTime

from conftest import DATA, expected, tcp_streams

CAPTURES = sorted(p.name for p in DATA.glob("fluentd-*.pcap"))
#: Ground-truth keys that are not fields of the decoded message.
NOT_FIELDS = {"dir", "kind", "tag", "entries", "option", "encoded_length", "encoded_sha256",
              "encoded_hex", "index"}


def time_json(t: Any) -> Any:
    """An entry's time as the ground truth writes it."""
    if isinstance(t, EventTime):
        return {"type": "EventTime", "seconds": t.seconds, "nanoseconds": t.nanoseconds}
    return t


def decode_capture(capture: str) -> list[tuple[dict[str, Any], list[FluentdMessage]]]:
    """(ground truth, decoded messages in ground-truth order) of each connection."""
    truth = expected(capture)
    streams = tcp_streams(capture, truth["server_port"])
    out = []
    for conn in truth["connections"]:
        decoders = {True: FluentdForwardDecoder(), False: FluentdForwardDecoder()}
        got: dict[bool, list[FluentdMessage]] = {True: [], False: []}
        for to_server, data, ts in streams[conn["client"]]:
            got[to_server] += decoders[to_server].feed(data, ts)
        for side, decoder in decoders.items():
            got[side] += decoder.close()
        order = [got[m["dir"] == "client_to_server"].pop(0) for m in conn["messages"]
                 if got[m["dir"] == "client_to_server"]]
        assert not got[True] and not got[False], got  # nothing more than the truth
        out.append((conn, order))
    return out


@pytest.mark.parametrize("capture", CAPTURES)
def test_real_messages_decode_as_their_ground_truth(capture: str) -> None:
    for conn, messages in decode_capture(capture):
        assert len(messages) == len(conn["messages"])
        offsets = {"client_to_server": 0, "server_to_client": 0}
        for msg, want in zip(messages, conn["messages"]):
            assert (msg.kind, msg.tag) == (want["kind"], want.get("tag")), want["index"]
            assert not msg.problems
            assert (msg.offset, msg.size) == (offsets[want["dir"]], want["encoded_length"])
            offsets[want["dir"]] += want["encoded_length"]
            if "entries" in want:
                assert msg.event_count == len(want["entries"])
                assert [{"time": time_json(t), "record": r} for t, r in msg.entries] \
                    == want["entries"]
                assert msg.option == want.get("option")
            for key in set(want) - NOT_FIELDS:
                assert msg.fields[key] == want[key], (want["index"], key)


def test_the_decoder_keeps_max_events_and_counts_the_rest() -> None:
    (conn, messages), = decode_capture("fluentd-compressed-packed-forward.pcap")
    truth = conn["messages"][0]
    stream = bytes.fromhex(truth["encoded_hex"]) if len(truth["encoded_hex"]) == \
        2 * truth["encoded_length"] else None
    assert stream is not None  # the ground truth holds the whole message
    (msg,) = FluentdForwardDecoder(max_events=3).feed(stream)
    assert msg.event_count == len(truth["entries"]) > 3 and len(msg.entries) == 3


# -- hostile input ---------------------------------------------------------------------------


def test_messages_of_no_known_shape_are_reported_then_the_direction_given_up() -> None:
    decoder = FluentdForwardDecoder(max_errors=3)
    bad = msgpack.packb(["tag", "not entries", 1, 2, 3])
    events = decoder.feed(bad + bad)
    assert [m.kind for m in events] == ["unknown", "unknown"]
    assert events[0].fields["error"] == "not a forward-protocol message: array of 5 with a tag"
    events = decoder.feed(bad)
    assert [m.kind for m in events] == ["unknown", "error"] and events[1].fields["fatal"]
    assert "gave up after 3 bad messages" in events[1].fields["error"]
    assert decoder.feed(msgpack.packb(["tag", 1, {"a": 1}])) == []


def test_cut_or_unknown_compression_is_a_problem_of_the_message() -> None:
    entries = b"".join(msgpack.packb([1700000000 + i, {"n": i}]) for i in range(50))
    packed = gzip.compress(entries)
    msg = msgpack.packb(["t", packed[:len(packed) // 2], {"compressed": "gzip"}])
    (cut,) = FluentdForwardDecoder().feed(msg)
    assert cut.kind == "CompressedPackedForward"
    assert "gzip: data cut short" in cut.problems
    msg = msgpack.packb(["t", packed, {"compressed": "zstd"}])
    (odd,) = FluentdForwardDecoder().feed(msg)
    assert odd.problems == ['unknown compression "zstd"'] and odd.event_count == 0
    msg = msgpack.packb(["t", b"not gzip at all", {"compressed": "gzip"}])
    (bogus,) = FluentdForwardDecoder().feed(msg)
    assert bogus.problems and bogus.problems[0].startswith("gzip: ")


def test_packed_entries_cut_short_are_counted_and_said() -> None:
    entries = b"".join(msgpack.packb([1700000000 + i, {"n": i}]) for i in range(5))
    (msg,) = FluentdForwardDecoder().feed(msgpack.packb(["t", entries[:-3]]))
    assert msg.kind == "PackedForward" and msg.event_count == 4
    assert msg.problems == ["7 bytes after the last whole entry (an entry cut short)"]


def test_a_bin_that_claims_gigabytes_costs_the_message_bound() -> None:
    bound = 1 << 16
    decoder = FluentdForwardDecoder(max_message_bytes=bound)
    events = decoder.feed(b"\x92\xa3tag\xc6\xff\xff\xff\xff")
    for _ in range(10):
        events += decoder.feed(b"\x00" * 10000)
        assert decoder.stream.buffered <= bound
    assert events and events[0].kind == "error"
    assert f"larger than {bound} bytes" in events[0].fields["error"]
    (msg,) = decoder.feed(msgpack.packb(["tag", 1700000000, {"after": True}]))
    assert msg.kind == "Message" and msg.entries == [(1700000000, {"after": True})]


def test_garbage_between_messages_is_skipped_to_the_next_message() -> None:
    good = msgpack.packb(["tag", 1700000000, {"a": 1}])
    events = FluentdForwardDecoder().feed(good + b"\x00\x01\xc1garbage" + good)
    assert [m.kind for m in events] == ["Message", "error", "Message"]
    assert events[1].fields["skipped"] >= 1 and not events[1].fields["fatal"]


def test_a_stream_cut_inside_a_message_says_so_at_its_end() -> None:
    good = msgpack.packb(["tag", [[1700000000, {"a": "x" * 100}]], {"chunk": "c1"}])
    decoder = FluentdForwardDecoder()
    assert decoder.feed(good[:-10]) == []
    (msg,) = decoder.close()
    assert msg.kind == "error" and "stream ended inside an object" in msg.fields["error"]


# -- the decoder stands alone ------------------------------------------------------------------


