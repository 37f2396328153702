"""A chef written against the netdumplings 0.5 API only (scapy packet access), used to show
that old chefs run unchanged in our kitchen and that the old kitchen runs them too."""

from netdumplings import DumplingChef


class OldUdpChef(DumplingChef):
    def packet_handler(self, packet):
        if packet.haslayer('UDP'):
            return {"load": bytes(packet['UDP'].payload).decode('utf-8', 'replace'),
                    "dport": packet['UDP'].dport}
        return None

    def interval_handler(self, interval=None):
        return {"poked": True}
