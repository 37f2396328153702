"""The reader's split of a capture between workers (netdumplings.kitchen.shard) and the counters of
packets dropped before any socket (netdumplings.capture.ifdrops)."""

from __future__ import annotations

import struct
from pathlib import Path

from netdumplings.capture.ifdrops import backlog_drops, interface_counters
from netdumplings.capture.packet import Packet
from netdumplings.kitchen.shard import Sharder


def frame(src: str, dst: str, proto: int, sport: int, dport: int, *, ident: int = 1,
          frag: int = 0, payload: bytes = b"data") -> bytes:
    l4 = struct.pack("!HH", sport, dport) + (b"\x00" * 16 if proto == 6 else
                                               struct.pack("!HH", 8 + len(payload), 0))
    body = l4 + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, proto, 0,
                     bytes(int(x) for x in src.split(".")),
                     bytes(int(x) for x in dst.split("."))) + body
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def pkt(data: bytes) -> Packet:
    return Packet(data, 1.0)


def test_both_directions_of_a_flow_go_to_one_worker() -> None:
    s = Sharder(7)
    for sport in range(1000, 1200):
        there = s.route(pkt(frame("10.0.0.1", "10.0.0.2", 6, sport, 80)))
        back = s.route(pkt(frame("10.0.0.2", "10.0.0.1", 6, 80, sport)))
        assert there == back
    spread = {s.route(pkt(frame("10.0.0.1", "10.0.0.2", 6, p, 80))) for p in range(1000, 1200)}
    assert len(spread) == 7


def test_udp_goes_by_the_client_endpoint() -> None:
    """A broadcast search and its unicast reply (another 4-tuple) meet in one worker."""
    s = Sharder(5)
    for port in range(40000, 40100):
        search = s.route(pkt(frame("10.0.0.9", "10.0.0.255", 17, port, 5064)))
        reply = s.route(pkt(frame("10.0.0.3", "10.0.0.9", 17, 5064, port)))
        assert search == reply


def arp(op: int, sender_ip: str, target_ip: str, sender_mac: bytes = b"\x02" * 6,
        vlan: bool = False) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac,
                       bytes(int(x) for x in sender_ip.split(".")), b"\x00" * 6,
                       bytes(int(x) for x in target_ip.split(".")))
    tag = b"\x81\x00\x00\x07" if vlan else b""
    return b"\xff" * 6 + sender_mac + tag + b"\x08\x06" + body


def test_non_ip_frames_go_by_ethertype() -> None:
    s = Sharder(4)
    lldp = b"\x01\x80\xc2\x00\x00\x0e" + b"\x02" * 6 + b"\x88\xcc"
    assert len({s.route(pkt(lldp + bytes([i]) * 40)) for i in range(50)}) == 1


def test_arp_goes_by_the_address_it_announces() -> None:
    """Every ARP packet about one address (requests from it, its replies, a MAC change,
    a probe for it) in one worker, tagged or not; different addresses spread."""
    s = Sharder(4)
    for i in range(1, 60):
        ip = f"10.9.0.{i}"
        about = {s.route(pkt(arp(1, ip, "10.9.0.254"))),
                 s.route(pkt(arp(2, ip, "10.9.0.77", sender_mac=b"\x06" * 6))),
                 s.route(pkt(arp(1, "0.0.0.0", ip))),   # a probe for it
                 s.route(pkt(arp(1, ip, "10.9.0.254", vlan=True)))}
        assert len(about) == 1, ip
    assert len({s.route(pkt(arp(1, f"10.9.1.{i}", "10.9.1.1"))) for i in range(1, 60)}) == 4


def test_the_split_is_the_same_in_every_run() -> None:
    """The keys are numbers: no per-process salt (PYTHONHASHSEED) moves a flow."""
    import ast
    import subprocess
    import sys
    code = ("from netdumplings.kitchen.shard import Sharder\n"
            "from netdumplings.packet import Packet\n"
            "import test_shard as t\n"
            "s = Sharder(5)\n"
            "print([s.route(Packet(f, 1.0)) for f in ["
            "t.frame('10.0.0.1', '10.0.0.2', 6, 4000 + i, 80) for i in range(20)] + ["
            "t.arp(1, f'10.0.0.{i}', '10.0.0.1') for i in range(1, 20)] + ["
            "t.frame('10.0.0.1', '10.0.0.2', 17, 53, 53)]])")
    here = str(Path(__file__).parent)
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": str(seed), "PYTHONPATH": here},
                           check=True).stdout for seed in (1, 2, 3)}
    assert len(runs) == 1 and len(ast.literal_eval(next(iter(runs)))) == 40


def test_the_slow_path_keys_as_the_fast_one() -> None:
    """A frame decoded the long way (a VLAN tag) lands where its untagged twin does."""
    s = Sharder(9)
    for sport in range(2000, 2050):
        plain = frame("10.1.0.1", "10.1.0.2", 17, sport, 53)
        tagged = plain[:12] + b"\x81\x00\x00\x05" + plain[12:]
        assert s.route(pkt(plain)) == s.route(pkt(tagged))


def test_fragments_follow_their_first_fragment() -> None:
    s = Sharder(6)
    first = frame("10.2.0.1", "10.2.0.2", 17, 33333, 53, ident=77, frag=0x2000)
    later = frame("10.2.0.1", "10.2.0.2", 17, 0, 0, ident=77, frag=0x0003)   # offset 24
    # the later fragment comes first: held until the first fragment says where it goes
    assert s.route(pkt(later)) == -1
    w = s.route(pkt(first))
    assert [wk for wk, _ in s.released] == [w]
    s.released.clear()
    assert w == s.route(pkt(frame("10.2.0.1", "10.2.0.2", 17, 33333, 53)))
    assert s.route(pkt(later)) == w    # remembered for the rest of the datagram


def test_held_fragments_are_released_at_the_end() -> None:
    s = Sharder(3)
    lone = frame("10.3.0.1", "10.3.0.2", 17, 0, 0, ident=5, frag=0x0010)
    assert s.route(pkt(lone)) == -1
    s.flush()
    assert len(s.released) == 1 and 0 <= s.released[0][0] < 3


def test_interface_counters_read_the_kernels_tables(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes\n"
        "  eth0: 100 10 0 7 2 0 0 0 0 0 0 0 0 0 0 0\n"
        "    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n")
    assert interface_counters(str(dev)) == {"eth0": 9, "lo": 0}
    softnet = tmp_path / "softnet"
    softnet.write_text("0001 0000000a 0\n0002 00000005 0\n")
    assert backlog_drops(str(softnet)) == 15
    assert interface_counters(str(tmp_path / "missing")) == {}

