"""nd-sniff --workers N: the same dumplings as one kitchen, merged totals, clean ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import SHARED

from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.kitchen.registry import bundled_chefs
from netdumplings.capture.sources import PcapSource
from netdumplings.kitchen.sameness import comparable
from netdumplings.kitchen.shard import shard_mode
from netdumplings.kitchen.workers import ShardedKitchen

CAPTURES = sorted(p for p in list(SHARED.glob("*.pcap")) + list(SHARED.glob("foreign/*"))
                  if p.suffix in (".pcap", ".pcapng", ".cap"))
ALL_CHEFS = list(bundled_chefs().values())


def cook(path: Path, workers: int, chefs: list[type] = ALL_CHEFS,
         poke: float | None = 5.0) -> tuple[list[dict[str, Any]], Any]:
    out: list[dict[str, Any]] = []
    sink = lambda d, b: out.append(orjson.loads(b))  # noqa: E731
    if workers == 1:
        kitchen: Any = Kitchen("w", chefs, sink=sink, poke_interval=poke)
    else:
        kitchen = ShardedKitchen(workers, "w", chefs, sink=sink, poke_interval=poke)
        kitchen.start()
    src = PcapSource(path)
    try:
        kitchen.run(src)
    finally:
        src.close()
    kitchen.finish()
    return out, kitchen


@pytest.mark.skipif(not CAPTURES, reason="shared captures not found")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_same_dumplings_as_one_worker(path: Path) -> None:
    one, k1 = cook(path, 1)
    three, k3 = cook(path, 3)
    assert not k3.died
    assert k3.stats.packets == k1.stats.packets
    assert len(three) == len(one)
    assert comparable(three) == comparable(one)
    # one sequence to the outside, without gaps
    assert [d["metadata"]["sequence"] for d in three] == list(range(1, len(three) + 1))


# -- chefs: where they run, and their merged totals -------------------------------------------


def test_every_bundled_chef_says_where_it_runs() -> None:
    for name, cls in bundled_chefs().items():
        mode = shard_mode(cls)
        assert mode in ("flows", "merge", "reader"), name
        if mode == "merge":
            # both halves of the merge are the chef's own, not the base class's
            assert "worker_state" in vars(cls) and "merge_worker_states" in vars(cls), name
    modes = {n: shard_mode(c) for n, c in bundled_chefs().items()}
    assert modes["PacketCountChef"] == modes["ARPChef"] == modes["DNSLookupChef"] == \
        modes["ChannelAccessChef"] == "merge"
    assert modes["PacketForwardChef"] == "reader"
    assert modes["Http1Chef"] == modes["TcpConnChef"] == modes["ZmtpChef"] == "flows"


def test_an_undeclared_chef_runs_in_the_reader() -> None:
    from netdumplings.kitchen.chef import DumplingChef, StreamChef

    class Counter(DumplingChef):
        def packet_handler(self, packet: Any) -> None:
            return None

    class PerFlow(StreamChef):
        default_ports = (80,)

    class PerFlowTotals(StreamChef):
        def interval_handler(self, interval: float | None = None) -> Any:
            return None

    assert shard_mode(Counter) == "reader"
    assert shard_mode(PerFlow) == "flows"
    assert shard_mode(PerFlowTotals) == "reader"


MERGE_CASES = [("PacketCountChef", "dns-queries.pcap"), ("ARPChef", "arp-veth.pcap"),
               ("DNSLookupChef", "dns-queries.pcap"), ("ChannelAccessChef", "epics-ca.pcap")]


@pytest.mark.parametrize("chef,capture", MERGE_CASES)
def test_merged_totals_equal_one_kitchens(chef: str, capture: str) -> None:
    """Two kitchens, each given the packets of every other flow (split as the reader
    splits them), merged into a third instance: its interval dumpling is the one a single
    kitchen over every packet makes."""
    from netdumplings.kitchen.shard import Sharder

    cls = bundled_chefs()[chef]
    path = SHARED / capture
    if not path.exists():
        pytest.skip(f"{path} not found")
    one, _ = cook(path, 1, [cls], poke=None)
    halves = [Kitchen(f"half{i}", [cls], poke_interval=None) for i in range(2)]
    sharder = Sharder(2)
    routes: dict[int, int] = {}
    src = PcapSource(path)
    for packet in src:
        w = sharder.route(packet)
        for w2, p2 in sharder.released:
            halves[w2].process(p2)
        sharder.released.clear()
        if w >= 0:
            routes[w] = routes.get(w, 0) + 1
            halves[w].process(packet)
    src.close()
    if chef != "ARPChef":   # (all ARP goes to one worker, by design)
        assert len(routes) == 2, "the capture's flows did not spread over both halves"
    for k in halves:
        # the end of the capture as a worker has it: flows closed, no interval handler
        k.interval_chefs = []
        k.finish()
    merged = cls(kitchen=None)
    merged.merge_worker_states([k.chefs[0].worker_state() for k in halves])
    expected = [d["payload"] for d in one if d["metadata"]["driver"] == "interval"][-1]
    got = orjson.loads(orjson.dumps(merged.interval_handler(None)))
    strip = comparable([{"metadata": {"chef": chef, "driver": "interval"}, "payload": got}])
    want = comparable([{"metadata": {"chef": chef, "driver": "interval"},
                        "payload": expected}])
    assert strip == want
    assert got != merged.interval_handler.__self__.__class__(kitchen=None).interval_handler(None)


def test_merges_add_up_overlapping_worker_states() -> None:
    """Totals held by several workers for the same key are added (not overwritten)."""
    chefs = bundled_chefs()
    pc = chefs["PacketCountChef"]()
    pc.merge_worker_states([{("k",): 2}, {("k",): 3}, {}])
    assert pc._shape_counts == {("k",): 5}
    dns = chefs["DNSLookupChef"]()
    dns.merge_worker_states([[("a.example", 2, 100), ("b.example", 1, 50)],
                             [("a.example", 1, 20)]])
    assert dns.interval_handler(None) == {"lookups_seen": {
        "b.example": {"count": 1, "latest": 50}, "a.example": {"count": 3, "latest": 100}}}
    arp = chefs["ARPChef"]()
    e = {"mac": "aa", "first_seen": 1.0, "last_seen": 2.0, "count": 2, "previous_macs": [],
         "changes": 0}
    f = dict(e, mac="bb", first_seen=0.5, last_seen=3.0, count=1)
    arp.merge_worker_states([{"entries": [("10.0.0.1", e)], "changes": [], "change_count": 0},
                             {"entries": [("10.0.0.1", f)], "changes": [], "change_count": 0}])
    table = arp.interval_handler(None)["arp_table"]["10.0.0.1"]
    assert (table["mac"], table["count"], table["first_seen"], table["last_seen"]) == \
        ("bb", 3, 0.5, 3.0)
    ca = chefs["ChannelAccessChef"]()
    ca.merge_worker_states([
        {"pvs": [("X", 1)], "counts": {"SearchRequest": 2}, "search_counts": {"X": 2},
         "circuits": 1, "monitors": [{"circuit": 1, "subscriptionid": 1, "pv": "X"}]},
        {"pvs": [("Y", 3), ("X", 1)], "counts": {"SearchRequest": 1, "error": 1},
         "search_counts": {"X": 1}, "circuits": 2, "monitors": []}])
    stats = ca.interval_handler(None)
    assert (stats["search_requests"], stats["errors"], stats["circuits_open"],
            stats["monitors_active"], stats["pv_count"], stats["searches_by_pv"]) == \
        (3, 1, 3, 1, 2, {"X": 3})


# -- processes: Ctrl-C, a worker that dies, live fanout ----------------------------------------

from conftest import Proc, nd_command, needs_capture, veth_namespaces  # noqa: E402

CHEFMODS = Path(__file__).resolve().parent.parent / "chefmods"
PCAP_HEADER = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")


def udp_record(n: int, dport: int = 5000, payload: bytes = b"x", sport: int | None = None
               ) -> bytes:
    """A pcap record: Ethernet/IPv4/UDP from 10.0.0.1:(sport or 10000+n) to 10.0.0.2."""
    import struct
    sport = sport if sport is not None else 10000 + n % 50000
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
    return struct.pack("<IIII", 1_700_000_000 + n // 1000, n % 1000, len(frame),
                       len(frame)) + frame


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def start_stdin_kitchen(*extra: str) -> tuple[Proc, list[int]]:
    import subprocess
    p = Proc(nd_command("nd-sniff") + ["-r", "-", "--workers", "2", "--print", "-p", "0",
                                        *extra], stdin=subprocess.PIPE)
    p.p.stdin.write(PCAP_HEADER + b"".join(udp_record(n) for n in range(200)))
    p.p.stdin.flush()
    deadline = time.monotonic() + 15
    while len(children(p.p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = children(p.p.pid)
    assert len(workers) >= 2, p.err
    return p, workers


def gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") and
                   open(f"/proc/{pid}/stat").read().split()[2] != "Z" for pid in pids):
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_finishes_every_worker() -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the
    kitchen waits on stdin: the workers finish their flows, the merged totals come out,
    exit 0, no process left."""
    p, workers = start_stdin_kitchen("--chef", "PacketCountChef")
    try:
        time.sleep(1.0)   # the 200 packets reach the workers
        os.killpg(p.p.pid, signal.SIGINT)
        assert p.wait(30) == 0, p.err
        counts = [orjson.loads(line)["payload"]["packet_counts"] for line in p.out
                  if "packet_counts" in line]
        assert counts and counts[-1]["UDP"] == 200, p.out
        assert any("200 packets" in line for line in p.err), p.err
        assert gone(workers), "a worker outlived the kitchen"
    finally:
        p.kill()


def test_a_worker_that_dies_ends_the_kitchen_with_an_error() -> None:
    """A worker killed mid-capture: the kitchen says which, the other finishes, exit 1,
    nothing hangs although stdin stays open."""
    p, workers = start_stdin_kitchen("-m", str(CHEFMODS / "worker_chefs.py"),
                                     "--chef", "WorkerKillerChef", "--chef", "PacketCountChef")
    try:
        p.p.stdin.write(udp_record(1000, dport=9, payload=b"die"))
        p.p.stdin.flush()
        assert p.wait(30) == 1, p.err
        died = [line for line in p.err if "died" in line]
        assert died and "exit status 3" in died[0] and "worker" in died[0], p.err
        assert gone(workers)
    finally:
        p.kill()


def test_a_killed_worker_is_named() -> None:
    p, workers = start_stdin_kitchen("--chef", "PacketCountChef")
    try:
        os.kill(workers[1], signal.SIGKILL)
        assert p.wait(30) == 1, p.err
        assert any(f"(pid {workers[1]}) died (killed by signal 9)" in line
                   for line in p.err), p.err
        assert gone(workers)
    finally:
        p.kill()


UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""
UDP_CLIENT = """
import socket, sys
for i in range(40):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    for j in range(3):
        s.sendto(b"ping %d %d" % (i, j), (sys.argv[1], 9999))
        s.recvfrom(2048)
    s.close()
print("done", flush=True)
"""


@needs_capture
@pytest.mark.live
def test_live_fanout_keeps_each_flow_in_one_worker() -> None:
    """nd-sniff --workers 2 on a veth whose peer is in another namespace: 40 UDP
    conversations, both directions of each seen by one worker, the flows spread over both."""
    import subprocess

    with veth_namespaces("ndw", "10.231.7", lambda names: None) as ns:
        srv = subprocess.Popen(["ip", "netns", "exec", ns["B"], sys.executable, "-c",
                                UDP_ECHO, ns["ip_b"]], stdout=subprocess.PIPE, text=True)
        p = Proc(["ip", "netns", "exec", ns["B"]] + nd_command("nd-sniff") + [
            "-i", ns["if_b"], "-f", "udp port 9999", "--workers", "2", "--print", "-p", "0",
            "-v",
            "-m", str(CHEFMODS / "worker_chefs.py"), "--chef", "WorkerPidChef"])
        try:
            assert "ready" in srv.stdout.readline()
            p.wait_line("sniffing", timeout=20)
            out = subprocess.run(["ip", "netns", "exec", ns["A"], sys.executable, "-c",
                                  UDP_CLIENT, ns["ip_b"]], capture_output=True, text=True,
                                 timeout=60)
            assert "done" in out.stdout, out.stderr
            time.sleep(1.0)
            os.killpg(p.p.pid, signal.SIGINT)
            assert p.wait(30) == 0, p.err
        finally:
            p.kill()
            srv.kill()
            srv.wait(10)
        seen = [orjson.loads(line)["payload"] for line in p.out if line.startswith("{")]
        assert len(seen) == 40 * 3 * 2, (len(seen), p.err)
        by_flow: dict[frozenset, set[int]] = {}
        for d in seen:
            by_flow.setdefault(frozenset((d["src"], d["dst"])), set()).add(d["pid"])
        assert len(by_flow) == 40
        assert all(len(pids) == 1 for pids in by_flow.values()), by_flow
        assert len(set().union(*by_flow.values())) == 2, "every flow went to one worker"
        assert any("240 packets" in line and "0 dropped by the kernel (0 + 0 by worker)"
                   in line for line in p.err), p.err


def test_write_count_and_summary_with_workers(tmp_path: Path) -> None:
    """-w FILE and --count are the reader's (every packet, in order); the summary and -v's
    chef times are summed over the workers."""
    capture = SHARED / "http1-keepalive.pcap"
    if not capture.exists():
        pytest.skip("shared captures not found")
    outs = {}
    for n in (1, 2):
        written = tmp_path / f"w{n}.pcap"
        done = subprocess.run(nd_command("nd-sniff") + [
            "-r", str(capture), "--workers", str(n), "--print", "-v", "--count", "20",
            "-w", str(written)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        summary = [line for line in done.stderr.splitlines() if " packets, " in line]
        assert summary and summary[0].startswith("nd-sniff: 20 packets, "), done.stderr
        assert "20 written to" in summary[0]
        assert any("time in chefs: " in line and "Http1Chef" in line
                   for line in done.stderr.splitlines()), done.stderr
        dumplings = [orjson.loads(line) for line in done.stdout.splitlines()]
        outs[n] = (written.read_bytes(), comparable(dumplings))
    assert outs[1] == outs[2]


def test_undeclared_user_chef_sees_every_packet_in_the_reader() -> None:
    """A packet chef that does not say how to merge runs in the reader: it counts every
    packet, in order, as with one kitchen."""
    from netdumplings.kitchen.chef import DumplingChef

    class Tally(DumplingChef):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.n = 0
            self.last = 0.0
            self.in_order = True

        def packet_handler(self, packet: Any) -> None:
            self.n += 1
            self.in_order = self.in_order and packet.time >= self.last
            self.last = packet.time

        def interval_handler(self, interval: float | None = None) -> Any:
            return {"n": self.n, "in_order": self.in_order}

    path = SHARED / "dns-queries.pcap"
    if not path.exists():
        pytest.skip("shared captures not found")
    one, _ = cook(path, 1, [Tally, bundled_chefs()["DNSLookupChef"]])
    two, k2 = cook(path, 2, [Tally, bundled_chefs()["DNSLookupChef"]])
    assert k2.modes == {"Tally": "reader", "DNSLookupChef": "merge"}
    assert comparable(two) == comparable(one)
    last = [d["payload"] for d in two if d["metadata"]["chef"] == "Tally"][-1]
    assert last == {"n": k2.stats.packets, "in_order": True} and last["n"] > 0


@pytest.mark.slow
def test_bulk_million_packets_same_with_two_workers() -> None:
    """The 1,000,000-packet mixed capture (made once, cached under bench/data/): two
    workers make the same dumplings as one kitchen, by the same comparison."""
    from bench.kitchen import default_chefs, mixed_capture

    path, _origin = mixed_capture(1_000_000, lambda msg: None)
    one, k1 = cook(path, 1, default_chefs())
    one_view = comparable(one)
    del one
    two, k2 = cook(path, 2, default_chefs())
    assert not k2.died
    assert k2.stats.packets == k1.stats.packets == 1_000_000
    assert k2.stats.dumplings == k1.stats.dumplings > 100_000
    assert comparable(two) == one_view


@needs_capture
@pytest.mark.live
def test_live_worker_that_dies_ends_the_kitchen() -> None:
    """Live on lo: the worker that gets the fatal datagram dies; the kitchen names it, the
    other worker finishes, exit 1, without waiting for a Ctrl-C."""
    import socket

    from conftest import free_port

    port = free_port(socket.SOCK_DGRAM)
    p = Proc(nd_command("nd-sniff") + [
        "-i", "lo", "-f", f"udp port 9 or udp port {port}", "--workers", "2", "--print",
        "-v", "-m", str(CHEFMODS / "worker_chefs.py"), "--chef", "WorkerKillerChef",
        "--chef", "PacketCountChef"])
    try:
        p.wait_line("sniffing", timeout=20)
        time.sleep(0.3)
        workers = children(p.p.pid)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(5):
                s.sendto(b"hello", ("127.0.0.1", port))
            s.sendto(b"die", ("127.0.0.1", 9))
        assert p.wait(30) == 1, p.err
        died = [line for line in p.err if "died (exit status 3)" in line]
        assert died, p.err
        assert gone(workers)
    finally:
        p.kill()
