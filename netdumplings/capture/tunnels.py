"""Tunnels: the packet inside a VXLAN, Geneve or GRE packet, for the flow path.

A sniffer on a cloud or Kubernetes node sees the overlay network's traffic wrapped in
VXLAN (UDP 4789, or 8472 for Linux's default), Geneve (UDP 6081) or GRE (IP protocol 47):
without looking inside, every pod-to-pod HTTP request or DNS lookup is just UDP to port
4789. ``inner_frame`` finds the encapsulated frame from the outer packet's decoded
headers; the kitchen makes it a ``Packet`` of its own (with ``packet.tunnel`` naming the
tunnel) and gives it to the packet chefs after the packet as captured, and to the flow
table instead of it, so flow chefs decode the inner conversation.

Sans-I/O, bytes in and out. The header layouts are from RFC 7348 (VXLAN), RFC 8926
(Geneve) and RFC 2784/2890 (GRE, with the key and sequence extensions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .packet import ETH_IPV4, ETH_IPV6, LINKTYPE_ETHERNET, LINKTYPE_RAW

if TYPE_CHECKING:
    from .packet import Packet

#: UDP ports whose payload is VXLAN (IANA's, and the Linux kernel's historical default).
VXLAN_PORTS = frozenset({4789, 8472})
GENEVE_PORT = 6081
#: Every UDP destination port ``inner_frame`` looks into.
TUNNEL_UDP_PORTS = VXLAN_PORTS | {GENEVE_PORT}
IPPROTO_GRE = 47
#: Ethernet inside (GRE and Geneve protocol type "transparent Ethernet bridging").
ETH_BRIDGING = 0x6558


def _by_protocol(proto: int, inner: bytes) -> tuple[bytes, int] | None:
    if proto == ETH_BRIDGING:
        return (inner, LINKTYPE_ETHERNET) if len(inner) >= 14 else None
    if proto in (ETH_IPV4, ETH_IPV6):
        return (inner, LINKTYPE_RAW) if inner else None
    return None


def vxlan(payload: bytes) -> tuple[bytes, int] | None:
    # flags (I = 0x08: the VNI is valid), 3 reserved, VNI (3), 1 reserved; Ethernet follows
    if len(payload) < 8 + 14 or not payload[0] & 0x08:
        return None
    return payload[8:], LINKTYPE_ETHERNET


def geneve(payload: bytes) -> tuple[bytes, int] | None:
    # version (2 bits, 0) and option length (6 bits, in 4-byte words), flags, protocol
    # type (2), VNI (3), reserved; options follow the 8 fixed bytes
    if len(payload) < 8 or payload[0] >> 6:
        return None
    start = 8 + (payload[0] & 0x3F) * 4
    return _by_protocol(payload[2] << 8 | payload[3], payload[start:])


def gre(payload: bytes) -> tuple[bytes, int] | None:
    # C (checksum), R (routing, obsolete), K (key), S (sequence) bits, version (3 bits, 0),
    # then protocol type; each of C, K and S adds 4 bytes
    if len(payload) < 4:
        return None
    flags = payload[0] << 8 | payload[1]
    if flags & 0x4007:  # routing present, or not version 0 (PPTP's enhanced GRE is 1)
        return None
    start = 4 + 4 * ((flags >> 15) + ((flags >> 13) & 1) + ((flags >> 12) & 1))
    return _by_protocol(payload[2] << 8 | payload[3], payload[start:])


def inner_frame(packet: "Packet") -> tuple[bytes, int] | None:
    """(inner frame, its link type) when ``packet`` carries a tunnelled packet, else None."""
    found = decapsulate(packet)
    return None if found is None else found[:2]


def decapsulate(packet: "Packet") -> tuple[bytes, int, str] | None:
    """(inner frame, its link type, the tunnel's name: ``vxlan``, ``geneve`` or ``gre``)
    when ``packet`` carries a tunnelled packet, else None."""
    data = packet.data
    if packet.l4 == "udp":
        dport = packet.dport
        if dport not in TUNNEL_UDP_PORTS:
            return None
        off = packet.l4_offset
        payload = data[off:off + packet.l4_length]
        if dport in VXLAN_PORTS:
            found, kind = vxlan(payload), "vxlan"
        else:
            found, kind = geneve(payload), "geneve"
        return None if found is None else (found[0], found[1], kind)
    if packet.ip_proto != IPPROTO_GRE or packet.l4 is not None:
        return None
    l3 = packet.l3_offset
    if packet.eth_type == ETH_IPV4:
        start = l3 + (data[l3] & 0x0F) * 4
    elif data[l3 + 6] == IPPROTO_GRE:  # IPv6 with GRE right after its fixed header
        start = l3 + 40
    else:
        return None
    end = packet.ip_end if packet.ip_end is not None else len(data)
    found = gre(data[start:end])
    return None if found is None else (found[0], found[1], "gre")
