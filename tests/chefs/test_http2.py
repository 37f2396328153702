"""Http2Chef / Http2Decoder: the shared HTTP/2 captures against their ground truth and
tshark, decoder edge cases on byte streams made by the h2 library (upgrade, CONTINUATION,
PUSH_PROMISE, RST_STREAM, padding, 1xx, gaps, garbage), live h2 server + curl on loopback,
and fuzzing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdumplings.chef import CloseReason, Direction
from netdumplings.chefs.http2 import (PREFACE, DecodeError, FrameEvent, Http2Chef,
                                      Http2Decoder, Joined, StreamEnded, looks_like_h2c)
from netdumplings.flows import Flow
from netdumplings.offline import read_dumplings

from conftest import DATA, free_port

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
CAPTURES = sorted(DATA.glob("http2-*.pcap"))
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def expected_of(pcap: Path) -> dict[str, Any]:
    return json.loads(pcap.with_suffix(".expected.json").read_text())


def payloads(pcap: Path, chef: Any = Http2Chef, **options: Any) -> list[dict[str, Any]]:
    opts = {chef.__name__: options} if options else None
    return [d["payload"] for d in read_dumplings(str(pcap), [chef], chef_options=opts)]


# -- tshark ----------------------------------------------------------------------------


def _multi_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """tshark -T json repeats keys (one per frame/header); keep them all as lists."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            if not isinstance(out[key], _Multi):
                out[key] = _Multi([out[key]])
            out[key].append(value)
        else:
            out[key] = value
    return out


class _Multi(list):
    pass


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, _Multi) else [value]


def tshark_http2_frames(pcap: Path, port: int) -> list[dict[str, Any]]:
    """Every HTTP/2 frame tshark dissects: tcp stream, direction, type, stream id, headers."""
    cmd = ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http2", "-T", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    frames = []
    for pkt in json.loads(res.stdout, object_pairs_hook=_multi_hook):
        layers = pkt["_source"]["layers"]
        tcp = layers["tcp"]
        for h2layer in _as_list(layers.get("http2")):
            for stream in _as_list(h2layer.get("http2.stream")):
                if "http2.type" not in stream:
                    continue  # the client preface
                headers = [(h["http2.header.name"], h.get("http2.header.value", ""))
                           for h in _as_list(stream.get("http2.header"))]
                frames.append({
                    "tcp_stream": int(tcp["tcp.stream"]),
                    "direction": C2S if int(tcp["tcp.dstport"]) == port else S2C,
                    "client_port": int(tcp["tcp.srcport"]) if int(tcp["tcp.dstport"]) == port
                    else int(tcp["tcp.dstport"]),
                    "type": int(stream["http2.type"]),
                    "stream_id": int(stream["http2.streamid"]),
                    "length": int(stream["http2.length"]),
                    "flags": int(stream["http2.flags"], 16),
                    "headers": headers,
                })
    return frames


# -- the shared captures -----------------------------------------------------------------


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.stem)
def test_capture_matches_expected(pcap: Path) -> None:
    exp = expected_of(pcap)
    out = payloads(pcap, body_preview=65536)
    assert not [p for p in out if p["kind"] == "error"]
    streams = {(p["flow"]["client"], p["stream_id"]): p for p in out if p["kind"] == "stream"}
    conns = {p["flow"]["client"]: p for p in out if p["kind"] == "connection"}
    assert len(streams) == sum(len(c["streams"]) for c in exp["connections"])
    assert len(conns) == len(exp["connections"]) == exp["counts"]["connections"]
    for conn in exp["connections"]:
        summary = conns[conn["client"]]
        assert summary["flow"]["server"] == conn["server"]
        assert summary["client_preface"] is conn["client_preface"]
        assert summary["client_settings"] == conn["client_settings"]
        assert summary["server_settings"] == conn["server_settings"]
        assert summary["streams_completed"] == len(conn["streams"])
        assert summary["streams_incomplete"] == 0 and summary["stopped"] is None
        for s in conn["streams"]:
            p = streams[(conn["client"], s["stream_id"])]
            assert p["src"] == conn["client"] and p["dst"] == conn["server"]
            assert p["direction"] == "client_to_server"
            assert p["request_headers"] == s["request_headers"]
            assert p["response_headers"] == s["response_headers"]
            assert p["response_trailers"] == s.get("response_trailers")
            assert p["request_body_length"] == s["request_body_length"]
            assert p["response_body_length"] == s["response_body_length"]
            assert p["response_data_frames"] == s["response_data_frames"]
            assert p["response_body"]["text"] == s["response_body"]
            if s["request_body_length"]:
                assert p["request_body"]["text"] == s["request_body"]
            assert p["complete"] and p["end_reason"] == "end_stream" and p["reset"] is None
            assert isinstance(p["timestamp"], float) and 0 < p["latency"] < 5
            headers = dict(s["request_headers"])
            status = dict(s["response_headers"])[":status"]
            assert p["method"] == headers[":method"] and p["path"] == headers[":path"]
            assert p["status"] == int(status)
            assert p["summary"].startswith(
                f"{conn['client']} -> {conn['server']}  HTTP/2 {headers[':method']} "
                f"{headers[':path']} -> {status} {s['response_body_length']}B ")
            assert p["summary"].endswith(f"ms (stream {s['stream_id']})")
            json.dumps(p)


@needs_tshark
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.stem)
def test_capture_agrees_with_tshark(pcap: Path) -> None:
    exp = expected_of(pcap)
    frames = tshark_http2_frames(pcap, exp["server_port"])
    out = payloads(pcap)
    streams = {(int(p["flow"]["client"].rsplit(":", 1)[1]), p["stream_id"]): p
               for p in out if p["kind"] == "stream"}
    # tshark's header blocks (HEADERS + CONTINUATION), per stream and direction, in order
    blocks: dict[tuple[int, int, Direction], list[list[tuple[str, str]]]] = {}
    data: dict[tuple[int, int, Direction], list[int]] = {}
    for f in frames:
        key = (f["client_port"], f["stream_id"], f["direction"])
        if f["type"] == 1:
            blocks.setdefault(key, []).append(f["headers"])
        elif f["type"] == 0:
            data.setdefault(key, []).append(f["length"])
    assert {(port, sid) for port, sid, _ in blocks} == set(streams)
    for (port, sid, direction), hblocks in blocks.items():
        p = streams[(port, sid)]
        if direction is C2S:
            ours = [p["request_headers"]] + ([p["request_trailers"]] if p["request_trailers"] else [])
        else:
            ours = [p["response_headers"]] + ([p["response_trailers"]] if p["response_trailers"]
                                              else [])
        assert [[list(h) for h in b] for b in hblocks] == ours
        assert p["method"] == dict(blocks[(port, sid, C2S)][0])[":method"]
        assert str(p["status"]) == dict(blocks[(port, sid, S2C)][0])[":status"]
    for (port, sid, direction), sizes in data.items():
        p = streams[(port, sid)]
        if direction is S2C:
            assert p["response_data_frames"] == sizes  # no padding in these captures
        else:
            assert p["request_body_length"] == sum(sizes)


@needs_tshark
def test_frame_dumplings_agree_with_tshark() -> None:
    pcap = DATA / "http2-multiplexed.pcap"
    exp = expected_of(pcap)
    theirs = tshark_http2_frames(pcap, exp["server_port"])
    out = payloads(pcap, frames=True)
    ours = [p for p in out if p["kind"] == "frame"]
    assert [(f["type"], f["stream_id"], f["length"]) for f in theirs] == [
        (_TYPE[p["frame_type"]], p["stream_id"], p["length"]) for p in ours]
    settings_frame = next(p for p in ours if p["frame_type"] == "SETTINGS" and p["settings"])
    assert settings_frame["summary"].startswith(
        f"{settings_frame['src']} -> {settings_frame['dst']}  SETTINGS stream=0 len=")
    headers = [p for p in ours if p["frame_type"] == "HEADERS"]
    assert all(p["headers"] for p in headers)
    assert any(":path=/big.txt" in p["summary"] for p in headers)
    # still one stream dumpling per stream
    assert len([p for p in out if p["kind"] == "stream"]) == exp["counts"]["streams"]


_TYPE = {"DATA": 0, "HEADERS": 1, "PRIORITY": 2, "RST_STREAM": 3, "SETTINGS": 4,
         "PUSH_PROMISE": 5, "PING": 6, "GOAWAY": 7, "WINDOW_UPDATE": 8, "CONTINUATION": 9}


# -- byte streams made by the h2 library ---------------------------------------------------


class Pair:
    """A client and a server H2Connection talking in memory; every chunk is recorded."""

    def __init__(self, upgrade_path: str | None = None) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        self.chunks: list[tuple[Direction, bytes]] = []
        self.server_events: list[Any] = []
        self.client_events: list[Any] = []
        if upgrade_path is None:
            self.client.initiate_connection()
            self.c2s()
            self.server.initiate_connection()
            self.s2c()
        else:
            hdr = self.client.initiate_upgrade_connection()
            request = (f"GET {upgrade_path} HTTP/1.1\r\nHost: example.test\r\n"
                       "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                       "HTTP2-Settings: ").encode() + hdr + b"\r\nX-Table: 7\r\n\r\n"
            self.chunks.append((C2S, request))
            self.chunks.append((S2C, b"HTTP/1.1 101 Switching Protocols\r\n"
                                     b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"))
            self.server.initiate_upgrade_connection(hdr)
            self.s2c()
            self.c2s()

    def c2s(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.chunks.append((C2S, data))
            self.server_events += self.server.receive_data(data)

    def s2c(self) -> None:
        data = self.server.data_to_send()
        if data:
            self.chunks.append((S2C, data))
            self.client_events += self.client.receive_data(data)

    def pump(self) -> None:
        for _ in range(4):
            self.c2s()
            self.s2c()


def decode(chunks: list[tuple[Direction, bytes]], decoder: Http2Decoder | None = None,
           close: bool = True) -> tuple[Http2Decoder, list[Any]]:
    decoder = decoder or Http2Decoder()
    events: list[Any] = []
    for i, (direction, data) in enumerate(chunks):
        events += decoder.feed(direction, data, 1000.0 + i * 0.01)
    if close:
        events += decoder.close("fin", 1000.0 + len(chunks) * 0.01)
    return decoder, events


def ended(events: list[Any]) -> dict[int, StreamEnded]:
    return {e.stream.stream_id: e for e in events if isinstance(e, StreamEnded)}


REQ = [(":method", "GET"), (":path", "/menu"), (":scheme", "http"), (":authority", "k.test")]


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


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.stem)
def test_capture_cut_anywhere_never_gives_wrong_headers(pcap: Path, tmp_path: Path) -> None:
    """Each capture started at every one of its packets in turn (a kitchen joining the
    connection there): no error, only streams of the full capture, and every header list
    that is decoded equal to the full capture's for that stream."""
    from scapy.all import TCP, rdpcap, wrpcap

    packets = rdpcap(str(pcap))
    port = next(p[TCP].dport for p in packets if TCP in p)
    opts = {"Http2Chef": {"ports": [port]}}

    def streams(path: Path) -> list[dict[str, Any]]:
        return [d["payload"] for d in read_dumplings(str(path), [Http2Chef], chef_options=opts)]

    full = {(p["flow"]["client"], p["stream_id"]): p for p in streams(pcap)
            if p["kind"] == "stream"}
    decoded = 0
    for cut in range(1, len(packets)):
        part = tmp_path / "cut.pcap"
        wrpcap(str(part), packets[cut:])
        got = streams(part)
        assert not [p for p in got if p["kind"] == "error"], cut
        for p in got:
            if p["kind"] != "stream":
                continue
            truth = full[(p["flow"]["client"], p["stream_id"])]
            for key in ("request_headers", "response_headers", "response_trailers"):
                if p[key]:
                    assert p[key] == truth[key], (cut, p["stream_id"], key)
                    decoded += 1
            assert p["response_body_length"] == truth["response_body_length"], cut
    assert decoded > 0


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


# -- the chef shell with a real flow --------------------------------------------------------


def make_flow() -> Flow:
    return Flow(7, "tcp", ("127.0.0.1", 40000), ("127.0.0.1", 8082), 1000.0, True)


def chef_run(chef: Http2Chef, flow: Flow, chunks: list[tuple[Direction, bytes]],
             close: CloseReason | None = CloseReason.FIN) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def collect(result: Any) -> None:
        if result is None:
            return
        if isinstance(result, dict):
            out.append(result)
        else:
            out.extend(result)

    for i, (direction, data) in enumerate(chunks):
        collect(chef.on_data(flow, direction, data, 1000.0 + i / 100))
    if close is not None:
        collect(chef.on_close(flow, close))
    for p in out:
        json.dumps(p)
        assert {"flow", "src", "dst", "direction", "timestamp", "summary", "kind"} <= set(p)
        assert "\n" not in p["summary"] and len(p["summary"]) < 1000
    return out


def test_chef_payloads_and_incomplete_stream_at_close() -> None:
    pair = Pair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.client.send_headers(3, REQ, end_stream=True)
    pair.c2s()
    pair.server.send_headers(1, [(":status", "200")])
    pair.server.send_data(1, bytes(range(256)) * 4, end_stream=True)
    pair.s2c()
    chef = Http2Chef(frames=True, body_preview=16)
    assert chef.detect(make_flow(), C2S, PREFACE[:8])
    out = chef_run(chef, make_flow(), pair.chunks, CloseReason.RST)
    kinds = [p["kind"] for p in out]
    assert kinds.count("stream") == 2 and kinds[-1] == "connection" and "frame" in kinds
    one, three = (p for p in out if p["kind"] == "stream")
    assert one["complete"] and one["response_body"] == {
        "length": 1024, "hex": bytes(range(16)).hex(), "truncated": True}
    assert not three["complete"] and three["status"] is None
    assert three["end_reason"] == "connection closed (rst)"
    assert three["summary"] == ("127.0.0.1:40000 -> 127.0.0.1:8082  HTTP/2 GET /menu -> "
                                "no response incomplete (connection closed (rst)) 0B (stream 3)")
    assert out[-1]["close_reason"] == "rst" and out[-1]["streams_incomplete"] == 1


# -- fuzzing ------------------------------------------------------------------------------


def _sample_chunks() -> list[tuple[Direction, bytes]]:
    pair = Pair()
    pair.client.send_headers(1, REQ + [("x-a", "1")], end_stream=False)
    pair.client.send_data(1, b"hello", end_stream=True)
    pair.c2s()
    pair.server.send_headers(1, [(":status", "200")])
    pair.server.send_data(1, b"world", end_stream=False)
    pair.server.send_headers(1, [("x-t", "z")], end_stream=True)
    pair.s2c()
    return pair.chunks


SAMPLE = _sample_chunks()


def _check_bounded(chef: Http2Chef, flow: Flow) -> None:
    dec: Http2Decoder = chef.flow_state(flow)
    for side in dec.sides.values():
        assert len(side.buf) <= dec.max_frame_size + 9 + 64 * 1024
        assert side.block is None or len(side.block) <= dec.max_header_block
    assert len(dec.streams) <= dec.max_streams


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=12),
       st.booleans())
def test_fuzz_random_bytes_never_raise(chunks: list[tuple[bool, bytes]], preface: bool) -> None:
    chef = Http2Chef(frames=True, max_streams=8)
    flow = make_flow()
    seq = [(C2S, PREFACE)] if preface else []
    seq += [(C2S if c else S2C, data) for c, data in chunks]
    chef_run(chef, flow, seq, close=None)
    _check_bounded(chef, flow)
    chef_run(chef, flow, [], CloseReason.END)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_conversation(data: st.DataObject) -> None:
    raw = [(d, bytearray(b)) for d, b in SAMPLE]
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        if raw[i][1]:
            j = data.draw(st.integers(0, len(raw[i][1]) - 1))
            raw[i][1][j] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, 64))
    seq = [(d, bytes(b[k:k + cut])) for d, b in raw for k in range(0, len(b), cut)]
    chef = Http2Chef(frames=True)
    flow = make_flow()
    out = chef_run(chef, flow, seq, close=None)
    _check_bounded(chef, flow)
    out += chef_run(chef, flow, [], CloseReason.FIN)
    # whatever happened, each stream is reported at most once
    ids = [p["stream_id"] for p in out if p["kind"] == "stream"]
    assert len(ids) == len(set(ids))
    assert out[-1]["kind"] == "connection" or not chef.flow_state(flow).preface_seen


# -- live: an h2 server and curl on loopback -------------------------------------------------


class H2Server:
    """A small hyper-h2 server on a socket thread: prior knowledge and h2c upgrade."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "H2Server":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _respond(h2c: h2.connection.H2Connection, sid: int, path: str, body_in: bytes) -> None:
        if path.startswith("/nope"):
            status, body = "404", b"not found\n"
        else:
            status, body = "200", f"dumplings for {path} ({len(body_in)} bytes in)\n".encode()
        h2c.send_headers(sid, [(":status", status), ("content-type", "text/plain"),
                               ("content-length", str(len(body)))])
        h2c.send_data(sid, body, end_stream=True)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        buf = b""
        try:
            while not (buf.startswith(PREFACE) or b"\r\n\r\n" in buf):
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            events: list[Any] = []
            if buf.startswith(PREFACE):
                h2c.initiate_connection()
                events = h2c.receive_data(buf)
            else:
                head, rest = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                fields = dict(line.split(": ", 1) for line in lines[1:])
                sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             b"Upgrade: h2c\r\n\r\n")
                h2c.initiate_upgrade_connection(fields["HTTP2-Settings"].encode())
                self._respond(h2c, 1, path, b"")
                if rest:
                    events = h2c.receive_data(rest)
            paths: dict[int, str] = {}
            bodies: dict[int, bytes] = {}
            for _ in range(1000):
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        paths[ev.stream_id] = dict(ev.headers)[":path"]
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                        h2c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in paths:
                        self._respond(h2c, ev.stream_id, paths[ev.stream_id],
                                      bodies.get(ev.stream_id, b""))
                out = h2c.data_to_send()
                if out:
                    sock.sendall(out)
                data = sock.recv(65536)
                if not data:
                    return
                events = h2c.receive_data(data)
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            sock.close()


def _h2_client(port: int) -> list[int]:
    """A real HTTP/2 client (hyper-h2) making three concurrent requests, one with a body."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    statuses: dict[int, int] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        conn.initiate_connection()
        for sid, path in ((1, "/a"), (3, "/nope"), (5, "/orders")):
            base = [(":method", "POST" if path == "/orders" else "GET"), (":path", path),
                    (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]
            conn.send_headers(sid, base, end_stream=path != "/orders")
        conn.send_data(5, b'{"table": 3}', end_stream=True)
        sock.sendall(conn.data_to_send())
        done: set[int] = set()
        deadline = time.monotonic() + 5
        while len(done) < 3 and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    statuses[ev.stream_id] = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.StreamEnded):
                    done.add(ev.stream_id)
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            sock.sendall(conn.data_to_send())
        conn.close_connection()
        sock.sendall(conn.data_to_send())
    return [statuses.get(s, 0) for s in (1, 3, 5)]


@pytest.mark.live
def test_live_h2_server_with_curl_and_h2_client(live_kitchen) -> None:
    with H2Server() as server, live_kitchen(f"tcp port {server.port}", [Http2Chef],
                                             {"Http2Chef": {"ports": [server.port]}}) as lk:
        base = f"http://127.0.0.1:{server.port}"
        for path, want in (("/hello", "200 2"), ("/nope", "404 2")):
            # one URL per curl: curl 7.88 cannot reuse a prior-knowledge connection
            res = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null",
                                  "-w", "%{http_code} %{http_version}", base + path],
                                 capture_output=True, text=True, timeout=20)
            assert res.stdout == want
        assert _h2_client(server.port) == [200, 404, 200]
        assert lk.wait_for(lambda ds: sum(d["payload"]["kind"] == "connection"
                                          for d in ds) >= 3, timeout=10)
    streams = [p for p in lk.payloads("Http2Chef") if p["kind"] == "stream"]
    got = sorted((p["method"], p["path"], p["status"], p["request_body_length"]) for p in streams)
    assert got == [("GET", "/a", 200, 0), ("GET", "/hello", 200, 0), ("GET", "/nope", 404, 0),
                   ("GET", "/nope", 404, 0), ("POST", "/orders", 200, 12)]
    for p in streams:
        assert p["complete"] and p["flow"]["server"] == f"127.0.0.1:{server.port}"
        assert p["response_body_length"] == int(dict(p["response_headers"])["content-length"])
        assert 0 <= p["latency"] < 5
    assert not [p for p in lk.payloads("Http2Chef") if p["kind"] == "error"]


@pytest.mark.live
def test_live_h2c_upgrade_with_curl(live_kitchen) -> None:
    """curl --http2 on plain http asks for Upgrade: h2c; the chef finds it by detection."""
    with H2Server() as server, live_kitchen(f"tcp port {server.port}", [Http2Chef]) as lk:
        res = subprocess.run(["curl", "-s", "--http2", "-o", "/dev/null", "-w",
                              "%{http_code} %{http_version}",
                              f"http://127.0.0.1:{server.port}/upgraded"],
                             capture_output=True, text=True, timeout=20)
        assert res.stdout == "200 2"
        assert lk.wait_for(lambda ds: any(d["payload"]["kind"] == "connection" for d in ds),
                           timeout=10)
    payloads_ = lk.payloads("Http2Chef")
    stream = next(p for p in payloads_ if p["kind"] == "stream")
    assert stream["upgraded"] and stream["stream_id"] == 1 and stream["complete"]
    assert (stream["method"], stream["path"], stream["status"]) == ("GET", "/upgraded", 200)
    conn = next(p for p in payloads_ if p["kind"] == "connection")
    assert conn["upgraded"] and conn["client_preface"] and conn["stopped"] is None


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
