"""What the HTTP/2 and gRPC chef tests share (not a test module): the shared captures and
their ground truth, tshark's reading of them, an h2 client and server talking in memory
(``Pair``), feeding a decoder or a chef the chunks they sent, and a flow to feed them on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from netdumplings.kitchen.chef import CloseReason, Direction
from netdumplings.chefs.http2 import Http2Chef, Http2Decoder, StreamEnded
from netdumplings.flows.table import Flow
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA

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
