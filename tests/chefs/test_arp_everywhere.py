"""ARP wherever tshark finds it: 802.2 LLC/SNAP frames, 802.11, inside tunnels (issue 19,
item 4). Packet chefs see the packets inside VXLAN, Geneve and GRE (``packet.tunnel``
says which) unless the kitchen is told not to look into tunnels (``--no-tunnels``)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import write_pcap

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.chefs.arp import ARPChef
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import Packet
from netdumplings.capture.sources import PcapSource

FOREIGN = Path(__file__).parent.parent / "data" / "foreign"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def arp_body(op: int, smac: bytes, sip: str, tmac: bytes, tip: str) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + smac + socket.inet_aton(sip) + \
        tmac + socket.inet_aton(tip)


REQUEST = arp_body(1, MAC_A, "10.9.0.1", bytes(6), "10.9.0.2")
REPLY = arp_body(2, MAC_B, "10.9.0.2", MAC_A, "10.9.0.1")
WANT = [(1, "02:00:00:00:00:01", "10.9.0.1", "00:00:00:00:00:00", "10.9.0.2"),
        (2, "02:00:00:00:00:02", "10.9.0.2", "02:00:00:00:00:01", "10.9.0.1")]


def ether2(body: bytes) -> bytes:
    return b"\xff" * 6 + MAC_A + b"\x08\x06" + body


def snap(body: bytes) -> bytes:
    llc = b"\xaa\xaa\x03\x00\x00\x00\x08\x06" + body
    return b"\xff" * 6 + MAC_A + struct.pack("!H", len(llc)) + llc


def wifi(body: bytes) -> bytes:
    return b"\x08\x02\0\0" + b"\xff" * 6 + MAC_B + MAC_A + b"\0\0" + \
        b"\xaa\xaa\x03\x00\x00\x00\x08\x06" + body


def outer_ip(proto: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                     socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.2"))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + payload


def udp(dport: int, payload: bytes) -> bytes:
    return outer_ip(17, struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload)


def in_vxlan(frame: bytes) -> bytes:
    return udp(4789, b"\x08\0\0\0\0\0\x2a\0" + frame)


def in_geneve(frame: bytes) -> bytes:
    return udp(6081, b"\x00\x00\x65\x58\0\0\x2a\0" + frame)


def in_gre(frame: bytes) -> bytes:
    return outer_ip(47, b"\x00\x00\x65\x58" + frame)


def arp_items(pcap: Path, **kitchen) -> list[dict]:
    return [d["payload"] for d in read_dumplings(pcap, [ARPChef], **kitchen)
            if "opcode" in d["payload"]]


def as_items(payloads: list[dict]) -> list[tuple]:
    return [(p["opcode"], p["sender_mac"], p["sender_ip"], p["target_mac"], p["target_ip"])
            for p in payloads]


def tshark_arp(pcap: Path) -> list[tuple]:
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "arp", "-T", "fields",
                          "-E", "separator=|", "-e", "arp.opcode", "-e", "arp.src.hw_mac",
                          "-e", "arp.src.proto_ipv4", "-e", "arp.dst.hw_mac",
                          "-e", "arp.dst.proto_ipv4"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [(int(f[0]), *f[1:]) for f in (line.split("|") for line in out.splitlines())]


# -- the foreign captures that showed the gaps ---------------------------------------------

@needs_tshark
def test_snap_arp_capture_as_tshark() -> None:
    pcap = FOREIGN / "zeek_snap_arp.pcapng"
    got = arp_items(pcap)
    assert as_items(got) == tshark_arp(pcap)
    assert len(got) == 4 and all("tunnel" not in p for p in got)


@needs_tshark
def test_vxlan_arp_capture_as_tshark() -> None:
    pcap = FOREIGN / "sv_vxlan_arp.pcap"
    got = arp_items(pcap)
    assert as_items(got) == tshark_arp(pcap)
    assert len(got) == 2
    assert [p["tunnel"] for p in got] == ["vxlan", "vxlan"]
    assert got[0]["summary"].endswith("(in vxlan)")


def test_no_tunnels_keeps_packet_chefs_to_the_captured_packets() -> None:
    assert arp_items(FOREIGN / "sv_vxlan_arp.pcap", decapsulate=False) == []


# -- frames made here ----------------------------------------------------------------------

CASES = [
    ("ethernet-ii", 1, ether2, None),
    ("llc-snap", 1, snap, None),
    ("802.11", 105, wifi, None),
    ("vxlan", 1, lambda b: in_vxlan(ether2(b)), "vxlan"),
    ("geneve", 1, lambda b: in_geneve(ether2(b)), "geneve"),
    ("gre", 1, lambda b: in_gre(ether2(b)), "gre"),
    ("snap-in-vxlan", 1, lambda b: in_vxlan(snap(b)), "vxlan"),
    ("vxlan-in-gre", 1, lambda b: in_gre(in_vxlan(ether2(b))), "gre/vxlan"),
]


@needs_tshark
@pytest.mark.parametrize("name,linktype,wrap,tunnel", CASES, ids=[c[0] for c in CASES])
def test_arp_found_as_tshark_finds_it(tmp_path: Path, name: str, linktype: int, wrap,
                                      tunnel: str | None) -> None:
    pcap = write_pcap(tmp_path / f"{name}.pcap", linktype, [wrap(REQUEST), wrap(REPLY)])
    got = arp_items(pcap)
    assert as_items(got) == WANT == tshark_arp(pcap)
    assert [p.get("tunnel") for p in got] == [tunnel, tunnel]


class TunnelSeer(DumplingChef):
    """Records what a packet chef is given: each packet's tunnel and addresses."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple] = []

    def packet_handler(self, packet):
        self.seen.append((packet.tunnel, packet.ip_src, packet.eth_type))


@pytest.mark.parametrize("decapsulate", [True, False])
def test_packet_chefs_see_the_inner_packet_after_the_outer(tmp_path: Path,
                                                            decapsulate: bool) -> None:
    pcap = write_pcap(tmp_path / "v.pcap", 1, [in_vxlan(ether2(REQUEST))])
    chef = TunnelSeer()
    kitchen = Kitchen("t", [chef], poke_interval=None, decapsulate=decapsulate)
    for p in PcapSource(pcap):
        kitchen.process(p)
    outer = (None, "192.0.2.1", 0x0800)
    assert chef.seen == ([outer, ("vxlan", None, 0x0806)] if decapsulate else [outer])


def test_tunnelled_packet_keeps_the_nanosecond_time() -> None:
    from netdumplings.capture.packet import NsPacket
    chef = TunnelSeer()
    seen: list = []
    chef.packet_handler = lambda p: seen.append(p)   # type: ignore[method-assign]
    kitchen = Kitchen("t", [chef], poke_interval=None)
    kitchen.process(NsPacket(in_vxlan(ether2(REQUEST)), 1_700_000_000_123_456_789))
    assert [p.tunnel for p in seen] == [None, "vxlan"]
    assert seen[1].time_ns == 1_700_000_000_123_456_789


def test_packet_count_chef_counts_captured_frames_only(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "v.pcap", 1, [in_vxlan(ether2(REQUEST))])
    (last,) = [d["payload"] for d in read_dumplings(pcap, ["PacketCountChef"])][-1:]
    assert last["packet_counts"].get("ARP", 0) == 0 and last["packet_counts"]["UDP"] == 1
    assert Packet(ether2(REQUEST), 1.0).tunnel is None


def test_packet_forward_chef_ships_only_the_captured_frames() -> None:
    pcap = FOREIGN / "sv_vxlan_arp.pcap"
    got = [d["payload"] for d in read_dumplings(pcap, ["PacketForwardChef"])]
    frames = [f for p in got for f in p["packets"]]
    assert len(frames) == len(list(PcapSource(pcap))) == 2
