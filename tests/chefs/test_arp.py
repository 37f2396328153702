"""ARPChef: the shared veth capture against its ground truth and tshark, MAC-change
detection, link types, garbage, and live ARP between two network namespaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_ip, veth_namespaces
from hypothesis import given, settings, strategies as st

from netdumplings.chefs.arp import ARPChef, parse_arp
from netdumplings.wire.dumpling import encode
from netdumplings.kitchen.offline import read_dumplings
from netdumplings.capture.packet import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, Packet

DATA = Path(__file__).parent.parent / "data"
PCAP = DATA / "arp-veth.pcap"
EXPECTED = json.loads((DATA / "arp-veth.expected.json").read_text())


def run_chef(pcap: Path) -> tuple[list[dict], list[dict]]:
    packets, intervals = [], []
    for d in read_dumplings(pcap, [ARPChef]):
        (intervals if d["metadata"]["driver"] == "interval" else packets).append(d["payload"])
    return packets, intervals


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def arp_frame(op: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str,
              eth_dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac_bytes(sender_mac) + \
        socket.inet_aton(sender_ip) + mac_bytes(target_mac) + socket.inet_aton(target_ip)
    return mac_bytes(eth_dst) + mac_bytes(sender_mac) + b"\x08\x06" + body + b"\x00" * 18


# -- ground truth ---------------------------------------------------------------------


def test_capture_matches_expected() -> None:
    got, intervals = run_chef(PCAP)
    exp = EXPECTED["arp"]
    assert len(got) == len(exp)
    for g, e in zip(got, exp):
        for key in ("op", "opcode", "eth_src", "eth_dst", "sender_mac", "sender_ip",
                    "target_mac", "target_ip"):
            assert g[key] == e[key], key
        assert e["summary"] in g["summary"]
        assert g["gratuitous"] == ("gratuitous" in e["sent_by"])
        assert g["gratuitous"] == ("(gratuitous)" in g["summary"])
        assert g["mac_change"] is None and g["timestamp"] > 1e9
        encode({"metadata": {}, "payload": g})
    counts = EXPECTED["counts"]
    assert sum(g["op"] == "request" for g in got) == counts["arp_requests"]
    assert sum(g["op"] == "reply" for g in got) == counts["arp_replies"]
    # interval table: each host's IP bound to its MAC, nothing flagged
    (table,) = intervals
    hosts = EXPECTED["hosts"]
    for name in ("A", "B"):
        entry = table["arp_table"][hosts[name]["ip"]]
        assert entry["mac"] == hosts[name]["mac"] and entry["changed"] is False
    assert hosts["absent"]["ip"] not in table["arp_table"]
    assert table["possible_spoofing"] == [] and table["changes"] == []


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_capture_agrees_with_tshark() -> None:
    out = subprocess.run(
        ["tshark", "-r", str(PCAP), "-Y", "arp", "-T", "fields", "-E", "separator=|",
         "-e", "arp.opcode", "-e", "arp.src.hw_mac", "-e", "arp.src.proto_ipv4",
         "-e", "arp.dst.hw_mac", "-e", "arp.dst.proto_ipv4", "-e", "arp.isgratuitous"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    got, _ = run_chef(PCAP)
    assert len(rows) == len(got) > 0
    for g, (op, smac, sip, tmac, tip, grat) in zip(got, rows):
        assert (g["opcode"], g["sender_mac"], g["sender_ip"], g["target_mac"], g["target_ip"]) \
            == (int(op), smac, sip, tmac, tip)
        assert g["gratuitous"] == (grat == "1")


# -- behaviour on crafted frames ------------------------------------------------------------


def test_mac_change_is_flagged_as_possible_spoofing() -> None:
    chef = ARPChef()
    p1 = chef.packet_handler(Packet(arp_frame(2, "02:00:00:00:00:0b", "10.9.0.2",
                                              "02:00:00:00:00:0a", "10.9.0.1",
                                              eth_dst="02:00:00:00:00:0a"), 1.0))
    assert p1["op"] == "reply" and p1["mac_change"] is None
    p2 = chef.packet_handler(Packet(arp_frame(2, "02:00:00:00:00:ee", "10.9.0.2",
                                              "02:00:00:00:00:0a", "10.9.0.1"), 2.0))
    assert p2["mac_change"] == {"ip": "10.9.0.2", "old_mac": "02:00:00:00:00:0b",
                                "new_mac": "02:00:00:00:00:ee", "timestamp": 2.0}
    assert "MAC CHANGED" in p2["summary"]
    report = chef.interval_handler()
    assert report["possible_spoofing"] == ["10.9.0.2"]
    entry = report["arp_table"]["10.9.0.2"]
    assert entry["mac"] == "02:00:00:00:00:ee" and entry["previous_macs"] == ["02:00:00:00:00:0b"]
    assert entry["changes"] == 1 and entry["count"] == 2 and entry["changed"] is True
    assert "10.9.0.1" not in report["arp_table"]  # only senders are learnt
    json.dumps(report)


def test_probe_is_not_learnt_and_non_arp_is_ignored() -> None:
    chef = ARPChef()
    probe = chef.packet_handler(Packet(arp_frame(1, "02:00:00:00:00:0c", "0.0.0.0",
                                                 "00:00:00:00:00:00", "10.9.0.3"), 1.0))
    assert probe["probe"] is True and probe["gratuitous"] is False
    assert chef.interval_handler()["arp_table"] == {}
    ipv4 = bytes(12) + b"\x08\x00" + bytes.fromhex("4500001c00000000401100007f0000017f000001") \
        + bytes(8)
    assert chef.packet_handler(Packet(ipv4, 1.0)) is None
    assert chef.arp_packets == 1


def test_linux_cooked_capture_and_packets_option() -> None:
    frame = arp_frame(1, "02:00:00:00:00:0d", "10.9.0.4", "00:00:00:00:00:00", "10.9.0.5")
    body = frame[14:]
    sll = struct.pack("!HHH", 0, 1, 6) + mac_bytes("02:00:00:00:00:0d") + b"\x00\x00" + \
        b"\x08\x06" + body
    chef = ARPChef()
    p = chef.packet_handler(Packet(sll, 1.0, linktype=LINKTYPE_LINUX_SLL))
    assert p["eth_src"] == "02:00:00:00:00:0d" and p["eth_dst"] is None
    assert p["summary"].endswith("who-has 10.9.0.5 tell 10.9.0.4")
    quiet = ARPChef(packets=False, max_entries=2)
    for i in range(5):
        assert quiet.packet_handler(Packet(arp_frame(
            1, f"02:00:00:00:01:{i:02x}", f"10.9.1.{i}", "00:00:00:00:00:00", "10.9.1.99"),
            float(i))) is None
    assert list(quiet.interval_handler()["arp_table"]) == ["10.9.1.3", "10.9.1.4"]


def test_unsupported_and_truncated_arp_are_skipped() -> None:
    chef = ARPChef()
    frame = arp_frame(1, "02:00:00:00:00:0d", "10.9.0.4", "00:00:00:00:00:00", "10.9.0.5")
    assert chef.packet_handler(Packet(frame[:30], 1.0, linktype=LINKTYPE_ETHERNET)) is None
    ipv6_arp = frame[:16] + b"\x86\xdd" + frame[18:]
    assert chef.packet_handler(Packet(ipv6_arp, 1.0)) is None
    assert chef.skipped == 2 and chef.arp_packets == 0
    with pytest.raises(ValueError):
        parse_arp(b"\x00\x01")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL]))
def test_fuzz_arp_frames_never_raise(tail: bytes, linktype: int) -> None:
    chef = ARPChef(max_entries=4)
    head = (b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06") if linktype == LINKTYPE_ETHERNET \
        else (bytes(14) + b"\x08\x06")
    for data in (head + tail, head + b"\x00\x01\x08\x00\x06\x04" + tail):
        payload = chef.packet_handler(Packet(data, 1.0, linktype=linktype))
        if payload is not None:
            encode({"metadata": {}, "payload": payload})
    assert len(chef.interval_handler()["arp_table"]) <= 4


# -- live: two network namespaces joined by a veth pair ------------------------------------


_run = run_ip


@pytest.fixture
def two_namespaces():
    """Namespaces A and B joined by a veth pair (10.213.x.0/24 exists only inside them)."""
    def setup(ns: dict[str, str]) -> None:
        _run("ip", "-n", ns["A"], "link", "set", ns["if_a"], "address", "02:00:00:aa:00:01")
        _run("ip", "-n", ns["B"], "link", "set", ns["if_b"], "address", "02:00:00:bb:00:02")
        # B's kernel announces itself (gratuitous ARP) when its MAC changes
        _run("ip", "netns", "exec", ns["B"], "sysctl", "-qw",
             f"net.ipv4.conf.{ns['if_b']}.arp_notify=1")

    with veth_namespaces("ndarp", f"10.213.{os.getpid() % 250}", setup) as ns:
        yield {**ns, "mac_a": "02:00:00:aa:00:01", "mac_b": "02:00:00:bb:00:02"}


@pytest.mark.live
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_live_arp_between_namespaces(two_namespaces, tmp_path: Path) -> None:
    ns = two_namespaces
    pcap = tmp_path / "arp-live.pcap"
    tcpdump = subprocess.Popen(
        ["ip", "netns", "exec", ns["A"], "tcpdump", "-U", "--immediate-mode", "-n",
         "-i", ns["if_a"], "-w", str(pcap), "arp"], stderr=subprocess.PIPE, text=True)
    try:
        line = tcpdump.stderr.readline()  # "listening on ..." once the capture runs
        assert "listening" in line, line
        send = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.sendto(b'x', (sys.argv[1], 9))")
        # A's kernel asks who-has B, B's kernel replies (retried until A has learnt B:
        # a veth needs a moment after "up" before it carries frames)
        for _ in range(40):
            _run("ip", "netns", "exec", ns["A"], sys.executable, "-c", send, ns["ip_b"])
            time.sleep(0.1)
            neigh = subprocess.run(["ip", "-n", ns["A"], "neigh", "show", ns["ip_b"]],
                                   capture_output=True, text=True, timeout=10).stdout
            if ns["mac_b"] in neigh:
                break
        else:
            pytest.fail(f"A never resolved B: {neigh!r}")
        # B changes its MAC: its kernel sends a gratuitous ARP with the new one
        new_mac = "02:00:00:bb:00:03"
        _run("ip", "-n", ns["B"], "link", "set", ns["if_b"], "address", new_mac)
        time.sleep(0.5)
    finally:
        tcpdump.send_signal(signal.SIGINT)  # SIGINT: tcpdump flushes the file on exit
        try:
            tcpdump.wait(10)
        except subprocess.TimeoutExpired:
            tcpdump.kill()
            tcpdump.wait(5)
        tcpdump.stderr.close()
    got, intervals = run_chef(pcap)
    summaries = [g["summary"] for g in got]
    ask = [g for g in got if g["op"] == "request" and g["sender_ip"] == ns["ip_a"]
           and g["target_ip"] == ns["ip_b"]]
    reply = [g for g in got if g["op"] == "reply" and g["sender_ip"] == ns["ip_b"]]
    grat = [g for g in got if g["gratuitous"]]
    assert ask and ask[0]["sender_mac"] == ns["mac_a"], summaries
    assert ask[0]["eth_dst"] == "ff:ff:ff:ff:ff:ff"
    assert reply and reply[0]["sender_mac"] == ns["mac_b"] and \
        reply[0]["target_mac"] == ns["mac_a"], summaries
    assert grat and grat[0]["sender_mac"] == new_mac and grat[0]["sender_ip"] == ns["ip_b"]
    assert grat[0]["mac_change"]["old_mac"] == ns["mac_b"], summaries
    (table,) = intervals
    assert table["arp_table"][ns["ip_b"]]["mac"] == new_mac
    assert table["arp_table"][ns["ip_a"]]["mac"] == ns["mac_a"]
    assert table["possible_spoofing"] == [ns["ip_b"]]
