"""Http2Chef on the shared HTTP/2 captures: against their ground truth and tshark (streams
and frames), and each capture started at every packet in turn (a kitchen joining the
connection there) never giving a wrong header. Decoder edge cases on bytes made by the h2
library are in test_http2_streams.py; the chef shell, fuzzing and live peers in
test_http2_chef.py; the decoder alone in test_http2_decoder.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netdumplings.kitchen.chef import Direction
from netdumplings.chefs.http2 import Http2Chef
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA
from http2_helpers import (C2S, CAPTURES, S2C, expected_of, needs_tshark, payloads,
                           tshark_http2_frames)


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
