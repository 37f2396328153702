"""Live capture against what tcpdump shows on the same traffic, inside network namespaces
the tests create (a veth pair, a tun device and lo), deleted afterwards even on failure.

Regressions covered: the 802.1Q tag the kernel strips on receive is put back and ``vlan``
filters match; ``wirelen``/``truncated`` stay right when the kernel filter cuts the frame
at the snaplen; on all interfaces a tun device (raw IP, no link header) gets the filter
compiled for raw IP; an interface that goes down, or is removed, mid-capture does not
crash the capture; kernel drops are counted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import can_capture
from netdumplings.capture.packet import Packet
from netdumplings.capture.sources import LiveSource, PcapSource, build_program

ROOT = str(Path(__file__).resolve().parents[2])

pytestmark = pytest.mark.skipif(not can_capture() or not shutil.which("ip"),
                                reason="needs root and iproute2")

A_IP, B_IP, TUN_IP, TUN_PEER = "10.213.0.1", "10.213.0.2", "10.214.0.1", "10.214.0.2"
PORT = 5000


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@pytest.fixture
def net():
    """Namespace A (lo, veth nd-la, tun nd-tun) and B (veth nd-lb, the other end)."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"ndlc-a-{tag}", f"ndlc-b-{tag}"
    sh("ip", "netns", "add", a)
    try:
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "set", "lo", "up")
        sh("ip", "-n", a, "link", "add", "nd-la", "type", "veth", "peer", "name", "nd-lb",
           "netns", b)
        sh("ip", "-n", a, "addr", "add", f"{A_IP}/24", "dev", "nd-la")
        sh("ip", "-n", b, "addr", "add", f"{B_IP}/24", "dev", "nd-lb")
        sh("ip", "-n", a, "link", "set", "nd-la", "up")
        sh("ip", "-n", b, "link", "set", "nd-lb", "up")
        if os.path.exists("/dev/net/tun"):
            sh("ip", "-n", a, "tuntap", "add", "dev", "nd-tun", "mode", "tun")
            sh("ip", "-n", a, "addr", "add", f"{TUN_IP}/24", "dev", "nd-tun")
            sh("ip", "-n", a, "link", "set", "nd-tun", "up")
        mac = json.loads(subprocess.run(["ip", "-n", a, "-j", "link", "show", "nd-la"],
                                        check=True, capture_output=True,
                                        text=True).stdout)[0]["address"]
        yield {"a": a, "b": b, "mac": mac}
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


# -- helpers run inside a namespace ---------------------------------------------------------

CAPTURE = r"""
import json, logging, select, sys, time
sys.path.insert(0, ROOT)
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
from netdumplings.capture.sources import CaptureError, LiveSource
opts = json.loads(sys.argv[1])
try:
    src = LiveSource(opts["interfaces"], opts["filter"], snaplen=opts["snaplen"],
                     poll_timeout=0.05)
except CaptureError as exc:
    print(json.dumps({"error": str(exc)}), flush=True); sys.exit(0)
print("READY", flush=True)
end = time.monotonic() + opts["seconds"]
try:
    for p in src:
        if p is not None:
            print(json.dumps({"iface": p.interface, "lt": p.linktype, "data": p.data.hex(),
                              "wirelen": p.wirelen, "ns": p.time_ns}), flush=True)
        if time.monotonic() > end or select.select([sys.stdin], [], [], 0)[0]:
            break   # stdin: stop (or the test went away)
except CaptureError as exc:
    print(json.dumps({"error": str(exc)}), flush=True)
print(json.dumps({"stats": src.stats()}), flush=True)
src.close()
""".replace("ROOT", repr(ROOT))

SEND = r"""
import fcntl, os, socket, struct, sys, time
what = sys.argv[1]

def csum(b):
    b += b"\0" * (len(b) % 2)
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF

def ipudp(src, dst, payload):
    udp = struct.pack("!HHHH", 5000, 5000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip[:10] + struct.pack("!H", csum(ip)) + ip[12:] + udp

if what == "veth":   # from B: tagged (VLAN 100) and untagged frames to A's MAC
    dmac = bytes.fromhex(sys.argv[2].replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("nd-lb", 0))
    smac = s.getsockname()[4]
    for i in range(3):
        s.send(dmac + smac + struct.pack("!HH", 0x8100, 0x2064) + b"\x08\x00"
               + ipudp("10.213.1.2", "10.213.1.1", (b"tagged %d" % i).ljust(48, b".")))
        s.send(dmac + smac + b"\x08\x00" + ipudp("10.213.0.2", "10.213.0.1",
                                                  (b"plain %d" % i).ljust(48, b".")))
        time.sleep(0.02)
elif what == "tun":  # into A's tun device: received on it as raw IP
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"nd-tun", 0x0001 | 0x1000))
    time.sleep(0.2)
    for i in range(3):
        os.write(fd, ipudp("10.214.0.2", "10.214.0.1", b"tun %d" % i))
        time.sleep(0.02)
    time.sleep(0.2)
elif what == "lo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(3):
        s.sendto(b"lo %d" % i, ("127.0.0.1", 5000))
        time.sleep(0.02)
"""


class Capture:
    def __init__(self, ns: str, interfaces: list[str] | None, bpf: str | None,
                 snaplen: int = 262144, seconds: float = 30.0) -> None:
        opts = {"interfaces": interfaces, "filter": bpf, "snaplen": snaplen, "seconds": seconds}
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CAPTURE,
                                   json.dumps(opts)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.seconds = seconds
        first = self.p.stdout.readline()
        if first.strip() != "READY":
            self.p.kill()
            raise AssertionError(f"capture did not start: {first!r}")

    def result(self) -> tuple[list[dict], list[str], dict]:
        """Stop (after a moment for the last packets); packets, log lines and the last
        status line (stats or error)."""
        time.sleep(0.3)
        out, _ = self.p.communicate("stop\n", timeout=self.seconds + 20)
        pkts, logs, last = [], [], {}
        for line in out.splitlines():
            if line.startswith("LOG "):
                logs.append(line[4:])
            elif line.startswith("{"):
                d = json.loads(line)
                if "data" in d:
                    d["data"] = bytes.fromhex(d["data"])
                    pkts.append(d)
                else:
                    last.update(d)
        return pkts, logs, last

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def send(ns: str, what: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SEND, what, *args],
                   check=True, timeout=20)


def udp5000(pkts: list[dict]) -> list[dict]:
    out = []
    for d in pkts:
        p = Packet(d["data"], 0.0, d["wirelen"], d["lt"])
        if p.l4 == "udp" and p.dport == PORT or d["data"][12:14] == b"\x81\x00":
            out.append(d)
    return out


# -- tests ----------------------------------------------------------------------------------

def test_vlan_tag_restored_and_vlan_filters_match_as_tcpdump(net, tmp_path):
    a, b = net["a"], net["b"]
    caps = {bpf: Capture(a, ["nd-la"], bpf) for bpf in
            (None, "vlan 100", "vlan and udp port 5000", "vlan 101", "udp and not vlan")}
    tcpdump = None
    if shutil.which("tcpdump"):
        pcap = tmp_path / "td.pcap"
        tcpdump = subprocess.Popen(["ip", "netns", "exec", a, "tcpdump", "-i", "nd-la", "-U",
                                    "-n", "-w", str(pcap), "udp port 5000"],
                                   stderr=subprocess.PIPE, text=True)
        tcpdump.stderr.readline()   # "listening on ..."
    try:
        send(b, "veth", net["mac"])
        got = {bpf: c.result()[0] for bpf, c in caps.items()}
    finally:
        for c in caps.values():
            c.kill()
        if tcpdump:
            time.sleep(0.2)
            tcpdump.terminate()
            tcpdump.wait(10)
    everything = udp5000(got[None])
    tagged = [d for d in everything if b"tagged" in d["data"]]
    assert len(everything) == 6 and len(tagged) == 3
    for d in tagged:
        p = Packet(d["data"], 0.0, d["wirelen"], d["lt"])
        assert p.vlan == 100 and p.layer_names()[:3] == ["Ethernet", "802.1Q", "IP"]
        assert d["data"][12:16] == b"\x81\x00\x20\x64"   # TPID, PCP 1 + VID 100
        assert d["wirelen"] == len(d["data"]) == 14 + 4 + 20 + 8 + 48
        assert p.sport == p.dport == PORT and p.l4_payload.startswith(b"tagged")
    assert [d["data"] for d in got["vlan 100"]] == [d["data"] for d in tagged]
    assert [d["data"] for d in got["vlan and udp port 5000"]] == [d["data"] for d in tagged]
    assert got["vlan 101"] == []
    assert [d["data"] for d in udp5000(got["udp and not vlan"])] == \
        [d["data"] for d in everything if b"plain" in d["data"]]
    if tcpdump:   # byte for byte what tcpdump wrote, tag included
        theirs = list(PcapSource(pcap))
        assert [p.data for p in theirs] == [d["data"] for d in everything]
        for p, d in zip(theirs, everything):
            assert abs(p.time * 1e9 - d["ns"]) < 100_000   # tcpdump: microseconds


def test_snaplen_cut_by_the_kernel_filter_keeps_wire_length(net):
    a, b = net["a"], net["b"]
    caps = [Capture(a, ["nd-la"], "udp", snaplen=40), Capture(a, ["nd-la"], None, snaplen=40),
            Capture(a, ["nd-la"], "vlan", snaplen=16)]
    try:
        send(b, "veth", net["mac"])
        filtered, unfiltered, vlan = (udp5000(c.result()[0]) for c in caps)
    finally:
        for c in caps:
            c.kill()
    assert len(filtered) == len(unfiltered) == 6 and len(vlan) == 3
    for d in filtered + unfiltered:
        tagged = b"tagged" in d["data"] or d["data"][12:14] == b"\x81\x00"
        assert len(d["data"]) == 40
        assert d["wirelen"] == 14 + 20 + 8 + 48 + (4 if tagged else 0)
        p = Packet(d["data"], 0.0, d["wirelen"], d["lt"])
        assert p.truncated and p.caplen == 40
        if not tagged:   # the transport header is cut: no ports, nothing for a stream
            assert p.l4_payload == b""
    for d in vlan:
        assert d["data"][12:16] == b"\x81\x00\x20\x64" and len(d["data"]) == 16
        assert d["wirelen"] == 94


@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="needs /dev/net/tun")
def test_all_interfaces_mixed_link_types_each_packet_once(net):
    a, b = net["a"], net["b"]
    caps = [Capture(a, None, "udp port 5000"), Capture(a, None, None),
            Capture(a, ["nd-tun"], "udp port 5000")]
    try:
        send(a, "tun")
        send(b, "veth", net["mac"])
        send(a, "lo")
        (filtered, _, _), (unfiltered, _, _), (tun, _, _) = (c.result() for c in caps)
    finally:
        for c in caps:
            c.kill()

    def summary(pkts: list[dict]) -> list[tuple]:
        out = []
        for d in pkts:
            p = Packet(d["data"], 0.0, d["wirelen"], d["lt"])
            if p.l4 == "udp" and p.dport == PORT:
                out.append((d["iface"], d["lt"], p.vlan, p.l4_payload.rstrip(b".")))
        return out

    want = [("nd-tun", 101, None, b"tun %d" % i) for i in range(3)]
    for i in range(3):
        want += [("nd-la", 1, 100, b"tagged %d" % i), ("nd-la", 1, None, b"plain %d" % i)]
    want += [("lo", 1, None, b"lo %d" % i) for i in range(3)]
    assert summary(filtered) == want
    assert summary(unfiltered) == want
    assert summary(tun) == want[:3]
    # Per-interface capture times only go forward.
    for name in ("nd-tun", "nd-la", "lo"):
        ts = [d["ns"] for d in filtered if d["iface"] == name]
        assert ts == sorted(ts)


def test_interface_down_then_removed_mid_capture(net):
    a = net["a"]
    for x, y in (("nd-x", "nd-y"), ("nd-w", "nd-v")):
        sh("ip", "-n", a, "link", "add", x, "type", "veth", "peer", "name", y)
        sh("ip", "-n", a, "link", "set", x, "up")
        sh("ip", "-n", a, "link", "set", y, "up")
    both = Capture(a, ["nd-x", "lo"], None)
    alone = Capture(a, ["nd-w"], None)
    try:
        time.sleep(0.3)
        # nd-x: down, up, removed while up (ENETDOWN each time); nd-w: down, then removed
        # while down (the socket hears nothing more of it).
        sh("ip", "-n", a, "link", "set", "nd-x", "down")
        sh("ip", "-n", a, "link", "set", "nd-w", "down")
        time.sleep(0.2)
        sh("ip", "-n", a, "link", "set", "nd-x", "up")
        time.sleep(0.3)
        sh("ip", "-n", a, "link", "del", "nd-x")
        sh("ip", "-n", a, "link", "del", "nd-w")
        time.sleep(0.2)
        send(a, "lo")   # the capture on both goes on with lo
        pkts, logs, last = both.result()
        time.sleep(1.0)
        pkts2, logs2, last2 = alone.result()
    finally:
        both.kill()
        alone.kill()
    assert any("nd-x went down" in line for line in logs)
    assert any("nd-x was removed" in line for line in logs)
    assert "error" not in last and "stats" in last
    assert [Packet(d["data"], 0.0).l4_payload for d in pkts
            if d["iface"] == "lo" and Packet(d["data"], 0.0).dport == PORT] == \
        [b"lo %d" % i for i in range(3)]
    assert any("nd-w went down" in line for line in logs2)
    assert last2.get("error") == "interface 'nd-w' was removed while capturing"


def test_forwarded_packet_delivered_once_on_all_interfaces(net):
    """A router namespace between A and B: tcpdump -i any shows each forwarded packet in
    and out; the kitchen gets it once, from its incoming interface."""
    a, b = net["a"], net["b"]
    r = a.replace("ndlc-a", "ndlc-r")
    sh("ip", "netns", "add", r)
    try:
        sh("ip", "-n", r, "link", "set", "lo", "up")
        sh("ip", "-n", r, "link", "add", "nd-r1", "type", "veth", "peer", "name", "nd-c",
           "netns", a)
        sh("ip", "-n", r, "link", "add", "nd-r2", "type", "veth", "peer", "name", "nd-s",
           "netns", b)
        for ns, dev, ip in ((r, "nd-r1", "10.215.1.1"), (r, "nd-r2", "10.215.2.1"),
                            (a, "nd-c", "10.215.1.2"), (b, "nd-s", "10.215.2.2")):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", a, "route", "add", "10.215.2.0/24", "via", "10.215.1.1")
        sh("ip", "-n", b, "route", "add", "10.215.1.0/24", "via", "10.215.2.1")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        cap = Capture(r, None, "udp port 5000")
        try:
            code = ("import socket, time\n"
                    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "for i in range(3):\n"
                    "    s.sendto(b'%s %d' % (sys.argv[1].encode(), i), "
                    "('10.215.2.2', 5000)); time.sleep(0.02)\n")
            for ns, label in ((a, "fwd"), (r, "local")):
                subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                "import sys\n" + code, label], check=True, timeout=20)
            pkts, _, last = cap.result()
        finally:
            cap.kill()
    finally:
        subprocess.run(["ip", "netns", "del", r], capture_output=True)
    got = [(d["iface"], Packet(d["data"], 0.0).l4_payload) for d in pkts]
    assert got == [("nd-r1", b"fwd %d" % i) for i in range(3)] + \
        [("nd-r2", b"local %d" % i) for i in range(3)]
    assert last["stats"]["forwarded_duplicates"] == 3


def test_kernel_drops_are_counted():
    """A reader that cannot keep up: what the socket buffer cannot hold is counted."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        src = LiveSource(["lo"], f"udp dst port {port}", buffer_size=64 * 1024,
                         poll_timeout=0.05)
        try:
            n = 2000
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for i in range(n):
                    tx.sendto(b"x" * 200, ("127.0.0.1", port))
            got = 0
            for p in src:
                if p is None:
                    break
                got += 1
            st = src.stats()
        finally:
            src.close()
    assert st["kernel_drops"] > 0
    assert got + st["kernel_drops"] == n == st["kernel_packets"]


def test_filter_program_shape():
    """Every accept returns the snaplen; loopback's outgoing copies are rejected in the
    kernel; a link-layer expression matches no raw-IP frame on all interfaces."""
    prog = build_program("udp", 1234, "lo")
    assert {k for c, _, _, k in prog if c == 0x06} == {0, 1234}
    assert prog[1] == (0x15, 0, 3, 4)      # pkttype == OUTGOING ...
    assert prog[3] == (0x15, 0, 1, 772)    # ... on loopback: ret 0
    prog = build_program("ether host 01:02:03:04:05:06", 99, None)
    assert prog[-1] == (0x06, 0, 0, 0)     # the raw-IP branch: reject
    assert struct.calcsize("HBBI") == 8
