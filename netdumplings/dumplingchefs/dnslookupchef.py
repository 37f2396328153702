"""netdumplings 0.5's DNSLookupChef: one dumpling per DNS question, and a running tally."""

from __future__ import annotations

import time
from typing import Any

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.capture.packet import DNS_PORTS, Packet


class DNSLookupChef(DumplingChef):
    """For each DNS message (query or response, as 0.5): ``{"lookup": {"hostname":
    "example.com", "when": <epoch seconds>}}``; every interval: ``{"lookups_seen":
    {"example.com": {"count": 3, "latest": <epoch seconds>}}}`` since the start.

    The hostname is the message's first question, without the trailing dot. ``when`` is
    the packet's capture time (0.5: the wall clock when the chef saw it, the same thing
    live; from a capture file, the capture time is the one that means something).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lookups_seen: dict[str, dict[str, Any]] = {}

    def packet_handler(self, packet: Any) -> dict[str, Any] | None:
        # Only what scapy dissects as DNS (its ports) can have a DNS layer: decide that
        # from the kitchen's cheap header decode before asking scapy.
        if isinstance(packet, Packet) and packet.sport not in DNS_PORTS \
                and packet.dport not in DNS_PORTS:
            return None
        if not packet.haslayer("DNS"):
            return None
        query = packet.getlayer("DNS").fields.get("qd")
        # scapy 2.6+ holds the questions in a list; before, qd was the one question
        if isinstance(query, list):
            query = query[0] if query else None
        if query is None:
            return None
        hostname = query.qname.decode("utf-8", "replace")
        if hostname.endswith("."):
            hostname = hostname[:-1]
        # the capture time for the kitchen's packets (live, that is now; from a file, when
        # the lookup happened); the wall clock for a scapy packet handed in, as 0.5
        now = packet.time if isinstance(packet, Packet) else time.time()
        seen = self.lookups_seen.get(hostname)
        if seen is None:
            self.lookups_seen[hostname] = {"count": 1, "latest": now}
        else:
            seen["count"] += 1
            seen["latest"] = now
        return {"lookup": {"hostname": hostname, "when": now}}

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return {"lookups_seen": self.lookups_seen}
