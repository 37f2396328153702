"""Packets as chefs see them: headers decoded straight from the raw bytes, scapy on demand.

Full scapy dissection costs ~300 us a packet; the few fields the flow table and most chefs
need (addresses, ports, TCP flags and sequence numbers, the transport payload) cost about a
microsecond with ``struct``. ``Packet`` decodes those eagerly and builds the scapy packet only
when a chef touches something scapy-specific, so a netdumplings 0.5 chef that calls
``packet.haslayer('DNS')`` still works (and pays for dissection) while nothing else does.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

# Link-layer types (LINKTYPE_* from the pcap spec) and EtherTypes: see ``linktypes``.
from .linktypes import (ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_TAGS,  # noqa: E402,F401
                        LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL,
                        LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL, LINKTYPE_RAW,
                        network_layer)

ETH_VLAN = tuple(ETH_TAGS)

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
TCP_FLAG_NAMES = (("FIN", TCP_FIN), ("SYN", TCP_SYN), ("RST", TCP_RST), ("PSH", TCP_PSH),
                  ("ACK", TCP_ACK), ("URG", TCP_URG), ("ECE", 0x40), ("CWR", 0x80))

#: UDP ports scapy dissects as DNS (so our layer names agree with scapy's).
DNS_PORTS = frozenset({53, 5353, 5355})

_L2_NAMES = {LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_LINUX_SLL: "cooked linux",
             LINKTYPE_LINUX_SLL2: "cooked linux v2", LINKTYPE_NULL: "Loopback",
             LINKTYPE_LOOP: "Loopback"}
_L4_NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP"}

_unpack_hh = struct.Struct("!HH").unpack_from
_unpack_tcp = struct.Struct("!HHIIBB").unpack_from
_unpack_h = struct.Struct("!H").unpack_from
_unpack_frag6 = struct.Struct("!HI").unpack_from   # IPv6 fragment header: offset/M, id
_unpack_udp = struct.Struct("!HHH").unpack_from
# IPv4: version/IHL, total length, flags/fragment offset, protocol, source, destination
_unpack_ip4 = struct.Struct("!BxHxxHxB2x4s4s").unpack_from
# IPv6: payload length, next header, source, destination
_unpack_ip6 = struct.Struct("!4xHBx16s16s").unpack_from
_ntop = socket.inet_ntop
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6


#: The slots ``decode`` fills in (unset until then).
_DECODED_FIELDS = frozenset((
    "eth_type", "l3_offset", "ip_src", "ip_dst", "ip_proto", "l4", "sport", "dport",
    "tcp_flags", "tcp_seq", "tcp_ack", "l4_offset", "l4_length", "ip_end", "vlan", "ip_frag"))


def tcp_flag_names(flags: int) -> list[str]:
    return [name for name, bit in TCP_FLAG_NAMES if flags & bit]


# -- layer shapes: scapy's layer names without building a Packet --------------------------

_SHAPE_L3 = (None, "IP", "IPv6")
_SHAPE_L4 = (None, "TCP", "UDP", "ICMP")
_shape_names_cache: dict[Any, tuple[str, ...]] = {}


def layer_shape(data: bytes, linktype: int = LINKTYPE_ETHERNET) -> Any:
    """A hashable key standing for ``Packet(data, ...).layer_names()``.

    Counting packets per layer is the one thing every packet of a capture costs when only
    PacketCountChef runs, so the common frames (Ethernet carrying IPv4/IPv6 with TCP, UDP
    or ICMP, and ARP) are classified from a handful of bytes into a small int; anything
    else (VLANs, other link types, extension headers, fragments, frames cut short) gets
    the name tuple of a full header decode. ``shape_names`` turns either into the names.
    """
    n = len(data)
    if linktype != 1 or n < 34:
        return _slow_shape(data, linktype)
    et = data[12] << 8 | data[13]
    if et == 0x0800:
        ihl = (data[14] & 0x0F) << 2
        if ihl < 20 or (data[20] & 0x1F) or data[21]:
            return _slow_shape(data, linktype)
        ip_end = 14 + (data[16] << 8 | data[17])
        proto = data[23]
        l4off = 14 + ihl
        key = 64
    elif et == 0x86DD:
        if n < 54:
            return _slow_shape(data, linktype)
        ip_end = 54 + (data[18] << 8 | data[19])
        proto = data[20]
        l4off = 54
        key = 128
    elif et == 0x0806:
        return 1
    else:
        return _slow_shape(data, linktype)
    if ip_end > n:   # cut short (snaplen, or shorter than its IP length): names what is there
        return _slow_shape(data, linktype)
    if proto == 6:
        if n < l4off + 14:
            return _slow_shape(data, linktype)
        payload = l4off + ((data[l4off + 12] >> 4) << 2)
        if ip_end > payload and n > payload:
            key |= 2
        key |= 8
    elif proto == 17:
        if n < l4off + 6:
            return _slow_shape(data, linktype)
        payload = l4off + 8
        ulen_end = l4off + (data[l4off + 4] << 8 | data[l4off + 5])
        if (ulen_end if ulen_end < ip_end else ip_end) > payload:
            sport = data[l4off] << 8 | data[l4off + 1]
            dport = data[l4off + 2] << 8 | data[l4off + 3]
            if sport in DNS_PORTS or dport in DNS_PORTS:
                key |= 4
            elif n > payload:
                key |= 2
        key |= 16
    elif proto == 1 and key == 64:
        if ip_end - l4off > 8 and n > l4off + 8 and data[l4off] in (0, 8):
            key |= 2
        key |= 24
    else:
        return _slow_shape(data, linktype)
    if n > ip_end:
        key |= 1
    return key


def _slow_shape(data: bytes, linktype: int) -> tuple[str, ...]:
    return tuple(Packet(data, 0.0, None, linktype).layer_names())


def shape_names(key: Any) -> tuple[str, ...]:
    """The layer names a ``layer_shape`` key stands for."""
    if type(key) is tuple:
        return key
    names = _shape_names_cache.get(key)
    if names is None:
        if key == 1:
            names = ("Ethernet", "ARP")
        else:
            out = ["Ethernet", _SHAPE_L3[key >> 6], _SHAPE_L4[(key >> 3) & 3]]
            if key & 4:
                out.append("DNS")
            elif key & 2:
                out.append("Raw")
            if key & 1:
                out.append("Padding")
            names = tuple(out)
        _shape_names_cache[key] = names
    return names


class Packet:
    """One captured frame with its cheap header fields decoded.

    Attributes that are not defined here (``haslayer``, ``show``, ``payload``, ``name``,
    ``packet[IP]`` ...) are answered by the scapy packet, built on first use.

    ``tunnel`` is None for a packet as captured; for one the kitchen took out of a tunnel
    it names how it got there, outermost first (``"vxlan"``, ``"gre"``, ``"gre/vxlan"``).
    The kitchen gives packet chefs such a packet right after the one that carried it.
    """

    __slots__ = (
        "time", "data", "wirelen", "linktype", "interface",
        "eth_type", "l3_offset", "ip_src", "ip_dst", "ip_proto", "l4", "sport", "dport",
        "tcp_flags", "tcp_seq", "tcp_ack", "l4_offset", "l4_length", "ip_end", "vlan",
        "ip_frag", "_scapy", "tunnel",
    )

    def __init__(self, data: bytes, time: float, wirelen: int | None = None,
                 linktype: int = LINKTYPE_ETHERNET, interface: str | None = None) -> None:
        # Only what every packet needs. The header fields stay unset slots until something
        # reads one (``__getattr__`` then decodes them all): a kitchen whose chefs never
        # look at headers does not pay for the decode.
        self.data = data
        self.time = time
        self.wirelen = len(data) if wirelen is None else wirelen
        self.linktype = linktype
        self.interface = interface
        self._scapy = None

    def decode(self) -> None:
        """Decode the header fields now (done on first access to any of them)."""
        if self.linktype == LINKTYPE_ETHERNET and self._decode_common():
            return
        self._decode_any()

    def _decode_any(self) -> None:
        self.eth_type = None
        self.l3_offset = None
        self.ip_src = self.ip_dst = None
        self.ip_proto = None
        self.l4 = None
        self.sport = self.dport = None
        self.tcp_flags = 0
        self.tcp_seq = self.tcp_ack = None
        self.l4_offset = None
        self.l4_length = 0
        self.ip_end = None
        self.vlan = None
        self.ip_frag = None
        try:
            self._decode()
        except (struct.error, ValueError, IndexError):
            # A frame too short for the headers it claims: keep what was decoded; scapy
            # can still be asked, and flow tracking ignores it.
            self.l4 = None

    # -- fast decode ---------------------------------------------------------------------

    def _decode_common(self) -> bool:
        """The frames nearly every capture is made of (Ethernet without VLAN tags, IPv4
        unfragmented or IPv6 without extension headers, TCP or UDP, headers all captured)
        with one ``struct`` call per header and each field set once; False leaves the
        packet untouched for ``_decode``, which handles everything (and gives the same
        fields for these frames: ``tests/kitchen/test_fastpath.py`` compares the two)."""
        data = self.data
        n = len(data)
        if n < 54:
            return False
        et = data[12] << 8 | data[13]
        if et == ETH_IPV4:
            vihl, total, frag, proto, src, dst = _unpack_ip4(data, 14)
            if frag & 0x3FFF:  # a fragment (more fragments, or an offset)
                return False
            l4off = 14 + ((vihl & 0x0F) << 2)
            end = 14 + total
            af = _AF_INET
        elif et == ETH_IPV6:
            plen, proto, src, dst = _unpack_ip6(data, 14)
            l4off = 54
            end = 54 + plen
            af = _AF_INET6
        else:
            return False
        if proto == 6:
            if n < l4off + 14:
                return False
            sport, dport, seq, ack, doff, flags = _unpack_tcp(data, l4off)
            self.l4 = "tcp"
            self.tcp_seq, self.tcp_ack, self.tcp_flags = seq, ack, flags
            off = l4off + ((doff >> 4) << 2)
            length = end - off
        elif proto == 17:
            if n < l4off + 8:
                return False
            sport, dport, ulen = _unpack_udp(data, l4off)
            self.l4 = "udp"
            self.tcp_seq = self.tcp_ack = None
            self.tcp_flags = 0
            off = l4off + 8
            uend = l4off + ulen
            length = (uend if uend < end else end) - off
        else:
            return False
        self.eth_type = et
        self.l3_offset = 14
        self.vlan = None
        self.ip_frag = None
        self.ip_src = _ntop(af, src)
        self.ip_dst = _ntop(af, dst)
        if end > n and off + length > self.wirelen:
            # The frame is shorter than its IP header says (a sender's or a capture tool's
            # fault): the payload is what the frame holds, as tshark counts it.
            length = self.wirelen - off
        self.ip_proto = proto
        self.ip_end = end
        self.sport, self.dport = sport, dport
        self.l4_offset = off
        self.l4_length = length if length > 0 else 0
        return True

    def _decode(self) -> None:
        data = self.data
        etype, off, vlan = network_layer(data, self.linktype)
        self.vlan = vlan
        self.eth_type = etype
        self.l3_offset = off
        if etype == ETH_IPV4:
            ihl = (data[off] & 0x0F) * 4
            total = _unpack_h(data, off + 2)[0]
            frag = _unpack_h(data, off + 6)[0]
            proto = data[off + 9]
            self.ip_src = _ntop(_AF_INET, data[off + 12:off + 16])
            self.ip_dst = _ntop(_AF_INET, data[off + 16:off + 20])
            self.ip_proto = proto
            self.ip_end = off + total
            if frag & 0x3FFF:
                self.ip_frag = (_unpack_h(data, off + 4)[0], (frag & 0x1FFF) << 3,
                                bool(frag & 0x2000), off + ihl, proto)
                if frag & 0x1FFF:  # a non-first fragment carries no transport header
                    return
            l4off = off + ihl
        elif etype == ETH_IPV6:
            plen = _unpack_h(data, off + 4)[0]
            proto = data[off + 6]
            self.ip_src = _ntop(_AF_INET6, data[off + 8:off + 24])
            self.ip_dst = _ntop(_AF_INET6, data[off + 24:off + 40])
            self.ip_end = off + 40 + plen
            l4off = off + 40
            # Skip the common extension headers (hop-by-hop, routing, destination options).
            hops = 0
            while proto in (0, 43, 60) and hops < 8:
                proto = data[l4off]
                l4off += (data[l4off + 1] + 1) * 8
                hops += 1
            if proto == 44:  # fragment header: only the first fragment has the ports
                offm, ident = _unpack_frag6(data, l4off + 2)
                proto = data[l4off]
                if offm & 0xFFF9:  # not an atomic fragment (RFC 6946): offset or M set
                    self.ip_frag = (ident, offm & 0xFFF8, bool(offm & 1), l4off + 8, proto)
                if offm & 0xFFF8:
                    self.ip_proto = 44
                    return
                l4off += 8
            self.ip_proto = proto
        else:
            return
        end = self.ip_end
        if end > self.wirelen:   # a frame shorter than its IP length: see _decode_common
            end = self.wirelen
        if proto == 6:
            sport, dport, seq, ack, doff, flags = _unpack_tcp(data, l4off)
            self.l4 = "tcp"
            self.sport, self.dport = sport, dport
            self.tcp_seq, self.tcp_ack, self.tcp_flags = seq, ack, flags
            self.l4_offset = l4off + (doff >> 4) * 4
            self.l4_length = max(0, end - self.l4_offset)
        elif proto == 17:
            self.sport, self.dport = _unpack_hh(data, l4off)
            self.l4 = "udp"
            self.l4_offset = l4off + 8
            self.l4_length = max(0, min(end, l4off + _unpack_h(data, l4off + 4)[0]) - self.l4_offset)
        elif proto == 1:
            self.l4 = "icmp"
            self.l4_offset = l4off
            self.l4_length = max(0, end - l4off)
        elif proto == 58:
            self.l4 = "icmpv6"
            self.l4_offset = l4off
            self.l4_length = max(0, end - l4off)

    # -- derived fields ----------------------------------------------------------------------

    @property
    def l4_payload(self) -> bytes:
        """The captured part of the transport payload (may be shorter than ``l4_length``
        when the capture's snaplen cut the frame)."""
        off = self.l4_offset
        if off is None:
            return b""
        return self.data[off:off + self.l4_length]

    @property
    def caplen(self) -> int:
        return len(self.data)

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.wirelen

    def layer_names(self) -> list[str]:
        """Scapy's names for the layers of this packet, from the fast decode.

        Covers the layers the kitchen decodes itself (link, ARP, IP, IPv6, TCP, UDP,
        ICMP, DNS by port, Raw, Padding); other layers (inside IPv6 ICMP, tunnels...)
        are named by their outermost decoded layer only.
        """
        names = []
        l2 = _L2_NAMES.get(self.linktype)
        if l2:
            names.append(l2)
        if self.vlan is not None:
            names.append("802.1Q")
        et = self.eth_type
        if et == ETH_IPV4:
            names.append("IP")
        elif et == ETH_IPV6:
            names.append("IPv6")
        elif et == ETH_ARP:
            names.append("ARP")
            return names
        else:
            return names
        l4 = self.l4
        if l4 in _L4_NAMES:
            names.append(_L4_NAMES[l4])
        if l4 == "udp" and (self.sport in DNS_PORTS or self.dport in DNS_PORTS) and self.l4_length:
            names.append("DNS")
        elif l4 in ("tcp", "udp") and self.l4_length and len(self.data) > self.l4_offset:
            names.append("Raw")
        elif (l4 == "icmp" and self.l4_length > 8 and len(self.data) > self.l4_offset + 8
              and self.data[self.l4_offset] in (0, 8)):  # echo data
            names.append("Raw")
        if self.ip_end is not None and len(self.data) > self.ip_end:
            names.append("Padding")
        return names

    # -- scapy, on demand --------------------------------------------------------------------

    @property
    def scapy(self) -> Any:
        """The fully dissected scapy packet (built once, on first use)."""
        pkt = self._scapy
        if pkt is None:
            import scapy.layers.all  # noqa: F401 (registers every dissector, once)
            from scapy.config import conf
            cls = conf.l2types.get(self.linktype)
            if cls is None:
                from scapy.packet import Raw
                cls = Raw
            pkt = cls(self.data)
            pkt.time = self.time
            # scapy 2.6+ leaves the layers it dissects at time 0 (2.4 gave them the time of
            # dissection): a netdumplings 0.5 chef reading packet[ARP].time gets the capture time
            layer = pkt.payload
            while layer:
                layer.time = self.time
                layer = layer.payload
            pkt.wirelen = self.wirelen
            if self.interface is not None:
                pkt.sniffed_on = self.interface
            self._scapy = pkt
        return pkt

    @property
    def dissected(self) -> bool:
        return self._scapy is not None

    def __getattr__(self, name: str) -> Any:
        # Reached for header fields not decoded yet, and for names not defined here
        # (scapy attribute/field access).
        if name in _DECODED_FIELDS:
            self.decode()
            return object.__getattribute__(self, name)
        if name == "tunnel":   # left unset for captured packets: nothing to pay per packet
            return None
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.scapy, name)

    def __getitem__(self, item: Any) -> Any:
        return self.scapy[item]

    def __contains__(self, item: Any) -> bool:
        return item in self.scapy

    def haslayer(self, cls: Any, *args: Any) -> Any:
        return self.scapy.haslayer(cls, *args)

    def getlayer(self, cls: Any, *args: Any, **kwargs: Any) -> Any:
        return self.scapy.getlayer(cls, *args, **kwargs)

    def summary(self, *args: Any, **kwargs: Any) -> str:
        return self.scapy.summary(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        if self.l4 in ("tcp", "udp"):
            return (f"<Packet {self.l4} {self.ip_src}:{self.sport} > {self.ip_dst}:{self.dport} "
                    f"len={self.wirelen}>")
        return f"<Packet linktype={self.linktype} len={self.wirelen}>"


class NsPacket(Packet):
    """A packet whose source gives nanoseconds (nanosecond pcap, pcapng with ``if_tsresol``
    finer than microseconds, live capture): ``time_ns`` holds them exactly, since the float
    ``time`` cannot at today's epoch (it keeps about a quarter of a microsecond). A separate
    class so microsecond captures, the common case, pay nothing for it."""

    __slots__ = ("time_ns",)

    def __init__(self, data: bytes, time_ns: int, wirelen: int | None = None,
                 linktype: int = LINKTYPE_ETHERNET, interface: str | None = None) -> None:
        super().__init__(data, time_ns / 1e9, wirelen, linktype, interface)
        self.time_ns = time_ns
