"""TcpConnChef: per-packet flags and per-connection summaries against tshark."""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from netdumplings.chefs.tcpconn import TcpConnChef
from netdumplings.wire.dumpling import encode
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import Packet

DATA = Path(__file__).parent.parent / "data"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "captures"
# keep-alive HTTP (FIN), gRPC (FIN, one long connection), EPICS CA (many RST-ended circuits
# plus UDP the chef must ignore), HTTP/2 with large responses (kB-sized conversations)
CAPTURES = [SHARED / n for n in ("http1-keepalive.pcap", "grpc-calls.pcap", "epics-ca.pcap",
                                 "http2-multiplexed.pcap")]

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def capture(name: Path) -> Path:
    local = DATA / name.name
    if local.exists():
        return local
    if not name.exists():
        pytest.skip(f"{name} not available")
    return name


def run_chef(pcap: Path, **options) -> tuple[list[dict], list[dict]]:
    opts = {"TcpConnChef": options} if options else None
    packets, conns = [], []
    for d in read_dumplings(pcap, [TcpConnChef], chef_options=opts):
        p = d["payload"]
        encode(d)
        (packets if p["event"] == "packet" else conns).append(p)
    return packets, conns


def tshark(pcap: Path, *args: str) -> str:
    return subprocess.run(["tshark", "-r", str(pcap), *args], capture_output=True, text=True,
                          timeout=60, check=True).stdout


def tshark_fields(pcap: Path, *fields: str) -> list[list[str]]:
    args = ["-Y", "tcp", "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    return [line.split("|") for line in tshark(pcap, *args).splitlines() if line.strip()]


_UNITS = {"bytes": 1, "kB": 1000, "MB": 1000 ** 2}


def tshark_conversations(pcap: Path) -> dict[tuple[str, str], dict]:
    """``tshark -q -z conv,tcp``: per conversation (A, B) the frames and bytes each way,
    bytes as (value, unit) since tshark rounds large values to kB/MB."""
    out = {}
    pat = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+(\d+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\w+)"
                     r"\s+\d+\s+\d+\s+\w+\s+([\d.]+)\s+([\d.]+)")
    for line in tshark(pcap, "-q", "-z", "conv,tcp").splitlines():
        m = pat.match(line.strip())
        if m:
            a, b, f_ba, b_ba, u_ba, f_ab, b_ab, u_ab, _start, dur = m.groups()
            out[(a, b)] = {"frames_b_to_a": int(f_ba), "bytes_b_to_a": (int(b_ba), u_ba),
                           "frames_a_to_b": int(f_ab), "bytes_a_to_b": (int(b_ab), u_ab),
                           "duration": float(dur)}
    return out


def same_bytes(exact: int, shown: tuple[int, str]) -> bool:
    value, unit = shown
    scale = _UNITS[unit]
    return exact == value if scale == 1 else abs(exact / scale - value) <= 1


@needs_tshark
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_packet_flags_and_sizes_agree_with_tshark(pcap: Path) -> None:
    pcap = capture(pcap)
    packets, _ = run_chef(pcap)
    rows = tshark_fields(pcap, "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags",
                         "frame.len", "tcp.len", "tcp.seq_raw")
    assert len(packets) == len(rows) > 0
    names = {0x01: "FIN", 0x02: "SYN", 0x04: "RST", 0x08: "PSH", 0x10: "ACK"}
    for p, (src, sport, dst, dport, flags, flen, tlen, seq) in zip(packets, rows):
        assert p["src"] == f"{src}:{sport}" and p["dst"] == f"{dst}:{dport}"
        value = int(flags, 16)
        assert p["flags_value"] == value
        assert {n for bit, n in names.items() if value & bit} == \
            {n for n in p["flags"] if n in names.values()}
        assert p["size"] == int(flen) and p["payload_size"] == int(tlen)
        assert p["seq"] == int(seq)
        assert p["summary"].startswith(f"{p['src']} -> {p['dst']}  [")


@needs_tshark
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_connection_summaries_agree_with_tshark(pcap: Path) -> None:
    pcap = capture(pcap)
    _, conns = run_chef(pcap, packets=False)
    convs = tshark_conversations(pcap)
    assert len(conns) == len(convs) > 0
    # exact bytes per stream and direction, and which streams saw a RST
    exact: dict[tuple[str, str], int] = defaultdict(int)
    rst: set[frozenset] = set()
    for src, sport, dst, dport, flen, reset in tshark_fields(
            pcap, "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "frame.len",
            "tcp.flags.reset"):
        exact[(f"{src}:{sport}", f"{dst}:{dport}")] += int(flen)
        if reset in ("1", "True"):
            rst.add(frozenset((f"{src}:{sport}", f"{dst}:{dport}")))
    for c in conns:
        client, server = c["src"], c["dst"]
        conv = convs.get((client, server))
        if conv is not None:
            c2s_frames, s2c_frames = conv["frames_a_to_b"], conv["frames_b_to_a"]
            c2s_bytes, s2c_bytes = conv["bytes_a_to_b"], conv["bytes_b_to_a"]
        else:
            conv = convs[(server, client)]
            c2s_frames, s2c_frames = conv["frames_b_to_a"], conv["frames_a_to_b"]
            c2s_bytes, s2c_bytes = conv["bytes_b_to_a"], conv["bytes_a_to_b"]
        assert c["packets"] == {"client_to_server": c2s_frames, "server_to_client": s2c_frames}
        assert c["bytes"]["client_to_server"] == exact[(client, server)]
        assert c["bytes"]["server_to_client"] == exact[(server, client)]
        assert same_bytes(c["bytes"]["client_to_server"], c2s_bytes)
        assert same_bytes(c["bytes"]["server_to_client"], s2c_bytes)
        assert c["duration"] == pytest.approx(conv["duration"], abs=1e-3)
        assert c["ended"] == ("rst" if frozenset((client, server)) in rst else "fin")
        assert c["handshake_seen"] is True
        assert c["flow"]["client"] == client and c["flow"]["server"] == server
        assert c["summary"].startswith(f"{client} -> {server}  closed ({c['ended']})")


# -- behaviour on crafted packets ---------------------------------------------------------


def tcp_frame(src: tuple[str, int], dst: tuple[str, int], flags: int, seq: int, ack: int,
              payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return bytes(6) + bytes(6) + b"\x08\x00" + ip + tcp + payload


C, S = ("10.0.0.1", 40001), ("10.0.0.2", 7000)
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def handshake_and_close(t0: float, tail: list[tuple] | None = None) -> list[Packet]:
    seq = [
        (C, S, SYN, 100, 0, b""), (S, C, SYN | ACK, 500, 101, b""), (C, S, ACK, 101, 501, b""),
        (C, S, PSH | ACK, 101, 501, b"hello"), (S, C, ACK, 501, 106, b""),
        (C, S, FIN | ACK, 106, 501, b""), (S, C, FIN | ACK, 501, 107, b""),
    ] + (tail if tail is not None else [(C, S, ACK, 107, 502, b"")])
    return [Packet(tcp_frame(*p), t0 + i * 0.01) for i, p in enumerate(seq)]


def run_kitchen(frames: list[Packet], **options) -> list[dict]:
    out: list[dict] = []
    k = Kitchen("t", [TcpConnChef], sink=lambda d, b: out.append(json.loads(b)),
                poke_interval=None, chef_options={"TcpConnChef": options})
    for p in frames:
        k.process(p)
    k.finish()
    return [d["payload"] for d in out]


def test_trailing_ack_is_absorbed_and_no_phantom_connection() -> None:
    got = run_kitchen(handshake_and_close(1.0), packets=False)
    assert len(got) == 1
    (c,) = got
    assert c["ended"] == "fin" and c["trailing_packets"] == 1
    assert c["packets"] == {"client_to_server": 5, "server_to_client": 3}
    assert c["payload_bytes"] == {"client_to_server": 5, "server_to_client": 0}
    assert c["duration"] == pytest.approx(0.07)


def test_reused_four_tuple_and_linger_expiry() -> None:
    first = handshake_and_close(1.0)
    second = handshake_and_close(1.5, tail=[])   # same 4-tuple, new SYN: flushes the first
    # a later packet of another connection moves capture time past the second's linger
    late = [Packet(tcp_frame(("10.0.0.9", 5), S, SYN, 1, 0), 10.0)]
    got = run_kitchen(first + second + late, packets=False, linger=1.0)
    assert [(c["timestamp"], c["ended"], c["trailing_packets"]) for c in got] == [
        (pytest.approx(1.0), "fin", 1),
        (pytest.approx(1.5), "fin", 0),
        (pytest.approx(10.0), "end", 0),
    ]
    assert got[2]["src"] == "10.0.0.9:5" and got[2]["packets"]["client_to_server"] == 1


def test_rst_mid_stream_end_and_packets_option() -> None:
    pkts = [Packet(tcp_frame(C, S, PSH | ACK, 1000, 2000, b"data"), 1.0),
            Packet(tcp_frame(S, C, ACK, 2000, 1004), 1.1)]
    got = run_kitchen(pkts)
    per_packet = [g for g in got if g["event"] == "packet"]
    (conn,) = [g for g in got if g["event"] == "connection"]
    assert [p["flags"] for p in per_packet] == [["PSH", "ACK"], ["ACK"]]
    assert per_packet[0]["payload_size"] == 4 and per_packet[0]["size"] == 58
    assert conn["ended"] == "end" and conn["handshake_seen"] is False
    pkts.append(Packet(tcp_frame(C, S, RST, 1004, 0), 1.2))
    pkts.append(Packet(tcp_frame(C, S, RST, 1004, 0), 1.21))  # a second RST, absorbed
    got = run_kitchen(pkts, packets=False)
    (conn,) = got
    assert conn["ended"] == "rst" and conn["packets"]["client_to_server"] == 3


def test_chef_follows_every_port_and_ignores_udp() -> None:
    chef = TcpConnChef()
    assert chef.all_flows is True and chef.ports == frozenset()
    assert chef.detect(None, None, b"anything") is True
    udp = bytes(12) + b"\x08\x00" + struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, socket.inet_aton("10.0.0.1"),
        socket.inet_aton("10.0.0.2")) + struct.pack("!HHHH", 1, 2, 8, 0)
    assert list(chef.packet_handler(Packet(udp, 1.0))) == []


_ENDPOINTS = st.sampled_from([C, S, ("10.0.0.3", 443)])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_ENDPOINTS, _ENDPOINTS, st.integers(0, 255),
                          st.integers(0, 2**32 - 1), st.binary(max_size=20)),
                min_size=1, max_size=25))
def test_fuzz_random_tcp_packets(spec: list[tuple]) -> None:
    out: list[dict] = []
    k = Kitchen("fuzz", [TcpConnChef], sink=lambda d, b: out.append(json.loads(b)),
                poke_interval=None)
    for i, (src, dst, flags, seq, payload) in enumerate(spec):
        k.process(Packet(tcp_frame(src, dst, flags, seq, seq ^ 0xFFFF, payload), 1.0 + i * 0.5))
    k.finish()
    assert k.chef_errors == {}
    per_packet = [d for d in out if d["payload"]["event"] == "packet"]
    conns = [d["payload"] for d in out if d["payload"]["event"] == "connection"]
    assert len(per_packet) == len(spec)
    # every packet is counted in exactly one connection summary, or in none at all when
    # it only made a bare flow of trailing packets
    assert sum(sum(c["packets"].values()) for c in conns) <= len(spec)
