"""A packet chef: who talks to whom, from the headers of every packet."""

from collections import Counter

from netdumplings import DumplingChef


class TalkerChef(DumplingChef):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.talks = Counter()

    def packet_handler(self, packet):
        # Header fields cost a few struct reads; scapy is never involved here.
        if packet.l4 not in ("tcp", "udp"):
            return None  # no dumpling for this packet
        talk = f"{packet.ip_src} -> {packet.ip_dst}:{packet.dport}"
        self.talks[talk] += 1
        return {"talk": talk, "transport": packet.l4, "bytes": len(packet)}

    def interval_handler(self, interval=None):
        # Every --poke-interval seconds, and once at the end of a capture file.
        return {"top_talks": dict(self.talks.most_common(2))}


if __name__ == "__main__":  # python talker_chef.py: try it on a capture
    from netdumplings.kitchen.offline import read_dumplings

    for dumpling in read_dumplings("tests/data/dns-queries.pcap", [TalkerChef]):
        print(dumpling["metadata"]["driver"], dumpling["payload"])
