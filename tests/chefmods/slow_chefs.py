"""A chef too slow for the traffic it is given (tests of kernel drops and of the hints)."""

import time

from netdumplings import DumplingChef


class SlowUdpChef(DumplingChef):
    """Takes 20 ms per UDP packet: far slower than a loopback sender."""

    def packet_handler(self, packet):
        if packet.l4 == "udp":
            time.sleep(0.02)
            return {"dport": packet.dport}
