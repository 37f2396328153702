"""PacketCountChef: its per-layer counts agree with scapy's full dissection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from scapy.all import (ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoRequest,
                       IPv6, Raw)
from scapy.utils import RawPcapReader

from netdumplings.chefs.packetcount import PacketCountChef
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import Packet

DATA = Path(__file__).parent.parent / "data"
# Every capture that travels with the tests (real peers: ARP, DNS, CA, HTTP, gRPC, ZMTP...).
CAPTURES = sorted(DATA.glob("*.pcap"))
assert len(CAPTURES) >= 20, f"tests/data lost its captures: {CAPTURES}"


def scapy_names(frame: bytes) -> list[str]:
    pkt, names = Ether(frame), []
    while pkt:
        names.append(pkt.name)
        pkt = pkt.payload
    return names


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_counts_agree_with_scapy(pcap: Path) -> None:
    dumplings = list(read_dumplings(pcap, [PacketCountChef]))
    # a packet-only chef that reports on intervals: exactly the final poke's dumpling
    assert [d["metadata"]["driver"] for d in dumplings] == ["interval"]
    ours = dumplings[0]["payload"]["packet_counts"]
    theirs: Counter[str] = Counter()
    frames = 0
    for data, _meta in RawPcapReader(str(pcap)):
        frames += 1
        theirs.update(scapy_names(data))
    assert ours["Ethernet"] == frames
    assert ours == {name: theirs[name] for name in ours}
    # and nothing scapy found among the layers we name is missing from our counts
    named = {"Ethernet", "ARP", "IP", "IPv6", "TCP", "UDP", "ICMP", "DNS", "Raw", "Padding"}
    assert {n for n in theirs if n in named} == set(ours)


# explicit MACs: a bare Ether() makes scapy resolve the destination (slow, needs a network)
E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
FRAMES = [
    E / IPv6(src="::1", dst="::1") / TCP(sport=40000, dport=80) / Raw(b"hi"),
    E / IPv6(src="::1", dst="::1") / UDP(sport=40000, dport=53) / DNS(qd=DNSQR(qname="a.example")),
    E / IP(src="192.0.2.1", dst="192.0.2.2") / ICMP() / Raw(b"x" * 20),
    E / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / Raw(b"ab"),
    E / Dot1Q(vlan=5) / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=5, dport=6),
    E / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=5, dport=6, flags="S"),
    E / ARP(psrc="192.0.2.1", pdst="192.0.2.2"),
    E / IPv6(src="::1", dst="::1") / ICMPv6EchoRequest(),
]


def test_crafted_frames_and_padding_agree_with_scapy() -> None:
    chef = PacketCountChef()
    theirs: Counter[str] = Counter()
    raw_frames = [bytes(f) for f in FRAMES]
    raw_frames.append(bytes(FRAMES[3]) + b"\x00" * 16)  # Ethernet minimum-size padding
    for i, raw in enumerate(raw_frames):
        assert chef.packet_handler(Packet(raw, float(i))) is None
        theirs.update(scapy_names(raw))
    ours = chef.interval_handler()["packet_counts"]
    assert ours == {name: theirs[name] for name in ours}
    assert ours["Padding"] == 1 and ours["IPv6"] == 3 and ours["802.1Q"] == 1


def test_counts_are_cumulative_like_0_5() -> None:
    chef = PacketCountChef()
    frame = bytes(FRAMES[5])
    chef.packet_handler(Packet(frame, 1.0))
    first = chef.interval_handler()
    chef.packet_handler(Packet(frame, 2.0))
    second = chef.interval_handler()
    assert first == {"packet_counts": {"Ethernet": 1, "IP": 1, "TCP": 1}}
    assert second == {"packet_counts": {"Ethernet": 2, "IP": 2, "TCP": 2}}
    first["packet_counts"]["TCP"] = 99  # a payload handed out is not the chef's own state
    assert chef.interval_handler()["packet_counts"]["TCP"] == 2
