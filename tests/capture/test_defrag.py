"""IP fragment reassembly: the sans-I/O Defragmenter, the kitchen feeding flow chefs whole
datagrams (scapy-made fragments of real dnslib messages, IPv4 and IPv6, in and out of
order, duplicated, contradicting, missing), and a real kernel fragmenting a DNS answer
over a veth pair with a 1280-byte MTU between two network namespaces made by the test."""

from __future__ import annotations

import os
import random
import shutil
import textwrap
from pathlib import Path
from typing import Any

import dnslib
import pytest
from conftest import cook, exchange_across_namespaces, run_ip, veth_namespaces
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from netdumplings.chefs.dns import DNSLookupChef
from netdumplings.capture.defrag import Defragmenter
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import Packet
from netdumplings.capture.sources import PcapSource

E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
CLIENT4, SERVER4 = "192.0.2.10", "192.0.2.53"
CLIENT6, SERVER6 = "2001:db8::10", "2001:db8::53"


# -- the sans-I/O core --------------------------------------------------------------------


def test_in_order_out_of_order_and_duplicates() -> None:
    payload = bytes(range(256)) * 12                     # 3072 bytes
    pieces = [(o, payload[o:o + 1024]) for o in range(0, len(payload), 1024)]   # 3
    for order in (pieces, pieces[::-1], [pieces[1], pieces[0], pieces[1], pieces[2]]):
        d = Defragmenter()
        out = [d.feed("k", o, o + len(p) < len(payload), p, 1.0) for o, p in order]
        assert out[-1] == payload and not any(out[:-1])
        assert d.pending == 0 and d.held_bytes == 0 and d.stats.reassembled == 1
    # overlapping fragments that agree on their bytes are fine
    d = Defragmenter()
    assert d.feed("k", 0, True, payload[:1600], 1.0) is None
    assert d.feed("k", 800, False, payload[800:], 1.0) == payload


def test_contradicting_overlap_drops_the_datagram_and_swallows_the_rest() -> None:
    d = Defragmenter()
    assert d.feed("k", 0, True, b"a" * 16, 1.0) is None
    assert d.feed("k", 8, True, b"b" * 16, 1.0) is None          # bytes 8-16 differ
    assert d.stats.overlaps == 1 and d.held_bytes == 0
    assert d.feed("k", 24, False, b"c" * 8, 1.0) is None         # the rest: swallowed
    assert d.stats.overlaps == 1 and d.stats.reassembled == 0
    assert d.finish() == 0 and d.stats.dropped == 1              # counted once
    # two "last" fragments with different ends, or bytes past the end
    d = Defragmenter()
    d.feed("x", 16, False, b"z" * 8, 1.0)
    assert d.feed("x", 8, False, b"z" * 8, 1.0) is None and d.stats.overlaps == 1
    d2 = Defragmenter()
    d2.feed("y", 16, False, b"y" * 8, 1.0)
    assert d2.feed("y", 16, True, b"y" * 16, 1.0) is None and d2.stats.overlaps == 1


def test_bounds_timeout_and_size() -> None:
    d = Defragmenter(max_datagrams=4, timeout=30.0)
    for i in range(10):
        d.feed(i, 0, True, b"x" * 8, 1.0 + i)
    assert d.pending == 4 and d.stats.evicted == 6
    d.feed("late", 0, True, b"x" * 8, 100.0)                     # the old ones expire
    assert d.pending == 1 and d.stats.expired == 4
    assert d.feed("big", 65528, False, b"x" * 16, 100.0) is None and d.stats.too_big == 1
    assert d.feed("v4", 65512, False, b"x" * 8, 100.0, limit=65515) is None
    assert d.stats.too_big == 2
    held = Defragmenter(max_datagrams=1000, max_bytes=1 << 17)
    for i in range(20):
        held.feed(i, 0, True, b"x" * 60000, 1.0)
    assert held.held_bytes <= 1 << 17 and held.stats.evicted >= 18
    with pytest.raises(ValueError):
        Defragmenter(timeout=0)


# -- the kitchen: fragments built by scapy from real DNS messages -------------------------


def big_dns(qid: int = 4242, records: int = 40) -> tuple[bytes, bytes]:
    """A TXT query and an answer of about 10 KB (well over any MTU)."""
    q = dnslib.DNSRecord.question("big.dumplings.example.", "TXT")
    q.header.id = qid
    r = q.reply()
    for i in range(records):
        r.add_answer(dnslib.RR("big.dumplings.example.", dnslib.QTYPE.TXT, ttl=60,
                               rdata=dnslib.TXT([f"record {i} ".encode() + b"x" * 230])))
    return q.pack(), r.pack()


def frames(v6: bool, fragsize: int = 1280, shuffle: bool = False, drop: int | None = None,
           duplicate: bool = False) -> list[Any]:
    query, answer = big_dns()
    if v6:
        q = E / IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=40000, dport=53) / Raw(query)
        a = IPv6(src=SERVER6, dst=CLIENT6) / IPv6ExtHdrFragment(id=77) / \
            UDP(sport=53, dport=40000) / Raw(answer)
        parts = [E / f for f in fragment6(a, fragsize)]
    else:
        q = E / IP(src=CLIENT4, dst=SERVER4, id=1) / UDP(sport=40000, dport=53) / Raw(query)
        a = IP(src=SERVER4, dst=CLIENT4, id=77) / UDP(sport=53, dport=40000) / Raw(answer)
        parts = [E / f for f in fragment(a, fragsize)]
    assert len(parts) > 5
    if drop is not None:
        del parts[drop]
    if duplicate:
        parts.insert(3, parts[2])
    if shuffle:
        random.Random(5).shuffle(parts)
    t = 1700000000.0
    q.time = t
    out = [q]
    for i, p in enumerate(parts):
        p.time = t + 0.01 + i * 0.0001
        out.append(p)
    return out


def lookups(path: Path) -> list[dict[str, Any]]:
    return [d["payload"] for d in read_dumplings(str(path), [DNSLookupChef])
            if d["metadata"]["driver"] == "packet"]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("how", ["in-order", "shuffled", "duplicated"])
def test_fragmented_dns_answer_is_decoded_whole(tmp_path: Path, v6: bool, how: str) -> None:
    pcap = tmp_path / "frag.pcap"
    wrpcap(str(pcap), frames(v6, shuffle=how == "shuffled", duplicate=how == "duplicated"))
    (p,) = lookups(pcap)
    query, answer = big_dns()
    want = dnslib.DNSRecord.parse(answer)
    assert p["event"] == "lookup" and p["rcode"] == "NOERROR"
    assert p["response"]["size"] == len(answer)
    assert len(p["answers"]) == len(want.rr) == 40
    assert [a["data"] for a in p["answers"]][-1].startswith('"record 39 xxx')
    assert p["flow"]["transport"] == "udp" and p["flow"]["server"].endswith(":53")


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_missing_fragment_is_counted_not_decoded_as_a_cut_message(tmp_path: Path,
                                                                  v6: bool) -> None:
    pcap = tmp_path / "lost.pcap"
    wrpcap(str(pcap), frames(v6, drop=3))
    dumplings, k = cook(pcap, [DNSLookupChef])
    made = [d["payload"] for d in dumplings]
    # the query goes unanswered; no error from decoding the first fragment as the message
    assert [p["event"] for p in made if "event" in p] == ["unanswered"]
    assert k.stats.fragmented_datagrams_dropped == 1 and k.stats.datagrams_reassembled == 0
    assert k.stats.fragments > 5


def test_packet_fields_of_fragments() -> None:
    first, second = frames(False)[1:3]
    p, q = Packet(bytes(first), 1.0), Packet(bytes(second), 1.0)
    assert p.ip_frag == (77, 0, True, 34, 17) and p.l4 == "udp" and p.sport == 53
    assert q.ip_frag[0] == 77 and q.ip_frag[1] > 0 and q.l4 is None
    plain = Packet(bytes(frames(False)[0]), 1.0)
    assert plain.ip_frag is None
    six = Packet(bytes(frames(True)[2]), 1.0)
    assert six.ip_frag[0] == 77 and six.ip_frag[4] == 17 and six.l4 is None
    # an atomic IPv6 fragment (offset 0, no more) is a whole packet (RFC 6946)
    atomic = E / IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrFragment(id=9, m=0, offset=0) / \
        UDP(sport=1, dport=2) / Raw(b"whole")
    a = Packet(bytes(atomic), 1.0)
    assert a.ip_frag is None and a.l4 == "udp" and a.l4_payload == b"whole"


# -- a real kernel fragmenting: two namespaces, a veth pair with a 1280-byte MTU ---------

SERVER = textwrap.dedent("""
    import sys, dnslib
    from dnslib.server import DNSServer, BaseResolver
    class R(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            for i in range(25):   # ~6.6 KB: dnslib's client reads at most 8 KB
                reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.TXT, ttl=60,
                                 rdata=dnslib.TXT([f"record {i} ".encode() + b"x" * 230])))
            return reply
    s = DNSServer(R(), port=53, address=sys.argv[1])
    s.start_thread()
    print("ready", flush=True)
    sys.stdin.read()
""")
CLIENT = textwrap.dedent("""
    import json, sys, dnslib
    q = dnslib.DNSRecord.question("big.dumplings.example.", "TXT")
    raw = q.send(sys.argv[1], 53, timeout=5, ipv6=":" in sys.argv[1])
    r = dnslib.DNSRecord.parse(raw)
    print(json.dumps({"id": r.header.id, "size": len(raw), "answers": len(r.rr)}))
""")


@pytest.fixture
def mtu_namespaces():
    """Namespaces A and B joined by a veth pair with a 1280-byte MTU, IPv4 and IPv6."""
    def setup(ns: dict[str, str]) -> None:
        for side, iface, host in (("A", "if_a", 1), ("B", "if_b", 2)):
            run_ip("ip", "-n", ns[side], "link", "set", ns[iface], "mtu", "1280")
            run_ip("ip", "-n", ns[side], "addr", "add", f"fd00:d1::{host}/64", "dev",
                   ns[iface], "nodad")

    with veth_namespaces("ndfr", f"10.214.{os.getpid() % 250}", setup) as ns:
        yield {**ns, "v4": (ns["ip_a"], ns["ip_b"]), "v6": ("fd00:d1::1", "fd00:d1::2")}


@pytest.mark.live
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_kernel_fragmented_dns_answer(mtu_namespaces, tmp_path: Path, family: str) -> None:
    ns = mtu_namespaces
    server_ip = ns[family][1]
    pcap = tmp_path / "kernel-frag.pcap"
    got = exchange_across_namespaces(ns, SERVER, CLIENT, server_ip, pcap)
    assert got["size"] > 6000 and got["answers"] == 25
    packets = list(PcapSource(pcap))
    fragments = [p for p in packets if p.ip_frag is not None]
    assert len(fragments) >= got["size"] // 1280          # the kernel did fragment it
    (p,) = [x for x in lookups(pcap) if x["event"] == "lookup"]
    assert p["id"] == got["id"] and p["response"]["size"] == got["size"]
    assert len(p["answers"]) == 25 and p["flow"]["server"].endswith(":53")


def test_nd_sniff_reports_reassembly_and_loss(procs, tmp_path: Path) -> None:
    from conftest import run_nd
    whole, lost = tmp_path / "whole.pcap", tmp_path / "lost.pcap"
    wrpcap(str(whole), frames(False))
    wrpcap(str(lost), frames(False, drop=2))
    n = len(frames(False)) - 1
    rc, p = run_nd(procs, "nd-sniff", "-r", str(whole), "-c", "DNSLookupChef", "--print", "-v")
    assert rc == 0, p.err
    assert f"nd-sniff: {n} IP fragments made 1 datagrams; 0 tunnelled packets looked into" \
        in p.err
    # a datagram that cannot be made whole is said even with -q
    rc, p = run_nd(procs, "nd-sniff", "-r", str(lost), "-c", "DNSLookupChef", "--print", "-q")
    assert rc == 0
    (summary,) = [line for line in p.err if line.startswith("nd-sniff: ")]
    assert "1 fragmented datagrams not reassembled (fragments missing or inconsistent)" in \
        summary


def test_late_duplicates_are_recognised_and_a_reused_id_is_a_new_datagram() -> None:
    payload = bytes(range(256)) * 8
    pieces = [(o, payload[o:o + 512]) for o in range(0, len(payload), 512)]
    d = Defragmenter()
    out = [d.feed("k", o, o + 512 < len(payload), p, 1.0) for o, p in pieces]
    assert out[-1] == payload
    # a mirror port sends two of them again: recognised, not a new datagram to expire
    assert d.feed("k", *pieces[1][:1], True, pieces[1][1], 1.5) is None
    assert d.feed("k", 1536, False, pieces[3][1], 1.6) is None
    assert d.stats.late_duplicates == 2 and d.pending == 0
    assert d.finish() == 0 and d.stats.dropped == 0
    # the same id, other bytes (IPv4 ids wrap): a datagram of its own
    other = b"z" * 1024
    assert d.feed("k", 0, True, other[:512], 2.0) is None
    assert d.feed("k", 512, False, other[512:], 2.0) == other
