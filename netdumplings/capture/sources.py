"""Where packets come from: pcap/pcapng files, a pcap stream on stdin, live interfaces.

Every source yields ``Packet`` objects. File sources deliver every complete record before
damage and then raise ``CaptureError`` naming the byte offset, so a cut capture still gives
everything it holds. Live capture uses AF_PACKET sockets with a kernel BPF filter compiled by
scapy/libpcap; on loopback the kernel shows each packet twice (once outgoing, once
incoming), so outgoing copies on loopback interfaces are dropped: every packet reaches the
chefs exactly once.
"""

from __future__ import annotations

import errno
import io
import itertools
import logging
import mmap
import os
import select
import socket
import struct
import sys
import time
from typing import BinaryIO, Iterator

from .bpf import FilterError, OfflineFilter
from .capformat import (COMPRESSED_MAGICS, GZIP_MAGIC, PCAP_MAGICS,  # noqa: F401
                        PCAP_MODIFIED_MAGICS, PCAPNG_MAGIC, linktype_ahead, peek_linktype,
                        stream_head, read_exact as _read_exact)
from .linktypes import DECODED, describe
from .packet import NsPacket, Packet

#: No sane capture record is larger than this; a bigger length means the file is damaged.
MAX_RECORD = 256 * 1024
#: Largest pcapng block accepted (as Wireshark: a bigger length means the file is damaged).
MAX_BLOCK = 16 * 1024 * 1024


class CaptureError(Exception):
    """A capture cannot be opened or read on (clear message for the user, no traceback)."""


class PcapSource:
    """Reads a pcap or pcapng capture from a path, ``-`` (stdin) or a binary file object.

    ``packets`` counts records read; ``offset`` is the byte offset of the next record.
    ``bpf_filter`` (``-f``) delivers only the records a tcpdump filter expression passes,
    compiled by libpcap for each link type the capture holds (see ``bpf``); an expression
    libpcap refuses raises ``CaptureError`` (here already when the file's link type can be
    read ahead, else as the header is read). A link type the kitchen cannot decode is said
    once (a warning) rather than giving zero decoded packets in silence.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, interface: str | None = None,
                 bpf_filter: str | None = None) -> None:
        self.name = "-" if source == "-" else getattr(source, "name", str(source))
        self.interface = interface
        self.packets = 0
        self._linktypes_seen: set[int] = set()
        self.filter: OfflineFilter | None = None
        self.offset = 0
        self.linktype: int | None = None
        self._close = False
        self._raw: BinaryIO | None = None   # the compressed stream under a GzipFile
        if source == "-":
            self._f: BinaryIO = sys.stdin.buffer
        elif isinstance(source, (str, os.PathLike)):
            try:
                self._f = open(source, "rb")
            except OSError as exc:
                raise CaptureError(f"cannot open {source}: {exc.strerror or exc}") from exc
            self._close = True
        else:
            self._f = source
        self.is_file = self._is_regular_file()
        if bpf_filter:
            try:
                self.filter = OfflineFilter(bpf_filter)
            except FilterError as exc:
                self.close()
                raise CaptureError(str(exc)) from exc
            if self.is_file:
                first = peek_linktype(self._f)
            else:   # a stream (stdin): read its header now, and put it back
                head = stream_head(self._f)
                self._f = _Prefixed(head, self._f)  # type: ignore[assignment]
                first = linktype_ahead(head)
            if first is not None:
                try:
                    self._linktype(*first)
                except CaptureError:
                    self.close()
                    raise

    def _is_regular_file(self) -> bool:
        try:
            return os.path.isfile(f"/proc/self/fd/{self._f.fileno()}") and \
                os.fstat(self._f.fileno()).st_size > 0
        except (OSError, io.UnsupportedOperation, AttributeError, ValueError):
            return False

    @property
    def size(self) -> int | None:
        if not self.is_file:
            return None
        return os.fstat(self._f.fileno()).st_size

    def close(self) -> None:
        if self._close:
            self._f.close()
            if self._raw is not None:
                self._raw.close()

    def _linktype(self, linktype: int, big_endian: bool = False) -> None:
        """A link type met in the capture (its header, or a pcapng interface): compile the
        filter for it, and say once if the kitchen cannot decode its frames."""
        if linktype in self._linktypes_seen:
            return
        self._linktypes_seen.add(linktype)
        if self.filter is not None:
            try:
                self.filter.check(linktype, big_endian)
            except FilterError as exc:
                raise CaptureError(f"invalid filter {self.filter.expression!r} for "
                                   f"{self.name} (link type {describe(linktype)}): "
                                   f"{exc}") from exc
        if linktype not in DECODED:
            log.warning("%s: link type %s is not decoded here: its packets reach packet "
                        "chefs as raw frames, and no flow chef sees them", self.name,
                        describe(linktype))

    def __iter__(self) -> Iterator[Packet]:
        if self.filter is None:
            return self._records()
        return self.filter.select(self._records())

    def _records(self) -> Iterator[Packet]:
        head = _read_exact(self._f, 4)
        if head[:2] == GZIP_MAGIC:
            yield from self._gzip(head)
            return
        yield from self._read(head)

    def _gzip(self, head: bytes) -> Iterator[Packet]:
        """A gzip-compressed capture (as tshark and tcpdump read them); offsets in errors
        are of the uncompressed data."""
        import gzip
        import zlib

        if self.is_file:
            self._f.seek(0)
            raw: BinaryIO = self._f
        else:
            raw = _Prefixed(head, self._f)  # type: ignore[assignment]
        self._raw = self._f
        self._f = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        self.is_file = False   # read as a stream (no mmap of compressed bytes)
        try:
            yield from self._read(_read_exact(self._f, 4))
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(f"{self.name}: damaged gzip compression after {self.packets} "
                               f"packets (uncompressed byte offset {self.offset}): {exc}") from exc

    def _read(self, head: bytes) -> Iterator[Packet]:
        if len(head) < 4:
            raise CaptureError(f"{self.name}: empty or too short to be a capture "
                               f"({len(head)} bytes)")
        if head in COMPRESSED_MAGICS:
            raise CaptureError(f"{self.name}: compressed with {COMPRESSED_MAGICS[head]}, which "
                               f"is not read here: decompress it first (and read it or pipe "
                               f"it to -r -)")
        if head in PCAP_MAGICS or head in PCAP_MODIFIED_MAGICS:
            yield from self._pcap(head)
        elif head == PCAPNG_MAGIC:
            yield from self._pcapng(head)
        else:
            raise CaptureError(f"{self.name}: not a pcap/pcapng file (magic {head.hex()} at "
                               f"byte offset 0)")

    # -- classic pcap: hand-read for speed and for exact offsets on damage -----------------

    def _pcap(self, magic: bytes) -> Iterator[Packet]:
        modified = magic in PCAP_MODIFIED_MAGICS
        endian, tsres = (PCAP_MODIFIED_MAGICS[magic], 1e-6) if modified else PCAP_MAGICS[magic]
        rest = _read_exact(self._f, 20)
        if len(rest) < 20:
            raise CaptureError(f"{self.name}: truncated pcap file header")
        _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", rest)
        # The top bits carry FCS information (as libpcap's LT_LINKTYPE: not the link type).
        linktype &= 0x03FFFFFF
        self.linktype = linktype
        self._linktype(linktype, endian == ">")
        hdr = struct.Struct(endian + ("IIII8x" if modified else "IIII"))
        hsz = hdr.size
        iface = self.interface
        if self.is_file:
            yield from self._pcap_mmap(hdr, tsres, linktype, iface)
            return
        nano = tsres < 1e-6   # nanosecond pcap: exact integer times
        f = self._f
        off = 24
        while True:
            rh = _read_exact(f, hsz)
            if not rh:
                break
            if len(rh) < hsz:
                raise CaptureError(f"{self.name}: truncated record header at byte offset {off} "
                                   f"({len(rh)} of {hsz} bytes) after {self.packets} packets")
            sec, frac, caplen, wirelen = hdr.unpack(rh)
            if caplen > MAX_RECORD:
                raise CaptureError(f"{self.name}: corrupt record at byte offset {off}: "
                                   f"length {caplen} after {self.packets} packets")
            data = _read_exact(f, caplen)
            if len(data) < caplen:
                raise CaptureError(f"{self.name}: truncated record at byte offset {off}: "
                                   f"{len(data)} of {caplen} bytes present, after "
                                   f"{self.packets} complete packets")
            off += hsz + caplen
            self.offset = off
            self.packets += 1
            if nano:
                yield NsPacket(data, sec * 1_000_000_000 + frac, wirelen, linktype, iface)
            else:
                yield Packet(data, sec + frac * tsres, wirelen, linktype, iface)

    def _pcap_mmap(self, hdr: struct.Struct, tsres: float, linktype: int,
                   iface: str | None) -> Iterator[Packet]:
        mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            size = len(mm)
            off = 24
            unpack = hdr.unpack_from
            P = Packet
            nano = tsres < 1e-6   # nanosecond pcap: exact integer times
            hsz = hdr.size
            while off < size:
                if off + hsz > size:
                    raise CaptureError(f"{self.name}: truncated record header at byte offset {off} "
                                       f"({size - off} of {hsz} bytes) after {self.packets} "
                                       f"packets")
                sec, frac, caplen, wirelen = unpack(mm, off)
                end = off + hsz + caplen
                if caplen > MAX_RECORD:
                    raise CaptureError(f"{self.name}: corrupt record at byte offset {off}: "
                                       f"length {caplen} after {self.packets} packets")
                if end > size:
                    raise CaptureError(f"{self.name}: truncated record at byte offset {off}: "
                                       f"{size - off - hsz} of {caplen} bytes present, after "
                                       f"{self.packets} complete packets")
                data = mm[end - caplen:end]
                off = end
                self.offset = off
                self.packets += 1
                if nano:
                    yield NsPacket(data, sec * 1_000_000_000 + frac, wirelen, linktype, iface)
                else:
                    yield P(data, sec + frac * tsres, wirelen, linktype, iface)
        finally:
            mm.close()

    # -- pcapng: our own reader (every section, interface and block kind tshark reads) -----

    def _pcapng(self, magic: bytes) -> Iterator[Packet]:
        """Reads pcapng block by block from the stream (stdin included): every section
        (each with its own byte order and interfaces), Enhanced, Simple and obsolete Packet
        Blocks, each interface's link type, name, ``if_tsresol`` (powers of 10 and of 2)
        and ``if_tsoffset``; other blocks (name resolution, statistics, secrets, custom)
        are skipped. Damage raises ``CaptureError`` with the offset of the damaged block."""
        f = self._f
        name = self.name
        override = self.interface
        off = 0
        endian = "<"
        # per interface of the current section: linktype, snaplen, units/s, offset s, name
        ifaces: list[tuple[int, int, int, int, str | None]] = []
        head: bytes | None = magic + _read_exact(f, 4)
        while True:
            if head is None:   # read here, not ahead: a pipe's packet is not held back
                head = _read_exact(f, 8)
                if not head:
                    return
            if len(head) < 8:
                raise CaptureError(f"{name}: truncated pcapng block header at byte offset {off} "
                                   f"({len(head)} of 8 bytes) after {self.packets} packets")
            if head[:4] == PCAPNG_MAGIC:
                prefix = _read_exact(f, 4)
                if prefix == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                elif prefix == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif len(prefix) < 4:
                    raise CaptureError(f"{name}: truncated pcapng section header at byte offset "
                                       f"{off} after {self.packets} packets")
                else:
                    raise CaptureError(f"{name}: bad pcapng byte-order magic {prefix.hex()} at "
                                       f"byte offset {off + 8} after {self.packets} packets")
                btype = 0x0A0D0D0A
                (blen,) = struct.unpack_from(endian + "I", head, 4)
            else:
                prefix = b""
                btype, blen = struct.unpack(endian + "II", head)
            if blen < 12 + len(prefix) or blen % 4 or blen > MAX_BLOCK:
                raise CaptureError(f"{name}: corrupt pcapng block at byte offset {off}: length "
                                   f"{blen} (type {btype:#x}) after {self.packets} packets")
            rest = _read_exact(f, blen - 8 - len(prefix))
            if len(rest) < blen - 8 - len(prefix):
                raise CaptureError(f"{name}: truncated pcapng block at byte offset {off}: "
                                   f"{8 + len(prefix) + len(rest)} of {blen} bytes present, "
                                   f"after {self.packets} complete packets")
            (trail,) = struct.unpack_from(endian + "I", rest, len(rest) - 4)
            if trail != blen:
                raise CaptureError(f"{name}: corrupt pcapng block at byte offset {off}: length "
                                   f"{blen} at its start, {trail} at its end, after "
                                   f"{self.packets} packets")
            body = prefix + rest[:-4] if prefix else rest[:-4]
            where = off
            off += blen
            head = None
            if btype == 6 or btype == 2:   # Enhanced Packet Block; obsolete Packet Block
                if len(body) < 20:
                    raise self._ng_bad(where, "packet block too short")
                if btype == 6:
                    ifid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "5I", body)
                else:
                    ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(endian + "HH4I",
                                                                               body)
                if caplen > len(body) - 20 or caplen > MAX_RECORD:
                    raise self._ng_bad(where, f"captured length {caplen} beyond the block")
                data = body[20:20 + caplen]
            elif btype == 3:   # Simple Packet Block: interface 0, no timestamp
                if len(body) < 4:
                    raise self._ng_bad(where, "simple packet block too short")
                (wirelen,) = struct.unpack_from(endian + "I", body)
                ifid = hi = lo = 0
                caplen = wirelen
                if ifaces and ifaces[0][1]:
                    caplen = min(caplen, ifaces[0][1])
                if caplen > len(body) - 4 or caplen > MAX_RECORD:
                    raise self._ng_bad(where, f"packet length {caplen} beyond the block")
                data = body[4:4 + caplen]
            elif btype == 1:   # Interface Description Block
                if len(body) < 8:
                    raise self._ng_bad(where, "interface description block too short")
                linktype, _res, snaplen = struct.unpack_from(endian + "HHI", body)
                units, tsoff, ifname = 1_000_000, 0, None
                for code, val in _ng_options(body, 8, endian):
                    if code == 9 and val:
                        units = (2 if val[0] & 0x80 else 10) ** (val[0] & 0x7F)
                    elif code == 14 and len(val) == 8:
                        (tsoff,) = struct.unpack(endian + "q", val)
                    elif code == 2:
                        ifname = val.split(b"\0", 1)[0].decode("utf-8", "replace")
                ifaces.append((linktype, snaplen, units, tsoff, ifname))
                self._linktype(linktype, endian == ">")
                if self.linktype is None:
                    self.linktype = linktype
                continue
            elif btype == 0x0A0D0D0A:   # a new section: its own interfaces
                if len(body) < 16:
                    raise self._ng_bad(where, "section header block too short")
                (major,) = struct.unpack_from(endian + "H", body, 4)
                if major != 1:
                    raise self._ng_bad(where, f"unsupported pcapng version {major}")
                ifaces = []
                continue
            else:   # name resolution, statistics, secrets, custom, unknown: not packets
                continue
            if ifid >= len(ifaces):
                raise self._ng_bad(where, f"packet on interface {ifid}, but the section "
                                          f"describes {len(ifaces)} interface(s)")
            linktype, _snap, units, tsoff, ifname = ifaces[ifid]
            if override is not None:
                ifname = override
            ticks = (hi << 32) | lo
            self.linktype = linktype
            self.packets += 1
            self.offset = off
            if units > 1_000_000:  # finer than microseconds: keep exact nanoseconds
                yield NsPacket(data, tsoff * 1_000_000_000 + ticks * 1_000_000_000 // units,
                               wirelen or len(data), linktype, ifname)
            else:
                yield Packet(data, tsoff + ticks / units, wirelen or len(data), linktype, ifname)

    def _ng_bad(self, off: int, what: str) -> CaptureError:
        return CaptureError(f"{self.name}: corrupt pcapng block at byte offset {off}: {what}, "
                            f"after {self.packets} packets")


def _ng_options(body: bytes, pos: int, endian: str) -> Iterator[tuple[int, bytes]]:
    """The (code, value) options of a pcapng block body from ``pos``; stops at opt_endofopt
    or at an option running past the block."""
    end = len(body)
    unpack = struct.Struct(endian + "HH").unpack_from
    while pos + 4 <= end:
        code, length = unpack(body, pos)
        if code == 0 or pos + 4 + length > end:
            return
        yield code, body[pos + 4:pos + 4 + length]
        pos += 4 + length + (-length % 4)


class _Prefixed:
    """A stream with bytes already read from it put back in front (stdin cannot seek)."""

    def __init__(self, prefix: bytes, f: BinaryIO) -> None:
        self._prefix = prefix
        self._f = f

    def read(self, n: int = -1) -> bytes:
        if not self._prefix:
            return self._f.read(n)
        if n is None or n < 0:
            out, self._prefix = self._prefix + self._f.read(), b""
            return out
        out, self._prefix = self._prefix[:n], self._prefix[n:]
        return out

    def close(self) -> None:
        self._f.close()


# -- live capture ----------------------------------------------------------------------

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_ATTACH_FILTER = 26
#: Larger than any frame a packet socket gets (loopback's 64 KiB MTU, GRO/TSO frames);
#: a bigger one (BIG TCP) arrives cut, and is counted so (``wirelen`` from the kernel).
RECV_BUFFER = 262144
# struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
_AUXDATA = struct.Struct("IIIHHHH")
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
ARPHRD_LOOPBACK = 772

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
                linktype = _HATYPE_LINKTYPE.get(hatype, 1)
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


# -- the kernel filter ---------------------------------------------------------------------

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
_HATYPE_LINKTYPE = {1: 1, ARPHRD_LOOPBACK: 1, **{h: 101 for h in _RAW_HATYPES}}


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
            return _HATYPE_LINKTYPE.get(int(fh.read().strip()), 1)
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
