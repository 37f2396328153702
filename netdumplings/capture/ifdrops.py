"""Packets lost before they reach a packet socket, as tcpdump's "dropped by interface".

A live kitchen's socket counts what its own buffer could not hold (PACKET_STATISTICS,
``LiveSource.stats()``). Packets can also be lost earlier, where no socket sees them: the
driver's receive ring (``rx_fifo``/``rx_missed``) and the per-CPU backlog queue the kernel
puts received packets in before any protocol or packet socket gets them (a veth, or a
driver without its own NAPI queue, delivers there; beyond ``net.core.netdev_max_backlog``
packets are dropped). The kernel counts the first kind per interface (``/proc/net/dev``
"drop" and "fifo", which libpcap reports as ``ps_ifdrop``) and the second per CPU for the
whole host (``/proc/net/softnet_stat``, second column; Linux also adds each to the
receiving device's ``rx_dropped``). Both are read at the start and the end of a capture.
"""

from __future__ import annotations

from typing import Iterable


def interface_counters(path: str = "/proc/net/dev") -> dict[str, int]:
    """Receive drops (drop + fifo) per interface, as the kernel counts them now."""
    out: dict[str, int] = {}
    try:
        with open(path) as fh:
            lines = fh.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 5:
            out[name.strip()] = int(fields[3]) + int(fields[4])
    return out


def backlog_drops(path: str = "/proc/net/softnet_stat") -> int:
    """Packets the host dropped because a CPU's backlog queue was full (all CPUs)."""
    total = 0
    try:
        with open(path) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 2:
                    total += int(fields[1], 16)
    except OSError:
        pass
    return total


class InterfaceDrops:
    """The drops on ``interfaces`` (all of them for None) since this was made."""

    def __init__(self, interfaces: Iterable[str] | None) -> None:
        self.interfaces = list(interfaces) if interfaces else None
        self._start = interface_counters()
        self._backlog = backlog_drops()

    def since(self) -> dict[str, int]:
        now = interface_counters()
        names = self.interfaces if self.interfaces is not None else list(now)
        dropped = sum(max(0, now.get(n, 0) - self._start.get(n, 0)) for n in names)
        return {"interface_drops": dropped,
                "backlog_drops": max(0, backlog_drops() - self._backlog)}
