"""netdumplings 0.5's PacketCountChef: packets seen per protocol layer."""

from __future__ import annotations

from typing import Any

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.capture.packet import Packet, layer_shape, shape_names


class PacketCountChef(DumplingChef):
    """Every interval: ``{"packet_counts": {"Ethernet": n, "IP": n, "TCP": n, ...}}``,
    packets per layer name since the start (no dumpling per packet).

    A scapy packet's layers are counted by walking them, as 0.5 did. The kitchen's packets
    are counted by their layer *shape* from the cheap header decode (scapy's names for the
    layers the kitchen decodes: link, ARP, IP, IPv6, TCP, UDP, ICMP, DNS, Raw, Padding),
    without dissecting each packet, and folded into ``packet_counts`` when it is read.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counts: dict[str, int] = {}
        self._shapes: dict[Any, int] = {}
        self.poke_count = 0

    @property
    def packet_counts(self) -> dict[str, int]:
        """Packets per layer name so far (the dict the interval dumplings carry)."""
        if self._shapes:
            counts = self._counts
            for key, n in self._shapes.items():
                for name in shape_names(key):
                    counts[name] = counts.get(name, 0) + n
            self._shapes.clear()
        return self._counts

    def packet_handler(self, packet: Any) -> None:
        if isinstance(packet, Packet):
            key = layer_shape(packet.data, packet.linktype)
            self._shapes[key] = self._shapes.get(key, 0) + 1
            return None
        counts = self._counts
        layer = packet
        while layer:  # scapy's NoPayload, the end of the chain, is falsy
            counts[layer.name] = counts.get(layer.name, 0) + 1
            layer = layer.payload
        return None

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return {"packet_counts": self.packet_counts}
