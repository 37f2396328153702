"""HTTP/2 as tshark reads it (issue 19, item 2): the ``:status`` of a response that
crosses the client's RST_STREAM, and h2 / gRPC inside an HTTP ``CONNECT`` tunnel (how gRPC
clients use a proxy).

Foreign captures (OISF/suricata-verify 10a45e4bad6d, MIT), in ``tests/data/foreign/``:
``tests/dns-over-http2/dns_over_https.pcap`` (DoH over h2c: stream 7 is reset by the
client, then answered) and ``tests/http2-errorcode/input.pcap`` (a gRPC call through a
CONNECT proxy on port 8888, and the same call direct on 6233). The synthetic case runs
grpcio's client through a CONNECT proxy written here to a grpcio server; the RST_STREAM
race with two h2 peers is in tests/chefs/test_http2_streams.py
(``test_headers_sent_before_the_peer_saw_our_rst_stream_are_not_an_error``).
"""

from __future__ import annotations

import socket
import threading
from concurrent import futures

import grpc
import pytest

from netdumplings.chefs.grpc import GrpcChef
from netdumplings.chefs.http2 import Http2Chef, Http2Decoder, StreamEnded
from netdumplings.kitchen.chef import Direction
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA
from http2_helpers import REQ, Pair, decode

FOREIGN = DATA / "foreign"
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def test_status_after_the_clients_rst_stream_of_a_real_capture() -> None:
    streams = [d["payload"] for d in read_dumplings(FOREIGN / "sv_doh2.pcap", [Http2Chef])
               if d["payload"].get("kind") == "stream"]
    assert [(p["stream_id"], p["status"]) for p in streams] == [(1, 200), (3, 200), (5, 200),
                                                                (7, 200)]
    last = streams[-1]
    assert last["reset"] == {"by": "client", "error_code": 8, "error": "CANCEL"}
    assert last["end_reason"] == "rst_stream" and last["complete"]
    assert "RST_STREAM CANCEL by client" in last["summary"]


def test_grpc_inside_a_connect_tunnel_of_a_real_capture() -> None:
    opts = {"Http2Chef": {"ports": [6233]}, "GrpcChef": {"ports": [6233]}}
    out = [(d["metadata"]["chef"], d["payload"]) for d in read_dumplings(
        FOREIGN / "sv_http2_errorcode.pcap", [Http2Chef, GrpcChef], chef_options=opts)]
    calls = {p["flow"]["server"]: p for c, p in out if p.get("kind") == "grpc_call"}
    streams = {p["flow"]["server"]: p for c, p in out if p.get("kind") == "stream"}
    conns = {p["flow"]["server"]: p for c, p in out
             if c == "Http2Chef" and p.get("kind") == "connection"}
    # the proxied call (through 8888) decodes like the direct one (6233)
    for server in ("127.0.0.1:8888", "127.0.0.1:6233"):
        call = calls[server]
        assert (call["path"], call["grpc_status"], call["stream_id"]) == \
            ("/helloworld.GreeterService/SayHello", 0, 1)
        assert streams[server]["status"] == 200
    assert streams["127.0.0.1:8888"]["tunnel"] and not streams["127.0.0.1:6233"]["tunnel"]
    assert conns["127.0.0.1:8888"]["tunnel"] and "CONNECT tunnel" in conns["127.0.0.1:8888"]["summary"]
    assert not [p for c, p in out if p.get("kind") == "error" or p.get("event") == "error"]


def test_a_tunnel_of_something_else_is_let_go_quietly() -> None:
    dec = Http2Decoder()
    events = dec.feed(C2S, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 1.0)
    events += dec.feed(S2C, b"HTTP/1.1 200 Connection established\r\n\r\n", 1.1)
    events += dec.feed(C2S, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 1.2)
    events += dec.feed(S2C, b"\x16\x03\x03\x00\x7a\x02" + b"\x00" * 40, 1.3)
    events += dec.close("fin", 2.0)
    assert events == [] and dec.not_http2 and dec.stopped
    assert Http2Chef().connection_payload(None, dec, "fin") is None   # no summary either
    # refused by the proxy: the same
    dec = Http2Decoder()
    events = dec.feed(C2S, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 1.0)
    events += dec.feed(S2C, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 1.1)
    assert events == [] and dec.not_http2


# -- live: grpcio through a CONNECT proxy ---------------------------------------------------


class _ConnectProxy:
    """The smallest HTTP CONNECT proxy: read the request head, dial its target, answer 200,
    then copy bytes both ways until either side closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        self.requests.append(head)
        host, port = head.split(b" ")[1].rsplit(b":", 1)
        upstream = socket.create_connection((host.decode(), int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.live
def test_live_grpcio_through_a_connect_proxy(live_kitchen) -> None:
    def greet(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"\x0a\x05hello" + request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "dumplings.Greeter", {"Greet": grpc.unary_unary_rpc_method_handler(greet)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy = _ConnectProxy()
    try:
        # only the proxy's port is sniffed and followed: what the chefs see is the tunnel
        with live_kitchen(f"tcp port {proxy.port}", [Http2Chef, GrpcChef]) as lk:
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[
                    ("grpc.http_proxy", f"http://127.0.0.1:{proxy.port}")]) as channel:
                answer = channel.unary_unary("/dumplings.Greeter/Greet")(b"\x0a\x01x", timeout=5)
            assert answer == b"\x0a\x05hello\x0a\x01x"
            assert lk.wait_for(lambda ds: any(d["payload"].get("kind") == "grpc_call"
                                              for d in ds), timeout=10)
    finally:
        server.stop(0)
        proxy.close()
    assert proxy.requests and proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{port} ".encode())
    (call,) = [p for p in lk.payloads("GrpcChef") if p["kind"] == "grpc_call"]
    assert (call["path"], call["grpc_status_name"], call["complete"]) == \
        ("/dumplings.Greeter/Greet", "OK", True)
    assert call["dst"] == f"127.0.0.1:{proxy.port}"
    streams = [p for p in lk.payloads("Http2Chef") if p.get("kind") == "stream"]
    assert [(s["status"], s["tunnel"]) for s in streams] == [(200, True)]


def test_a_reset_stream_the_server_never_answers_is_still_reported() -> None:
    """Two h2 peers (the h2 library): the client resets stream 1 before any answer and the
    server goes on to answer stream 3. Stream 1 is reported, reset and without :status,
    once the server has moved on (not only at the close), and before stream 3."""
    pair = Pair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.c2s()
    pair.client.reset_stream(1, error_code=8)
    pair.client.send_headers(3, REQ, end_stream=True)
    pair.c2s()
    pair.server.send_headers(3, [(":status", "204")], end_stream=True)
    pair.s2c()
    decoder, events = decode(pair.chunks, close=False)
    done = [e for e in events if isinstance(e, StreamEnded)]
    assert [(e.stream.stream_id, e.reason, e.complete) for e in done] == [
        (1, "rst_stream", True), (3, "end_stream", True)]
    assert done[0].stream.response_headers is None
    assert done[0].stream.reset == {"by": "client", "error_code": 8, "error": "CANCEL"}
    # and one the server never answers at all is reported at the close
    pair = Pair()
    pair.client.send_headers(1, REQ, end_stream=True)
    pair.client.reset_stream(1, error_code=8)
    pair.c2s()
    decoder, events = decode(pair.chunks, close=True)
    (e,) = [e for e in events if isinstance(e, StreamEnded)]
    assert (e.stream.stream_id, e.reason, e.complete) == (1, "rst_stream", True)
