"""Which worker gets a packet: the reader's side of ``nd-sniff --workers N`` (sans-I/O).

A worker must see everything a chef needs in one place, so the key is chosen per kind of
traffic, and is the same for both directions:

* TCP: the two endpoints (ip, port), in either order - one connection, one worker.
* UDP: the endpoint with the higher port (the client's ephemeral one, usually; on equal
  ports the lower endpoint). A DNS query and its answer, and an EPICS CA search broadcast
  and the reply that comes back unicast on another 4-tuple, share the client's endpoint,
  so they meet in one worker.
* Other IP (ICMP, ...): the two addresses, in either order.
* ARP: the IPv4 address the packet announces (its sender's; for a probe, sender
  0.0.0.0, the address probed). The ARP table and its MAC-change detection need every
  packet about one address, in capture order, in one place - not every ARP packet: keyed
  by the EtherType (as before), all ARP landed in one worker, 4.5 % of the packets of the
  benchmark's mix on top of its half of the flows.
* Other frames that are not IP (LLDP, ...): the EtherType.
* Tunnels (VXLAN, Geneve, GRE): the packet inside, when the kitchen looks inside (the outer
  UDP source port of VXLAN differs between the two directions of the inner flow).
* IP fragments: the first fragment's ports decide, and every fragment of that datagram
  follows it; fragments that come before the first one are held until it comes (bounded:
  beyond ``max_held`` datagrams, or at the end, they go by their addresses).

The keys are numbers, not bytes or strings, so the split is the same in every run (Python
salts the hash of bytes and str per process): which worker a flow lands in, and how even
the split of a capture is, do not change from one run to the next.
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from typing import Any

from .chef import FlowChef
from ..capture.packet import Packet
from ..capture.tunnels import IPPROTO_GRE, TUNNEL_UDP_PORTS, inner_frame

_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
_ARP = 0x0806
_NO_IP = b"\0\0\0\0"
_int = int.from_bytes
#: From byte 12 of an Ethernet frame: EtherType, IPv4 version/IHL, flags/fragment offset,
#: protocol, source, destination, and the ports right after a 20-byte header.
_V4 = struct.Struct("!HB5xHxB2xIIHH").unpack_from
#: From byte 12: EtherType, IPv6 next header, source and destination (two halves each), ports.
_V6 = struct.Struct("!H6xBxQQQQHH").unpack_from
_PROTO = {"tcp": 6, "udp": 17}


def _packed(ip: str) -> bytes:
    """The address as on the wire, as the fast path keys it."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


#: Fragmented datagrams whose worker is remembered (the oldest forgotten beyond it).
MAX_ROUTES = 4096
#: Datagrams whose fragments are held waiting for their first fragment.
MAX_HELD = 1024


class Sharder:
    """``route(packet)`` -> the worker index, or -1 when the packet is held (a fragment
    that came before its datagram's first fragment). Held packets come back, in order, in
    ``released`` (as (worker, packet) pairs), to be sent before the packet just routed."""

    def __init__(self, workers: int, decapsulate: bool = True) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.decapsulate = decapsulate
        self.released: list[tuple[int, Any]] = []
        self._routes: OrderedDict[tuple, int] = OrderedDict()
        self._held: OrderedDict[tuple, list[Any]] = OrderedDict()
        self.held_total = 0
        self._tunnel_ports = TUNNEL_UDP_PORTS if decapsulate else frozenset()

    def route(self, pkt: Packet) -> int:
        # The common frames straight from their bytes, one struct unpack for the addresses
        # and ports as numbers (no header decode: the reader is the one serial step); the
        # same keys as the general path below (``_by_ports``).
        data = pkt.data
        n = len(data)
        if pkt.linktype == 1 and n >= 38:
            et = data[12] << 8 | data[13]
            if et == 0x0800:
                if data[14] == 0x45:   # IPv4 without options
                    _, _, frag, proto, src, dst, sport, dport = _V4(data, 12)
                    if not frag & 0x3FFF and (proto == 6 or (
                            proto == 17 and dport not in self._tunnel_ports)):
                        a, b = (src, sport), (dst, dport)
                        if proto == 6:
                            return hash((a, b) if a < b else (b, a)) % self.workers
                        return hash(a if sport > dport or (sport == dport and a < b)
                                    else b) % self.workers
                elif not (data[20] & 0x3F or data[21]):        # not a fragment
                    proto = data[23]
                    l4 = 14 + ((data[14] & 0x0F) << 2)
                    if (proto == 6 or proto == 17) and n >= l4 + 4:
                        sport = data[l4] << 8 | data[l4 + 1]
                        dport = data[l4 + 2] << 8 | data[l4 + 3]
                        if proto == 6 or dport not in self._tunnel_ports:
                            return self._by_ports(proto, data[26:30], sport, data[30:34],
                                                  dport)
            elif et == 0x86DD:
                if n >= 58:
                    _, proto, sh, sl, dh, dl, sport, dport = _V6(data, 12)
                    if proto == 6 or (proto == 17 and dport not in self._tunnel_ports):
                        a, b = (sh << 64 | sl, sport), (dh << 64 | dl, dport)
                        if proto == 6:
                            return hash((a, b) if a < b else (b, a)) % self.workers
                        return hash(a if sport > dport or (sport == dport and a < b)
                                    else b) % self.workers
            elif et == _ARP:
                return self._arp(data, 14)
            elif et not in _VLAN:
                return hash(et) % self.workers
        frag = pkt.ip_frag
        if frag is None:
            return self._worker(pkt, 0)
        ident, offset, _more, _start, proto = frag
        key = (pkt.ip_src, pkt.ip_dst, proto, ident)
        w = self._routes.get(key)
        if w is not None:
            return w
        if offset == 0:
            w = (self._by_ports(_PROTO.get(pkt.l4, 0), _packed(pkt.ip_src), pkt.sport,
                                _packed(pkt.ip_dst), pkt.dport)
                 if pkt.sport is not None else self._by_addresses(pkt.ip_src, pkt.ip_dst))
            self._routes[key] = w
            if len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)
            held = self._held.pop(key, None)
            if held:
                self.released.extend((w, p) for p in held)
            return w
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = []
            if len(self._held) > MAX_HELD:
                self._release_oldest()
        held.append(pkt)
        self.held_total += 1
        return -1

    def flush(self) -> None:
        """The end: every fragment still held goes to the worker of its addresses."""
        while self._held:
            self._release_oldest()

    def _release_oldest(self) -> None:
        (src, dst, _proto, _ident), held = self._held.popitem(last=False)
        w = self._by_addresses(src, dst)
        self.released.extend((w, p) for p in held)

    def _worker(self, pkt: Packet, depth: int) -> int:
        l4 = pkt.l4
        if pkt.ip_src is None:
            if pkt.eth_type == _ARP and pkt.l3_offset is not None:
                return self._arp(pkt.data, pkt.l3_offset)
            return hash(pkt.eth_type) % self.workers
        if self.decapsulate and depth < 2 and (
                (l4 == "udp" and pkt.dport in TUNNEL_UDP_PORTS)
                or (l4 is None and pkt.ip_proto == IPPROTO_GRE)):
            found = inner_frame(pkt)
            if found is not None:
                inner = Packet(found[0], pkt.time, linktype=found[1])
                if inner.ip_frag is None:
                    return self._worker(inner, depth + 1)
                return self._by_addresses(inner.ip_src, inner.ip_dst)
        if pkt.sport is not None:
            return self._by_ports(_PROTO.get(l4, 0), _packed(pkt.ip_src), pkt.sport,
                                  _packed(pkt.ip_dst), pkt.dport)
        return self._by_addresses(pkt.ip_src, pkt.ip_dst)

    def _arp(self, data: bytes, off: int) -> int:
        """ARP (IPv4 over Ethernet) at ``off``: by the address announced (or probed)."""
        if len(data) < off + 28 or data[off + 4:off + 6] != b"\x06\x04":
            return hash(_ARP) % self.workers
        ip = data[off + 14:off + 18]
        if ip == _NO_IP:
            ip = data[off + 24:off + 28]
        return hash(_int(ip)) % self.workers

    def _by_ports(self, proto: int, src: bytes, sport: int, dst: bytes, dport: int) -> int:
        a, b = (_int(src), sport), (_int(dst), dport)
        if proto == 17:
            key = a if sport > dport or (sport == dport and a < b) else b
        else:
            key = (a, b) if a < b else (b, a)  # type: ignore[assignment]
        return hash(key) % self.workers

    def _by_addresses(self, src: Any, dst: Any) -> int:
        if src is None or dst is None:
            return 0
        a, b = _int(_packed(src)), _int(_packed(dst))
        return hash((a, b) if a < b else (b, a)) % self.workers


FLOWS, MERGE, READER = "flows", "merge", "reader"


def shard_mode(cls: type) -> str:
    """Where chef class ``cls`` runs with several workers (see ``DumplingChef.shard``)."""
    mode = getattr(cls, "shard", None)
    if mode in (FLOWS, MERGE, READER):
        return mode
    if mode is not None:
        raise ValueError(f"{cls.__name__}.shard = {mode!r}: expected 'flows', 'merge' or "
                         f"'reader'")
    if issubclass(cls, FlowChef) and not cls.handles_packets() \
            and not cls.handles_intervals():
        return FLOWS
    return READER
