"""An abstract base hidden with assignable_to_kitchen = False, and a concrete subclass
that does not repeat the attribute (it must still be offered); the module also subclasses a
bundled chef, which must then not run a second time as itself."""

import sys

from netdumplings import DumplingChef
from netdumplings.chefs.dns import DNSLookupChef

print("family_chefs imported", file=sys.stderr)


class CountingBase(DumplingChef):
    assignable_to_kitchen = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.count = 0

    def interval_handler(self, interval=None):
        return {"count": self.count}


class UdpCounterChef(CountingBase):
    def packet_handler(self, packet):
        if packet.l4 == "udp":
            self.count += 1


class MyDnsChef(DNSLookupChef):
    pass
