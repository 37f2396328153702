"""How many packets carried each protocol layer: netdumplings 0.5's PacketCountChef.

0.5 asked scapy for every layer of every packet, which limits a kitchen to a few thousand
packets a second. The names here come from ``packet.layer_names()``, derived from the
kitchen's own header decode, and are the names scapy would give those layers (Ethernet,
IP, IPv6, TCP, UDP, ICMP, ARP, DNS, Raw, Padding), so 0.5 eaters see the same keys.
"""

from __future__ import annotations

from typing import Any

from netdumplings.chef import DumplingChef


class PacketCountChef(DumplingChef):
    """Counts packets per layer name since the kitchen started; reported every interval
    as ``{"packet_counts": {"Ethernet": n, "IP": n, "TCP": n, ...}}`` (cumulative, like
    0.5, so an eater that misses a dumpling loses nothing)."""

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.layer_counts: dict[str, int] = {}

    def packet_handler(self, packet: Any) -> None:
        counts = self.layer_counts
        for name in packet.layer_names():
            counts[name] = counts.get(name, 0) + 1
        return None

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return {"packet_counts": dict(self.layer_counts)}
