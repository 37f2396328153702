"""Http2Decoder on its own, as h11 is used: bytes in, events out, with no kitchen, chef,
flow or capture. The bytes are made by the h2 library (a real HTTP/2 client and server
talking in memory) or are h2's bytes cut short or with lying lengths, which must give a
DecodeError or an incomplete stream, never an exception. And the decoder side of the
package imports nothing of the framework (checked on its source)."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import pytest

from netdumplings.chefs.http2 import (PREFACE, DecodeError, FrameEvent, Http2Decoder, Joined,
                                      Side, StreamEnded)

C2S, S2C = Side.CLIENT_TO_SERVER, Side.SERVER_TO_CLIENT
REQUEST = [(":method", "POST"), (":path", "/orders"), (":scheme", "http"),
           (":authority", "kitchen.test"), ("content-type", "application/json")]
BODY = b'{"dish": "har gow", "count": 3}'


class Talk:
    """An h2 client and server exchanging frames in memory; each chunk either sends is
    kept, with its side, in the order sent."""

    def __init__(self) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.chunks: list[tuple[Side, bytes]] = []
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.flush()

    def flush(self) -> None:
        for _ in range(3):
            for side, sender, peer in ((C2S, self.client, self.server),
                                       (S2C, self.server, self.client)):
                data = sender.data_to_send()
                if data:
                    self.chunks.append((side, data))
                    peer.receive_data(data)

    def call(self, path: str = "/orders", trailers: bool = True) -> int:
        """One POST with a body, answered 200 with a body and (optionally) trailers."""
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(n, path if n == ":path" else v) for n, v in REQUEST])
        self.client.send_data(sid, BODY, end_stream=True)
        self.flush()
        self.server.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
        self.server.send_data(sid, b"served: " + BODY, end_stream=not trailers)
        if trailers:
            self.server.send_headers(sid, [("x-kitchen", "busy")], end_stream=True)
        self.flush()
        return sid


def run(chunks: list[tuple[Any, bytes]], decoder: Http2Decoder | None = None,
        close: bool = True) -> tuple[Http2Decoder, list[Any]]:
    decoder = decoder or Http2Decoder()
    events: list[Any] = []
    for i, (side, data) in enumerate(chunks):
        events += decoder.feed(side, data, 100.0 + i)
    if close:
        events += decoder.close("test over", 200.0)
    assert decoder.internal_errors == []
    return decoder, events


def of(kind: type, events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_an_h2_exchange_gives_one_finished_stream_with_its_headers_and_bodies() -> None:
    talk = Talk()
    sid = talk.call()
    decoder, events = run(talk.chunks)
    assert of(DecodeError, events) == []
    (ended,) = of(StreamEnded, events)
    s = ended.stream
    assert (ended.complete, ended.reason, s.stream_id) == (True, "end_stream", sid)
    assert s.request_headers == REQUEST
    assert s.response_headers == [(":status", "200"), ("content-type", "text/plain")]
    assert s.response_trailers == [("x-kitchen", "busy")]
    assert (s.request.length, bytes(s.request.head)) == (len(BODY), BODY)
    assert bytes(s.response.head) == b"served: " + BODY
    assert s.latency is not None and s.latency > 0
    # every frame is an event, with the side that sent it
    names = [(e.direction, e.name) for e in of(FrameEvent, events)]
    assert (C2S, "SETTINGS") in names and (S2C, "SETTINGS") in names
    assert [n for d, n in names if d is C2S].count("HEADERS") == 1
    assert [n for d, n in names if d is S2C].count("HEADERS") == 2   # response + trailers
    assert decoder.preface_seen and decoder.streams_completed == 1
    assert decoder.settings["client"] and decoder.settings["server"]


def test_the_same_bytes_one_at_a_time_give_the_same_streams() -> None:
    talk = Talk()
    talk.call("/a")
    talk.call("/b", trailers=False)
    _, whole = run(talk.chunks)
    split = [(side, data[i:i + 1]) for side, data in talk.chunks for i in range(len(data))]
    _, bytewise = run(split)

    def summary(events: list[Any]) -> list[Any]:
        return [(e.stream.stream_id, e.stream.request_headers, e.stream.response_headers,
                 e.stream.response_trailers, e.stream.response.length)
                for e in of(StreamEnded, events)]
    assert summary(bytewise) == summary(whole) and len(summary(whole)) == 2
    assert of(DecodeError, bytewise) == []


def test_a_side_may_be_given_by_its_value_and_events_carry_the_side() -> None:
    talk = Talk()
    talk.call()
    _, events = run([(side.value, data) for side, data in talk.chunks])
    assert {e.direction for e in of(FrameEvent, events)} == {C2S, S2C}
    assert all(type(e.direction) is Side for e in of(FrameEvent, events))
    assert C2S.reverse is S2C and str(S2C) == "server_to_client"


def test_upgrade_from_http1_makes_the_request_stream_1() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    settings = client.initiate_upgrade_connection()
    request = (b"GET /menu HTTP/1.1\r\nHost: kitchen.test\r\nConnection: Upgrade, HTTP2-Settings"
               b"\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n")
    server.initiate_upgrade_connection(settings)
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"menu", end_stream=True)
    chunks = [(C2S, request),
              (S2C, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    b"Upgrade: h2c\r\n\r\n" + server.data_to_send()),
              (C2S, client.data_to_send())]
    decoder, events = run(chunks)
    (ended,) = of(StreamEnded, events)
    assert decoder.upgraded and ended.stream.upgraded and ended.complete
    assert ended.stream.header(":path") == "/menu" and ended.stream.header(":status", "x") == "200"
    assert decoder.settings["client"]   # from the HTTP2-Settings header


def test_joining_mid_connection_starts_at_a_frame_boundary_and_never_guesses_headers() -> None:
    talk = Talk()
    talk.call("/first")
    before = len(talk.chunks)
    talk.call("/second")
    # the capture began after the first call: no preface, HPACK tables already filled
    decoder, events = run(talk.chunks[before:], Http2Decoder(midstream=True))
    joined = of(Joined, events)
    assert {j.direction for j in joined} == {C2S, S2C} and decoder.joined
    (ended,) = of(StreamEnded, events)
    s = ended.stream
    # h2 indexed the headers it sent before: each block needs the table made before the
    # capture, so it is reported unknown (request, response, trailers), never guessed
    assert s.headers_unknown and decoder.header_blocks_unknown == 3
    assert s.request_headers == [] and s.header(":path") is None
    assert (ended.complete, s.request.length, s.response.length) == (True, len(BODY),
                                                                     len(BODY) + 8)
    assert of(DecodeError, events) == []


# -- hostile input: a clear error or an incomplete stream, never an exception -----------


def test_a_connection_cut_inside_a_frame_reports_the_stream_incomplete() -> None:
    talk = Talk()
    talk.call()
    side, last = talk.chunks[-1]
    cut = talk.chunks[:-1] + [(side, last[:len(last) // 2])]
    _, events = run(cut)
    (ended,) = of(StreamEnded, events)
    assert not ended.complete and ended.reason == "test over"


def test_a_half_preface_then_close_is_an_error_not_silence() -> None:
    _, events = run([(C2S, PREFACE[:10])])
    (error,) = of(DecodeError, events)
    assert "before HTTP/2 framing began (10 bytes undecoded)" in error.message


def test_bytes_that_are_not_http2_stop_decoding_with_a_reason() -> None:
    _, events = run([(C2S, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40))])
    (error,) = of(DecodeError, events)
    assert error.fatal and "no HTTP/2 client preface" in error.message


@pytest.mark.parametrize("frame_type, message", [
    (0x1, "HEADERS frame of 16777215 bytes is over the 1048576 byte cap"),
    (0x9, "CONTINUATION frame of 16777215 bytes is over the 1048576 byte cap"),
])
def test_a_header_frame_with_a_lying_length_stops_at_the_cap(frame_type: int,
                                                             message: str) -> None:
    lie = b"\xff\xff\xff" + bytes([frame_type, 0x04]) + (1).to_bytes(4, "big") + b"\x82"
    decoder, events = run([(C2S, PREFACE + lie)])
    (error,) = of(DecodeError, events)
    assert error.fatal and error.message == message and decoder.stopped == message


def test_a_ping_with_a_lying_length_is_skipped_and_decoding_goes_on() -> None:
    talk = Talk()
    preface_and_settings = talk.chunks[0]
    lie = b"\xff\xff\xff\x06\x00" + bytes(4)          # PING "of 16 MB": discarded as it comes
    talk.call()
    chunks = [preface_and_settings, (C2S, lie + bytes(100))] + talk.chunks[1:]
    _, events = run(chunks)
    (error,) = of(DecodeError, events)
    assert not error.fatal and "PING frame of 16777215 bytes skipped" in error.message
    # the lie swallows the request that follows (its head is lost, not guessed); the
    # server's side still decodes
    (ended,) = of(StreamEnded, events)
    assert ended.stream.request_headers is None and not ended.complete
    assert ended.stream.response_trailers == [("x-kitchen", "busy")]


def test_data_padding_longer_than_the_frame_is_a_fatal_error() -> None:
    talk = Talk()
    sid = talk.client.get_next_available_stream_id()
    talk.client.send_headers(sid, REQUEST)
    talk.flush()
    bad_data = b"\x00\x00\x03\x00\x08" + sid.to_bytes(4, "big") + b"\xfeab"   # pad 254 of 2
    _, events = run(talk.chunks + [(C2S, bad_data)])
    errors = of(DecodeError, events)
    assert [e.message for e in errors] == ["DATA padding longer than the frame"]
    assert of(StreamEnded, events)[0].complete is False


def test_a_header_block_hpack_cannot_decode_stops_decoding() -> None:
    garbage = b"\x00\x00\x04\x01\x05\x00\x00\x00\x01" + b"\xff\xff\xff\xff"   # index past 2^28
    decoder, events = run([(C2S, PREFACE + garbage)])
    (error,) = of(DecodeError, events)
    assert error.fatal and error.message.startswith("HPACK decoding failed")


def test_continuation_without_a_header_block_is_an_error() -> None:
    cont = b"\x00\x00\x01\x09\x04\x00\x00\x00\x01\x82"
    _, events = run([(C2S, PREFACE + cont)])
    assert [e.message for e in of(DecodeError, events)] == [
        "CONTINUATION without a header block to continue"]


def test_a_gap_stops_decoding_and_reports_what_was_open() -> None:
    talk = Talk()
    sid = talk.client.get_next_available_stream_id()
    talk.client.send_headers(sid, REQUEST)
    talk.flush()
    decoder, events = run(talk.chunks, close=False)
    events += decoder.gap(S2C, 1400, 150.0)
    (error,) = of(DecodeError, events)
    assert error.fatal and error.message.startswith("1400 bytes lost in server_to_client")
    (ended,) = of(StreamEnded, events)
    assert not ended.complete and ended.stream.request_headers == REQUEST
    assert decoder.feed(C2S, b"more", 151.0) == []     # stopped stays stopped
