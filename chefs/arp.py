"""ARP: who asks for which address, who answers, and which MAC each IP is bound to.

ARP is the classic way to redirect a LAN's traffic (announce your MAC for someone else's
IP), so besides one dumpling per ARP packet the chef keeps an IP -> MAC table and flags
an IP whose MAC changes. It is a packet chef and sees every packet, so it decides from
the fast ``packet.eth_type`` field and parses the 28-byte ARP body with ``struct`` rather
than asking scapy to dissect each frame. The kitchen's link-layer decode finds ARP in
Ethernet II and 802.2 LLC/SNAP frames, Linux cooked captures and 802.11 data frames, and
the kitchen hands over the ARP inside VXLAN, Geneve and GRE tunnels (``tunnel`` in the
payload says which).
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from netdumplings.kitchen.chef import ChefOptions, DumplingChef
from netdumplings.capture.packet import (ETH_ARP, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL,
                                         LINKTYPE_LINUX_SLL2)

OPCODES = {1: "request", 2: "reply", 3: "rarp-request", 4: "rarp-reply",
           8: "inarp-request", 9: "inarp-reply"}
ZERO_IP = "0.0.0.0"
#: MACs remembered per IP besides the current one.
MAX_PREVIOUS_MACS = 8
#: Changes remembered for the interval report.
MAX_CHANGES = 100

_ARP_HEAD = struct.Struct("!HHBBH")


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclass(slots=True)
class ArpMessage:
    """The fields of one Ethernet/IPv4 ARP packet."""

    opcode: int
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str

    @property
    def op(self) -> str:
        return OPCODES.get(self.opcode, f"op{self.opcode}")

    @property
    def gratuitous(self) -> bool:
        """An announcement of the sender's own address (sender IP = target IP)."""
        return self.sender_ip == self.target_ip and self.sender_ip != ZERO_IP

    @property
    def probe(self) -> bool:
        """Address-conflict probe (RFC 5227): the sender has no address yet."""
        return self.opcode == 1 and self.sender_ip == ZERO_IP

    def describe(self) -> str:
        """The classic tcpdump/tshark wording."""
        if self.opcode == 1:
            return f"who-has {self.target_ip} tell {self.sender_ip}"
        if self.opcode == 2:
            return f"{self.sender_ip} is-at {self.sender_mac}"
        return f"{self.op} {self.sender_ip} ({self.sender_mac}) -> {self.target_ip}"


class ArpParseError(ValueError):
    pass


def parse_arp(body: bytes) -> ArpMessage:
    """Parse an ARP body (from the hardware-type field on).

    Only Ethernet-sized hardware addresses and IPv4 protocol addresses are decoded; other
    ARP variants raise ``ArpParseError``."""
    if len(body) < 8:
        raise ArpParseError(f"ARP header cut short ({len(body)} bytes)")
    htype, ptype, hlen, plen, opcode = _ARP_HEAD.unpack_from(body, 0)
    if hlen != 6 or plen != 4 or ptype != 0x0800:
        raise ArpParseError(f"unsupported ARP variant (htype {htype}, ptype {ptype:#06x}, "
                            f"hlen {hlen}, plen {plen})")
    if len(body) < 28:
        raise ArpParseError(f"ARP body cut short ({len(body)} of 28 bytes)")
    return ArpMessage(
        opcode=opcode,
        sender_mac=mac_text(body[8:14]),
        sender_ip=socket.inet_ntoa(body[14:18]),
        target_mac=mac_text(body[18:24]),
        target_ip=socket.inet_ntoa(body[24:28]),
    )


def link_addresses(data: bytes, linktype: int) -> tuple[str | None, str | None]:
    """(source, destination) link-layer addresses of the frame, where the link type has
    them (Linux cooked captures only record the source)."""
    if linktype == LINKTYPE_ETHERNET and len(data) >= 14:
        return mac_text(data[6:12]), mac_text(data[0:6])
    if linktype == LINKTYPE_LINUX_SLL and len(data) >= 16:
        alen = min(8, int.from_bytes(data[4:6], "big"))
        return mac_text(data[6:6 + alen]), None
    if linktype == LINKTYPE_LINUX_SLL2 and len(data) >= 20:
        alen = min(8, data[11])
        return mac_text(data[12:12 + alen]), None
    return None, None


class ArpTable:
    """IP -> MAC bindings learnt from ARP senders, with the changes seen (bounded LRU)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.changes: list[dict[str, Any]] = []
        self.change_count = 0

    def learn(self, ip: str, mac: str, timestamp: float | None) -> dict[str, Any] | None:
        """Record ``ip`` at ``mac``; returns the change record when the MAC differs."""
        entry = self.entries.get(ip)
        if entry is None:
            if len(self.entries) >= self.max_entries:
                self.entries.popitem(last=False)
            self.entries[ip] = {"mac": mac, "first_seen": timestamp, "last_seen": timestamp,
                                "count": 1, "previous_macs": [], "changes": 0}
            return None
        self.entries.move_to_end(ip)
        entry["last_seen"] = timestamp
        entry["count"] += 1
        if entry["mac"] == mac:
            return None
        change = {"ip": ip, "old_mac": entry["mac"], "new_mac": mac, "timestamp": timestamp}
        prev = entry["previous_macs"]
        if entry["mac"] in prev:
            prev.remove(entry["mac"])
        prev.append(entry["mac"])
        del prev[:-MAX_PREVIOUS_MACS]
        entry["mac"] = mac
        entry["changes"] += 1
        self.change_count += 1
        self.changes.append(change)
        del self.changes[:-MAX_CHANGES]
        return change

    def report(self) -> dict[str, Any]:
        return {
            "arp_table": {ip: {**e, "previous_macs": list(e["previous_macs"]),
                               "changed": e["changes"] > 0}
                          for ip, e in self.entries.items()},
            "changes": [dict(c) for c in self.changes],
            "possible_spoofing": sorted(ip for ip, e in self.entries.items() if e["changes"]),
        }


class ARPChef(DumplingChef):
    """One dumpling per ARP packet (who-has / is-at, gratuitous and probe flagged) and an
    interval table IP -> MAC whose ``possible_spoofing`` lists IPs that changed MAC.

    A MAC change is normal when a machine is replaced or a failover address moves; it is
    also exactly what ARP spoofing looks like, hence "possible".
    """

    class Options(ChefOptions):
        #: IP addresses kept in the table (least recently seen dropped first).
        max_entries: int = 4096
        #: Send a dumpling per ARP packet (False: only the interval table).
        packets: bool = True

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.table = ArpTable(self.options.max_entries)
        self.arp_packets = 0
        self.skipped = 0

    def packet_handler(self, packet: Any) -> dict[str, Any] | None:
        if packet.eth_type != ETH_ARP:
            return None
        data = packet.data
        off = packet.l3_offset or 0
        try:
            msg = parse_arp(data[off:off + 28])
        except ArpParseError as exc:
            self.skipped += 1
            self.logger.debug("skipped ARP frame: %s", exc)
            return None
        self.arp_packets += 1
        change = None
        if msg.sender_ip != ZERO_IP:
            change = self.table.learn(msg.sender_ip, msg.sender_mac, packet.time)
        if not self.options.packets:
            return None
        eth_src, eth_dst = link_addresses(data, packet.linktype)
        line = msg.describe()
        if msg.gratuitous:
            line += " (gratuitous)"
        elif msg.probe:
            line += " (probe)"
        if change is not None:
            line += f" MAC CHANGED, was {change['old_mac']}"
        payload: dict[str, Any] = {
            "op": msg.op,
            "opcode": msg.opcode,
            "eth_src": eth_src,
            "eth_dst": eth_dst,
            "sender_mac": msg.sender_mac,
            "sender_ip": msg.sender_ip,
            "target_mac": msg.target_mac,
            "target_ip": msg.target_ip,
            "gratuitous": msg.gratuitous,
            "probe": msg.probe,
            "mac_change": change,
            "interface": packet.interface,
            "timestamp": packet.time,
            "summary": f"{eth_src or msg.sender_mac} -> {eth_dst or '?'}  {line}",
        }
        tunnel = packet.tunnel
        if tunnel is not None:   # taken out of a VXLAN/Geneve/GRE tunnel by the kitchen
            payload["tunnel"] = tunnel
            payload["summary"] += f" (in {tunnel})"
        return payload

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return self.table.report()

    # Several workers (nd-sniff --workers N): the reader sends every ARP packet about one
    # IP address (its sender's, or the one probed) to the same worker, so each address's
    # entry and MAC changes are learnt in one worker, in capture order (netdumplings.kitchen.shard).
    # The interval table is the union of the workers' tables: per IP the entry seen last,
    # with the counts added; the changes in time order. (Beyond max_entries addresses a
    # worker's own table, which holds only its share, forgets an address later than one
    # table of every address would.)
    shard = "merge"

    def worker_state(self) -> dict[str, Any]:
        t = self.table
        return {"entries": list(t.entries.items()), "changes": list(t.changes),
                "change_count": t.change_count}

    def merge_worker_states(self, states: list[dict[str, Any]]) -> None:
        merged: dict[str, dict[str, Any]] = {}
        changes: list[dict[str, Any]] = []
        count = 0
        for state in states:
            for ip, entry in state["entries"]:
                have = merged.get(ip)
                if have is None:
                    merged[ip] = dict(entry)
                    continue
                total = have["count"] + entry["count"]
                newer = entry if (entry["last_seen"] or 0) >= (have["last_seen"] or 0) else have
                first = min((e["first_seen"] for e in (have, entry)
                             if e["first_seen"] is not None), default=None)
                merged[ip] = dict(newer, count=total, first_seen=first,
                                  changes=have["changes"] + entry["changes"])
            changes.extend(state["changes"])
            count += state["change_count"]
        table = ArpTable(self.options.max_entries)
        for ip, entry in sorted(merged.items(), key=lambda kv: kv[1]["last_seen"] or 0):
            table.entries[ip] = entry
        while len(table.entries) > table.max_entries:
            table.entries.popitem(last=False)
        changes.sort(key=lambda c: c["timestamp"] or 0)
        table.changes = changes[-MAX_CHANGES:]
        table.change_count = count
        self.table = table
