"""netdumplings 0.5's ARPChef: one dumpling per ARP packet, and which IP has which MAC."""

from __future__ import annotations

from typing import Any

from netdumplings.kitchen.chef import DumplingChef
from netdumplings.capture.packet import ETH_ARP, Packet


class ARPChef(DumplingChef):
    """One dumpling per ARP packet::

        {"operation": "reply", "src_hw": "aa:bb:cc:dd:ee:ff", "src_ip": "10.0.1.100",
         "dst_hw": "11:22:33:44:55:66", "dst_ip": "10.0.1.99", "time": 1499041214.2,
         "notes": "source device is new"}

    ``notes`` is set on replies: ``"source device is new"`` for an IP not seen before,
    ``"source device has new IP address"`` when a known IP answers with another MAC (0.5's
    wording); ``ip_mac`` is the table the replies built. ``operation`` is ``"request"``,
    ``"reply"`` or the opcode number.
    """

    request = 1
    reply = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ip_mac: dict[str, str] = {}

    def packet_handler(self, packet: Any) -> dict[str, Any] | None:
        # The kitchen's packet knows its EtherType without scapy: skip the rest cheaply.
        if isinstance(packet, Packet) and packet.eth_type != ETH_ARP:
            return None
        if not packet.haslayer("ARP"):
            return None
        arp = packet["ARP"]
        op = arp.op
        operation: Any = {ARPChef.request: "request", ARPChef.reply: "reply"}.get(op, op)
        payload = {
            "operation": operation,
            "src_hw": arp.hwsrc,
            "src_ip": arp.psrc,
            "dst_hw": arp.hwdst,
            "dst_ip": arp.pdst,
            # a layer scapy dissected from bytes has no time of its own: the packet's is it
            "time": float(arp.time or packet.time),
            "notes": None,
        }
        if op == ARPChef.reply:
            known = self.ip_mac.get(arp.psrc)
            if known is None:
                payload["notes"] = "source device is new"
            elif known != arp.hwsrc:
                payload["notes"] = "source device has new IP address"
            self.ip_mac[arp.psrc] = arp.hwsrc
        return payload
