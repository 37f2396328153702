"""Chefs against what real peers send on loopback, in variations the other tests miss.

Each test runs the real library on both ends (grpcio, Python's http.server and a raw
socket) while a kitchen sniffs ``lo``; the peer's own view is the ground truth. Each was
written for a defect found that way (see the test's docstring).
"""

from __future__ import annotations

import base64
import http.client
import socket
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler

import grpc
import pytest

from conftest import http_server

from netdumplings.chefs.grpc import GrpcChef
from netdumplings.chefs.http1 import Http1Chef

pytestmark = pytest.mark.live


def _unpadded_b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def test_grpcio_deadline_cancel_true_binary_metadata_and_gzip(live_kitchen) -> None:
    """grpcio, found wrong before the fix:

    - a call past its deadline: when the client's timer fires first it resets the stream
      (RST_STREAM CANCEL) and the server's trailers, already sent, cross it (RFC 9113
      5.4.2); that gave an HTTP/2 "HEADERS on closed stream" error dumpling, and the call
      read as a plain cancel while the client saw DEADLINE_EXCEEDED (now
      ``deadline_exceeded``). Which timer wins varies; both are checked, and
      deterministically in test_http2.py / test_grpc.py;
    - ``-bin`` metadata between two grpc-core peers goes as "true binary" (NUL + raw bytes,
      SETTINGS 0xFE03) and was shown as NULs and escapes: now the usual unpadded base64.
    """
    blob = b"\x00\x01\xff\xfe"

    def get(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("x-blob-bin", blob),))
        if request == b"slow":
            time.sleep(0.5)
        return request

    def feed(request: bytes, context: grpc.ServicerContext):
        for i in range(20):
            time.sleep(0.05)
            yield bytes([8, i])

    handlers = {"Get": grpc.unary_unary_rpc_method_handler(get),
                "Feed": grpc.unary_stream_rpc_method_handler(feed)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("rp.Svc", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    big = b"\x0a" + b"\xc0\xb8\x02" + b"z" * 40000       # field 1, 40000 bytes: gzips small
    try:
        with live_kitchen(f"tcp port {port}", [GrpcChef], {"GrpcChef": {"ports": [port]}}) as lk:
            with grpc.insecure_channel(f"127.0.0.1:{port}",
                                       options=[("grpc.enable_http_proxy", 0)]) as channel:
                get_call = channel.unary_unary("/rp.Svc/Get")
                reply, call = get_call.with_call(b"\x08\x01", metadata=(("x-order", "7"),),
                                                 timeout=5)
                assert dict(call.trailing_metadata())["x-blob-bin"] == blob
                assert get_call(big, compression=grpc.Compression.Gzip, timeout=5) == big
                with pytest.raises(grpc.RpcError) as err:
                    get_call(b"slow", timeout=0.2)
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                stream = channel.unary_stream("/rp.Svc/Feed")(b"", timeout=5)
                assert next(iter(stream)) == b"\x08\x00"
                stream.cancel()
                time.sleep(0.6)                  # the slow call's late trailers go out
            assert lk.wait_for(lambda ds: sum(d["payload"].get("kind") == "grpc_call"
                                              for d in ds) >= 4, timeout=10)
    finally:
        server.stop(0)
    payloads = lk.payloads("GrpcChef")
    assert [p for p in payloads if p["kind"] != "grpc_call"] == []
    calls = {(p["method"], p["stream_id"]): p for p in payloads}
    ok, gz, slow, feed_call = (calls[k] for k in sorted(calls, key=lambda k: k[1]))
    assert ok["grpc_status_name"] == "OK" and ok["custom_metadata"] == [["x-order", "7"]]
    trailers = dict(ok["response_trailers"])
    assert _unpadded_b64decode(trailers["x-blob-bin"]) == blob
    assert gz["encoding"]["request"] == "gzip"
    (req,) = gz["request_messages"]
    assert req["compressed"] and req["decompressed"] == len(big)
    assert req["length"] < 1000                 # the gzipped size on the wire
    assert gz["response_messages"][0]["length"] == len(big)
    if slow["grpc_status"] is None:
        # the client's timer fired first: it reset the stream, the server's trailers
        # crossed the reset (no error above)
        assert slow["reset"]["by"] == "client" and slow["deadline_exceeded"] is True
        assert "deadline 2" in slow["summary"]
    else:                                        # the server's timer fired first
        assert slow["grpc_status_name"] == "DEADLINE_EXCEEDED"
    assert feed_call["reset"]["error"] == "CANCEL" and feed_call["deadline_exceeded"] is False
    assert not ok["deadline_exceeded"]


class _TrailerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = b""
        while True:                              # a chunked request, trailers skipped
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                break
            body += self.rfile.read(size)
            self.rfile.readline()
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Checksum, Server-Timing")
        self.end_headers()
        for chunk in (body, b"!" * 300):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\nX-Checksum: 1234\r\nServer-Timing: db;dur=53\r\n\r\n")


def test_http_server_chunked_bodies_with_trailers(live_kitchen) -> None:
    """Trailer fields after a chunked body (request and response) were parsed and dropped;
    now ``request_trailers`` / ``response_trailers``. The server is http.server, the
    request a raw socket (http.client sends no request trailers)."""
    with http_server(_TrailerHandler) as port:
        with live_kitchen(f"tcp port {port}", [Http1Chef], {"Http1Chef": {"ports": [port]}}) as lk:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          b"Trailer: Digest\r\n\r\n5\r\nhello\r\n0\r\nDigest: sha-256=abc\r\n\r\n")
                reader = http.client.HTTPResponse(s, method="POST")
                reader.begin()
                assert reader.status == 200 and reader.read() == b"hello" + b"!" * 300
            assert lk.wait_for(lambda ds: any(d["payload"].get("event") == "transaction"
                                              for d in ds), timeout=10)
    (tx,) = [p for p in lk.payloads("Http1Chef") if p.get("event") == "transaction"]
    assert tx["outcome"] == "complete" and tx["request_body_length"] == 5
    assert tx["request_trailers"] == [["Digest", "sha-256=abc"]]
    assert tx["response_body_length"] == 305 and tx["chunk_sizes"] == [5, 300]
    assert tx["response_trailers"] == [["X-Checksum", "1234"], ["Server-Timing", "db;dur=53"]]
