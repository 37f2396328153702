"""Every common link type decoded down to IP, as tshark decodes it (issue 19, item 5).

Frames of each link type are made here (byte layouts from the LINKTYPE list, RFC 1662,
RFC 3032, 802.11 and radiotap) and also read by tshark: the addresses and ports the
kitchen decodes must be tshark's. The foreign captures that showed the gaps (NFLOG,
Apple PKTAP, MPLS) are decoded by the chefs. An unknown link type is said once.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import write_pcap
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from netdumplings.capture.linktypes import DECODED, describe, network_layer
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import Packet
from netdumplings.kitchen.registry import bundled_chefs
from netdumplings.capture.sources import PcapSource

FOREIGN = Path(__file__).parent.parent / "data" / "foreign"
DATA = Path(__file__).parent.parent / "data"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "captures"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

IP4 = bytes(IP(src="10.1.1.1", dst="10.2.2.2") / UDP(sport=40000, dport=53)
            / DNS(id=7, rd=1, qd=DNSQR(qname="example.com")))
IP6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40001, dport=80, flags="S"))
MACS = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
SNAP = b"\xaa\xaa\x03\x00\x00\x00"


def ether(etype: int, body: bytes) -> bytes:
    return MACS + struct.pack("!H", etype) + body


def snap(etype: int, body: bytes) -> bytes:
    llc = SNAP + struct.pack("!H", etype) + body
    return MACS + struct.pack("!H", len(llc)) + llc


def mpls(labels: list[int], body: bytes) -> bytes:
    out = b""
    for i, label in enumerate(labels):
        out += struct.pack("!I", label << 12 | (1 << 8 if i == len(labels) - 1 else 0) | 64)
    return out + body


def nflog(ip: bytes, family: int = 2) -> bytes:
    hdr_tlv = struct.pack("<HH", 8, 1) + struct.pack("!HBx", 0x0800, 3)   # packet header
    pay = struct.pack("<HH", 4 + len(ip), 9) + ip
    return bytes([family, 0, 0, 0]) + hdr_tlv + pay + b"\0" * (-len(pay) % 4)


def wifi(body: bytes, qos: bool = False) -> bytes:
    fc = b"\x88\x01" if qos else b"\x08\x01"                       # data / QoS data, to-DS
    hdr = fc + b"\0\0" + MACS + b"\x02\0\0\0\0\x03" + b"\0\0"
    return hdr + (b"\0\0" if qos else b"") + body


def radiotap(frame: bytes) -> bytes:
    # version 0, length 9, present: flags (bit 1); flags 0x10: FCS at the end of the frame
    return struct.pack("<BBHIB", 0, 0, 9, 0x02, 0x10) + frame + b"\xde\xad\xbe\xef"


def pktap(frame: bytes, dlt: int = 1) -> bytes:
    head = struct.pack("<III", 108, 1, dlt) + b"en0".ljust(24, b"\0") + bytes(72)
    return head + frame


def pflog(ip: bytes, family: int) -> bytes:
    # length 61 (the packet starts 64 bytes in), af, action, reason, ifname, ruleset...
    head = struct.pack("!BBBB16s16sIIiiiiB3x", 61, family, 0, 0, b"em0", b"", 1, 0, -1, -1,
                       -1, -1, 1)
    return head.ljust(64, b"\0") + ip


#: (name, linktype, frame, (src ip, dst ip, sport, dport))
V4 = ("10.1.1.1", "10.2.2.2", 40000, 53)
V6 = ("2001:db8::1", "2001:db8::2", 40001, 80)
FRAMES = [
    ("llc-snap", 1, snap(0x0800, IP4), V4),
    ("mpls-2-labels", 1, ether(0x8847, mpls([16, 17], IP4)), V4),
    ("mpls-ipv6", 1, ether(0x8847, mpls([100], IP6)), V6),
    ("mpls-pseudowire", 1, ether(0x8847, mpls([20, 21], b"\0\x1b\0\0\0\x02" + MACS[6:]
                                                     + b"\x08\x00" + IP4)), V4),
    ("qinq", 1, MACS + b"\x88\xa8\x00\x0a\x81\x00\x00\x14\x08\x00" + IP4, V4),
    ("pppoe", 1, ether(0x8864, b"\x11\x00\x00\x01" + struct.pack("!H", 2 + len(IP4))
                       + b"\x00\x21" + IP4), V4),
    ("ppp", 9, b"\xff\x03\x00\x21" + IP4, V4),
    ("ppp-compressed", 9, b"\x21" + IP4, V4),
    ("ppp-ipv6", 9, b"\xff\x03\x00\x57" + IP6, V6),
    ("ppp-hdlc", 50, b"\xff\x03\x00\x21" + IP4, V4),
    ("ppp-hdlc-cisco", 50, b"\x0f\x00\x08\x00" + IP4, V4),
    ("c-hdlc", 104, b"\x0f\x00\x08\x00" + IP4, V4),
    ("c-hdlc-ipv6", 104, b"\x8f\x00\x86\xdd" + IP6, V6),
    ("ppp-with-dir", 204, b"\x01\xff\x03\x00\x21" + IP4, V4),
    ("802.11", 105, wifi(SNAP + b"\x08\x00" + IP4), V4),
    ("802.11-qos", 105, wifi(SNAP + b"\x86\xdd" + IP6, qos=True), V6),
    ("radiotap", 127, radiotap(wifi(SNAP + b"\x08\x00" + IP4)), V4),
    ("nflog", 239, nflog(IP4), V4),
    ("nflog-ipv6", 239, nflog(IP6, family=10), V6),
    ("pktap", 258, pktap(ether(0x0800, IP4)), V4),
    ("ppp-ether", 51, b"\x11\x00\x00\x01" + struct.pack("!H", 2 + len(IP4)) + b"\x00\x21"
     + IP4, V4),
    ("c-hdlc-with-dir", 205, b"\x00\x0f\x00\x08\x00" + IP4, V4),
    ("ppi-802.11", 192, struct.pack("<BBHI", 0, 0, 8, 105) + wifi(SNAP + b"\x08\x00" + IP4), V4),
    ("sll-llc-snap", 113, struct.pack("!HHH8sH", 0, 1, 6, MACS[6:] + b"\0\0", 4) + SNAP
     + b"\x08\x00" + IP4, V4),
    ("pflog", 117, pflog(IP4, 2), V4),
    ("pflog-ipv6", 117, pflog(IP6, 24), V6),
]


@pytest.mark.parametrize("name,linktype,frame,want", FRAMES, ids=[f[0] for f in FRAMES])
def test_frame_decodes_to_ip_and_ports(name: str, linktype: int, frame: bytes, want: tuple) -> None:
    p = Packet(frame, 1.0, linktype=linktype)
    assert (p.ip_src, p.ip_dst, p.sport, p.dport) == want
    assert linktype in DECODED


#: tshark tells an MPLS Ethernet pseudowire with a control word from one without by its
#: manufacturer (OUI) database; here by the EtherType (see linktypes): not compared.
#: tshark 4.0 does not read C_HDLC_WITH_DIR (205) files at all.
TSHARK_FRAMES = [f for f in FRAMES if not f[0].startswith("mpls-pseudowire")
                 and f[1] != 205]


@needs_tshark
@pytest.mark.parametrize("name,linktype,frame,want", TSHARK_FRAMES,
                         ids=[f[0] for f in TSHARK_FRAMES])
def test_tshark_reads_the_same_addresses(tmp_path: Path, name: str, linktype: int,
                                         frame: bytes, want: tuple) -> None:
    pcap = write_pcap(tmp_path / f"{name}.pcap", linktype, [frame])
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "occurrence=l", "-E",
         "separator=|", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
         "-e", "udp.srcport", "-e", "udp.dstport", "-e", "tcp.srcport", "-e", "tcp.dstport"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    s4, d4, s6, d6, us, ud, ts, td = out.split("|")
    theirs = (s4 or s6, d4 or d6, int(us or ts), int(ud or td))
    assert theirs == want
    (ours,) = list(PcapSource(pcap))
    assert (ours.ip_src, ours.ip_dst, ours.sport, ours.dport) == theirs


def test_dns_chef_decodes_a_query_on_every_link_type(tmp_path: Path) -> None:
    for name, linktype, frame, want in FRAMES:
        if want != V4:
            continue
        pcap = write_pcap(tmp_path / f"{name}.pcap", linktype, [frame])
        got = [d["payload"] for d in read_dumplings(pcap, ["DNSLookupChef"])
               if "event" in d["payload"]]
        assert [(p["event"], p["name"].rstrip(".")) for p in got] == \
            [("unanswered", "example.com")], name


def test_mpls_pseudowire_with_control_word() -> None:
    # tshark takes the control word for the start of the Ethernet header (and decodes no
    # IP); the EtherType 16 bytes in shows where the frame starts
    frame = ether(0x8847, mpls([20, 21], b"\0\0\0\0" + ether(0x0800, IP4)))
    p = Packet(frame, 1.0)
    assert (p.ip_src, p.ip_dst, p.sport, p.dport) == V4


def test_not_ip_frames_give_no_network_layer() -> None:
    beacon = b"\x80\x00" + bytes(22) + bytes(12)          # 802.11 management frame
    protected = b"\x08\x41" + bytes(22) + SNAP + b"\x08\x00" + IP4
    stp = MACS + struct.pack("!H", 38) + b"\x42\x42\x03" + bytes(35)
    for data, lt in ((beacon, 105), (protected, 105), (stp, 1), (b"\x02\x00" + bytes(40), 147)):
        assert network_layer(data, lt)[0] is None
        assert Packet(data, 1.0, linktype=lt).ip_src is None


# -- the foreign captures -----------------------------------------------------------------

def test_nflog_capture_gives_its_http_transaction() -> None:
    got = [d["payload"] for d in read_dumplings(FOREIGN / "zeek_nflog_http.pcap", ["Http1Chef"])
           if d["payload"].get("event") == "transaction"]
    assert [(p["method"], p["path"], p["status"]) for p in got] == [("GET", "/", 200)]
    assert got[0]["flow"]["server"] == "93.184.216.34:80"


def test_pktap_capture_gives_its_dns_query() -> None:
    got = [d["payload"] for d in read_dumplings(FOREIGN / "td_linktype_pktap.pcap",
                                                ["DNSLookupChef"]) if "event" in d["payload"]]
    assert [(p["event"], p["name"].rstrip("."), p["flow"]["server"]) for p in got] == \
        [("unanswered", "in.m.yahoo.com", "10.32.100.15:53")]


@needs_tshark
def test_mpls_capture_decodes_every_tcp_packet_as_tshark() -> None:
    pcap = FOREIGN / "zeek_mixed_vlan_mpls.pcap"
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=|",
                          "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                          "-e", "tcp.len"], capture_output=True, text=True, check=True).stdout
    theirs = [tuple(line.split("|")) for line in out.splitlines()]
    ours = [(p.ip_src, str(p.sport), p.ip_dst, str(p.dport), str(p.l4_length))
            for p in PcapSource(pcap)]
    assert ours == theirs
    assert sum(1 for p in PcapSource(pcap) if p.data[12:14] == b"\x88\x47") == 11


def test_unknown_link_type_is_said_once_with_name_and_number(tmp_path: Path, caplog) -> None:
    pcap = write_pcap(tmp_path / "user0.pcap", 147, [b"\x01\x02\x03\x04"] * 3)
    with caplog.at_level(logging.WARNING, logger="netdumplings.sources"):
        got = list(read_dumplings(pcap, ["PacketCountChef", "DNSLookupChef"]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "USER0 (147)" in warnings[0] and "not decoded" in warnings[0]
    assert got   # the packets still reach packet chefs (counted)
    assert describe(239) == "NFLOG (239)" and describe(1) == "ETHERNET (1)"


def test_known_link_types_are_not_warned_about(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="netdumplings.sources"):
        for _, linktype, frame, _ in FRAMES:
            list(PcapSource(write_pcap(tmp_path / "x.pcap", linktype, [frame])))
    assert not caplog.records


@pytest.mark.parametrize("pcap", sorted(FOREIGN.glob("*.pcap*")) + sorted(DATA.glob("*.pcap")),
                         ids=lambda p: p.name)
def test_no_chef_raises_on_the_captures(pcap: Path) -> None:
    from conftest import cook
    chefs = [c for c in bundled_chefs().values()]
    _, kitchen = cook(pcap, chefs)
    assert kitchen.chef_errors == {}


# -- damaged frames -----------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(DECODED)), st.binary(max_size=120),
       st.sampled_from([f[2] for f in FRAMES]), st.integers(0, 120))
def test_damaged_frames_never_raise_out_of_the_decode(linktype: int, junk: bytes,
                                                      good: bytes, cut: int) -> None:
    # random bytes, and real frames cut short or with bytes flipped: the decode keeps
    # what it could read; nothing escapes to the chefs but absent fields
    for data in (junk, good[:cut], bytes(b ^ 0xFF for b in good[:cut]) + good[cut:]):
        p = Packet(data, 1.0, linktype=linktype)
        p.decode()
        assert p.l4 in (None, "tcp", "udp", "icmp", "icmpv6")
        assert p.l4_length >= 0
        p.layer_names()


def test_nd_sniff_says_the_unknown_link_type_once_on_stderr(tmp_path: Path) -> None:
    from conftest import nd_command
    pcap = write_pcap(tmp_path / "user0.pcap", 147, [b"\x01\x02\x03\x04"] * 5)
    r = subprocess.run(nd_command("nd-sniff") + ["-r", str(pcap), "--print", "-c",
                                                 "PacketCountChef"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "link type" in line]
    assert len(said) == 1 and "USER0 (147)" in said[0]
    assert "5 packets" in r.stderr


_SHARED_CAPTURES = (sorted(SHARED.glob("*.pcap*")) + sorted((SHARED / "foreign").glob("*.pcap*"))
                    if SHARED.is_dir() else [])


@pytest.mark.skipif(not _SHARED_CAPTURES, reason="../shared/captures is not beside the clone")
def test_no_chef_raises_on_any_shared_capture() -> None:
    """Issue 19: no capture in ../shared/captures (foreign ones included) makes any bundled
    chef raise; one test over all of them (about 50 small files)."""
    from conftest import cook
    chefs = list(bundled_chefs().values())
    raised = {}
    for pcap in _SHARED_CAPTURES:
        dumplings, kitchen = cook(pcap, chefs)
        if kitchen.chef_errors:
            raised[pcap.name] = kitchen.chef_errors
        assert kitchen.stats.packets > 0, pcap.name
    assert not raised, raised
