"""netdumplings 0.5's chefs, with 0.5's attributes and payload shapes.

``nd-sniff -m netdumplings.dumplingchefs`` runs these three, as ``nd-sniff`` did by default
in 0.5, for eaters and dashboards written against their dumplings (``{"lookup": ...}``,
``{"lookups_seen": ...}``, ``{"packet_counts": ...}``, ARP's ``notes``). ``nd-sniff``'s
default chefs are today's bundled ones (``netdumplings.chefs``): richer payloads under the
same names for ARP and DNS (see docs/chefs/ and docs/migration.md).

Each chef accepts the kitchen's lazily dissected packet (and then decides from its cheap
header fields whether to look further, so the chefs cost little per packet) as well as a
plain scapy packet, as 0.5's chefs did.
"""

from .arpchef import ARPChef
from .dnslookupchef import DNSLookupChef
from .packetcountchef import PacketCountChef

__all__ = ["ARPChef", "DNSLookupChef", "PacketCountChef"]
