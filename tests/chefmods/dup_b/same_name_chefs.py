from netdumplings import DumplingChef


class SameNameChef(DumplingChef):
    def packet_handler(self, packet):
        return {"from": "b"}
