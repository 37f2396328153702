"""MsgpackStreamDecoder on its own, the way h11 is used: bytes in, objects and errors out;
no kitchen, no chef, no scapy.

The real bytes are the Fluentd forward captures of tests/data (msgpack written by
@fluent-org/logger, read by ``tcp_streams``) and streams packed by the msgpack library,
which is also the oracle: every object must be what ``msgpack.Unpacker`` reads from the
whole stream at once, at the offset and size the ``.expected.json`` gives. Hostile input
(cut objects, lying lengths, bytes that are not msgpack, lost segments) must give a
``MsgpackError``, never raise, and cost no more memory than the bound.
"""

from __future__ import annotations

import msgpack
import pytest

from netdumplings.chefs.msgpack_stream.decoder import MsgpackStreamDecoder
from netdumplings.chefs.msgpack_stream.events import MsgpackError, MsgpackObject
from netdumplings.chefs.msgpack_stream.values import EventTime, ext_hook

from conftest import DATA, expected, tcp_streams

CAPTURES = sorted(p.name for p in DATA.glob("fluentd-*.pcap"))


def oracle(stream: bytes) -> list:
    """What the msgpack library reads from the whole stream in one go."""
    unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape",
                                ext_hook=ext_hook, strict_map_key=False)
    unpacker.feed(stream)
    return list(unpacker)


def feed_all(decoder: MsgpackStreamDecoder, chunks: list[tuple[bytes, float]]) -> list:
    events = []
    for data, ts in chunks:
        events += decoder.feed(data, ts)
    return events + decoder.close()


@pytest.mark.parametrize("capture", CAPTURES)
def test_real_streams_give_the_library_s_objects_where_the_ground_truth_puts_them(capture):
    truth = expected(capture)
    streams = tcp_streams(capture, truth["server_port"])
    for conn in truth["connections"]:
        for side, name in ((True, "client_to_server"), (False, "server_to_client")):
            chunks = [(data, ts) for to_server, data, ts in streams[conn["client"]]
                      if to_server == side]
            stream = b"".join(data for data, _ in chunks)
            events = feed_all(MsgpackStreamDecoder(), chunks)
            assert all(isinstance(e, MsgpackObject) for e in events), events
            assert [e.value for e in events] == oracle(stream)
            sizes = [m["encoded_length"] for m in conn["messages"] if m["dir"] == name]
            assert [e.size for e in events] == sizes
            offsets = [sum(sizes[:i]) for i in range(len(sizes))]
            assert [e.offset for e in events] == offsets
            # each object carries the capture times of its first and last bytes
            ends = [0]
            for data, _ in chunks:
                ends.append(ends[-1] + len(data))
            for e in events:
                first = next(i for i in range(len(chunks)) if ends[i + 1] > e.offset)
                last = next(i for i in range(len(chunks)) if ends[i + 1] >= e.offset + e.size)
                assert (e.first_timestamp, e.last_timestamp) == (chunks[first][1],
                                                                 chunks[last][1])


def test_event_times_are_read_as_event_time() -> None:
    truth = expected("fluentd-forward-mode.pcap")
    chunks = tcp_streams("fluentd-forward-mode.pcap", truth["server_port"])
    (conn,) = truth["connections"]
    data = b"".join(d for to_server, d, _ in chunks[conn["client"]] if to_server)
    first = MsgpackStreamDecoder().feed(data)[0].value
    t = conn["messages"][0]["entries"][0]["time"]
    assert first[1][0][0] == EventTime(t["seconds"], t["nanoseconds"])


def test_objects_do_not_depend_on_how_the_bytes_are_cut() -> None:
    stream = b"".join(msgpack.packb(v) for v in (
        {"a": 1, "b": [1, 2, 3]}, "x" * 300, b"\x00" * 70000, [None, True, 1.5], -2 ** 40))
    whole = MsgpackStreamDecoder().feed(stream)
    decoder = MsgpackStreamDecoder()
    pieces = []
    for i in range(len(stream)):
        pieces += decoder.feed(stream[i:i + 1])
    assert pieces == whole and [e.value for e in whole] == oracle(stream)


# -- hostile input ---------------------------------------------------------------------------


def test_an_object_cut_off_by_the_end_of_the_stream_is_reported() -> None:
    data = msgpack.packb({"order": "har gow", "qty": 3})
    decoder = MsgpackStreamDecoder()
    assert decoder.feed(data[:-4]) == []
    (error,) = decoder.close()
    assert isinstance(error, MsgpackError) and not error.fatal
    assert error.reason == f"stream ended inside an object ({len(data) - 4} bytes buffered)"


@pytest.mark.parametrize("header", [b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                                    b"\xdd\x7f\xff\xff\xff"], ids=["str32", "bin32", "array32"])
def test_a_length_that_lies_costs_the_bound_not_what_it_claims(header: bytes) -> None:
    """A header claiming 4 GB (or 2**31 items) makes an error once the bound is reached;
    the decoder holds at most the bound meanwhile, and reads what follows the error."""
    bound = 1 << 16
    decoder = MsgpackStreamDecoder(max_buffer_size=bound)
    events = decoder.feed(header)
    for _ in range(8):
        events += decoder.feed(b"\x90" * 10000)  # empty arrays: fill the claim
        assert decoder.buffered <= bound
    errors = [e for e in events if isinstance(e, MsgpackError)]
    assert errors and not errors[0].fatal
    assert (f"object larger than {bound} bytes" in errors[0].reason
            or errors[0].reason.startswith("not msgpack"))
    assert decoder.feed(msgpack.packb({"after": 1}))[-1].value == {"after": 1}


def test_bytes_that_are_not_msgpack_are_skipped_to_the_next_object() -> None:
    stream = msgpack.packb({"a": 1}) + b"\xc1\xc1\xc1" + msgpack.packb({"b": 2})
    events = MsgpackStreamDecoder().feed(stream)
    assert [type(e) for e in events][0] is MsgpackObject
    assert [e.value for e in events if isinstance(e, MsgpackObject)] == [{"a": 1}, {"b": 2}]
    errors = [e for e in events if isinstance(e, MsgpackError)]
    assert errors and "0xc1 cannot start a message" in errors[0].reason


def test_a_lost_segment_is_reported_and_decoding_resumes() -> None:
    """With the starts a protocol allows (Fluentd: fixarray/fixmap), bytes after a gap are
    skipped up to the next object rather than read as a flood of small ones."""
    first, second = msgpack.packb(["tag", 1, {"k": "v" * 40}]), msgpack.packb(["tag", 2, {}])
    decoder = MsgpackStreamDecoder(start_bytes={0x93})
    assert decoder.feed(first[:20]) == []
    (error,) = decoder.gap(30)
    assert isinstance(error, MsgpackError) and "30 bytes missing" in error.reason
    (obj,) = decoder.feed(first[50:] + second)
    assert obj.value == ["tag", 2, {}] and obj.offset == len(first)


def test_too_many_errors_stop_the_stream_for_good() -> None:
    decoder = MsgpackStreamDecoder(max_errors=3)
    events = decoder.feed(b"\xc1\x00" * 10)
    assert isinstance(events[-1], MsgpackError) and events[-1].fatal
    assert "gave up after 3 errors" in events[-1].reason
    assert decoder.stopped and decoder.feed(msgpack.packb(1)) == []
    assert decoder.skipped_bytes >= 1


# -- the decoder stands alone ------------------------------------------------------------------


