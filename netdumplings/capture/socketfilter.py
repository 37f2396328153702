"""The kernel filter of a live socket: a BPF expression compiled by libpcap for the
interface's link type, plus the few instructions that drop loopback's outgoing copies.
"""

from __future__ import annotations

import socket
import struct

PACKET_OUTGOING = 4          # sll_pkttype of a packet this host sends
SO_ATTACH_FILTER = 26
ARPHRD_LOOPBACK = 772

_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JA = 0x05
_BPF_RET_K = 0x06
_SKF_AD_OFF = 0x100000000 - 0x1000   # ancillary data (-4096 as an unsigned offset)
_SKF_AD_PKTTYPE = 4
_SKF_AD_HATYPE = 28
BPF_MAXINSNS = 4096
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF

#: One classic BPF instruction: (code, jt, jf, k).
Insn = tuple[int, int, int, int]

#: ARPHRD_* of devices whose frames start at the IP header (no link-layer header): tun
#: and wireguard (NONE), ipip, ip6tnl, sit, gre, ppp, raw-IP modems.
_RAW_HATYPES = (65534, 768, 769, 776, 778, 512, 519)
#: ARPHRD_* of the receiving interface -> pcap linktype of the frames it delivers.
HATYPE_LINKTYPE = {1: 1, ARPHRD_LOOPBACK: 1, **{h: 101 for h in _RAW_HATYPES}}


def compile_bpf(expression: str, linktype: int, interface: str | None = None) -> list[Insn]:
    """Compile a tcpdump filter expression with libpcap for frames of ``linktype``.

    The kernel runs a socket filter on received frames whose 802.1Q tag it has already
    moved into the packet's metadata, so ``vlan`` tests must read it from there (BPF
    ancillary data). libpcap generates that code only for a handle it opened live on
    Linux, so Ethernet filters are compiled on a live handle (the interface, else ``lo``:
    the code depends only on the link type); a dead handle is the fallback.
    Raises ValueError with libpcap's message for an expression it refuses.
    """
    import ctypes

    from scapy.libs import winpcapy as pc
    from scapy.libs.structures import bpf_program

    handle = None
    if linktype == 1:
        for name in dict.fromkeys(n for n in (interface, "lo") if n):
            err = ctypes.create_string_buffer(256)
            h = pc.pcap_open_live(name.encode(), 65535, 0, 0, err)
            if h:
                if pc.pcap_datalink(h) == linktype:
                    handle = h
                    break
                pc.pcap_close(h)
    if handle is None:
        # LINKTYPE_RAW (101, pcap files) is DLT_RAW (12) to libpcap's API.
        handle = pc.pcap_open_dead(12 if linktype == 101 else linktype, 65535)
    prog = bpf_program()
    try:
        if pc.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1,
                           PCAP_NETMASK_UNKNOWN) == -1:
            msg = pc.pcap_geterr(handle) or b"syntax error"
            raise ValueError(msg.decode("utf-8", "replace"))
        insns = [(i.code, i.jt, i.jf, i.k & 0xFFFFFFFF)
                 for i in (prog.bf_insns[n] for n in range(prog.bf_len))]
        pc.pcap_freecode(ctypes.byref(prog))
    finally:
        pc.pcap_close(handle)
    return insns


def build_program(expression: str | None, snaplen: int,
                  interface: str | None = None) -> list[Insn]:
    """The socket filter for a capture on ``interface`` (None: all interfaces).

    - libpcap's "accept" returns its own snaplen (65535); the kernel would cut longer
      frames (loopback's reach 65549 bytes) to it, so every accept returns ``snaplen``,
      which also makes the kernel copy no more than is kept;
    - outgoing copies on loopback are rejected (the incoming copy is the packet);
    - on all interfaces, frames of IP-only devices (tun...) run the expression compiled
      for raw IP and the others the Ethernet one; an expression about link-layer fields
      (``ether host``, ``vlan``, ``arp``) matches no raw-IP frame, as it cannot apply.
    """
    accept: list[Insn] = [(_BPF_RET_K, 0, 0, snaplen)]
    reject: list[Insn] = [(_BPF_RET_K, 0, 0, 0)]

    def filt(linktype: int) -> list[Insn]:
        if not expression:
            return accept
        return [(c, jt, jf, snaplen if c == _BPF_RET_K and k else k)
                for c, jt, jf, k in compile_bpf(expression, linktype, interface)]

    if interface is not None:
        body = filt(_linktype_of(interface))
        if not _is_loopback(interface):
            return body
    else:
        eth = filt(1)
        try:
            raw = filt(101)
        except ValueError:
            raw = reject
        n = len(_RAW_HATYPES)
        # ld hatype; jeq each raw type -> the "ja raw" below; else fall into "ja eth"
        body = [(_BPF_LD_W_ABS, 0, 0, _SKF_AD_OFF + _SKF_AD_HATYPE)]
        body += [(_BPF_JEQ_K, n - i, 0, h) for i, h in enumerate(_RAW_HATYPES)]
        body += [(_BPF_JA, 0, 0, 1), (_BPF_JA, 0, 0, len(eth))] + eth + raw
    # Outgoing on loopback: reject.
    head: list[Insn] = [
        (_BPF_LD_W_ABS, 0, 0, _SKF_AD_OFF + _SKF_AD_PKTTYPE),
        (_BPF_JEQ_K, 0, 3, PACKET_OUTGOING),
        (_BPF_LD_W_ABS, 0, 0, _SKF_AD_OFF + _SKF_AD_HATYPE),
        (_BPF_JEQ_K, 0, 1, ARPHRD_LOOPBACK),
        reject[0],
    ]
    return head + body


def attach_filter(sock: socket.socket, expression: str | None, snaplen: int,
                  interface: str | None = None) -> None:
    """Compile ``expression`` (None: every packet) for a capture on ``interface`` (None:
    all) with ``build_program`` and attach it to ``sock``."""
    import ctypes

    program = build_program(expression, snaplen, interface)
    if len(program) > BPF_MAXINSNS:
        raise ValueError(f"the filter compiles to {len(program)} BPF instructions, more "
                         f"than the kernel's {BPF_MAXINSNS}")
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    fprog = struct.pack("HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


_LOOPBACKS: dict[str, bool] = {}


def _linktype_of(ifname: str | None) -> int:
    """The pcap linktype of the frames an interface delivers (Ethernet when unknown/all)."""
    if ifname is None:
        return 1
    try:
        with open(f"/sys/class/net/{ifname}/type") as fh:
            return HATYPE_LINKTYPE.get(int(fh.read().strip()), 1)
    except (OSError, ValueError):
        return 1


def _is_loopback(ifname: str) -> bool:
    v = _LOOPBACKS.get(ifname)
    if v is None:
        try:
            with open(f"/sys/class/net/{ifname}/type") as fh:
                v = fh.read().strip() == str(ARPHRD_LOOPBACK)
        except OSError:
            v = ifname == "lo"
        _LOOPBACKS[ifname] = v
    return v
