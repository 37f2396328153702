"""Tunnels: flow chefs decode what is inside VXLAN, Geneve and GRE. DNS lookups and an
HTTP exchange wrapped by scapy in every kind of header (the sans-I/O parsers and the
kitchen), and a real kernel VXLAN device between two network namespaces the test makes,
with dnslib talking over the overlay while the underlay is captured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any, Callable

import dnslib
import pytest
from conftest import cook, exchange_across_namespaces, run_ip, veth_namespaces
from scapy.all import load_contrib
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import wrpcap

from netdumplings.chefs.dns import DNSLookupChef
from netdumplings.chefs.http1 import Http1Chef
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.capture.packet import Packet
from netdumplings.capture.sources import PcapSource
from netdumplings.capture.tunnels import geneve, gre, inner_frame, vxlan

load_contrib("geneve")
from scapy.contrib.geneve import GENEVE  # noqa: E402

OUTER = Ether(src="02:00:00:00:0a:01", dst="02:00:00:00:0a:02")
INNER_E = Ether(src="02:00:00:00:0b:01", dst="02:00:00:00:0b:02")
A, B = "10.99.0.1", "10.99.0.2"


def dns_pair() -> tuple[bytes, bytes]:
    q = dnslib.DNSRecord.question("inner.dumplings.example.", "A")
    q.header.id = 3030
    r = q.reply()
    r.add_answer(dnslib.RR("inner.dumplings.example.", dnslib.QTYPE.A,
                           rdata=dnslib.A("198.51.100.7"), ttl=5))
    return q.pack(), r.pack()


def inner_dns(v6: bool = False) -> list[Any]:
    query, answer = dns_pair()
    ip = (lambda s, d: IPv6(src=f"fd00::{s}", dst=f"fd00::{d}")) if v6 else \
        (lambda s, d: IP(src=f"10.99.0.{s}", dst=f"10.99.0.{d}"))
    return [ip(1, 2) / UDP(sport=41000, dport=53) / Raw(query),
            ip(2, 1) / UDP(sport=53, dport=41000) / Raw(answer)]


WRAPS: dict[str, Callable[[Any], Any]] = {
    "vxlan": lambda p: OUTER / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789)
    / VXLAN(vni=42) / INNER_E / p,
    "vxlan-8472": lambda p: OUTER / IP(src="192.0.2.1", dst="192.0.2.2")
    / UDP(sport=50000, dport=8472) / VXLAN(vni=42) / INNER_E / p,
    "geneve-ip": lambda p: OUTER / IP(src="192.0.2.1", dst="192.0.2.2")
    / UDP(sport=50000, dport=6081) / GENEVE(vni=7, proto=0x0800 if IP in p else 0x86DD) / p,
    "geneve-eth": lambda p: OUTER / IPv6(src="2001:db8::1", dst="2001:db8::2")
    / UDP(sport=50000, dport=6081) / GENEVE(vni=7, proto=0x6558) / INNER_E / p,
    "gre-ip": lambda p: OUTER / IP(src="192.0.2.1", dst="192.0.2.2")
    / GRE(proto=0x0800 if IP in p else 0x86DD) / p,
    "gre-key-seq-eth": lambda p: OUTER / IP(src="192.0.2.1", dst="192.0.2.2")
    / GRE(key_present=1, key=9, seqnum_present=1, seqence_number=4, proto=0x6558)
    / INNER_E / p,
    "gre-ipv6-outer": lambda p: OUTER / IPv6(src="2001:db8::1", dst="2001:db8::2")
    / GRE(proto=0x0800 if IP in p else 0x86DD) / p,
    "gre-then-vxlan": lambda p: OUTER / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x0800)
    / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=50001, dport=4789) / VXLAN(vni=1)
    / INNER_E / p,
}


def run(path: Path, chefs: list, **kw: Any) -> tuple[list[dict[str, Any]], Kitchen]:
    dumplings, kitchen = cook(path, chefs, **kw)
    return [d["payload"] for d in dumplings], kitchen


@pytest.mark.parametrize("kind", list(WRAPS))
@pytest.mark.parametrize("v6", [False, True], ids=["inner-v4", "inner-v6"])
def test_dns_inside_tunnels(tmp_path: Path, kind: str, v6: bool) -> None:
    frames = [WRAPS[kind](p) for p in inner_dns(v6)]
    for i, f in enumerate(frames):
        f.time = 1700000000.0 + i * 0.002
    pcap = tmp_path / f"{kind}.pcap"
    wrpcap(str(pcap), frames)
    made, k = run(pcap, [DNSLookupChef])
    (p,) = [x for x in made if x.get("event")]
    assert p["event"] == "lookup" and p["answers"][0]["data"] == "198.51.100.7"
    client = "[fd00::1]:41000" if v6 else "10.99.0.1:41000"
    assert p["flow"]["client"] == client and p["latency"] == pytest.approx(0.002, abs=1e-5)
    assert k.stats.decapsulated == (4 if kind == "gre-then-vxlan" else 2)
    # without decapsulation the kitchen sees only the tunnel: no DNS at all
    made, k = run(pcap, [DNSLookupChef], decapsulate=False)
    assert not [x for x in made if x.get("event")] and k.stats.decapsulated == 0


def test_http_stream_inside_vxlan(tmp_path: Path) -> None:
    """A whole TCP conversation inside VXLAN: the inner stream is reassembled."""
    c, s = ("10.99.0.1", 43000), ("10.99.0.2", 80)
    req = b"GET /inside HTTP/1.1\r\nHost: overlay\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    segs = [
        IP(src=c[0], dst=s[0]) / TCP(sport=c[1], dport=s[1], flags="S", seq=100),
        IP(src=s[0], dst=c[0]) / TCP(sport=s[1], dport=c[1], flags="SA", seq=500, ack=101),
        IP(src=c[0], dst=s[0]) / TCP(sport=c[1], dport=s[1], flags="PA", seq=101, ack=501)
        / Raw(req),
        IP(src=s[0], dst=c[0]) / TCP(sport=s[1], dport=c[1], flags="PA", seq=501,
                                     ack=101 + len(req)) / Raw(resp),
        IP(src=c[0], dst=s[0]) / TCP(sport=c[1], dport=s[1], flags="FA", seq=101 + len(req),
                                     ack=501 + len(resp)),
        IP(src=s[0], dst=c[0]) / TCP(sport=s[1], dport=c[1], flags="FA", seq=501 + len(resp),
                                     ack=102 + len(req)),
    ]
    frames = [WRAPS["vxlan"](p) for p in segs]
    for i, f in enumerate(frames):
        f.time = 1700000000.0 + i * 0.001
    pcap = tmp_path / "http.pcap"
    wrpcap(str(pcap), frames)
    made, _ = run(pcap, [Http1Chef])
    (t,) = [p for p in made if p.get("event") == "transaction"]
    assert (t["path"], t["status"], t["response_body"]) == ("/inside", 200, "hello")
    assert t["outcome"] == "complete" and t["flow"]["server"] == "10.99.0.2:80"


def test_parsers_refuse_what_is_not_a_tunnel() -> None:
    assert vxlan(b"\x00" * 30) is None                      # I flag clear
    assert vxlan(b"\x08" + b"\x00" * 10) is None            # too short for Ethernet
    assert geneve(b"\x40" + b"\x00" * 20) is None           # version 1
    assert geneve(b"\x00\x00\x12\x34" + b"\x00" * 20) is None   # unknown protocol
    assert gre(b"\x00\x01\x08\x00" + b"x" * 20) is None     # version 1 (PPTP)
    assert gre(b"\x40\x00\x08\x00" + b"x" * 20) is None     # routing present
    assert gre(b"\x00\x00\x88\xbe" + b"x" * 20) is None     # ERSPAN: not decoded
    plain = Packet(bytes(OUTER / IP(src=A, dst=B) / UDP(sport=1, dport=4789) / Raw(b"\0" * 30)),
                   1.0)
    assert inner_frame(plain) is None                       # port 4789, but not VXLAN


# -- a real kernel VXLAN device between two namespaces ------------------------------------

SERVER = textwrap.dedent("""
    import sys, dnslib
    from dnslib.server import DNSServer, BaseResolver
    class R(BaseResolver):
        def resolve(self, request, handler):
            reply = request.reply()
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A,
                                       rdata=dnslib.A("198.51.100.77"), ttl=5))
            return reply
    DNSServer(R(), port=53, address=sys.argv[1]).start_thread()
    print("ready", flush=True)
    sys.stdin.read()
""")
CLIENT = textwrap.dedent("""
    import json, sys, dnslib
    raw = dnslib.DNSRecord.question("overlay.dumplings.example.", "A").send(sys.argv[1], 53,
                                                                            timeout=5)
    print(json.dumps({"id": dnslib.DNSRecord.parse(raw).header.id}))
""")


@pytest.fixture
def vxlan_namespaces():
    """Underlay: a veth pair between namespaces A and B. Overlay: a VXLAN device (VNI 42,
    UDP 4789) on each side, 10.216.x.0/24, whose packets cross the underlay wrapped."""
    net = f"10.216.{os.getpid() % 250}"
    with veth_namespaces("ndvx", f"10.215.{os.getpid() % 250}", lambda ns: None) as ns:
        try:
            for side, iface, me, peer, host in (("A", "if_a", "ip_a", "ip_b", 1),
                                                 ("B", "if_b", "ip_b", "ip_a", 2)):
                run_ip("ip", "-n", ns[side], "link", "add", "vx42", "type", "vxlan", "id", "42",
                       "local", ns[me], "remote", ns[peer], "dstport", "4789", "dev",
                       ns[iface])
                run_ip("ip", "-n", ns[side], "addr", "add", f"{net}.{host}/24", "dev", "vx42")
                run_ip("ip", "-n", ns[side], "link", "set", "vx42", "up")
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot make a VXLAN device: {exc.stderr}")
        yield {**ns, "overlay_a": f"{net}.1", "overlay_b": f"{net}.2"}


@pytest.mark.live
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_kernel_vxlan_overlay_dns(vxlan_namespaces, tmp_path: Path) -> None:
    ns = vxlan_namespaces
    pcap = tmp_path / "underlay.pcap"
    got = exchange_across_namespaces(ns, SERVER, CLIENT, ns["overlay_b"], pcap,
                                     "udp port 4789")
    outer = list(PcapSource(pcap))
    assert outer and all(p.l4 == "udp" and p.dport == 4789 for p in outer)   # all wrapped
    made, k = run(pcap, [DNSLookupChef])
    (p,) = [x for x in made if x.get("event") == "lookup"]
    assert p["id"] == got["id"] and p["answers"][0]["data"] == "198.51.100.77"
    assert p["flow"]["server"] == f"{ns['overlay_b']}:53"
    assert p["flow"]["client"].startswith(ns["overlay_a"] + ":")
    assert k.stats.decapsulated >= 2


def test_nd_sniff_says_what_it_looked_into(procs, tmp_path: Path) -> None:
    from conftest import run_nd
    frames = [WRAPS["vxlan"](p) for p in inner_dns()]
    for i, f in enumerate(frames):
        f.time = 1700000000.0 + i * 0.002
    pcap = tmp_path / "vx.pcap"
    wrpcap(str(pcap), frames)
    rc, p = run_nd(procs, "nd-sniff", "-r", str(pcap), "-c", "DNSLookupChef", "--print", "-v")
    assert rc == 0, p.err
    assert "nd-sniff: 0 IP fragments made 0 datagrams; 2 tunnelled packets looked into" in p.err
    assert any(json.loads(line)["payload"].get("event") == "lookup" for line in p.out)
    rc, p = run_nd(procs, "nd-sniff", "-r", str(pcap), "-c", "DNSLookupChef", "--print",
                   "--no-tunnels", "-v")
    assert rc == 0 and not any("tunnelled" in line for line in p.err)
    assert not any(json.loads(line)["payload"].get("event") == "lookup" for line in p.out)
