"""HTTP/1.x as lenient as the servers it watches (issue 19, item 1).

Requests h11 refuses but real servers answer (no version, no target, ``HTTP/1.``, no
``Host``, malformed header lines) are decoded with their response and carry a
``problem``; the connection goes on. A second gap in the other direction keeps the
request found after the first. Request-target and header value limits are options.

Foreign captures (zeek/zeek a13de64fbbdb, BSD-3-Clause, ``testing/btest/Traces/``), in
``tests/data/foreign/``: ``http/methods.pcap`` (six of its connections, cut with
tshark), ``http/http-single-conn-22.pcap``, ``mixed-vlan-mpls.pcap`` (its HTTP/0.9
connection only) and ``http/zero-length-bodies-with-drops.pcap``. The synthetic cases
talk to Python's ``http.server``, which answers all of these.
"""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from netdumplings.kitchen.chef import Direction
from netdumplings.chefs.http1 import Http1Chef, Http1Decoder, Problem, Transaction
from netdumplings.chefs.http1.lenient import repair_request_head
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA, free_port

FOREIGN = DATA / "foreign"
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def transactions(pcap: Path, **options: Any) -> tuple[list[dict], list[dict]]:
    opts = {"Http1Chef": options} if options else None
    out = [d["payload"] for d in read_dumplings(pcap, [Http1Chef], chef_options=opts)]
    return ([p for p in out if p.get("event") == "transaction"],
            [p for p in out if p.get("event") == "error"])


def test_malformed_request_lines_of_a_real_capture_are_decoded_with_a_problem() -> None:
    txs, errors = transactions(FOREIGN / "zeek_http_methods_some.pcap")
    got = [(t["method"], t["path"], t["version"], t["status"], t["outcome"]) for t in txs]
    # what tshark shows for the same connections (method, target, status)
    assert got == [("OPTIONS", "HTTP/1.1", "", 400, "complete"),
                   ("OPTIONS", "", "", 400, "complete"),
                   ("GET", "/HTTP/1.1", "", 403, "complete"),
                   ("CCM_POST", "/", "HTTP/1.", 405, "complete")]
    assert "without an HTTP version" in txs[0]["problem"]
    assert "without a request-target" in txs[1]["problem"]
    assert txs[3]["problem"] == "bad HTTP version 'HTTP/1.'"
    assert all("(problem: " in t["summary"] for t in txs)
    # no method token before the first space: not a request in any reading (tshark agrees)
    assert sorted(e["message"].split(": ")[-1] for e in errors) == [
        "bytearray(b'GET/ HTTP/1.1')", "bytearray(b'OPTIONSHTTP/1.1')"]


def test_request_without_host_of_a_real_capture() -> None:
    txs, errors = transactions(FOREIGN / "zeek_http_port22.pcap", ports=[80, 22])
    assert not errors
    (tx,) = txs
    assert (tx["method"], tx["path"], tx["version"], tx["status"]) == ("GET", "/", "HTTP/1.1", 200)
    assert tx["problem"] == "no Host header (HTTP/1.1 requires one)" and tx["host"] is None
    assert tx["response_body_length"] == 12630 and tx["outcome"] == "complete"


def test_http09_request_and_bare_body_answer_of_a_real_capture() -> None:
    txs, errors = transactions(FOREIGN / "zeek_mixed_vlan_http09.pcap")
    assert not errors
    (tx,) = txs
    # tshark: GET / with no status; the answer is the page alone, ended by the server's FIN
    assert (tx["method"], tx["path"], tx["status"], tx["response_version"]) == \
        ("GET", "/", None, "HTTP/0.9")
    assert tx["response_body_length"] == 3429 and tx["outcome"] == "complete"
    assert tx["response_body"].startswith("<!DOCTYPE HTML")
    assert "HTTP/0.9 response 3429B" in tx["summary"]


def test_second_gap_keeps_the_request_and_long_targets_follow_the_option() -> None:
    pcap = FOREIGN / "zeek_http_zero-length-bodies-with-drops.pcap"
    txs, errors = transactions(pcap)
    assert [e["kind"] for e in errors] == ["gap", "gap"]
    assert [t["status"] for t in txs] == [302, 200, 302, 200, 200, 200, 200]
    # the request after the client-side gap is answered after a server-side gap
    after = next(t for t in txs if "cn=videoView&et=i&uxnw" in t["path"] and "ct=300" in t["path"])
    assert after["status"] == 200 and after["resync"]["server_skipped"] > 0
    # a 1410-character target is shown whole by default, cut at max_target_chars
    long = [t["path"] for t in txs if len(t["path"]) > 1024]
    assert len(long) == 1 and len(long[0]) == 1410
    txs, _ = transactions(pcap, max_target_chars=100, max_value_chars=20)
    cut = [t for t in txs if t["path"].endswith("...[1410 bytes]")]
    assert len(cut) == 1 and cut[0]["path"].startswith(long[0][:100])
    assert all(len(v) <= 20 or v.endswith(" bytes]") for t in txs
               for _, v in t["request_headers"] + t["response_headers"])


@pytest.mark.parametrize("head,method,target,version,problem", [
    (b"OPTIONS HTTP/1.1\nHost: x\n\n", "OPTIONS", "HTTP/1.1", "", "without an HTTP version"),
    (b"GET /\r\n\r\n", "GET", "/", "", "without an HTTP version"),
    (b"GET / HTTP/1.\r\nHost: x\r\n\r\n", "GET", "/", "HTTP/1.", "bad HTTP version"),
    (b"GET / HTTP/1.1\r\n\r\n", "GET", "/", "HTTP/1.1", "no Host header"),
    (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/a b", "HTTP/1.1", "spaces in the"),
    (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/%01", "HTTP/1.1", "control or"),
    (b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/", "HTTP/1.1", "single spaces"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", "GET", "/", "HTTP/1.1",
     "1 malformed header line left out"),
])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("size", [None, 1, 7])
def test_lenient_request_then_the_connection_goes_on(head: bytes, method: str, target: str,
                                                     version: str, problem: str, fast: bool,
                                                     size: int | None) -> None:
    dec = Http1Decoder(fast=fast)
    c2s = head + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    out: list = []
    for i in range(0, len(c2s), size or len(c2s)):
        out += dec.feed(C2S, c2s[i:i + (size or len(c2s))], 1.0 + i / 1000)
    out += dec.feed(S2C, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2.0)
    assert not [e for e in out if isinstance(e, Problem)]
    first, second = out
    assert isinstance(first, Transaction) and isinstance(second, Transaction)
    assert (first.request.method, first.request.target,
            first.request.version) == (method, target, version)
    assert problem in (first.problem or "") and first.response.status == 400
    assert (second.request.target, second.response.status, second.problem) == ("/next", 200, None)


@pytest.mark.parametrize("fast", [True, False])
def test_http09_request_without_an_empty_line_is_ended_by_the_answer(fast: bool) -> None:
    """A true HTTP/0.9 client sends ``GET /path`` and its line end, nothing more (0.9 has
    no headers to end): the server's answer shows the request was whole."""
    dec = Http1Decoder(fast=fast)
    out = dec.feed(C2S, b"GET /old\r\n", 1.0) + dec.feed(S2C, b"<html>old</html>", 1.1)
    out += dec.feed(S2C, b"<!-- more -->", 1.2) + dec.close("fin", True, 2.0)
    (tx,) = out
    assert (tx.request.method, tx.request.target, tx.request.version) == ("GET", "/old", "")
    assert (tx.response.version, tx.response.status, tx.response.body_length) == \
        ("HTTP/0.9", None, 29)
    assert tx.outcome == "complete" and "HTTP/0.9" in (tx.problem or "")
    # a versioned head still coming is not taken for one: the early answer stays unmatched
    dec = Http1Decoder(fast=fast)
    out = dec.feed(C2S, b"GET /x HTTP/1.1\r\n", 1.0)
    out += dec.feed(S2C, b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n", 1.1)
    out += dec.close("fin", True, 2.0)
    assert [(type(e), e.kind) for e in out] == [(Problem, "truncated"),
                                                (Problem, "unmatched_response")]


def test_repair_leaves_non_requests_and_unfinished_heads_refused() -> None:
    assert repair_request_head(b"GET/ HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert repair_request_head(b"\x16\x03\x01\x00\r\n\r\n") is None
    assert repair_request_head(b"OPTIONS HTTP/1.1\r\nHost: x\r\n") is None   # head not ended
    assert repair_request_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is None  # nothing to fix


# -- a real server: Python's http.server answers every one of these ---------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive: a second request on the connection

    def do_GET(self) -> None:
        body = b"hello from " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


@pytest.mark.live
def test_live_http_server_answers_and_the_chef_decodes(live_kitchen) -> None:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with live_kitchen(f"tcp port {port}", [Http1Chef],
                          {"Http1Chef": {"ports": [port]}}) as k:
            # HTTP/0.9: the server answers with the body alone, then closes
            a = _exchange(port, b"GET /nine\r\n\r\n")
            # no Host in HTTP/1.1 (answered, kept alive), then a bad version (400, closed)
            b = _exchange(port, b"GET /nohost HTTP/1.1\r\n\r\n"
                                b"GET /v HTTP/1.\r\nHost: x\r\n\r\n")
            # no version and not GET: http.server says 400, HTTP/0.9 style (no status line)
            c = _exchange(port, b"OPTIONS HTTP/1.1\r\nHost: x\r\n\r\n")

            def txs(ds: list[dict]) -> list[dict]:
                return [d["payload"] for d in ds if d["payload"].get("event") == "transaction"]

            assert k.wait_for(lambda ds: len(txs(ds)) >= 4, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert a == b"hello from /nine" and b.startswith(b"HTTP/1.1 200 ")
    assert not c.startswith(b"HTTP/")
    got = {t["path"]: t for t in txs(k.dumplings)}
    nine, nohost, v, opt = got["/nine"], got["/nohost"], got["/v"], got["HTTP/1.1"]
    assert (nine["status"], nine["response_version"], nine["response_body_length"]) == \
        (None, "HTTP/0.9", len(a))
    assert "HTTP/0.9" in nine["problem"] and nine["outcome"] == "complete"
    assert nohost["status"] == 200 and "no Host header" in nohost["problem"]
    assert nohost["response_body_length"] == len(b"hello from /nohost")
    # http.server refuses HTTP/1. with a 400 page sent HTTP/0.9 style: no status line
    assert v["status"] is None and v["response_version"] == "HTTP/0.9"
    assert v["problem"] == "bad HTTP version 'HTTP/1.'" and b"400" in b.split(b"/nohost", 1)[1]
    assert opt["method"] == "OPTIONS" and opt["status"] is None
    assert opt["response_body_length"] == len(c) and "HTTP/0.9" in opt["problem"]
    assert not [d for d in k.dumplings if d["payload"].get("event") == "error"]
