"""Http1Decoder on its own, as h11 is used: bytes in, events out (issue 24, item 2).

No kitchen, no chef, no flows, no scapy: the byte streams are made by h11 (the library both
peers of a real exchange could be) or are what real clients and servers send (HTTP/0.9, a
TLS ClientHello on port 80, an HTTP/2 preface). Hostile streams (truncated, lying lengths,
junk) must give a clear event and never raise. The decoder's modules must import nothing
outside the stdlib, h11 and their own package, which is checked twice: in their source
(``ast``) and by running the decoder with the framework, scapy, sockets and asyncio made
unimportable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import h11
import pytest

from netdumplings.chefs.http1 import Http1Decoder, Problem, Side, Transaction

C2S, S2C = Side.CLIENT_TO_SERVER, Side.SERVER_TO_CLIENT
PACKAGE = Path(__file__).resolve().parents[2] / "chefs" / "http1"
#: The chef's half of the package: the only modules that may import the framework.


def send(conn: h11.Connection, *events: Any) -> bytes:
    out = b""
    for ev in events:
        data = conn.send(ev)
        assert data is not None
        out += data
    return out


def read_message(conn: h11.Connection) -> None:
    while type(conn.next_event()) is not h11.EndOfMessage:
        pass


def exchange(*cycles: tuple[h11.Request, bytes, h11.Response, list[bytes], list[Any] | None]
             ) -> tuple[bytes, bytes]:
    """(client bytes, server bytes) of keep-alive cycles, each written by an h11 client and
    answered by an h11 server: (request, request body, response, body parts, trailers)."""
    client, server = h11.Connection(h11.CLIENT), h11.Connection(h11.SERVER)
    c2s = s2c = b""
    for request, body, response, parts, trailers in cycles:
        sent = send(client, request, *([h11.Data(data=body)] if body else []),
                    h11.EndOfMessage())
        server.receive_data(sent)
        read_message(server)
        answer = send(server, response, *(h11.Data(data=part) for part in parts),
                      h11.EndOfMessage(headers=trailers or []))
        client.receive_data(answer)
        read_message(client)
        c2s, s2c = c2s + sent, s2c + answer
        client.start_next_cycle()
        server.start_next_cycle()
    return c2s, s2c


POST = h11.Request(method="POST", target="/orders?table=3",
                   headers=[("Host", "dumplings.example"), ("Content-Type", "application/json"),
                            ("Content-Length", "19")])
CREATED = h11.Response(status_code=201, reason=b"Created",
                       headers=[("Content-Type", "application/json"), ("Content-Length", "11")])
GET = h11.Request(method="GET", target="/menu", headers=[("Host", "dumplings.example")])
CHUNKED = h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked"),
                                                 ("Trailer", "Checksum")])


def keepalive() -> tuple[bytes, bytes]:
    return exchange((POST, b'{"items": ["hargow"', CREATED, [b'{"id": 42}\n'], None),
                    (GET, b"", CHUNKED, [b"har gow\n", b"siu mai\n", b"char siu bao\n"],
                     [("Checksum", "abc123")]))


def run(c2s: list[tuple[bytes, float]], s2c: list[tuple[bytes, float]], *,
        clean: bool = True, **options: Any) -> list[Any]:
    """Feed all client segments, then all server segments (pipelined), then close."""
    dec = Http1Decoder(**options)
    events = [e for data, ts in c2s for e in dec.feed(C2S, data, ts)]
    events += [e for data, ts in s2c for e in dec.feed(S2C, data, ts)]
    return events + dec.close("fin" if clean else "rst", clean, 9.0)


def cut(data: bytes, size: int, t0: float) -> list[tuple[bytes, float]]:
    return [(data[i:i + size], t0 + i / 1e6) for i in range(0, len(data), size)]


def test_a_keepalive_exchange_written_by_h11() -> None:
    c2s, s2c = keepalive()
    second = s2c.index(b"HTTP/1.1 200")   # where the second response starts
    events = run([(c2s, 1.0)], [(s2c[:second], 1.5), (s2c[second:], 1.75)])
    assert [type(e) for e in events] == [Transaction, Transaction]
    post, get = events
    assert (post.index, post.outcome, post.request.method, post.request.target) == \
        (1, "complete", "POST", "/orders?table=3")
    assert post.request.header("host") == "dumplings.example"
    assert bytes(post.request.body_preview) == b'{"items": ["hargow"'
    assert post.request.body_length == 19
    assert (post.response.status, post.response.reason, post.response.body_length) == \
        (201, "Created", 11)
    assert (post.request.start, post.response.start, post.response.end) == (1.0, 1.5, 1.5)
    assert (get.index, get.outcome, get.request.target, get.response.status) == \
        (2, "complete", "/menu", 200)
    assert get.response.chunked and get.response.chunk_sizes == [8, 8, 13]
    assert get.response.trailers == [["Checksum", "abc123"]]
    assert bytes(get.response.body_preview) == b"har gow\nsiu mai\nchar siu bao\n"
    assert (get.request.start, get.response.start, get.response.end) == (1.0, 1.75, 1.75)


@pytest.mark.parametrize("size", [1, 2, 7, 64])
@pytest.mark.parametrize("fast", [True, False])
def test_any_segmentation_and_either_parser_give_the_same_events(size: int, fast: bool) -> None:
    """The fast path and h11 alone, fed whole or in pieces, report the same transactions
    (timestamps aside: those follow the pieces)."""
    c2s, s2c = keepalive()

    def view(events: list[Any]) -> list[Any]:
        return [(e.index, e.outcome, e.request.method, e.request.target, e.request.body_length,
                 e.response.status, e.response.body_length, e.response.chunk_sizes,
                 e.response.trailers, e.request.headers, e.response.headers) for e in events]

    whole = view(run([(c2s, 1.0)], [(s2c, 2.0)]))
    assert len(whole) == 2
    assert view(run(cut(c2s, size, 1.0), cut(s2c, size, 2.0), fast=fast)) == whole


def test_side_values_as_plain_strings() -> None:
    """The side is a plain value: a ``Side``, or any str with its value (the kitchen's
    ``Direction`` is one), with the same result."""
    c2s, s2c = keepalive()
    dec = Http1Decoder()
    assert dec.feed("client_to_server", c2s, 1.0) == []
    events = dec.feed("server_to_client", s2c, 2.0)
    assert [e.response.status for e in events] == [201, 200]


def test_http09_request_and_answer_read_to_the_close() -> None:
    """``GET /`` with no version (what an HTTP/0.9 client sends) and a bare body back."""
    (tx,) = run([(b"GET /\r\n", 1.0)], [(b"<html>hi</html>", 1.5)])
    assert (tx.outcome, tx.request.method, tx.request.target) == ("complete", "GET", "/")
    assert tx.response.version == "HTTP/0.9" and tx.response.body_length == 15
    assert "without an HTTP version" in tx.problem


GET_BYTES = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
CLIENT_HELLO = bytes.fromhex("16030100c4010000c00303") + bytes(range(32)) + b"\x00" * 40


@pytest.mark.parametrize("c2s, s2c, clean, expect", [
    # a Content-Length that is not a number
    (GET_BYTES, b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello", True,
     [("problem", S2C, "protocol_error", "bad Content-Length"), ("tx", "incomplete")]),
    # a Content-Length that promises more than came before a reset
    (GET_BYTES, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello", False,
     [("tx", "incomplete")]),
    # ... and before a FIN
    (GET_BYTES, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello", True,
     [("tx", "incomplete")]),
    # a chunk size that is not hex
    (GET_BYTES, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", True,
     [("problem", S2C, "protocol_error", "chunk header"), ("tx", "incomplete")]),
    # a chunk size of 280 TB, five bytes of it sent
    (GET_BYTES, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nhello",
     True, [("tx", "incomplete")]),
    # a request head cut by the close
    (b"GET / HTTP/1.1\r\nHos", b"", True,
     [("problem", C2S, "truncated", "inside a request head")]),
    # a TLS ClientHello on the HTTP port
    (CLIENT_HELLO, b"", True, [("problem", C2S, "protocol_error", "bad request")]),
    # an HTTP/2 prior-knowledge preface
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"", True,
     [("problem", C2S, "not_http1", "HTTP/2")]),
    # server bytes nobody asked for
    (b"", b"\x00\x01garbage", True,
     [("problem", S2C, "unmatched_response", "without a request")]),
], ids=["content-length-not-a-number", "content-length-lies-rst", "content-length-lies-fin",
        "chunk-size-not-hex", "chunk-size-huge", "truncated-head", "tls-client-hello",
        "h2-preface", "server-junk"])
def test_hostile_streams_give_a_clear_event(c2s: bytes, s2c: bytes, clean: bool,
                                            expect: list[tuple[Any, ...]]) -> None:
    events = run([(c2s, 1.0)] if c2s else [], [(s2c, 2.0)] if s2c else [], clean=clean)
    seen: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, Problem):
            assert isinstance(e.direction, Side)
            seen.append(("problem", e.direction, e.kind, e.message))
        else:
            seen.append(("tx", e.outcome))
    assert [s[:3] for s in seen] == [w[:3] for w in expect], seen
    for got, want in zip(seen, expect):
        if want[0] == "problem":
            assert want[3] in got[3], got


def test_a_head_over_the_limit_stops_with_a_problem_and_counts_what_follows() -> None:
    dec = Http1Decoder(max_header_bytes=1024)
    (problem,) = dec.feed(C2S, b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 5000, 1.0)
    assert (problem.kind, problem.stopped) == ("protocol_error", True)
    assert dec.stopped == "protocol_error"
    assert dec.feed(C2S, b"more" * 100, 2.0) == [] and dec.skipped == [400, 0]


def test_a_gap_resynchronises_at_the_next_request() -> None:
    dec = Http1Decoder()
    assert dec.feed(C2S, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 1.0) == []
    gap, lost = dec.gap(S2C, 50, 2.0)
    assert (gap.kind, gap.direction, gap.stopped) == ("gap", S2C, False)
    assert (lost.outcome, lost.note, lost.request.target) == ("no_response", "gap", "/a")
    assert dec.feed(S2C, b"the rest of a response we lost", 2.1) == []
    assert dec.feed(C2S, b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n", 3.0) == []
    (tx,) = dec.feed(S2C, b"HTTP/1.1 204 No Content\r\n\r\n", 3.5)
    assert (tx.index, tx.outcome, tx.request.target, tx.response.status) == \
        (2, "complete", "/b", 204)
    assert tx.resync == {"client_skipped": 0, "server_skipped": 30}


def test_an_unanswered_request_is_reported_once_and_a_late_answer_still_pairs() -> None:
    dec = Http1Decoder()
    dec.feed(C2S, b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n", 1.0)
    assert dec.expire(20.0, 30.0) == []
    (waiting,) = dec.expire(40.0, 30.0)
    assert (waiting.outcome, waiting.note) == ("no_response", "no response after 30s")
    assert dec.expire(50.0, 30.0) == []
    (tx,) = dec.feed(S2C, b"HTTP/1.1 204 No Content\r\n\r\n", 41.0)
    assert (tx.outcome, tx.late, tx.request.target) == ("complete", True, "/slow")


# -- the decoder alone (its imports: tests/chefs/test_decoder_boundaries.py) --------------

FORBIDDEN = ("netdumplings", "scapy", "socket", "asyncio", "selectors", "ssl")


def test_the_decoder_runs_with_the_framework_scapy_sockets_and_asyncio_unimportable() -> None:
    """Loaded from its folder as a bare package (its __init__, which re-exports the chef,
    not run), the decoder decodes an exchange with those modules blocked."""
    code = f"""
import importlib, sys, types
for name in {FORBIDDEN!r}:
    sys.modules[name] = None     # any import of these now fails
pkg = types.ModuleType("bare_http1")
pkg.__path__ = [{str(PACKAGE)!r}]
sys.modules["bare_http1"] = pkg
decoder = importlib.import_module("bare_http1.decoder")
dec = decoder.Http1Decoder()
dec.feed("client_to_server", {GET_BYTES!r}, 1.0)
(tx,) = dec.feed("server_to_client", b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nhi", 2.0)
print(tx.outcome, tx.response.status, tx.response.body_length)
print(sorted(m for m in sys.modules if m.startswith("bare_http1.")))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    outcome, modules = r.stdout.splitlines()
    assert outcome == "complete 200 2"
    assert "bare_http1.chef" not in modules and "bare_http1.payload" not in modules


def test_the_package_keeps_the_names_imported_from_the_old_module() -> None:
    """``netdumplings.chefs.http1`` was one module; what the repo imported from it (tests,
    bench, other chefs' tests) still imports from the package."""
    import netdumplings.chefs.http1 as package

    for name in ("Http1Chef", "Http1Decoder", "Problem", "Transaction", "HttpMessage",
                 "UPGRADE_STATE_KEY", "REQUEST_LINE", "as_text", "transaction_payload",
                 "_Message"):
        assert hasattr(package, name), name
    assert package.Http1Chef.__module__ == "netdumplings.chefs.http1.chef"
