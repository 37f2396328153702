"""Flow chefs the capture filter leaves blind, told at start and at exit.

A chef that follows TCP port 7777 under ``--filter "tcp port 24224"`` sees nothing, and a
kitchen that ends with "0 dumplings" does not say why. At start, libpcap itself decides
whether the filter can pass a chef's ports: the filter is compiled as tcpdump would and
run over made-up packets to and from each port (IPv4 and IPv6, with data), so no filter
syntax is second-guessed here. At exit, a flow chef that followed no flow is named with
the busiest ports it did not follow (the kitchen counts flows per server port).
"""

from __future__ import annotations

import ctypes
import re
from collections import Counter
from typing import Any, Iterable

from ..kitchen.chef import FlowChef

LINKTYPE_ETHERNET = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
EPHEMERAL = 40000


class CompiledFilter:
    """A tcpdump expression compiled by libpcap for Ethernet frames; ``passes(frame)``."""

    def __init__(self, expression: str) -> None:
        from scapy.libs import winpcapy as pc
        from scapy.libs.structures import bpf_program

        self._pc = pc
        self._prog = bpf_program()
        handle = pc.pcap_open_dead(LINKTYPE_ETHERNET, 65535)
        try:
            if pc.pcap_compile(handle, ctypes.byref(self._prog), expression.encode(), 1,
                               PCAP_NETMASK_UNKNOWN) == -1:
                raise ValueError((pc.pcap_geterr(handle) or b"syntax error").decode())
        finally:
            pc.pcap_close(handle)
        self._offline = pc._lib.pcap_offline_filter
        self._offline.restype = ctypes.c_int
        self._offline.argtypes = [ctypes.POINTER(bpf_program),
                                  ctypes.POINTER(pc.pcap_pkthdr), ctypes.c_char_p]

    def passes(self, frame: bytes) -> bool:
        hdr = self._pc.pcap_pkthdr()
        hdr.caplen = hdr.len = len(frame)
        return self._offline(ctypes.byref(self._prog), ctypes.byref(hdr), frame) != 0

    def close(self) -> None:
        if self._prog is not None:
            self._pc.pcap_freecode(ctypes.byref(self._prog))
            self._prog = None


def _frames(transport: str, port: int) -> Iterable[bytes]:
    """Packets of a flow on server ``port``: both directions, IPv4 and IPv6, with data
    (a SYN alone would miss a filter on payload, data alone one on SYNs: both are sent)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    # Fixed addresses: scapy would otherwise look the MAC address up (and warn).
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for ip in (IP(src="192.0.2.1", dst="192.0.2.2"), IPv6(src="2001:db8::1", dst="2001:db8::2")):
        for sport, dport in ((EPHEMERAL, port), (port, EPHEMERAL)):
            if transport == "tcp":
                for flags in ("S", "PA"):
                    l4 = TCP(sport=sport, dport=dport, flags=flags)
                    yield bytes(ether / ip / l4 / (b"" if flags == "S" else b"x" * 32))
            else:
                yield bytes(ether / ip / UDP(sport=sport, dport=dport) / (b"x" * 32))


def port_passes(flt: CompiledFilter, transport: str, port: int) -> bool:
    return any(flt.passes(frame) for frame in _frames(transport, port))


def _watches(chef: Any) -> bool:
    """A flow chef that picks flows by port only (no detect(), not every flow)."""
    cls = type(chef)
    return isinstance(chef, FlowChef) and not cls.all_flows and cls.detect is FlowChef.detect \
        and bool(chef.ports)


def blind_chefs(expression: str | None, chefs: Iterable[Any]) -> list[str]:
    """One warning line per flow chef whose every port the filter rejects, with the
    ``-o CHEF.ports=...`` that would fit the ports the filter names and does pass."""
    watching = [c for c in chefs if _watches(c)]
    if not expression or not watching:
        return []
    try:
        flt = CompiledFilter(expression)
    except (ValueError, OSError, ImportError, AttributeError):
        return []  # the capture reports a bad filter itself, in its own words
    lines = []
    try:
        named = sorted({int(n) for n in re.findall(r"\b\d{1,5}\b", expression)
                        if 0 < int(n) < 65536})
        for chef in watching:
            transports = sorted(chef.transports)
            if any(port_passes(flt, t, p) for t in transports for p in sorted(chef.ports)):
                continue
            fits = [n for n in named if any(port_passes(flt, t, n) for t in transports)]
            hint = (f"-o {chef.name}.ports={','.join(map(str, fits))} if that is where it "
                    f"talks, or a filter that passes its ports" if fits else
                    "a filter that passes its ports, or -o "
                    f"{chef.name}.ports=PORT for the port it talks on")
            lines.append(f"{chef.name} follows {'/'.join(transports)} "
                         f"{_ports(chef.ports)}, which the filter {expression!r} never "
                         f"passes: it will see nothing. Give it {hint}")
    finally:
        flt.close()
    return lines


def _ports(ports: Iterable[int]) -> str:
    ports = sorted(ports)
    shown = ",".join(map(str, ports[:8])) + ("..." if len(ports) > 8 else "")
    return f"port{'s' if len(ports) > 1 else ''} {shown}"


def idle_chefs(kitchen: Any, top: int = 5, chosen: bool = True) -> list[str]:
    """At exit: one line per flow chef that followed no flow, with the busiest ports of
    its transports that it did not follow and no other chef follows (flows opened per
    server port).

    Not ``chosen`` (the bundled set, each chef for its own protocol): most of them idle is
    normal, so there is one line only when none of them followed anything."""
    lines = []
    by_port: Counter[tuple[str, int]] = getattr(kitchen, "flows_by_port", Counter())
    followed: Counter[str] = getattr(kitchen, "flows_followed", Counter())
    if not chosen:
        flow_chefs = [c for c in kitchen.chefs if isinstance(c, FlowChef)]
        if not flow_chefs or any(followed.get(c.name) for c in flow_chefs) or not by_port:
            return []
        busiest = ", ".join(f"{t} {p} ({n} flow{'s' if n > 1 else ''})"
                            for (t, p), n in by_port.most_common(top))
        return [f"no flow chef followed a flow; the busiest ports were {busiest} "
                "(-l lists the chefs, -o CHEF.ports=PORT points one at a port)"]
    for chef in kitchen.chefs:
        if not isinstance(chef, FlowChef) or followed.get(chef.name):
            continue
        # ports another chef follows are accounted for: the hint is about the rest
        claimed = {p for c in kitchen.chefs if c is not chef and isinstance(c, FlowChef)
                   for p in c.ports}
        others = [(t, p, n) for (t, p), n in by_port.most_common()
                  if t in chef.transports and p not in chef.ports and p not in claimed][:top]
        seen = ("; busiest ports it did not follow: " + ", ".join(
            f"{t} {p} ({n} flow{'s' if n > 1 else ''})" for t, p, n in others)
            + f" (-o {chef.name}.ports={others[0][1]} to follow the first)") if others else \
            f"; the capture had no {'/'.join(sorted(chef.transports))} flows on other ports"
        lines.append(f"{chef.name} followed no flow ({_ports(chef.ports) if chef.ports else 'no ports'})"
                     f"{seen}")
    return lines
