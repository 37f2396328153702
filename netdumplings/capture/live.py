"""Live capture: AF_PACKET sockets on one, several or all interfaces.

The kernel filters (``socketfilter``), timestamps in nanoseconds, VLAN tags come back from
the socket's auxiliary data, and the socket's own drop counter is read for the summary. On
loopback the kernel shows each packet twice (once outgoing, once incoming), and ``-i any``
shows a forwarded packet on both its interfaces: the copies are dropped, so every packet
reaches the chefs exactly once.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import select
import socket
import struct
import time
from typing import Iterator

from .errors import CaptureError
from .packet import NsPacket, Packet
from .socketfilter import (ARPHRD_LOOPBACK, HATYPE_LINKTYPE, PACKET_OUTGOING,
                           attach_filter)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
#: Larger than any frame a packet socket gets (loopback's 64 KiB MTU, GRO/TSO frames);
#: a bigger one (BIG TCP) arrives cut, and is counted so (``wirelen`` from the kernel).
RECV_BUFFER = 262144
# struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
_AUXDATA = struct.Struct("IIIHHHH")
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

log = logging.getLogger("netdumplings.sources")


def list_interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None



def drain(sock: socket.socket) -> None:
    """Throw away what a packet socket received before its filter (or fanout group) was
    in place: it was captured unfiltered. Leaves the socket blocking."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:  # ENETDOWN: the interface is down, reported once elsewhere
        pass
    finally:
        sock.setblocking(True)

class LiveSource:
    """Live capture on one or more interfaces (or all, with ``interfaces=None``).

    What chefs get matches tcpdump on the same traffic: the 802.1Q tag the kernel strips
    from received frames (into PACKET_AUXDATA) is put back, a ``vlan`` filter works (it is
    compiled for the kernel's VLAN data, as libpcap does for its own live captures),
    ``wirelen`` is the frame's length on the wire even when the snaplen cut it, and on all
    interfaces each link type (Ethernet, loopback, tun and other IP-only devices) gets
    the filter compiled for its own headers. Each packet is delivered once: outgoing
    copies on loopback are dropped in the kernel filter, and on a host that forwards
    (routing or bridging) a capture on several interfaces delivers a forwarded packet
    from the interface it came in on, not again from the one it leaves by (tcpdump -i any
    shows both; ``forwarded_duplicates`` counts those left out). An interface that goes down is waited for; one that is removed is
    left (with a warning), and when none is left capture ends with a ``CaptureError``.

    Kernel drops (packets the socket buffer could not hold) are read from the sockets'
    PACKET_STATISTICS and reported by ``stats()``, so loss above the sustainable rate is
    counted, never silent.
    """

    def __init__(self, interfaces: list[str] | None, bpf_filter: str | None = None,
                 snaplen: int = 262144, buffer_size: int = 32 * 1024 * 1024,
                 poll_timeout: float = 0.2) -> None:
        if snaplen < 1:
            raise ValueError(f"snaplen must be at least 1 byte, not {snaplen}")
        self.bpf_filter = bpf_filter or None
        self.snaplen = snaplen
        self.poll_timeout = poll_timeout
        self.packets = 0
        self.kernel_drops = 0
        self.kernel_packets = 0
        self._socks: list[tuple[socket.socket, str | None]] = []
        self._ifindex: dict[int, int | None] = {}
        self._down: dict[socket.socket, str] = {}
        #: Outgoing copies of forwarded packets left out (seen incoming on another
        #: interface just before); see ``_forwarding``.
        self.forwarded_duplicates = 0
        self._closed = False
        known = list_interfaces()
        names: list[str | None]
        if interfaces:
            for name in interfaces:
                if name not in known:
                    raise CaptureError(f"unknown interface {name!r} (available: "
                                       f"{', '.join(known)})")
            names = list(dict.fromkeys(interfaces))
        else:
            names = [None]
        try:
            for name in names:
                s = self._open(name, buffer_size)
                self._socks.append((s, name))
                self._ifindex[s.fileno()] = _ifindex(name) if name else None
        except PermissionError as exc:
            self.close()
            raise CaptureError("live capture needs root or CAP_NET_RAW "
                               f"(opening a packet socket failed: {exc.strerror})") from exc
        except CaptureError:
            self.close()
            raise
        self.linktype = 1
        self.dedupe_forwarded = (interfaces is None or len(names) > 1) and _forwarding()

    def _open(self, iface: str | None, buffer_size: int) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)
            try:  # beyond rmem_max when we are root
                s.setsockopt(socket.SOL_SOCKET, 33, buffer_size)  # SO_RCVBUFFORCE
            except OSError:
                pass
            from scapy.error import Scapy_Exception
            try:
                attach_filter(s, self.bpf_filter, self.snaplen, iface)
            except (Scapy_Exception, ImportError, OSError, ValueError) as exc:
                msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise CaptureError(f"bad capture filter {self.bpf_filter!r}: {msg}") from exc
            if iface is not None:  # unbound, a packet socket hears every interface
                try:
                    s.bind((iface, ETH_P_ALL))
                except OSError as exc:
                    raise CaptureError(f"cannot capture on {iface!r}: {exc.strerror}") from exc
            drain(s)   # what arrived before the filter was attached
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self._stats(s)  # reset the kernel counters
        except BaseException:
            s.close()
            raise
        return s

    @staticmethod
    def _stats(s: socket.socket) -> tuple[int, int]:
        raw = s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return struct.unpack("II", raw)

    def stats(self) -> dict[str, int]:
        """Packets delivered, and the kernel's received/dropped counts (read and reset)."""
        for s, _ in self._socks:
            self._collect(s)
        return {"packets": self.packets, "kernel_packets": self.kernel_packets,
                "kernel_drops": self.kernel_drops,
                "forwarded_duplicates": self.forwarded_duplicates}

    def _collect(self, s: socket.socket) -> None:
        try:
            got, dropped = self._stats(s)
        except OSError:
            return
        self.kernel_packets += got
        self.kernel_drops += dropped

    def close(self) -> None:
        if self._closed:
            return
        for s, _ in self._socks:
            self._collect(s)
            s.close()
        self._closed = True

    def _interface_error(self, s: socket.socket, name: str | None, exc: OSError) -> None:
        """A packet socket reports ENETDOWN when its interface goes down or is removed. A
        down interface may come back (the socket then hears it again); a removed one
        cannot, so its socket is left, and capture ends when no interface is left."""
        if exc.errno != errno.ENETDOWN or name is None:
            raise CaptureError(f"capture on {name or 'all interfaces'} failed: "
                               f"{exc.strerror or exc}") from exc
        if _ifindex(name) == self._ifindex.get(s.fileno()):
            log.warning("interface %s went down; capturing again when it comes up", name)
            # Removing it now reports nothing more to the socket: looked for while idle.
            self._down[s] = name
            return
        self._removed(s, name)

    def _removed(self, s: socket.socket, name: str) -> None:
        self._down.pop(s, None)
        self._collect(s)
        self._socks = [(t, n) for t, n in self._socks if t is not s]
        s.close()
        if not self._socks:
            raise CaptureError(f"interface {name!r} was removed while capturing")
        log.warning("interface %s was removed; capture goes on on %s", name,
                    ", ".join(n or "all" for _, n in self._socks))

    def _check_down(self) -> None:
        for s, name in list(self._down.items()):
            if _ifindex(name) != self._ifindex.get(s.fileno()):
                self._removed(s, name)

    def __iter__(self) -> Iterator[Packet | None]:
        """Yields packets; yields None when idle for ``poll_timeout`` so the caller can do
        timed work (interval pokes) and check for shutdown."""
        cmsg_size = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(_AUXDATA.size)
        snap = self.snaplen
        unpack_aux = _AUXDATA.unpack
        vlan_status = TP_STATUS_VLAN_VALID
        socks: list[socket.socket] = []
        names: dict[int, str | None] = {}
        # One receive buffer, larger than any frame (loopback's MTU is 64 KiB; GRO/TSO
        # frames); each packet is copied out at its size. (A fresh 256 KiB bytes object
        # per recvmsg costs the allocator an mmap/munmap per packet.) No MSG_TRUNC: the
        # frame's real length comes from PACKET_AUXDATA.
        buf = bytearray(RECV_BUFFER)
        view = memoryview(buf)
        next_check = 0.0
        dedupe = self.dedupe_forwarded
        seen: dict[bytes, str] = {}
        while not self._closed:
            if len(socks) != len(self._socks):
                socks = [s for s, _ in self._socks]
                names = {s.fileno(): n for s, n in self._socks}
            try:
                ready, _, _ = select.select(socks, [], [], self.poll_timeout)
            except (OSError, ValueError):
                if self._closed:
                    return
                raise
            if not ready:
                if self._down:
                    self._check_down()
                yield None
                continue
            if self._down and time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                self._check_down()
                continue
            for s in ready:
                try:
                    n, anc, flags, addr = s.recvmsg_into((buf,), cmsg_size)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    if self._closed:
                        return
                    self._interface_error(s, names.get(s.fileno()), exc)
                    break  # the socket list may have changed
                ifname, pkttype, hatype = addr[0], addr[2], addr[3]
                if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                    continue  # the kernel filter drops these; older kernels: here
                data = bytes(view[:n if n < snap else snap])
                linktype = HATYPE_LINKTYPE.get(hatype, 1)
                if dedupe:
                    key = _forward_key(data, linktype)
                    if key is not None:
                        if pkttype == PACKET_OUTGOING:
                            hit = seen.pop(key, None)
                            if hit is not None and hit != ifname:
                                self.forwarded_duplicates += 1
                                continue
                        else:
                            seen[key] = ifname
                            if len(seen) > FORWARD_MEMORY:
                                for k in list(itertools.islice(seen, FORWARD_MEMORY // 2)):
                                    del seen[k]
                ts_ns = None
                wirelen = n
                for level, ctype, cdata in anc:
                    if ctype == SCM_TIMESTAMPNS and level == socket.SOL_SOCKET:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        ts_ns = sec * 1_000_000_000 + nsec
                    elif ctype == PACKET_AUXDATA and level == SOL_PACKET:
                        status, wirelen, _snap, _mac, _net, tci, tpid = unpack_aux(cdata)
                        if (status & vlan_status or tci) and linktype == 1:
                            # Put back the 802.1Q tag the kernel took out, as tcpdump does.
                            if not status & TP_STATUS_VLAN_TPID_VALID:
                                tpid = 0x8100
                            data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
                            wirelen += 4
                if ts_ns is None:
                    ts_ns = time.time_ns()
                if len(data) > snap:
                    data = data[:snap]
                self.packets += 1
                yield NsPacket(data, ts_ns, wirelen, linktype,
                               names.get(s.fileno()) or ifname)


#: Incoming packets remembered to recognise their forwarded outgoing copies.
FORWARD_MEMORY = 4096


def _forwarding() -> bool:
    """Whether this host (network namespace) may forward packets between interfaces: IP
    forwarding on, or a bridge with ports."""
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        try:
            with open(path) as fh:
                if fh.read().strip() not in ("", "0"):
                    return True
        except OSError:
            pass
    try:
        return any(os.path.exists(f"/sys/class/net/{n}/brport") for n in list_interfaces())
    except OSError:
        return False


def _forward_key(data: bytes, linktype: int) -> bytes | None:
    """What a routed or bridged packet keeps from the interface it came in on to the one
    it leaves by: its IP header but for TTL/hop limit and the IPv4 header checksum, and
    the start of the transport header and payload (ports, sequence numbers, checksum).
    tcpdump -i any shows such a packet twice, in and out; chefs get it once (from its
    incoming interface). NAT changes it: those copies stay."""
    if linktype == 1:
        if len(data) < 34:
            return None
        et = data[12] << 8 | data[13]
        off = 14 if et == 0x0800 or et == 0x86DD else -1
    else:
        off = 0
    if off < 0 or len(data) <= off:
        return None
    v = data[off] >> 4
    if v == 4:
        return data[off:off + 8] + data[off + 9:off + 10] + data[off + 12:off + 72]
    if v == 6:
        return data[off:off + 7] + data[off + 8:off + 104]
    return None
