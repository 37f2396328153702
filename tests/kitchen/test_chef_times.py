"""Time spent per chef (``Kitchen(time_chefs=True)``, ``nd-sniff -v``): which chef to leave
out when a live capture cannot keep up. Real chefs and captures; the slow chefs really
spend the time (sleep or CPU), and the assertions are about what was measured."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

from conftest import (DATA, assert_no_traceback, cook, free_port, nd_command, needs_capture,
                      run_nd)

from netdumplings.kitchen.chef import DatagramChef, DumplingChef
from netdumplings.chefs.dns import DNSLookupChef
from netdumplings.kitchen.kitchen import Kitchen

DNS = DATA / "dns-queries.pcap"
SLOW = Path(__file__).parent.parent / "chefmods" / "slow_chefs.py"


class SlowPacketChef(DumplingChef):
    def packet_handler(self, packet: Any) -> dict[str, Any]:
        time.sleep(0.01)
        return {"n": 1}


class SlowGeneratorChef(DatagramChef):
    """Its work happens while the kitchen iterates the generator on_data returns."""

    default_ports = (53,)

    def on_data(self, flow: Any, direction: Any, data: bytes, timestamp: float) -> Any:
        time.sleep(0.01)
        yield {"size": len(data)}
        time.sleep(0.01)


class QuickChef(DumplingChef):
    def packet_handler(self, packet: Any) -> None:
        return None


class RaisingChef(DumplingChef):
    def packet_handler(self, packet: Any) -> None:
        time.sleep(0.005)
        raise RuntimeError("boom")


def test_time_per_chef_includes_generator_work_and_raising_handlers() -> None:
    dumplings, k = cook(DNS, [SlowPacketChef, SlowGeneratorChef, QuickChef, RaisingChef,
                              DNSLookupChef], time_chefs=True)
    made = [d["metadata"]["chef"] for d in dumplings]
    packets = k.stats.packets
    secs = k.chef_seconds
    assert secs is not None and set(secs) == {"SlowPacketChef", "SlowGeneratorChef",
                                             "QuickChef", "RaisingChef", "DNSLookupChef"}
    datagrams = made.count("SlowGeneratorChef")
    assert packets == made.count("SlowPacketChef") and datagrams > 0
    assert secs["SlowPacketChef"] >= 0.01 * packets
    assert secs["SlowGeneratorChef"] >= 0.02 * datagrams    # both sleeps of each datagram
    assert secs["RaisingChef"] >= 0.005 * packets
    assert k.stats.chef_errors == packets                   # the errors are still counted
    assert secs["QuickChef"] < secs["SlowPacketChef"] / 10
    assert 0 < secs["DNSLookupChef"] < secs["SlowGeneratorChef"]
    assert made.count("DNSLookupChef") > 0                  # timed chefs still cook


def test_untimed_kitchen_leaves_chefs_alone() -> None:
    k = Kitchen("t", [SlowPacketChef], poke_interval=None)
    (chef,) = k.chefs
    assert k.chef_seconds is None
    assert "packet_handler" not in vars(chef)               # no wrapper on the hot path
    original = vars(SlowPacketChef)["packet_handler"]
    timed = Kitchen("t2", [SlowPacketChef], poke_interval=None, time_chefs=True)
    assert "packet_handler" in vars(timed.chefs[0])
    assert vars(SlowPacketChef)["packet_handler"] is original   # the class is untouched
    assert timed.chefs[0].packet_handler.__name__ == "packet_handler"


def test_nd_sniff_verbose_prints_time_in_chefs(procs) -> None:
    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "--print", "-v", "-c", "DNSLookupChef",
                   "-c", "PacketCountChef")
    assert rc == 0, p.err
    (line,) = [x for x in p.err if x.startswith("nd-sniff: time in chefs: ")]
    chefs = dict(part.rsplit(" ", 1) for part in
                 line[len("nd-sniff: time in chefs: "):].split(", "))
    assert set(chefs) == {"DNSLookupChef", "PacketCountChef"}
    assert all(v.endswith("s") and float(v[:-1]) >= 0 for v in chefs.values())
    assert_no_traceback(p)
    rc, p = run_nd(procs, "nd-sniff", "-r", str(DNS), "--print", "-c", "DNSLookupChef")
    assert rc == 0 and not [x for x in p.err if "time in chefs" in x]


@needs_capture
def test_kernel_drops_come_with_a_hint(procs) -> None:
    """A live kitchen whose chef cannot keep up: the kernel drops, the summary says so (even
    with -q) and says how to find the slow chef."""
    port = free_port(socket.SOCK_DGRAM)
    p = procs(nd_command("nd-sniff") + ["-i", "lo", "-f", f"udp dst port {port}", "-q",
                                        "-m", str(SLOW), "--print"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        deadline = time.monotonic() + 15
        while not p.out and time.monotonic() < deadline:   # capturing: a dumpling came out
            s.sendto(b"ping", ("127.0.0.1", port))
            time.sleep(0.2)
        assert p.out, p.err
        payload = b"x" * 1400
        for _ in range(60_000):   # ~84 MB of payload in about a second: over the buffer
            s.sendto(payload, ("127.0.0.1", port))
    time.sleep(0.5)
    p.p.send_signal(signal.SIGINT)
    assert p.wait(20) == 0
    (summary,) = [x for x in p.err if x.startswith("nd-sniff: ") and " packets, " in x]
    drops = int(summary.split(" dropped by the kernel")[0].rsplit(", ", 1)[1])
    assert drops > 0, summary
    assert any(x.startswith("nd-sniff: the chefs did not keep up with the capture: -v shows "
                            "the time each chef takes") for x in p.err), p.err
    assert_no_traceback(p)
