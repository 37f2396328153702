"""Library-level guards behind the CLI's option checks: an API user who passes nonsense
gets a ValueError at once, and capture-time pokes stay bounded whatever the interval."""

from __future__ import annotations

import time

import pytest

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.flows.table import FlowTable
from netdumplings.kitchen.kitchen import MAX_CATCH_UP_POKES, Kitchen
from netdumplings.capture.packet import Packet
from netdumplings.capture.sources import LiveSource
from netdumplings.wire.messages import parse_hub_address


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:11347", ("127.0.0.1", 11347, False)),
    ("hub.example", ("hub.example", 11347, False)),
    (":9000", ("127.0.0.1", 9000, False)),
    ("ws://hub:1", ("hub", 1, False)),
    ("wss://hub:65535/", ("hub", 65535, True)),
    ("[::1]:8080", ("::1", 8080, False)),
    ("[::1]", ("::1", 11347, False)),
])
def test_hub_addresses(address, expected):
    assert parse_hub_address(address, 11347) == expected


@pytest.mark.parametrize("address", [
    "host:0", "host:65536", "host:99999", "host:abc", "host:", "[::1]:abc", "[::1]:70000",
    "[::1]x", "http://host:1",
])
def test_bad_hub_addresses(address):
    with pytest.raises(ValueError):
        parse_hub_address(address, 11347)


def test_flow_table_needs_room_for_a_flow():
    with pytest.raises(ValueError, match="max_flows"):
        FlowTable(max_flows=0)


def test_live_source_refuses_a_snaplen_that_cuts_everything():
    for snaplen in (0, -5):
        with pytest.raises(ValueError, match="snaplen"):
            LiveSource(["lo"], snaplen=snaplen)


class Ticker(DumplingChef):
    pokes = 0

    def interval_handler(self, interval=None):
        Ticker.pokes += 1


def _frame() -> bytes:
    return bytes(12) + b"\x08\x06" + bytes(28)   # an ARP-typed frame; content irrelevant


def test_capture_time_pokes_are_bounded_by_a_long_gap_or_a_tiny_interval():
    for interval, gap in ((1e-9, 10.0), (5.0, 86_400.0)):
        Ticker.pokes = 0
        k = Kitchen("k", [Ticker], sink=lambda d, b: None, poke_interval=interval, host="h")
        t = time.monotonic()
        k.run([Packet(_frame(), 1000.0), Packet(_frame(), 1000.0 + gap),
               Packet(_frame(), 1000.0 + gap + interval * 3.5)])
        assert time.monotonic() - t < 5
        assert Ticker.pokes == MAX_CATCH_UP_POKES + 3
        # every interval is either poked or counted as skipped
        assert Ticker.pokes + k.stats.pokes_skipped == pytest.approx(
            (gap + interval * 3.5) // interval, abs=2)


def test_ordinary_gaps_poke_every_interval():
    Ticker.pokes = 0
    k = Kitchen("k", [Ticker], sink=lambda d, b: None, poke_interval=5.0, host="h")
    k.run([Packet(_frame(), 1000.0), Packet(_frame(), 1062.0)])
    assert Ticker.pokes == 12 and k.stats.pokes_skipped == 0


def test_datagrams_cut_by_the_snaplen_are_counted_not_decoded(tmp_path, procs):
    """A UDP datagram captured shorter than it was sent (-s, or a file written with a small
    snaplen) would reach a decoder as a short message: it is counted and skipped, and the
    kitchen says so even with -q."""
    import struct

    from scapy.all import DNS, DNSQR, IP, UDP, Ether

    from conftest import run_nd
    from netdumplings.chefs.dns import DNSLookupChef
    from netdumplings.capture.sources import PcapSource

    path = tmp_path / "cut.pcap"
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 60, 1)
    for i in range(4):
        raw = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                    / IP(src="192.0.2.1", dst="192.0.2.53") / UDP(sport=40000 + i, dport=53)
                    / DNS(id=i, qd=DNSQR(qname=f"host-{i}.example.org")))
        cut = raw[:60] if i % 2 else raw          # odd ones cut at 60 bytes
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(cut), len(raw)) + cut
    path.write_bytes(out)
    dumplings = []
    k = Kitchen("k", [DNSLookupChef], sink=lambda d, b: dumplings.append(d), poke_interval=None,
                host="h")
    k.run(PcapSource(path))
    k.finish()
    assert k.stats.truncated_datagrams == 2
    names = sorted(d["payload"].get("name") for d in dumplings if "name" in d["payload"])
    assert names == ["host-0.example.org.", "host-2.example.org."]   # unanswered, decoded
    assert not [d for d in dumplings if d["payload"].get("event") == "error"]
    rc, p = run_nd(procs, "nd-sniff", "-q", "-r", str(path), "-c", "DNSLookupChef", "--print")
    assert rc == 0
    assert any("2 datagrams cut by the snaplen not decoded" in line for line in p.err), p.err


def test_a_05_chef_reads_chef_poke_interval_and_a_raising_generator_is_named(caplog):
    """netdumplings 0.5 chefs read ``self.kitchen.chef_poke_interval``; a handler that
    yields and then raises is reported by its name, and what it yielded first is kept."""
    seen = []

    class OldChef(DumplingChef):
        def interval_handler(self, interval=None):
            seen.append(self.kitchen.chef_poke_interval)

    class HalfwayChef(DumplingChef):
        def packet_handler(self, packet):
            yield {"first": True}
            raise RuntimeError("halfway")

    out = []
    k = Kitchen("k", [OldChef, HalfwayChef], sink=lambda d, b: out.append(d),
                poke_interval=2.5, host="h")
    k.run([Packet(_frame(), 1000.0), Packet(_frame(), 1003.0)])
    k.finish()
    assert seen and set(seen) == {2.5}
    assert [d["payload"] for d in out if d["metadata"]["chef"] == "HalfwayChef"] == \
        [{"first": True}] * 2
    assert k.chef_errors == {"HalfwayChef": 2}
    assert "chef HalfwayChef: packet_handler raised while yielding dumplings: RuntimeError: " \
        "halfway" in caplog.text
