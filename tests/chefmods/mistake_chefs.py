"""Chefs with the mistakes a new user makes (tests/kitchen/test_chef_api.py); each one alone must
fail with one clear error naming it, and never take the good chef in this file down."""

from netdumplings import DatagramChef, DumplingChef


class GoodUdpChef(DumplingChef):
    def packet_handler(self, packet):
        if packet.l4 == "udp":
            return {"sport": packet.sport}


class ForgotPacketArgChef(DumplingChef):
    def packet_handler(self):  # the packet argument is missing
        return {"never": True}


class ForgotSuperChef(DumplingChef):
    def __init__(self, kitchen=None):  # no super().__init__: never registered
        self.count = 0

    def packet_handler(self, packet):
        self.count += 1
        return {"n": self.count}


class RaisingInitChef(DumplingChef):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        raise RuntimeError("cannot open my database")


class AsyncDataChef(DatagramChef):
    default_ports = (53,)

    async def on_data(self, flow, direction, data, timestamp):
        return {"n": len(data)}
