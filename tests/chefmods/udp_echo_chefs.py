"""Chefs used by the tests (loaded by nd-sniff from this file or as a dotted module)."""

from netdumplings import DumplingChef, StreamChef


class UdpPayloadChef(DumplingChef):
    """One dumpling per UDP packet, carrying its payload text and ports."""

    def packet_handler(self, packet):
        if packet.l4 == "udp":
            return {"text": packet.l4_payload.decode("utf-8", "replace"),
                    "sport": packet.sport, "dport": packet.dport}


class RaisingChef(DumplingChef):
    """Raises on every other packet and on interval pokes: the kitchen must carry on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n = 0

    def packet_handler(self, packet):
        self.n += 1
        if self.n % 2:
            raise RuntimeError("boom")
        return {"n": self.n}

    def interval_handler(self, interval=None):
        raise ValueError("interval boom")


class _Hidden(DumplingChef):
    assignable_to_kitchen = False


class ByteStreamChef(StreamChef):
    """Collects each direction's reassembled bytes of TCP flows on its ports; reports at close."""

    default_ports = ()

    def new_flow_state(self, flow):
        return {"client_to_server": bytearray(), "server_to_client": bytearray(), "gaps": 0,
                "chunks": 0}

    def on_data(self, flow, direction, data, timestamp):
        st = self.flow_state(flow)
        st[direction.value] += data
        st["chunks"] += 1

    def on_gap(self, flow, direction, size):
        self.flow_state(flow)["gaps"] += size

    def on_close(self, flow, reason):
        st = self.flow_state(flow)
        return {"flow": flow.describe(), "reason": str(reason),
                "client_to_server": st["client_to_server"].hex(),
                "server_to_client": st["server_to_client"].hex(),
                "gaps": st["gaps"], "chunks": st["chunks"]}


class InterfaceChef(DumplingChef):
    """Which interface each UDP packet was captured on."""

    def packet_handler(self, packet):
        if packet.l4 == "udp":
            return {"interface": packet.interface, "text": packet.l4_payload.decode("utf-8", "replace")}


class AlwaysRaisingChef(DumplingChef):
    """Raises on every packet: a kitchen running only it made nothing."""

    def packet_handler(self, packet):
        raise KeyError("no such field")
