"""The link layer: where the network-layer packet starts in a frame of each link type.

Captures come from many kinds of links: Ethernet (with 802.1Q/802.1ad tags, 802.2
LLC/SNAP, MPLS label stacks, PPPoE sessions), Linux cooked captures, BSD loopback, raw IP,
netfilter's NFLOG, OpenBSD pf's PFLOG, Apple's PKTAP, PPP (bare, in HDLC-like framing, with a direction byte),
Cisco HDLC, and 802.11 Wi-Fi data frames (bare, with radiotap or PPI headers).
``network_layer`` walks those headers down to the EtherType of what follows and its offset,
so the rest of the kitchen (IP, ARP, flows) never needs to know which link a capture came
from. A link type it does not know gives no EtherType; ``describe`` names it (once per
capture, see ``sources``) so that zero decoded packets are never a silent outcome.

Sans-I/O: bytes in, offsets out. Layouts from the tcpdump.org LINKTYPE list, IEEE 802.2
(SNAP), RFC 3032 (MPLS), RFC 1661/1662 (PPP), RFC 2516 (PPPoE), IEEE 802.11-2016 clause 9
(MAC frame), radiotap.org, the PPI specification, and libpcap's pcap-util/pktap headers.
"""

from __future__ import annotations

import struct

# LINKTYPE_* values (as written in pcap and pcapng files).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_PFLOG = 117
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_PPI = 192
LINKTYPE_PPP_WITH_DIR = 204
LINKTYPE_C_HDLC_WITH_DIR = 205
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_PKTAP = 258
LINKTYPE_LINUX_SLL2 = 276
#: DLT_RAW and DLT_SLIP-era numbers some writers put in files for raw IP.
_RAW_IP = frozenset({LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6})

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_MPLS = frozenset({0x8847, 0x8848})
ETH_PPPOE_SESSION = 0x8864
#: 802.1Q, 802.1ad (QinQ) and the pre-standard 0x9100 outer tag.
ETH_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
#: Largest 802.3 length field: a "type" at or below it is a length, an 802.2 LLC header follows.
ETH_MAX_LENGTH = 1500

#: EtherTypes with another header before the network layer.
_CHAINED = ETH_TAGS | ETH_MPLS | {ETH_PPPOE_SESSION}
#: EtherTypes that show an Ethernet frame inside an MPLS pseudowire.
_PW_ETHERTYPES = frozenset({ETH_IPV4, ETH_IPV6, ETH_ARP} | ETH_TAGS | ETH_MPLS)

#: PPP protocol numbers -> EtherType (RFC 1661 and the PPP DLL protocol numbers registry).
_PPP_PROTOCOLS = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6, 0x0281: 0x8847, 0x0283: 0x8848}

#: Link types ``network_layer`` decodes (and PKTAP's, PPI's inner ones).
DECODED = frozenset({
    LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_PPP, LINKTYPE_PPP_HDLC, LINKTYPE_PPP_ETHER,
    LINKTYPE_C_HDLC, LINKTYPE_IEEE802_11, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL,
    LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_PPI, LINKTYPE_PPP_WITH_DIR, LINKTYPE_C_HDLC_WITH_DIR,
    LINKTYPE_NFLOG, LINKTYPE_PKTAP, LINKTYPE_LINUX_SLL2, LINKTYPE_PFLOG} | _RAW_IP)

#: Names (those of the tcpdump.org list, and tshark's words) for the link types a user is
#: likely to meet; libpcap names the rest.
NAMES = {
    LINKTYPE_NULL: "NULL (BSD loopback)", LINKTYPE_ETHERNET: "ETHERNET", 6: "IEEE802_5 (Token Ring)",
    LINKTYPE_PPP: "PPP", 10: "FDDI", LINKTYPE_PPP_HDLC: "PPP_HDLC", LINKTYPE_PPP_ETHER: "PPP_ETHER (PPPoE)",
    100: "ATM_RFC1483", LINKTYPE_RAW: "RAW", LINKTYPE_C_HDLC: "C_HDLC (Cisco HDLC)",
    LINKTYPE_IEEE802_11: "IEEE802_11", 107: "FRELAY", LINKTYPE_LOOP: "LOOP (OpenBSD loopback)",
    LINKTYPE_LINUX_SLL: "LINUX_SLL", LINKTYPE_PFLOG: "PFLOG (OpenBSD pf)", 119: "IEEE802_11_PRISM", LINKTYPE_IEEE802_11_RADIOTAP:
    "IEEE802_11_RADIOTAP", 143: "DOCSIS", 147: "USER0", 163: "IEEE802_11_AVS",
    189: "USB_LINUX", 195: "IEEE802_15_4_WITHFCS", 201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    LINKTYPE_PPI: "PPI", LINKTYPE_PPP_WITH_DIR: "PPP_WITH_DIR",
    LINKTYPE_C_HDLC_WITH_DIR: "C_HDLC_WITH_DIR", 215: "IEEE802_15_4_NOFCS",
    220: "USB_LINUX_MMAPPED", 227: "CAN_SOCKETCAN", LINKTYPE_IPV4: "IPV4", LINKTYPE_IPV6: "IPV6",
    LINKTYPE_NFLOG: "NFLOG", 249: "USBPCAP", 251: "BLUETOOTH_LE_LL", 252: "WIRESHARK_UPPER_PDU",
    253: "NETLINK", LINKTYPE_PKTAP: "PKTAP (Apple)", 263: "ZWAVE_R3", LINKTYPE_LINUX_SLL2:
    "LINUX_SLL2",
}

_u16be = struct.Struct("!H").unpack_from
_u16le = struct.Struct("<H").unpack_from
_u32le = struct.Struct("<I").unpack_from


def describe(linktype: int) -> str:
    """``NAME (number)`` of a link type, for messages."""
    name = NAMES.get(linktype)
    if name is None:
        name = _libpcap_name(linktype) or "unknown"
    return f"{name} ({linktype})"


def _libpcap_name(linktype: int) -> str | None:
    try:
        from scapy.libs import winpcapy as pc
        raw = pc.pcap_datalink_val_to_name(linktype)
    except Exception:  # no libpcap: the number alone says it
        return None
    return raw.decode("ascii", "replace") if raw else None


def network_layer(data: bytes, linktype: int) -> tuple[int | None, int, int | None]:
    """(EtherType of the network-layer packet, its offset, innermost VLAN id or None).

    The EtherType is None when the frame carries nothing the kitchen decodes (a link type
    not known here, an 802.11 management or encrypted frame, LLC without SNAP...).
    Raises IndexError or struct.error for a frame cut inside its link-layer headers.
    """
    if linktype == LINKTYPE_ETHERNET:
        etype = data[12] << 8 | data[13]
        if etype > ETH_MAX_LENGTH and etype not in _CHAINED:   # Ethernet II: IP, ARP...
            return etype, 14, None
        return _ethertype_chain(data, etype, 14, None)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype_chain(data, _u16be(data, 14)[0], 16, None)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype_chain(data, _u16be(data, 0)[0], 20, None)
    if linktype in _RAW_IP:
        return _by_version(data, 0), 0, None
    if linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        fam = int.from_bytes(data[:4], "little" if linktype == LINKTYPE_NULL else "big")
        if fam > 0xFFFF:  # written in the other byte order
            fam = int.from_bytes(data[:4], "big" if linktype == LINKTYPE_NULL else "little")
        # AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD, OpenBSD), 28
        # (FreeBSD), 30 (macOS)
        return (ETH_IPV4 if fam == 2 else ETH_IPV6 if fam in (10, 24, 28, 30) else None), 4, None
    if linktype == LINKTYPE_NFLOG:
        return _nflog(data)
    if linktype == LINKTYPE_PFLOG:
        # header length (the packet starts at it rounded up to 4 bytes), address family
        fam = data[1]
        return (ETH_IPV4 if fam == 2 else ETH_IPV6 if fam in (10, 24, 28, 30) else None), \
            (data[0] + 3) & ~3, None
    if linktype == LINKTYPE_PKTAP:
        # pth_length, pth_type_next (1: a packet follows), pth_dlt, in the host's byte
        # order (little-endian on every Apple machine)
        hlen, next_type, dlt = struct.unpack_from("<III", data, 0)
        if hlen < 12 or hlen > len(data) or next_type != 1 or dlt == LINKTYPE_PKTAP:
            return None, 0, None
        return _shifted(data, hlen, _dlt_linktype(dlt))
    if linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC, LINKTYPE_PPP_WITH_DIR, LINKTYPE_C_HDLC,
                    LINKTYPE_C_HDLC_WITH_DIR, LINKTYPE_PPP_ETHER):
        return _serial(data, linktype)
    if linktype == LINKTYPE_IEEE802_11:
        return _wifi(data, 0)
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        return _wifi(data, _u16le(data, 2)[0])   # it_len: the radiotap header's length
    if linktype == LINKTYPE_PPI:
        hlen, dlt = _u16le(data, 2)[0], _u32le(data, 4)[0]
        if dlt != LINKTYPE_IEEE802_11 and dlt != LINKTYPE_ETHERNET:
            return None, 0, None
        return _shifted(data, hlen, dlt)
    return None, 0, None


def _shifted(data: bytes, start: int, linktype: int) -> tuple[int | None, int, int | None]:
    """A frame of ``linktype`` that begins ``start`` bytes into ``data`` (behind a
    pseudo-header): its offsets are given relative to ``data``."""
    if linktype not in DECODED or linktype in (LINKTYPE_PKTAP, LINKTYPE_PPI):
        return None, 0, None
    etype, off, vlan = network_layer(data[start:], linktype)
    return etype, start + off, vlan


def _dlt_linktype(dlt: int) -> int:
    """libpcap DLT_* (what PKTAP records) -> LINKTYPE_* where the two differ."""
    return {12: LINKTYPE_RAW, 14: LINKTYPE_RAW}.get(dlt, dlt)


def _by_version(data: bytes, off: int) -> int | None:
    version = data[off] >> 4
    return ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else None


def _ethertype_chain(data: bytes, etype: int, off: int, vlan: int | None
                     ) -> tuple[int | None, int, int | None]:
    """From an EtherType at ``off``: through VLAN tags, 802.2 LLC/SNAP, MPLS labels and
    PPPoE sessions, to the network layer."""
    for _ in range(16):   # bounds a frame made of nothing but tags
        if etype in ETH_TAGS:
            vlan = _u16be(data, off)[0] & 0x0FFF
            etype = _u16be(data, off + 2)[0]
            off += 4
        elif etype <= ETH_MAX_LENGTH:
            # 802.3 length: 802.2 LLC follows; SNAP (AA AA 03, OUI, EtherType) carries one
            if data[off] == 0xAA and data[off + 1] == 0xAA and data[off + 2] == 0x03:
                etype = _u16be(data, off + 6)[0]
                off += 8
                if etype <= ETH_MAX_LENGTH:
                    return None, off, vlan
            else:
                return None, off, vlan   # STP, NetBIOS, IPX over LLC: not decoded here
        elif etype in ETH_MPLS:
            # label stack entries (4 bytes) to the one with the bottom-of-stack bit
            for _ in range(16):
                bottom = data[off + 2] & 0x01
                off += 4
                if bottom:
                    break
            else:
                return None, off, vlan
            first = data[off] >> 4
            if first == 4 or first == 6:
                return (ETH_IPV4 if first == 4 else ETH_IPV6), off, vlan
            # An Ethernet pseudowire (RFC 4448), with or without the control word (RFC
            # 4385: four bytes whose first nibble is 0, as a MAC's may be): Ethernet
            # where a known EtherType stands 12 bytes in (as tshark decides), else
            # behind a control word when one stands 16 bytes in.
            if len(data) >= off + 14 and _u16be(data, off + 12)[0] in _PW_ETHERTYPES:
                etype = _u16be(data, off + 12)[0]
                off += 14
                continue
            if first == 0 and len(data) >= off + 18 and \
                    _u16be(data, off + 16)[0] in _PW_ETHERTYPES:
                etype = _u16be(data, off + 16)[0]
                off += 18
                continue
            return None, off, vlan
        elif etype == ETH_PPPOE_SESSION:
            # version/type, code, session id, length; then the PPP protocol field
            etype = _PPP_PROTOCOLS.get(_u16be(data, off + 6)[0], 0)
            off += 8
            if not etype:
                return None, off, vlan
        else:
            return etype, off, vlan
    return None, off, vlan


def _serial(data: bytes, linktype: int) -> tuple[int | None, int, int | None]:
    """PPP (bare or in HDLC-like framing, RFC 1662), Cisco HDLC, each possibly behind a
    direction byte; PPP_ETHER is a PPPoE header followed by PPP."""
    off = 1 if linktype in (LINKTYPE_PPP_WITH_DIR, LINKTYPE_C_HDLC_WITH_DIR) else 0
    if linktype == LINKTYPE_PPP_ETHER:
        off = 6
    first = data[off]
    if first in (0x0F, 0x8F) and linktype != LINKTYPE_PPP_ETHER:
        # Cisco HDLC: address (unicast/broadcast), control 0, EtherType
        if data[off + 1] != 0:
            return None, off, None
        return _ethertype_chain(data, _u16be(data, off + 2)[0], off + 4, None)
    if first == 0xFF and data[off + 1] == 0x03:
        off += 2   # HDLC-like framing: all-stations address, unnumbered information
    if data[off] & 0x01:   # protocol field compression: a one-byte protocol (odd)
        proto, off = data[off], off + 1
    else:
        proto, off = _u16be(data, off)[0], off + 2
    etype = _PPP_PROTOCOLS.get(proto)
    if etype is None:
        return None, off, None
    return _ethertype_chain(data, etype, off, None)


def _wifi(data: bytes, off: int) -> tuple[int | None, int, int | None]:
    """An 802.11 data frame (from ``off``): its MAC header, then 802.2 LLC/SNAP."""
    fc0, fc1 = data[off], data[off + 1]
    if (fc0 >> 2) & 0x03 != 2:          # not a data frame (management, control)
        return None, off, None
    subtype = fc0 >> 4
    if subtype & 0x04 or fc1 & 0x40:    # no data (null function), or protected (encrypted)
        return None, off, None
    hlen = 24
    if fc1 & 0x03 == 0x03:              # to-DS and from-DS: a fourth address (WDS/mesh)
        hlen += 6
    if subtype & 0x08:                  # QoS data: QoS control
        if data[off + hlen] & 0x80:     # A-MSDU: several frames in one, not decoded here
            return None, off, None
        hlen += 2
        if fc1 & 0x80:                  # +HTC/order: an HT control field
            hlen += 4
    start = off + hlen
    if data[start] == 0xAA and data[start + 1] == 0xAA and data[start + 2] == 0x03:
        return _ethertype_chain(data, _u16be(data, start + 6)[0], start + 8, None)
    return None, start, None


def _nflog(data: bytes) -> tuple[int | None, int, int | None]:
    """NFLOG: family, version, resource id, then TLVs (length and type in the capturing
    host's byte order, each padded to 4 bytes); the packet is the NFULA_PAYLOAD (9) one."""
    family = data[0]
    n = len(data)
    off = 4
    little = True
    while off + 4 <= n:
        tlen, ttype = (_u16le if little else _u16be)(data, off)[0], \
            (_u16le if little else _u16be)(data, off + 2)[0]
        if tlen < 4 or off + tlen > n:
            if off == 4 and little:   # the first TLV tells the byte order
                little = False
                continue
            break
        if ttype & 0x7FFF == 9:
            etype = _by_version(data, off + 4)
            if etype is None:
                etype = ETH_IPV4 if family == 2 else ETH_IPV6 if family == 10 else None
            return etype, off + 4, None
        off += (tlen + 3) & ~3
    return None, off, None
