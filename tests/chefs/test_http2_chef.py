"""Http2Chef's shell: payloads from a real flow (and a stream cut short at close),
fuzzing through the chef (random and mutated conversations never raise and stay
bounded), and live on loopback: an h2 server with curl and an h2 client, and curl's h2c
upgrade, captured by a real kitchen."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdumplings.kitchen.chef import CloseReason, Direction
from netdumplings.chefs.http2 import PREFACE, Http2Chef, Http2Decoder
from netdumplings.flows.table import Flow

from conftest import free_port
from http2_helpers import C2S, REQ, S2C, Pair, chef_run, make_flow


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
