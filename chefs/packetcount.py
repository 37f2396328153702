"""How many packets carried each protocol layer: netdumplings 0.5's PacketCountChef.

0.5 asked scapy for every layer of every packet, which limits a kitchen to a few thousand
packets a second. The names here are those of ``packet.layer_names()`` (the kitchen's own
header decode; per packet only a "shape" key is taken, see ``layer_shape``) and are the
names scapy would give those layers (Ethernet, IP, IPv6, TCP, UDP, ICMP, ARP, DNS, Raw,
Padding), so 0.5 eaters see the same keys.
"""

from __future__ import annotations

from typing import Any, ClassVar

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.capture.packet import layer_shape, shape_names


class PacketCountChef(DumplingChef):
    """Counts packets per layer name since the kitchen started; reported every interval
    as ``{"packet_counts": {"Ethernet": n, "IP": n, "TCP": n, ...}}`` (cumulative, like
    0.5, so an eater that misses a dumpling loses nothing)."""

    #: Counts the frames as captured: a tunnelled packet is counted once, by its outer
    #: frame's layers, not again as the packet inside.
    tunnelled_packets: ClassVar[bool] = False

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        # Packets per layer *shape* (see netdumplings.capture.packet.layer_shape): one dict update
        # per packet instead of one per layer, and no header decode for common frames.
        # Expanded to per-name counts only when reported.
        self._shape_counts: dict[Any, int] = {}

    def packet_handler(self, packet: Any) -> None:
        key = layer_shape(packet.data, packet.linktype)
        counts = self._shape_counts
        counts[key] = counts.get(key, 0) + 1
        return None

    @property
    def layer_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key, n in self._shape_counts.items():
            for name in shape_names(key):
                counts[name] = counts.get(name, 0) + n
        return counts

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return {"packet_counts": self.layer_counts}

    # Several workers (nd-sniff --workers N): each counts its share of the packets; the
    # interval dumpling reports the sum, which is what one worker would have counted.
    shard = "merge"

    def worker_state(self) -> dict[Any, int]:
        return dict(self._shape_counts)

    def merge_worker_states(self, states: list[dict[Any, int]]) -> None:
        total: dict[Any, int] = {}
        for counts in states:
            for key, n in counts.items():
                total[key] = total.get(key, 0) + n
        self._shape_counts = total
