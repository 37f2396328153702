"""The DNS decoder on its own, as h11 is used: bytes in, events out.

No kitchen, no chef, no flows, no scapy: the messages are the real ones of the shared
capture (read with the capture reader only) or made by dnslib, the sides are plain
strings the decoder hands back as given, and hostile bytes must come back as a
``DecodeError`` event, never as an exception. The last test holds the decoder's modules
to their import boundary.
"""

from __future__ import annotations

import json
import struct
import time

import dnslib
import pytest

from netdumplings.chefs.dns import (DecodeError, DnsDecoder, DnsTcpFramer, Lookup, Query,
                                    parse_message)

from conftest import DATA, l4_payloads, pointer_chain_message

PCAP = DATA / "dns-queries.pcap"


def make_query(name: str, qtype: str = "A", qid: int = 1) -> bytes:
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.id = qid
    return q.pack()


def make_reply(query: bytes, *records: dnslib.RR, rcode: int = 0) -> bytes:
    r = dnslib.DNSRecord.parse(query).reply()
    r.header.rcode = rcode
    for rr in records:
        r.add_answer(rr)
    return r.pack()


# -- the real capture ----------------------------------------------------------------------


def test_capture_bytes_give_the_ground_truth_lookups() -> None:
    """Each UDP payload of the capture fed as it was sent, with its own side label: one
    Lookup per exchange of the ground truth, field for field, paired by id."""
    truth = json.loads((DATA / "dns-queries.expected.json").read_text())
    decoders: dict[tuple[str, str], DnsDecoder] = {}
    lookups = []
    for p in l4_payloads(PCAP):
        client, side = (p.src, "to-server") if p.dst.endswith(":53") else (p.dst, "to-client")
        dec = decoders.setdefault((client, p.dst if side == "to-server" else p.src), DnsDecoder())
        for event in dec.feed(p.data, side, p.time):
            assert not isinstance(event, DecodeError), event
            if isinstance(event, Lookup):
                lookups.append((client, event))
    assert len(lookups) == len(truth["exchanges"]) == truth["counts"]["responses"]
    for (client, ev), ex in zip(lookups, truth["exchanges"]):
        q, r = ex["query"], ex["response"]
        assert client == ex["client"]
        assert ev.query_direction == "to-server" and ev.response_direction == "to-client"
        assert ev.query.header == q["header"] and ev.response.header == r["header"]
        assert ev.query.question == q["question"]
        assert ev.response.answers == r["answers"]
        assert ev.response.authority == r["authority"]
        assert ev.response.additional == r["additional"]
        if q["edns"] is not None:
            assert {k: ev.query.edns[k] for k in q["edns"]} == q["edns"]
        assert ev.response.edns is None   # dnslib's server sends no OPT record
        assert 0 <= ev.latency < 1.0
    assert all(d.pending == 0 and d.errors == 0 for d in decoders.values())


# -- messages made by dnslib ------------------------------------------------------------------


def test_record_types_as_dnslib_writes_them() -> None:
    q = make_query("mix.example.", "ANY", qid=77)
    reply = make_reply(
        q,
        dnslib.RR("mix.example.", dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.7"), ttl=60),
        dnslib.RR("mix.example.", dnslib.QTYPE.AAAA, rdata=dnslib.AAAA("2001:db8::7"), ttl=60),
        dnslib.RR("mix.example.", dnslib.QTYPE.MX, rdata=dnslib.MX("mail.example.", 10)),
        dnslib.RR("mix.example.", dnslib.QTYPE.TXT, rdata=dnslib.TXT([b"a b", b'q"\x01'])),
        dnslib.RR("www.mix.example.", dnslib.QTYPE.CNAME, rdata=dnslib.CNAME("mix.example.")),
    )
    dec = DnsDecoder()
    (query,) = dec.feed(q, "out", 5.0)
    assert isinstance(query, Query) and query.message.question == {
        "name": "mix.example.", "type": "ANY", "class": "IN"}
    (lookup,) = dec.feed(reply, "back", 5.25)
    assert lookup.latency == pytest.approx(0.25)
    assert [(a["type"], a["data"]) for a in lookup.response.answers] == [
        ("A", "192.0.2.7"), ("AAAA", "2001:db8::7"), ("MX", "10 mail.example."),
        ("TXT", '"a b" "q\\"\\001"'), ("CNAME", "mix.example.")]
    assert lookup.response.counts == {"questions": 1, "answers": 5, "authority": 0,
                                      "additional": 0}


def test_unanswered_retransmitted_and_unmatched() -> None:
    dec = DnsDecoder(query_timeout=2.0, max_pending=2)
    q1, q2, q3 = (make_query(f"h{i}.example.", qid=i) for i in (1, 2, 3))
    assert [type(e) for e in dec.feed(q1, "c", 1.0)] == [Query]
    (again,) = dec.feed(q1, "c", 1.5)
    assert again.retransmission and dec.pending == 1
    dec.feed(q2, "c", 1.6)
    # full: the oldest query is given up as unanswered to make room
    events = dec.feed(q3, "c", 1.7)
    assert [type(e) for e in events] == [Lookup, Query]
    assert events[0].query.id == 1 and events[0].response is None
    # a response nobody asked for: no query side, only the response's
    (orphan,) = dec.feed(make_reply(make_query("x.example.", qid=99)), "s", 1.8)
    assert orphan.query is None and orphan.query_direction is None
    assert orphan.response_direction == "s" and orphan.latency is None
    # capture time moves past the timeout: both outstanding queries expire
    assert sorted(e.query.id for e in dec.expire(10.0)) == [2, 3] and dec.pending == 0


def test_tcp_framer_cuts_messages_split_anywhere() -> None:
    messages = [make_query(f"t{i}.example.", qid=i) for i in range(3)]
    stream = b"".join(struct.pack("!H", len(m)) + m for m in messages)
    for cut in range(1, len(stream)):
        framer = DnsTcpFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert got == messages and framer.buffered == 0
    byte_at_a_time = DnsTcpFramer()
    assert [m for b in stream for m in byte_at_a_time.feed(bytes([b]))] == messages


# -- hostile bytes ---------------------------------------------------------------------------


def _only_error(data: bytes) -> DecodeError:
    dec = DnsDecoder()
    (event,) = dec.feed(data, "c", 1.0)
    assert isinstance(event, DecodeError), event
    assert event.size == len(data) and event.reason and dec.errors == 1
    assert event.hex_prefix == data[:64].hex()
    return event


def test_truncated_messages_are_errors_not_exceptions() -> None:
    reply = make_reply(make_query("cut.example."),
                       dnslib.RR("cut.example.", dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.1")))
    for n in range(len(reply)):
        dec = DnsDecoder()
        events = dec.feed(reply[:n], "s", 1.0)
        # a prefix may happen to be a complete shorter message; it must never raise
        assert len(events) == 1 and isinstance(events[0], (DecodeError, Lookup))
    assert isinstance(_only_error(reply[:11]), DecodeError)   # shorter than a header


def test_lying_lengths_and_counts() -> None:
    q = bytearray(make_query("liar.example."))
    q[4:6] = (5).to_bytes(2, "big")          # five questions announced, one present
    _only_error(bytes(q))
    txt = make_reply(make_query("liar.example.", "TXT"),
                     dnslib.RR("liar.example.", dnslib.QTYPE.TXT, rdata=dnslib.TXT([b"hello"])))
    assert txt.endswith(b"\x00\x06\x05hello")   # rdlength 6: one string of 5 bytes
    past_end = bytearray(txt)
    past_end[-8:-6] = (200).to_bytes(2, "big")  # the record's rdlength points past the end
    assert "Not enough bytes" in _only_error(bytes(past_end)).reason
    long_string = bytearray(txt)
    long_string[-6] = 60                        # a string longer than its record
    assert "RD len" in _only_error(bytes(long_string)).reason
    more_answers = bytearray(txt)
    more_answers[6:8] = (3).to_bytes(2, "big")  # three answers announced, one present
    _only_error(bytes(more_answers))
    loop = bytearray(make_query("loop.example."))
    loop[12:14] = b"\xc0\x0c"                  # a name that points at itself
    _only_error(bytes(loop))
    error = _only_error(b"\0" * 70_000)        # longer than any DNS message
    assert "longer than any DNS message" in error.reason


def test_pointer_chain_bomb_is_refused_quickly() -> None:
    """Regression: a 64 KB query whose first 200 questions build a backward compression
    chain (each name is one label plus a pointer to the previous name), followed by
    ~10,600 questions pointing at the chain's end. The fast path declines (over 32 hops),
    and dnslib, which re-walks the chain for every question, took ~10 s (minutes for
    deeper chains); its name work is now budgeted and the message is a DecodeError."""
    msg = pointer_chain_message(200)
    t0 = time.monotonic()
    events = DnsDecoder().feed(msg, "c", 1.0)
    assert time.monotonic() - t0 < 2
    assert len(events) == 1 and isinstance(events[0], DecodeError)
    assert "too much work" in events[0].reason
    # a normal heavily compressed message is untouched by the budget
    sample = make_reply(make_query("fuzz.dumplings.example.", qid=77),
                        dnslib.RR("fuzz.dumplings.example.", dnslib.QTYPE.A,
                                  rdata=dnslib.A("192.0.2.1"), ttl=60))
    assert isinstance(DnsDecoder().feed(sample, "s", 1.0)[0], Lookup)


def test_parse_message_raises_where_the_decoder_reports() -> None:
    """``parse_message`` is the raising primitive; the decoder turns its failures into
    events, which is what keeps a flow's decoding alive."""
    with pytest.raises(Exception):
        parse_message(b"\x00\x01")
    assert parse_message(make_query("ok.example.")).question["name"] == "ok.example."


# -- the boundary ---------------------------------------------------------------------------


