"""The kitchen's fast path gives what full dissection gives, and batching loses nothing.

* A lazily decoded ``Packet`` reports the same addresses, ports, TCP fields, payload and
  layer names as scapy's full dissection, for every frame of every test capture, and
  touching those fields never builds the scapy packet.
* ``layer_shape`` (PacketCountChef's per-packet key) always stands for the same names as
  the full header decode, including on frames it leaves to the slow path.
* Dumplings going kitchen -> HubSender (batched) -> nd-hub -> eater arrive complete and in
  order, in JSON and in msgpack.
* The benchmark runner works end to end on a small synthetic capture.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from scapy.all import (ARP, DNS, DNSQR, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoRequest,
                       IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Raw)
from scapy.layers.l2 import CookedLinux
from scapy.packet import Padding

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.chefs.packetcount import PacketCountChef
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.capture.packet import (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, Packet, layer_shape,
                                         shape_names, tcp_flag_names)
from netdumplings.wire.sender import HubSender
from netdumplings.capture.sources import CaptureError, PcapSource

from conftest import DATA, cook

REPO = Path(__file__).resolve().parents[2]
CAPTURES = sorted(DATA.glob("*.pcap")) + sorted((DATA / "corrupt").glob("*.pcap*"))


def read_all(path: Path) -> list[Packet]:
    out: list[Packet] = []
    src = PcapSource(path)
    try:
        for p in src:
            out.append(p)
    except CaptureError:
        pass  # the damaged captures: what came before the damage is what we compare
    finally:
        src.close()
    return out


def scapy_names(pkt: Any) -> list[str]:
    names = []
    while pkt:
        names.append(pkt.name)
        pkt = pkt.payload
    return names


def check_against_scapy(p: Packet) -> None:
    """Every fast field of ``p`` against an independent full dissection of its bytes."""
    fields = (p.ip_src, p.ip_dst, p.sport, p.dport, p.l4, p.tcp_flags, p.tcp_seq,
              p.l4_payload, p.layer_names())
    assert not p.dissected, "fast fields must not build the scapy packet"
    full = Ether(p.data) if p.linktype == LINKTYPE_ETHERNET else CookedLinux(p.data)
    ip = full.getlayer(IP) or full.getlayer(IPv6)
    if ip is None:
        assert p.ip_src is None and p.l4 is None
    else:
        assert (p.ip_src, p.ip_dst) == (ip.src, ip.dst)
    if TCP in full:
        t = full[TCP]
        assert p.l4 == "tcp"
        assert (p.sport, p.dport, p.tcp_seq, p.tcp_ack) == (t.sport, t.dport, t.seq, t.ack)
        assert tcp_flag_names(p.tcp_flags) == [n for n, bit in
                                               (("FIN", 1), ("SYN", 2), ("RST", 4), ("PSH", 8),
                                                ("ACK", 16), ("URG", 32), ("ECE", 64),
                                                ("CWR", 128)) if int(t.flags) & bit]
        payload = t.payload
    elif UDP in full:
        u = full[UDP]
        assert p.l4 == "udp"
        assert (p.sport, p.dport) == (u.sport, u.dport)
        payload = u.payload
    else:
        payload = None
        assert p.l4 in (None, "icmp", "icmpv6")
    if payload is not None:
        raw = bytes(payload)
        if Padding in payload:
            raw = raw[:len(raw) - len(bytes(payload[Padding]))]
        assert p.l4_payload == raw
    assert p.layer_names() == [n for n in scapy_names(full) if n in p.layer_names()]
    assert fields[-1] == p.layer_names()
    # layer_shape stands for exactly these names
    assert list(shape_names(layer_shape(p.data, p.linktype))) == p.layer_names()


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_lazy_fields_equal_full_dissection(pcap: Path) -> None:
    packets = read_all(pcap)
    if pcap.name != "bad-magic.pcap":
        assert packets, f"{pcap.name}: no packets read"
    for p in packets:
        check_against_scapy(p)
    # scapy compatibility: asking a scapy question dissects, once, on demand
    if packets:
        p = packets[-1]
        assert p.haslayer("Ether") or p.haslayer("CookedLinux")
        assert p.dissected
        assert p.scapy is p.scapy


def test_lazy_packet_decodes_on_first_field_access_only() -> None:
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                  / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1234, dport=80, seq=7)
                  / Raw(b"GET /"))
    p = Packet(frame, 5.0)
    # nothing decoded yet: the header slots are empty
    assert "sport" not in {s for s in Packet.__slots__ if _slot_set(p, s)}
    assert p.time == 5.0 and p.wirelen == len(frame)
    assert p.sport == 1234  # first access decodes everything
    assert _slot_set(p, "ip_dst") and p.ip_dst == "192.0.2.2"
    assert p.l4_payload == b"GET /" and not p.dissected
    # an explicit decode gives the same values
    q = Packet(frame, 5.0)
    q.decode()
    assert [getattr(q, s) for s in FIELDS] == [getattr(p, s) for s in FIELDS]
    # scapy attributes still reach scapy (0.5 chefs)
    assert p.haslayer(TCP) and p[TCP].dport == 80 and p.dissected


FIELDS = ("eth_type", "l3_offset", "ip_src", "ip_dst", "ip_proto", "l4", "sport", "dport",
          "tcp_flags", "tcp_seq", "tcp_ack", "l4_offset", "l4_length", "ip_end", "vlan")


def _slot_set(p: Packet, name: str) -> bool:
    try:
        object.__getattribute__(p, name)
    except AttributeError:
        return False
    return True


E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
A4 = dict(src="192.0.2.1", dst="192.0.2.2")
A6 = dict(src="2001:db8::1", dst="2001:db8::2")
EDGE_FRAMES = [
    E / IP(**A4) / TCP(sport=5, dport=6) / Raw(b"x"),
    E / IP(**A4) / TCP(sport=5, dport=6, flags="S"),
    E / IP(**A4) / TCP(sport=5, dport=6, options=[("MSS", 1460), ("NOP", None)]) / Raw(b"y"),
    E / IP(**A4) / UDP(sport=5353, dport=5353) / DNS(qd=DNSQR(qname="a.local")),
    E / IP(**A4) / UDP(sport=40000, dport=53),                      # DNS port, no payload
    E / IP(**A4) / UDP(sport=1, dport=2) / Raw(b"ab"),
    E / IP(**A4) / ICMP() / Raw(b"x" * 20),
    E / IP(**A4) / ICMP(type=3) / Raw(b"x" * 20),
    E / IP(**A4) / ICMP(),
    E / IP(**A4, proto=47) / Raw(b"gre?"),
    E / IP(**A4, frag=10) / Raw(b"fragment"),
    E / IP(**A4, flags="MF") / UDP(sport=1, dport=53) / Raw(b"first"),
    E / IP(**A4, options=[b"\x01\x01\x01\x00"]) / TCP(sport=1, dport=2) / Raw(b"opt"),
    E / Dot1Q(vlan=5) / IP(**A4) / TCP(sport=5, dport=6),
    E / ARP(psrc="192.0.2.1", pdst="192.0.2.2"),
    E / IPv6(**A6) / TCP(sport=1, dport=2) / Raw(b"six"),
    E / IPv6(**A6) / UDP(sport=53, dport=3000) / DNS(qd=DNSQR(qname="b.example")),
    E / IPv6(**A6) / ICMPv6EchoRequest(),
    E / IPv6(**A6) / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2) / Raw(b"hbh"),
    E / IPv6(**A6) / IPv6ExtHdrFragment(offset=0) / UDP(sport=1, dport=2) / Raw(b"f0"),
    E / IPv6(**A6) / IPv6ExtHdrFragment(offset=5) / Raw(b"f5"),
    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x88CC) / Raw(b"lldp"),
]


def edge_frames() -> list[bytes]:
    out = []
    for f in EDGE_FRAMES:
        raw = bytes(f)
        out.append(raw)
        out.append(raw + b"\x00" * 12)             # Ethernet padding
        out.extend(raw[:n] for n in (10, 14, 20, 33, 34, 40, 53, 54, 60) if n < len(raw))
    return out


def test_layer_shape_matches_full_decode_on_edge_frames() -> None:
    frames = edge_frames()
    for raw in frames:
        p = Packet(raw, 1.0)
        assert list(shape_names(layer_shape(raw))) == p.layer_names(), raw.hex()
    # other link types go through the full decode
    sll = bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02" * 6 + b"\0\0",
                            proto=0x0800) / IP(**A4) / UDP(sport=1, dport=53) / DNS())
    p = Packet(sll, 1.0, linktype=LINKTYPE_LINUX_SLL)
    assert list(shape_names(layer_shape(sll, LINKTYPE_LINUX_SLL))) == p.layer_names()
    assert "DNS" in p.layer_names()


def test_packetcount_counts_equal_per_packet_names() -> None:
    """The shape-keyed counts equal counting every packet's layer names one by one."""
    frames = edge_frames() + [bytes(p.data) for p in read_all(DATA / "dns-queries.pcap")]
    chef = PacketCountChef()
    expect: dict[str, int] = {}
    for i, raw in enumerate(frames):
        assert chef.packet_handler(Packet(raw, float(i))) is None
        for name in Packet(raw, float(i)).layer_names():
            expect[name] = expect.get(name, 0) + 1
    assert chef.interval_handler()["packet_counts"] == expect
    assert expect["Ethernet"] == len(frames)


# -- kitchen -> HubSender (batched) -> nd-hub -> eater: nothing lost, nothing reordered ----


class SeqChef(DumplingChef):
    """One dumpling per packet, carrying the packet's index."""

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.n = 0

    def packet_handler(self, packet: Any) -> dict[str, Any]:
        self.n += 1
        return {"n": self.n, "port": packet.dport}


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_batched_kitchen_to_eater_loses_and_reorders_nothing(hub_process, encoding) -> None:
    import msgpack
    import orjson
    from websockets.asyncio.client import connect

    count = 20_000
    in_port, out_port, _hub = hub_process("--max-queue", str(count * 2))
    received: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def eat() -> None:
        async with connect(f"ws://127.0.0.1:{out_port}", max_size=None) as ws:
            await ws.send(json.dumps({"eater_name": "order", "protocol": "netdumplings/1",
                                      "batch": True, "encoding": encoding,
                                      "chefs": ["SeqChef"]}))
            welcome = orjson.loads(await ws.recv())
            assert welcome["batch"] is True and welcome["encoding"] == encoding
            ready.set()
            while len(received) < count:
                msg = await asyncio.wait_for(ws.recv(), 20)
                obj = msgpack.unpackb(msg, raw=False) if encoding == "msgpack" \
                    else orjson.loads(msg)
                received.extend(obj if isinstance(obj, list) else [obj])

    frame = bytes(E / IP(**A4) / UDP(sport=1, dport=4242) / Raw(b"q"))

    async def main() -> None:
        eater = asyncio.create_task(eat())
        await asyncio.wait_for(ready.wait(), 10)
        sender = HubSender("127.0.0.1", in_port, {"kitchen_name": "order", "chefs": ["SeqChef"]},
                           batch_max=500)

        def produce() -> bool:
            sender.start()
            assert sender.connected.wait(10)
            k = Kitchen("order", [SeqChef], sink=lambda d, b: sender.put(b), poke_interval=None)
            for i in range(count):
                k.process(Packet(frame, 1.0 + i))
            assert k.stats.dumplings == count
            return sender.close(timeout=30)

        flushed = await asyncio.to_thread(produce)
        assert flushed
        await asyncio.wait_for(eater, 30)

    asyncio.run(main())
    assert len(received) == count
    assert [d["payload"]["n"] for d in received] == list(range(1, count + 1))
    assert [d["metadata"]["sequence"] for d in received] == list(range(1, count + 1))
    assert {d["payload"]["port"] for d in received} == {4242}
    assert all(d["metadata"]["chef"] == "SeqChef" for d in received)


# -- the benchmark runner (smoke: tiny counts; speed is the benchmark's business) --------


def test_bench_runner_kitchen_smoke(tmp_path: Path) -> None:
    out = tmp_path / "kitchen.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "kitchen", "--packets", "3000",
                           "--sample", "200", "--tcp-packets", "2000", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = {r["name"]: r for r in result["kitchen"]["rows"]}
    pc = rows["kitchen: PacketCountChef"]
    assert pc["packets"] == 3000 and pc["pps"] > 0 and pc["baseline_pps"] > 0
    assert rows["kitchen: ByteCountChef (stream)"]["mb_per_s"] > 0
    assert "packets/s" in proc.stdout and "ratio" in proc.stdout


def test_synthetic_captures_are_well_formed(tmp_path: Path) -> None:
    """The CI fallback capture: every frame decodes, TCP streams reassemble."""
    sys.path.insert(0, str(REPO))
    try:
        from bench import synth
        from bench.kitchen import ByteCountChef
    finally:
        sys.path.remove(str(REPO))
    mixed = synth.write(tmp_path / "m.pcap", "mixed", 3000)
    names: set[str] = set()
    for p in read_all(mixed):
        check_against_scapy(p) if p.time < 1_700_000_000.02 else None
        names.update(p.layer_names())
    assert {"IP", "IPv6", "TCP", "UDP", "DNS", "ARP", "Raw"} <= names
    heavy = synth.write(tmp_path / "h.pcap", "tcp_heavy", 2000)
    k = Kitchen("t", [], poke_interval=None)
    chef = ByteCountChef(kitchen=k)
    for p in read_all(heavy):
        k.process(p)
    k.finish()
    assert chef.bytes > 1_000_000 and k.stats.gaps == 0


def _general_decode(raw: bytes, linktype: int = LINKTYPE_ETHERNET) -> list[Any]:
    q = Packet(raw, 1.0, linktype=linktype)
    q._decode_any()   # the decode that handles every frame, without the common-frame path
    return [getattr(q, s) for s in FIELDS]


def test_common_frame_decode_equals_general_decode() -> None:
    """``Packet.decode`` takes a shortcut for plain Ethernet/IP/TCP|UDP frames: it must
    give exactly the fields of the general decode, on every frame it takes or declines."""
    frames = edge_frames()
    for pcap in CAPTURES:
        frames.extend(p.data for p in read_all(pcap) if p.linktype == LINKTYPE_ETHERNET)
    taken = 0
    for raw in frames:
        p = Packet(raw, 1.0)
        taken += p._decode_common()
        p = Packet(raw, 1.0)
        p.decode()
        assert [getattr(p, s) for s in FIELDS] == _general_decode(raw), raw.hex()
    assert taken > len(frames) // 2   # the shortcut is really taken on most frames


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EDGE_FRAMES[:6] + EDGE_FRAMES[12:13] + EDGE_FRAMES[15:17]),
       st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
       st.integers(0, 120))
def test_common_frame_decode_equals_general_decode_on_damaged_headers(
        frame: Any, edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(bytes(frame) + b"payload-bytes" * 3)
    for pos, value in edits:   # lengths, header lengths, protocols, fragment bits ... lie
        if pos < len(raw):
            raw[pos] = value
    raw = bytes(raw[:max(cut, 14)])
    p = Packet(raw, 1.0)
    p.decode()
    assert [getattr(p, s) for s in FIELDS] == _general_decode(raw)


def test_bench_chefs_floor_replays_what_the_kitchen_makes(tmp_path: Path) -> None:
    """``bench.chefs --floor`` replays the kitchen's calls to the DNS and HTTP/1.1 chefs
    without a kitchen: the replay must make exactly the flow payloads those chefs make in a
    real kitchen over the same capture (including what flows yield at close), every time it
    runs (fresh per-flow state each run)."""
    sys.path.insert(0, str(REPO))
    try:
        from bench import synth
        from bench.chefs import floor
    finally:
        sys.path.remove(str(REPO))
    from chefs.dns import DNSLookupChef
    from chefs.http1 import Http1Chef

    mixed = synth.write(tmp_path / "m.pcap", "mixed", 3000)
    dumplings, _ = cook(mixed, [DNSLookupChef, Http1Chef])
    made = [d["metadata"]["chef"] for d in dumplings]
    assert made.count("DNSLookupChef") > 50 and made.count("Http1Chef") > 50
    made.remove("DNSLookupChef")   # the interval dumpling of finish(): no poke in a replay
    out = floor(mixed, None)
    assert out["packets"] == 3000
    assert out["payloads"] == len(made)
    assert out["payloads_DNSLookupChef"] == made.count("DNSLookupChef")
    assert out["payloads_Http1Chef"] == made.count("Http1Chef")
    assert 0 < out["ceiling_ratio"] and out["kitchen_seconds"] > 0
