"""TcpConnChef's connections equal tshark's TCP conversations (issue 19, item 3).

Each connection tshark numbers (``tcp.stream``) is one TcpConnChef connection with the
same packets and TCP payload bytes each way (and frame bytes, for untunnelled ones):
connections seen only from the middle (keep-alives, a teardown), packets after the close
(the last ACK, RSTs answering late segments), TCP inside VXLAN and GRE counted packet by
packet, and payload sizes from the frame when it is shorter than its IP length. Checked
on the foreign captures that showed each difference (``tests/data/foreign``) and on
captures made here, both against tshark itself.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import conftest

from netdumplings.chefs.tcpconn import TcpConnChef
from netdumplings.kitchen.offline import read_dumplings

FOREIGN = Path(__file__).parent.parent / "data" / "foreign"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def _ep(ip: str, port: str | int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def tshark_streams(pcap: Path) -> Counter:
    """One item per tshark TCP stream: (sorted endpoints, then per endpoint in that order:
    packets sent, payload bytes sent, frame bytes sent (None when tunnelled))."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", "tcp && !icmp && !icmpv6", "-T", "fields",
         "-E", "occurrence=l", "-E", "separator=\t", "-e", "tcp.stream", "-e", "frame.len",
         "-e", "frame.protocols", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src",
         "-e", "ipv6.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.len"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    streams: dict[str, dict] = {}
    for line in out.splitlines():
        stream, flen, protos, s4, d4, s6, d6, sp, dp, tlen = line.split("\t")[:10]
        names = protos.split(":")
        ips = [n for n in names if n in ("ip", "ipv6")]
        src, dst = (s6, d6) if ips[-1] == "ipv6" else (s4, d4)
        st = streams.setdefault(stream, {"eps": (_ep(src, sp), _ep(dst, dp)),
                                         "n": Counter(), "pay": Counter(), "fb": Counter(),
                                         "tunnel": len(ips) > 1 or "mpls" in names})
        a = _ep(src, sp)
        st["n"][a] += 1
        st["pay"][a] += int(tlen or 0)
        st["fb"][a] += int(flen)
    items: Counter = Counter()
    for st in streams.values():
        ends = tuple(sorted(st["eps"]))
        items[(ends,) + tuple(
            (st["n"][e], st["pay"][e], None if st["tunnel"] else st["fb"][e]) for e in ends)] += 1
    return items


def chef_connections(pcap: Path, tunnelled: set | None = None,
                     poke_interval: float | None = None) -> Counter:
    items: Counter = Counter()
    for d in read_dumplings(pcap, [TcpConnChef], chef_options={"TcpConnChef": {"packets": False}},
                            poke_interval=poke_interval):
        p = d["payload"]
        if p.get("event") != "connection":
            continue
        c, s = p["src"], p["dst"]
        per = {c: "client_to_server", s: "server_to_client"}
        ends = tuple(sorted((c, s)))
        tun = tunnelled is not None and ends in tunnelled
        items[(ends,) + tuple(
            (p["packets"][per[e]], p["payload_bytes"][per[e]],
             None if tun else p["bytes"][per[e]]) for e in ends)] += 1
    return items


def assert_same_as_tshark(pcap: Path, poke_interval: float | None = None) -> Counter:
    expected = tshark_streams(pcap)
    tunnelled = {item[0] for item in expected if item[1][2] is None}
    got = chef_connections(pcap, tunnelled, poke_interval)
    assert got == expected, (f"only tshark: {expected - got}\nonly the project: "
                             f"{got - expected}")
    assert expected
    return got


# -- the foreign captures that showed each difference ---------------------------------------

@needs_tshark
@pytest.mark.parametrize("name", [
    "nd_http_ipv6.pcap",          # keep-alive-only connections (one ACK each way)
    "nd_vxlan.pcap",              # RSTs after the close, inside VXLAN over VLAN
    "zeek_gre_sample.pcap",       # the last ACK after the FINs, inside GRE
    "zeek_tcp_reassembly.pcap",   # frames shorter than their IP length
    "zeek_nflog_http.pcap",       # NFLOG link type
    "zeek_mixed_vlan_mpls.pcap",  # MPLS label stack, VLAN
])
@pytest.mark.parametrize("poke_interval", [None, 0.5], ids=["end-only", "poked"])
def test_foreign_capture_connections_equal_tshark_conversations(
        name: str, poke_interval: float | None) -> None:
    # poked every half second of capture time (as nd-sniff -r -p 0.5): a poke sends only
    # the summaries whose linger has passed, so the late retransmissions of
    # zeek_tcp_reassembly (3 s after the FINs) still count
    assert_same_as_tshark(FOREIGN / name, poke_interval)


@needs_tshark
def test_keepalive_only_connections_are_reported() -> None:
    got = assert_same_as_tshark(FOREIGN / "nd_http_ipv6.pcap")
    one_each_way = [k for k in got if k[1][:2] == (1, 0) and k[2][:2] == (1, 0)]
    assert len(one_each_way) == 6


# -- captures made here -------------------------------------------------------------------

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
C, S = ("10.0.0.1", 40001), ("10.0.0.2", 80)


def ip_tcp(src: tuple[str, int], dst: tuple[str, int], flags: int, seq: int, ack: int,
           payload: bytes = b"", ip_len_extra: int = 0) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload) + ip_len_extra
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + tcp + payload


def eth(payload: bytes, etype: int = 0x0800) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack("!H", etype) + payload


def outer(proto: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                     socket.inet_aton("192.168.0.1"), socket.inet_aton("192.168.0.2"))
    return eth(ip + payload)


def vxlan(inner_frame: bytes) -> bytes:
    vx = b"\x08\x00\x00\x00\x00\x00\x01\x00" + inner_frame
    return outer(17, struct.pack("!HHHH", 50000, 4789, 8 + len(vx), 0) + vx)


def geneve(inner_frame: bytes) -> bytes:
    gv = b"\x00\x00\x65\x58\x00\x00\x01\x00" + inner_frame
    return outer(17, struct.pack("!HHHH", 50000, 6081, 8 + len(gv), 0) + gv)


def gre(inner_ip: bytes) -> bytes:
    return outer(47, b"\x00\x00\x08\x00" + inner_ip)


WRAPS = {"ethernet": lambda ip: eth(ip), "vxlan": lambda ip: vxlan(eth(ip)),
         "geneve": lambda ip: geneve(eth(ip)), "gre": gre}


def write_pcap(path: Path, frames: list[tuple[float, bytes]], linktype: int = 1) -> Path:
    return conftest.write_pcap(path, linktype, [data for _, data in frames],
                               [ts for ts, _ in frames])


def conversation(tail: list[tuple]) -> list[tuple]:
    return [(C, S, SYN, 100, 0), (S, C, SYN | ACK, 500, 101), (C, S, ACK, 101, 501),
            (C, S, PSH | ACK, 101, 501, b"GET / HTTP/1.0\r\n\r\n"),
            (S, C, PSH | ACK, 501, 119, b"HTTP/1.0 200 OK\r\n\r\n"),
            (C, S, FIN | ACK, 119, 520), (S, C, FIN | ACK, 520, 120)] + tail


@needs_tshark
@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_packets_after_the_close_count_for_the_connection(tmp_path: Path, wrap: str) -> None:
    # the last ACK, then two RSTs 0.5 s later (a late segment answered), then a new
    # connection on the same ports (new SYN): two conversations for tshark and here
    tail = [(C, S, ACK, 120, 521), (S, C, RST, 521, 0), (S, C, RST, 521, 0)]
    again = [(C, S, SYN, 9000, 0), (S, C, SYN | ACK, 7000, 9001), (C, S, RST, 9001, 0)]
    frames, t = [], 1.0
    for spec in conversation(tail) + again:
        t += 0.5 if spec[2] == RST and spec[0] == S else 0.01
        frames.append((t, WRAPS[wrap](ip_tcp(*spec))))
    got = assert_same_as_tshark(write_pcap(tmp_path / "after-close.pcap", frames))
    assert sorted(k[1][0] + k[2][0] for k in got) == [3, 10]


@needs_tshark
@pytest.mark.parametrize("packets", [
    [(C, S, FIN | ACK, 119, 520), (S, C, FIN | ACK, 520, 120), (C, S, ACK, 120, 521)],
    [(S, C, RST, 520, 0)],
    [(C, S, ACK, 118, 520), (S, C, ACK, 520, 119)],       # a keep-alive and its answer
], ids=["teardown", "rst", "keep-alive"])
def test_connection_seen_only_from_the_middle_is_reported(tmp_path: Path,
                                                          packets: list[tuple]) -> None:
    frames = [(1.0 + i / 100, eth(ip_tcp(*spec))) for i, spec in enumerate(packets)]
    got = assert_same_as_tshark(write_pcap(tmp_path / "middle.pcap", frames))
    assert sum(got.values()) == 1


@needs_tshark
def test_payload_is_bounded_by_the_frame_not_the_ip_length(tmp_path: Path) -> None:
    # IP says 100 bytes more than the frame holds (as zeek's reassembly.pcap frames do)
    frames = [(1.0, eth(ip_tcp(C, S, SYN, 100, 0))), (1.01, eth(ip_tcp(S, C, SYN | ACK, 500, 101))),
              (1.02, eth(ip_tcp(C, S, PSH | ACK, 101, 501, b"x" * 40, ip_len_extra=100)))]
    got = assert_same_as_tshark(write_pcap(tmp_path / "short.pcap", frames))
    ((ends, a, b),) = got
    assert {a[1], b[1]} == {40, 0}
