"""Http2Decoder edge cases on byte streams made by the h2 library (a real client and
server in memory): upgrade, joining mid-connection, CONTINUATION, padding, trailers, 1xx,
PUSH_PROMISE, RST_STREAM (and the answer that crosses it), GOAWAY, PING, gaps, garbage,
caps, and gRPC's true-binary metadata."""

from __future__ import annotations

from typing import Any

import pytest

from netdumplings.chefs.http2 import (PREFACE, DecodeError, FrameEvent, Http2Decoder, Joined,
                                      StreamEnded, looks_like_h2c)

from http2_helpers import C2S, REQ, S2C, Pair, decode, ended


def test_upgrade_from_http1() -> None:
    pair = Pair(upgrade_path="/menu?x=1")
    pair.server.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
    pair.server.send_data(1, b"har gow", end_stream=True)
    pair.s2c()
    pair.client.send_headers(3, REQ, end_stream=True)
    pair.c2s()
    pair.server.send_headers(3, [(":status", "204")], end_stream=True)
    pair.s2c()
    assert looks_like_h2c(pair.chunks[0][1])
    decoder, events = decode(pair.chunks)
    assert decoder.upgraded and decoder.preface_seen and not decoder.stopped
    streams = ended(events)
    one = streams[1].stream
    assert streams[1].complete and one.upgraded
    assert one.request_headers[:4] == [(":method", "GET"), (":path", "/menu?x=1"),
                                       (":scheme", "http"), (":authority", "example.test")]
    assert ("x-table", "7") in one.request_headers
    assert one.response_headers == [(":status", "200"), ("content-type", "text/plain")]
    assert one.response.length == 7 and one.response_data_frames == [7]
    assert streams[3].complete and streams[3].stream.header(":status", "response") == "204"
    # the HTTP2-Settings header (and the SETTINGS after the preface) are the client's
    local = pair.client.local_settings
    assert decoder.settings["client"]["INITIAL_WINDOW_SIZE"] == local.initial_window_size
    assert decoder.settings["client"]["MAX_CONCURRENT_STREAMS"] == local.max_concurrent_streams


def test_joined_mid_connection_decodes_what_it_can_and_nothing_wrong() -> None:
    """The capture begins after the connection did. Header blocks that use only HPACK
    entries made after the join decode exactly; one that refers to an older entry is
    reported unknown (never guessed), and the table starts afresh after it, since the
    entries that block would have added are missing. h2's own encoders on both sides."""
    pair = Pair()

    def call(sid: int, headers: list[tuple[str, str]]) -> None:
        pair.client.send_headers(sid, headers, end_stream=True)
        pair.c2s()
        pair.server.send_headers(sid, [(":status", "200"), ("x-served-by", f"s{sid}")])
        pair.server.send_data(sid, b"dumpling %d" % sid, end_stream=True)
        pair.s2c()

    old = [(":method", "GET"), (":path", "/old"), (":scheme", "http"),
           (":authority", "k.test"), ("x-team", "dim-sum")]
    new = [(":method", "POST"), (":path", "/fresh"), (":scheme", "https"),
           (":authority", "new.test"), ("x-fresh", "1")]
    call(1, old)
    call(3, old)
    join = len(pair.chunks)
    call(5, new)     # only entries it makes itself: decodes
    call(7, new)     # refers to stream 5's entries: decodes, to the same values
    call(9, old)     # refers to entries from before the join: unknown
    call(11, new)    # the table started afresh after 9: stream 5's entries are gone too
    _, full = decode(pair.chunks)
    decoder, events = decode(pair.chunks[join:], Http2Decoder(midstream=True))
    truth, got = ended(full), ended(events)
    assert sorted(got) == [5, 7, 9, 11] and not decoder.stopped
    assert [type(e) for e in events if isinstance(e, Joined)] == [Joined, Joined]
    for sid in (5, 7):
        s = got[sid].stream
        assert s.request_headers == new == truth[sid].stream.request_headers
    for sid in (9, 11):
        assert got[sid].stream.headers_unknown and got[sid].stream.request_headers == []
    # the server's blocks name "x-served-by" by an entry it made for stream 1: unknown
    assert got[5].stream.headers_unknown and got[5].stream.response_headers == []
    for sid, ev in got.items():   # whatever decoded is what the full decode says
        s, t = ev.stream, truth[sid].stream
        assert ev.complete and s.response.length == t.response.length
        assert s.latency == pytest.approx(t.latency, abs=0.05)
        if s.response_headers:
            assert s.response_headers == t.response_headers
    assert decoder.header_blocks_unknown >= 2


def test_joined_mid_connection_skips_chunks_inside_frames() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQ)
    pair.client.send_data(1, b"x" * 5000, end_stream=True)
    pair.c2s()
    direction, data = pair.chunks[-1]
    decoder = Http2Decoder(midstream=True)
    assert decoder.feed(C2S, data[20:]) == []          # starts inside a frame: dropped
    pair.client.send_headers(3, [(":method", "GET"), (":path", "/later"),
                                 (":scheme", "http"), (":authority", "elsewhere.test")],
                             end_stream=True)
    pair.c2s()
    (joined, *rest) = decoder.feed(C2S, pair.chunks[-1][1], 2.0)
    assert isinstance(joined, Joined) and joined.skipped == len(data) - 20
    noise = Http2Decoder(midstream=True)
    events: list[Any] = []
    for _ in range(70):
        events += noise.feed(C2S, b"\x00\x01 not http/2 at all")
    assert noise.stopped and [type(e) for e in events] == [DecodeError]


def test_upgrade_refused_stops_cleanly() -> None:
    chunks = [(C2S, b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"),
              (S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]
    decoder, events = decode(chunks)
    errors = [e for e in events if isinstance(e, DecodeError)]
    assert len(errors) == 1 and errors[0].fatal and "refused" in errors[0].message
    assert decoder.stopped
    # the upgraded request is reported once, incomplete
    assert [e.complete for e in events if isinstance(e, StreamEnded)] == [False]
    assert decoder.feed(C2S, PREFACE, 2000.0) == []


def test_http1_without_upgrade_is_not_http2() -> None:
    decoder, events = decode([(C2S, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")])
    assert decoder.stopped and "Upgrade: h2c" in decoder.stopped
    assert not looks_like_h2c(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_continuation_padding_trailers_informational() -> None:
    pair = Pair()
    big = "x" * 40000   # more than one frame of header block: HEADERS + CONTINUATION
    pair.client.send_headers(1, REQ + [("x-big", big)])
    pair.client.send_data(1, b"abcdef", pad_length=10)
    pair.client.send_headers(1, [("x-request-trailer", "yes")], end_stream=True)
    pair.c2s()
    pair.server.send_headers(1, [(":status", "100")])
    pair.server.send_headers(1, [(":status", "200")])
    pair.server.send_data(1, b"0123456789", pad_length=3)
    pair.server.send_data(1, b"", end_stream=False)
    pair.server.send_headers(1, [("grpc-status", "0")], end_stream=True)
    pair.s2c()
    decoder, events = decode(pair.chunks, Http2Decoder(max_header_list_size=1 << 20))
    assert not [e for e in events if isinstance(e, DecodeError)]
    names = [e.name for e in events if isinstance(e, FrameEvent) and e.direction == C2S]
    assert "CONTINUATION" in names
    cont = [e for e in events if isinstance(e, FrameEvent) and e.name == "CONTINUATION"]
    # values are capped for the dumplings, stating the original size
    shown = "x" * 2048 + "...[40000 bytes]"
    assert "END_HEADERS" in cont[-1].flags and dict(cont[-1].info["headers"])["x-big"] == shown
    padded = [e for e in events if isinstance(e, FrameEvent) and e.name == "DATA"
              and "PADDED" in e.flags]
    assert [e.info["data_length"] for e in padded] == [6, 10]
    s = ended(events)[1].stream
    assert s.header("x-big") == shown
    assert s.request.length == 6 and s.request.head == b"abcdef"
    assert s.request_trailers == [("x-request-trailer", "yes")]
    assert s.informational == [[(":status", "100")]]
    assert s.response_headers == [(":status", "200")]
    assert s.response.head == b"0123456789" and s.response_data_frames == [10, 0]
    assert s.response_trailers == [("grpc-status", "0")]


def test_push_promise_rst_stream_goaway_ping() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.client.send_headers(3, REQ[:1] + [(":path", "/slow")] + REQ[2:], end_stream=True)
    pair.client.ping(b"12345678")
    pair.c2s()
    pair.server.push_stream(1, 2, [(":method", "GET"), (":path", "/style.css"),
                                   (":scheme", "http"), (":authority", "k.test")])
    pair.server.send_headers(2, [(":status", "200")])
    pair.server.send_data(2, b"css", end_stream=True)
    pair.server.send_headers(1, [(":status", "200")], end_stream=True)
    pair.s2c()
    pair.client.reset_stream(3, error_code=8)
    pair.client.close_connection()
    pair.c2s()
    decoder, events = decode(pair.chunks)
    streams = ended(events)
    assert set(streams) == {1, 2, 3}
    pushed = streams[2].stream
    assert pushed.pushed_by == 1 and pushed.header(":path") == "/style.css"
    assert streams[2].complete and pushed.response.length == 3
    assert streams[3].reason == "rst_stream"
    assert streams[3].stream.reset == {"by": "client", "error_code": 8, "error": "CANCEL"}
    assert decoder.goaway is not None and decoder.goaway["by"] == "client"
    assert decoder.goaway["error"] == "NO_ERROR"
    names = {e.name for e in events if isinstance(e, FrameEvent)}
    assert {"PUSH_PROMISE", "PING", "GOAWAY", "RST_STREAM", "SETTINGS"} <= names
    pings = [e for e in events if isinstance(e, FrameEvent) and e.name == "PING"]
    assert pings[0].info["opaque_data"] == b"12345678".hex()
    assert any("ACK" in p.flags for p in pings)


def test_byte_by_byte_equals_whole() -> None:
    pair = Pair()
    for sid in (1, 3, 5):
        pair.client.send_headers(sid, REQ, end_stream=False)
        pair.client.send_data(sid, b"q" * sid, end_stream=True)
    pair.c2s()
    for sid in (5, 1, 3):
        pair.server.send_headers(sid, [(":status", "200"), ("x-sid", str(sid))])
        pair.server.send_data(sid, b"r" * (sid * 100), end_stream=True)
    pair.s2c()
    _, whole = decode(pair.chunks)
    tiny = [(d, data[i:i + 1]) for d, data in pair.chunks for i in range(len(data))]
    _, split = decode(tiny)
    assert not [e for e in whole + split if isinstance(e, DecodeError)]
    a, b = ended(whole), ended(split)
    assert set(a) == set(b) == {1, 3, 5}
    for sid in a:
        for attr in ("request_headers", "response_headers", "request_data_frames",
                     "response_data_frames"):
            assert getattr(a[sid].stream, attr) == getattr(b[sid].stream, attr)
        assert a[sid].stream.response.length == b[sid].stream.response.length == sid * 100


def test_gap_stops_connection_and_reports_open_streams() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.c2s()
    decoder, events = decode(pair.chunks, close=False)
    events = decoder.gap(S2C, 1200, 1001.0)
    assert isinstance(events[0], DecodeError) and events[0].fatal
    assert "HPACK" in events[0].message
    assert [(e.stream.stream_id, e.complete) for e in events if isinstance(e, StreamEnded)] == [
        (1, False)]
    pair.server.send_headers(1, [(":status", "200")], end_stream=True)
    pair.s2c()
    assert decoder.feed(S2C, pair.chunks[-1][1], 1002.0) == []
    assert decoder.close("fin") == []


def test_garbage_and_bad_hpack_stop_cleanly() -> None:
    decoder, events = decode([(C2S, b"\x16\x03\x01\x02\x00garbage")])
    assert decoder.stopped and "preface" in decoder.stopped
    # a HEADERS frame whose block refers to a dynamic-table entry that does not exist
    bad = PREFACE + bytes([0, 0, 1, 1, 5, 0, 0, 0, 1, 0xBF])
    decoder, events = decode([(C2S, bad)])
    assert decoder.stopped and "HPACK" in decoder.stopped
    # CONTINUATION out of the blue
    bad = PREFACE + bytes([0, 0, 1, 9, 4, 0, 0, 0, 1, 0x82])
    decoder, events = decode([(C2S, bad)])
    assert decoder.stopped and "CONTINUATION" in decoder.stopped


def test_caps_on_frames_and_streams() -> None:
    # an oversized PING is skipped (counted) without buffering it; decoding goes on
    huge = PREFACE + (200_000).to_bytes(3, "big") + bytes([6, 0, 0, 0, 0, 0]) + b"\0" * 200_000
    decoder = Http2Decoder(max_frame_size=16384)
    events = []
    for i in range(0, len(huge), 4096):
        events += decoder.feed(C2S, huge[i:i + 4096], 1.0)
        assert len(decoder.sides[C2S].buf) <= 16384 + 9
    assert not decoder.stopped and [e.fatal for e in events if isinstance(e, DecodeError)] == [False]
    # an oversized HEADERS frame would lose HPACK state: stop
    decoder = Http2Decoder(max_frame_size=16384)
    decoder.feed(C2S, PREFACE + (70_000).to_bytes(3, "big") + bytes([1, 4, 0, 0, 0, 1]), 1.0)
    assert decoder.stopped
    # more open streams than allowed: the oldest is reported early
    pair = Pair()
    for sid in range(1, 40, 2):
        pair.client.send_headers(sid, REQ, end_stream=True)
    pair.c2s()
    decoder, events = decode(pair.chunks, Http2Decoder(max_streams=5), close=False)
    assert len(decoder.streams) == 5
    early = [e for e in events if isinstance(e, StreamEnded)]
    assert len(early) == 15 and all(e.reason == "too many open streams" for e in early)


def test_upgrade_request_split_after_its_first_byte_is_not_a_bad_preface() -> None:
    """Regression: "P" is a prefix of the client preface, so an h2c upgrade POST whose first
    segment was b"P" was taken for a preface and stopped as "bad HTTP/2 client preface"."""
    up = (b"POST /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
          b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 0\r\n\r\n")
    for cut in (1, 2, 3, len(up)):
        dec = Http2Decoder()
        events = dec.feed(C2S, up[:cut], 1.0) + dec.feed(C2S, up[cut:] + PREFACE, 1.0)
        assert not [e for e in events if isinstance(e, DecodeError)], (cut, events)
        assert dec.upgraded and dec.preface_seen and not dec.stopped


def test_bytes_that_never_reach_http2_framing_are_reported_at_close() -> None:
    """Regression: garbage starting with a capital letter, fed in small pieces, sat in h11's
    buffer waiting for a line end and vanished at close without any event."""
    dec = Http2Decoder()
    events = []
    for b in b"Q\x94w,\xe2\xbav\xc2W":
        events += dec.feed(C2S, bytes([b]), 1.0)
    events += dec.close("closed", 2.0)
    errors = [e for e in events if isinstance(e, DecodeError)]
    assert len(errors) == 1 and "9 bytes undecoded" in errors[0].message


def test_headers_sent_before_the_peer_saw_our_rst_stream_are_not_an_error() -> None:
    """grpcio: a client cancels (or its deadline passes) while the server is already
    answering; the server's HEADERS cross the client's RST_STREAM on the wire (RFC 9113
    5.4.2). They were reported as "HEADERS on closed stream"; the next stream still decodes
    (the HPACK state took the late block)."""
    pair = Pair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.c2s()
    pair.server.send_headers(1, [(":status", "200"), ("x-late", "1")])
    pair.server.send_headers(1, [("x-trailer", "t")], end_stream=True)
    late = pair.server.data_to_send()          # sent before the reset reached the server
    pair.client.reset_stream(1, error_code=8)
    pair.c2s()
    pair.chunks.append((S2C, late))
    pair.client_events += pair.client.receive_data(late)
    pair.client.send_headers(3, REQ, end_stream=True)
    pair.c2s()
    pair.server.send_headers(3, [(":status", "200"), ("x-late", "1")], end_stream=True)
    pair.s2c()
    decoder, events = decode(pair.chunks)
    assert [e for e in events if isinstance(e, DecodeError)] == [] and decoder.errors == 0
    streams = ended(events)
    # the late answer's :status is what the stream got, as tshark shows it (issue 19)
    assert streams[1].reason == "rst_stream" and streams[1].complete
    assert streams[1].stream.response_headers == [(":status", "200"), ("x-late", "1")]
    assert streams[1].stream.reset["by"] == "client"
    assert streams[3].complete
    assert streams[3].stream.response_headers == [(":status", "200"), ("x-late", "1")]


def test_grpc_true_binary_metadata_is_shown_as_base64() -> None:
    """grpc-core peers that both send SETTINGS 0xFE03 put ``-bin`` values on the wire as
    NUL + raw bytes; they read as NULs and backslash escapes. Now unpadded base64, as any
    other gRPC peer sends them; base64 values and other headers are left alone."""
    import hpack
    from hyperframe.frame import HeadersFrame, SettingsFrame

    def headers_frame(headers: list[tuple[str, Any]]) -> bytes:
        frame = HeadersFrame(1, hpack.Encoder().encode(headers))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        return frame.serialize()

    # h2 refuses to send a NUL in a value, so the frames are made by hand
    chunks = [(C2S, PREFACE + SettingsFrame(0).serialize() + headers_frame(
                  REQ + [("x-id-bin", b"\x00" + b"\x00\x01\xff\xfe"), ("x-b64-bin", "AAH//g"),
                         ("x-text", "a b")])),
              (S2C, SettingsFrame(0).serialize() + headers_frame([(":status", "200")]))]
    _, events = decode(chunks)
    headers = dict(ended(events)[1].stream.request_headers)
    assert headers["x-id-bin"] == "AAH//g" == headers["x-b64-bin"]
    assert headers["x-text"] == "a b"
