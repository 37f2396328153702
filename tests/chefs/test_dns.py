"""DNSLookupChef and DnsDecoder: real captures against their ground truth and tshark, the
decoder's edge cases, a live dnslib server/client on loopback, and fuzzing. The decoder
alone is in test_dns_decoder.py, the fast path against dnslib in test_dns_fastpath.py."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import dnslib
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netdumplings.chefs.dns import (DecodeError, DNSLookupChef, DnsDecoder, DnsTcpFramer, Lookup,
                                    Query, parse_message)
from netdumplings.kitchen.chef import CloseReason, Direction, iter_payloads
from netdumplings.wire.dumpling import encode
from netdumplings.flows.table import Flow
from netdumplings.kitchen.offline import read_dumplings

from conftest import DATA, free_port

CAPTURES = [DATA / "dns-queries.pcap", DATA / "corrupt" / "dns-queries.pcapng"]
C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def expected_for(pcap: Path) -> dict:
    return json.loads(pcap.with_name(pcap.name.rsplit(".", 1)[0] + ".expected.json").read_text())


def run_chef(pcap: Path, **options) -> tuple[list[dict], list[dict]]:
    """(lookup payloads, interval payloads) of DNSLookupChef over a capture."""
    opts = {"DNSLookupChef": options} if options else None
    packets, intervals = [], []
    for d in read_dumplings(pcap, [DNSLookupChef], chef_options=opts):
        assert d["metadata"]["chef"] == "DNSLookupChef"
        (intervals if d["metadata"]["driver"] == "interval" else packets).append(d["payload"])
    return packets, intervals


def make_flow(client_port: int = 40000, server_port: int = 53, fid: int = 1) -> Flow:
    return Flow(fid, "udp", ("127.0.0.1", client_port), ("127.0.0.1", server_port), 0.0, False)


def query_bytes(name: str = "a.example.", qtype: str = "A", qid: int = 1234) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = qid
    return q.pack()


def reply_bytes(query: bytes, answer: str | None = "192.0.2.1", rcode: int = 0) -> bytes:
    q = dnslib.DNSRecord.parse(query)
    r = q.reply()
    r.header.rcode = rcode
    if answer:
        r.add_answer(dnslib.RR(q.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(answer), ttl=60))
    return r.pack()


# -- ground truth ---------------------------------------------------------------------


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_capture_matches_expected(pcap: Path) -> None:
    exp = expected_for(pcap)
    lookups, intervals = run_chef(pcap)
    assert [p["event"] for p in lookups] == ["lookup"] * len(exp["exchanges"])
    assert len(lookups) == exp["counts"]["queries"] == exp["counts"]["responses"]
    for got, ex in zip(lookups, exp["exchanges"]):
        q, r = ex["query"], ex["response"]
        assert got["src"] == ex["client"] and got["dst"] == ex["server"]
        assert got["flow"]["client"] == ex["client"] and got["flow"]["server"] == ex["server"]
        assert got["direction"] == "client_to_server"
        assert got["id"] == q["header"]["id"] == r["header"]["id"]
        assert {"name": got["name"], "type": got["type"], "class": got["class"]} == q["question"]
        assert got["query"]["header"] == q["header"]
        assert got["response"]["header"] == r["header"]
        assert got["rcode"] == r["header"]["rcode"]
        assert got["answers"] == r["answers"]
        assert got["authority"] == r["authority"]
        assert got["additional"] == r["additional"]
        if q["edns"] is None:
            assert got["query"]["edns"] is None
        else:
            edns = got["query"]["edns"]
            assert edns["udp_payload_size"] == q["edns"]["udp_payload_size"]
            assert edns["extended_rcode_and_flags"] == q["edns"]["extended_rcode_and_flags"]
            assert edns["options"] == q["edns"]["options"]
        assert got["response"]["edns"] is None  # dnslib's server sends no OPT
        assert got["latency"] is not None and 0 <= got["latency"] < 1.0
        assert got["response_timestamp"] >= got["timestamp"] > 1e9
        assert q["question"]["type"] in got["summary"] and r["header"]["rcode"] in got["summary"]
        assert got["summary"].startswith(f"{ex['client']} -> {ex['server']}  ")
        json.dumps(got)
    nx = [p for p in lookups if p["rcode"] == "NXDOMAIN"]
    assert len(nx) == exp["counts"]["nxdomain"]
    assert all(p["authority"] and p["authority"][0]["type"] == "SOA" for p in nx)
    # the 0.5-style interval summary counts one per query, by name without the final dot
    assert len(intervals) == 1
    seen = intervals[0]["lookups_seen"]
    want: dict[str, int] = {}
    for ex in exp["exchanges"]:
        host = ex["query"]["question"]["name"].rstrip(".")
        want[host] = want.get(host, 0) + 1
    assert {h: v["count"] for h, v in seen.items()} == want
    last = {}
    for p in lookups:
        last[p["lookup"]["hostname"]] = p["lookup"]["when"]
    assert {h: v["latest"] for h, v in seen.items()} == last


def tshark_dns(pcap: Path) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "dns", "-T", "fields", "-E", "separator=|",
         "-e", "dns.id", "-e", "dns.flags.response", "-e", "dns.qry.name",
         "-e", "dns.qry.type", "-e", "dns.flags.rcode", "-e", "dns.count.answers",
         "-e", "dns.count.auth_rr", "-e", "dns.a", "-e", "dns.aaaa", "-e", "dns.cname"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_capture_agrees_with_tshark(pcap: Path) -> None:
    lookups, _ = run_chef(pcap)
    rows = tshark_dns(pcap)
    responses = [r for r in rows if r[1] == "1"]
    assert len(rows) == 2 * len(lookups) and len(responses) == len(lookups)
    for got, row in zip(lookups, responses):
        qid, _, name, qtype, rcode, n_ans, n_auth, a, aaaa, cname = row
        assert got["id"] == int(qid, 16)
        assert got["name"].rstrip(".") == name
        assert got["type"] == dnslib.QTYPE.get(int(qtype))
        assert got["rcode"] == dnslib.RCODE.get(int(rcode))
        assert len(got["answers"]) == int(n_ans)
        assert len(got["authority"]) == int(n_auth)
        for rtype, field in (("A", a), ("AAAA", aaaa), ("CNAME", cname)):
            ours = [x["data"].rstrip(".") for x in got["answers"] if x["type"] == rtype]
            assert ours == ([v for v in field.split(",")] if field else [])


# -- decoder behaviour ------------------------------------------------------------------


def test_decoder_pairs_by_id_and_reports_unanswered_and_unmatched() -> None:
    dec = DnsDecoder(query_timeout=2.0)
    q1, q2 = query_bytes("one.example.", qid=1), query_bytes("two.example.", qid=2)
    ev = dec.feed(q1, C2S, 10.0) + dec.feed(q2, C2S, 10.5)
    assert [type(e) for e in ev] == [Query, Query] and dec.pending == 2
    # answer to the second first: matched by id, not by order
    (lk,) = dec.feed(reply_bytes(q2), S2C, 10.6)
    assert isinstance(lk, Lookup) and lk.query.question["name"] == "two.example."
    assert lk.latency == pytest.approx(0.1)
    # a response nobody asked for
    (orphan,) = dec.feed(reply_bytes(query_bytes(qid=99)), S2C, 10.7)
    assert orphan.query is None and orphan.response.id == 99 and orphan.latency is None
    # the first query times out when later traffic moves the clock
    events = dec.feed(query_bytes("three.example.", qid=3), C2S, 12.1)
    unanswered = [e for e in events if isinstance(e, Lookup)]
    assert len(unanswered) == 1 and unanswered[0].query.id == 1 and unanswered[0].response is None
    assert [e.query.id for e in dec.close()] == [3] and dec.pending == 0


def test_retransmission_keeps_first_query_time_and_counts_once() -> None:
    chef = DNSLookupChef()
    flow = make_flow()
    q = query_bytes("again.example.", qid=7)
    assert list(iter_payloads(chef.on_data(flow, C2S, q, 1.0))) == []
    assert list(iter_payloads(chef.on_data(flow, C2S, q, 2.0))) == []
    (p,) = iter_payloads(chef.on_data(flow, S2C, reply_bytes(q), 2.5))
    assert p["latency"] == pytest.approx(1.5)
    assert chef.interval_handler()["lookups_seen"]["again.example"]["count"] == 1


def test_pending_queries_are_bounded() -> None:
    dec = DnsDecoder(max_pending=8)
    out = []
    for i in range(20):
        out += dec.feed(query_bytes(qid=i), C2S, 1.0)
    assert dec.pending == 8
    dropped = [e for e in out if isinstance(e, Lookup)]
    assert [e.query.id for e in dropped] == list(range(12))


def test_garbage_gives_error_payload_and_flow_keeps_decoding() -> None:
    chef = DNSLookupChef()
    flow = make_flow()
    q = query_bytes("after.example.", qid=42)
    bad = [b"", b"\x00", b"\xff" * 11, q[:15], q[:-3], b"GET / HTTP/1.1\r\n\r\n"]
    for i, junk in enumerate(bad):
        (p,) = iter_payloads(chef.on_data(flow, C2S, junk, 1.0 + i))
        assert p["event"] == "error" and p["size"] == len(junk)
        assert p["hex_prefix"] == junk[:64].hex() and "not DNS" in p["summary"]
        encode({"metadata": {}, "payload": p})
    assert chef.decode_errors == len(bad)
    assert list(iter_payloads(chef.on_data(flow, C2S, q, 10.0))) == []
    (p,) = iter_payloads(chef.on_data(flow, S2C, reply_bytes(q, rcode=2, answer=None), 10.2))
    assert p["event"] == "lookup" and p["rcode"] == "SERVFAIL"


def test_on_close_reports_outstanding_queries() -> None:
    chef = DNSLookupChef()
    flow = make_flow()
    list(iter_payloads(chef.on_data(flow, C2S, query_bytes("lost.example.", qid=5), 3.0)))
    (p,) = iter_payloads(chef.on_close(flow, CloseReason.END))
    assert p["event"] == "unanswered" and p["name"] == "lost.example." and p["rcode"] is None
    assert p["closed_by"] == "end" and "no response" in p["summary"]
    assert list(iter_payloads(chef.on_close(flow, CloseReason.END))) == []


# -- DNS over TCP ---------------------------------------------------------------------


def framed(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


def test_tcp_framer_splits_and_joins_messages() -> None:
    q1, q2 = query_bytes("one.example.", qid=1), query_bytes("two.example.", qid=2)
    stream = framed(q1, q2, b"")
    framer = DnsTcpFramer()
    got = []
    for i in range(len(stream)):          # one byte at a time: the prefix split too
        got += framer.feed(stream[i:i + 1])
    assert got == [q1, q2, b""] and framer.buffered == 0
    assert DnsTcpFramer().feed(stream) == [q1, q2, b""]
    partial = DnsTcpFramer()
    assert partial.feed(framed(q1)[:-3]) == [] and partial.buffered == len(q1) - 1
    assert partial.gap(100) == len(q1) - 1 and partial.stopped and partial.buffered == 0
    assert partial.feed(framed(q2)) == [] and partial.skipped == 100 + len(q1) - 1 + 2 + len(q2)


def make_tcp_flow() -> Flow:
    return Flow(7, "tcp", ("127.0.0.1", 41000), ("127.0.0.1", 53), 0.0, True)


def test_tcp_lookups_pipelined_and_split_anywhere() -> None:
    chef = DNSLookupChef()
    flow = make_tcp_flow()
    q1, q2 = query_bytes("one.example.", qid=11), query_bytes("two.example.", qid=12)
    r2, r1 = reply_bytes(q2, "192.0.2.2"), reply_bytes(q1, "192.0.2.1")
    out = []
    c2s, s2c = framed(q1, q2), framed(r2, r1)      # answered out of order (RFC 7766)
    out += iter_payloads(chef.on_data(flow, C2S, c2s[:3], 1.0))
    out += iter_payloads(chef.on_data(flow, C2S, c2s[3:], 1.0))
    out += iter_payloads(chef.on_data(flow, S2C, s2c[:len(r2) + 3], 1.25))
    out += iter_payloads(chef.on_data(flow, S2C, s2c[len(r2) + 3:], 1.5))
    assert [(p["event"], p["name"], p["answers"][0]["data"]) for p in out] == [
        ("lookup", "two.example.", "192.0.2.2"), ("lookup", "one.example.", "192.0.2.1")]
    assert out[0]["latency"] == pytest.approx(0.25) and out[1]["latency"] == pytest.approx(0.5)
    assert out[0]["flow"]["transport"] == "tcp"
    assert chef.lookups_seen["one.example"]["count"] == 1
    assert list(iter_payloads(chef.on_close(flow, CloseReason.FIN))) == []


def test_tcp_gap_stops_the_direction_and_close_reports_what_is_left() -> None:
    chef = DNSLookupChef()
    flow = make_tcp_flow()
    q1, q2 = query_bytes("one.example.", qid=21), query_bytes("two.example.", qid=22)
    list(iter_payloads(chef.on_data(flow, C2S, framed(q1) + framed(q2)[:5], 1.0)))
    (err,) = iter_payloads(chef.on_gap(flow, C2S, 300))
    assert err["event"] == "error" and err["direction"] == "client_to_server"
    assert "300 bytes missing from the capture and 5 bytes of a message" in err["error"]
    assert list(iter_payloads(chef.on_gap(flow, C2S, 10))) == []      # said once
    assert list(iter_payloads(chef.on_data(flow, C2S, framed(q2), 2.0))) == []
    # the other direction still decodes: the first query is answered
    (p,) = iter_payloads(chef.on_data(flow, S2C, framed(reply_bytes(q1)), 2.5))
    assert p["event"] == "lookup" and p["name"] == "one.example."
    # a response cut by the end of the connection is said, not dropped silently
    list(iter_payloads(chef.on_data(flow, S2C, framed(reply_bytes(q2))[:20], 3.0)))
    (cut,) = iter_payloads(chef.on_close(flow, CloseReason.RST))
    assert cut["event"] == "error" and "connection ended inside a message (20 bytes" in \
        cut["error"]


def test_tcp_can_be_turned_off() -> None:
    assert DNSLookupChef().transports == frozenset({"udp", "tcp"})
    assert DNSLookupChef(tcp=False).transports == frozenset({"udp"})


def test_extended_rcode_and_caps() -> None:
    rec = dnslib.DNSRecord.question("big.example.", "TXT")
    rec.header.qr = 1
    rec.header.rcode = 0
    for i in range(80):
        rec.add_answer(dnslib.RR("big.example.", dnslib.QTYPE.TXT, ttl=1,
                                 rdata=dnslib.TXT(["x" * 250, "y" * 250])))
    rec.add_ar(dnslib.EDNS0(udp_len=4096, ext_rcode=1))  # 1<<4 | 0 = BADVERS (16)
    msg = parse_message(rec.pack())
    assert msg.header["rcode"] == "BADVERS"
    assert msg.counts["answers"] == 80 and len(msg.answers) == 50
    assert all(len(a["data"]) < 300 for a in msg.answers)


def test_options_ports_and_mdns() -> None:
    assert DNSLookupChef().ports == frozenset({53})
    assert DNSLookupChef(mdns=True).ports == frozenset({53, 5353})
    assert DNSLookupChef(ports="5300,5301").ports == frozenset({5300, 5301})
    with pytest.raises(Exception):
        DNSLookupChef(no_such_option=1)


def test_lookups_seen_is_bounded() -> None:
    chef = DNSLookupChef(max_hostnames=5)
    flow = make_flow()
    for i in range(12):
        list(iter_payloads(chef.on_data(flow, C2S, query_bytes(f"h{i}.example.", qid=i), i)))
    seen = chef.interval_handler()["lookups_seen"]
    assert list(seen) == [f"h{i}.example" for i in range(7, 12)]


# -- fuzzing -----------------------------------------------------------------------------

_SAMPLE = reply_bytes(query_bytes("fuzz.dumplings.example.", "A", 77))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=5))
def test_fuzz_random_bytes_never_escape(datagrams: list[bytes]) -> None:
    chef = DNSLookupChef(max_pending=16)
    flow = make_flow()
    t0 = time.monotonic()
    for i, dg in enumerate(datagrams):
        for p in iter_payloads(chef.on_data(flow, C2S if i % 2 == 0 else S2C, dg, float(i))):
            encode({"metadata": {}, "payload": p})
    for p in iter_payloads(chef.on_close(flow, CloseReason.END)):
        encode({"metadata": {}, "payload": p})
    assert time.monotonic() - t0 < 5
    assert flow.state[chef.name].pending == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.integers(0, len(_SAMPLE)))
def test_fuzz_mutated_messages(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_SAMPLE)
    for pos, value in flips:
        data[pos] = value
    data = bytes(data[:cut])
    dec = DnsDecoder()
    events = dec.feed(data, S2C, 1.0)
    assert len(events) == 1 and isinstance(events[0], (DecodeError, Query, Lookup))
    assert dec.messages + dec.errors == 1
    assert dec.pending <= 1


# -- live ---------------------------------------------------------------------------------


class _ZoneResolver:
    """A tiny dnslib resolver: one A record, NXDOMAIN for everything else."""

    def resolve(self, request, handler):
        reply = request.reply()
        if str(request.q.qname) == "live.dumplings.example.":
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A,
                                       rdata=dnslib.A("198.51.100.42"), ttl=30))
        else:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        return reply


@pytest.mark.live
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_live_dnslib_server_and_client(live_kitchen, transport: str) -> None:
    """dnslib's server and client on loopback, over UDP and over TCP, sniffed on lo."""
    from dnslib.server import DNSServer

    tcp = transport == "tcp"
    port = free_port(socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    server = DNSServer(_ZoneResolver(), port=port, address="127.0.0.1", tcp=tcp)
    server.start_thread()
    try:
        with live_kitchen(f"{transport} port {port}", [DNSLookupChef],
                          {"DNSLookupChef": {"ports": [port]}}) as k:
            answers = []
            for name in ("live.dumplings.example.", "missing.dumplings.example."):
                raw = dnslib.DNSRecord.question(name, "A").send("127.0.0.1", port, tcp=tcp,
                                                                timeout=5)
                answers.append(dnslib.DNSRecord.parse(raw))

            def lookups(dumplings):
                return [d["payload"] for d in dumplings
                        if d["metadata"]["chef"] == "DNSLookupChef"
                        and d["payload"].get("event") == "lookup"]

            assert k.wait_for(lambda ds: len(lookups(ds)) >= 2, timeout=10)
    finally:
        server.stop()
    got = {p["name"]: p for p in lookups(k.dumplings)}
    ok, nx = got["live.dumplings.example."], got["missing.dumplings.example."]
    assert ok["rcode"] == "NOERROR" and ok["answers"][0]["data"] == "198.51.100.42"
    assert nx["rcode"] == "NXDOMAIN" and nx["answers"] == []
    assert ok["id"] == answers[0].header.id and nx["id"] == answers[1].header.id
    assert ok["dst"] == f"127.0.0.1:{port}" and ok["flow"]["server"] == f"127.0.0.1:{port}"
    assert ok["flow"]["transport"] == transport
    assert 0 <= ok["latency"] < 5
    assert not [d for d in k.dumplings if d["payload"].get("event") == "error"]
