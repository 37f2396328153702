"""Where packets come from: pcap/pcapng files, a pcap stream on stdin, live interfaces.

Every source yields ``Packet`` objects. File sources deliver every complete record before
damage and then raise ``CaptureError`` naming the byte offset, so a cut capture still gives
everything it holds. Live capture uses AF_PACKET sockets with a kernel BPF filter compiled by
scapy/libpcap; on loopback the kernel shows each packet twice (once outgoing, once
incoming), so outgoing copies on loopback interfaces are dropped: every packet reaches the
chefs exactly once.
"""

from __future__ import annotations

import io
import mmap
import os
import select
import socket
import struct
import sys
import time
from typing import BinaryIO, Iterator

from .packet import NsPacket, Packet

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
#: No sane capture record is larger than this; a bigger length means the file is damaged.
MAX_RECORD = 256 * 1024


class CaptureError(Exception):
    """A capture cannot be opened or read on (clear message for the user, no traceback)."""


class PcapSource:
    """Reads a pcap or pcapng capture from a path, ``-`` (stdin) or a binary file object.

    ``packets`` counts records delivered; ``offset`` is the byte offset of the next record.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, interface: str | None = None) -> None:
        self.name = "-" if source == "-" else getattr(source, "name", str(source))
        self.interface = interface
        self.packets = 0
        self.offset = 0
        self.linktype: int | None = None
        self._close = False
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

    def __iter__(self) -> Iterator[Packet]:
        head = _read_exact(self._f, 4)
        if len(head) < 4:
            raise CaptureError(f"{self.name}: empty or too short to be a capture "
                               f"({len(head)} bytes)")
        if head in PCAP_MAGICS:
            yield from self._pcap(head)
        elif head == PCAPNG_MAGIC:
            yield from self._pcapng(head)
        else:
            raise CaptureError(f"{self.name}: not a pcap/pcapng file (magic {head.hex()} at "
                               f"byte offset 0)")

    # -- classic pcap: hand-read for speed and for exact offsets on damage -----------------

    def _pcap(self, magic: bytes) -> Iterator[Packet]:
        endian, tsres = PCAP_MAGICS[magic]
        rest = _read_exact(self._f, 20)
        if len(rest) < 20:
            raise CaptureError(f"{self.name}: truncated pcap file header")
        _vmaj, _vmin, _zone, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", rest)
        linktype &= 0x0FFFFFFF
        self.linktype = linktype
        hdr = struct.Struct(endian + "IIII")
        iface = self.interface
        if self.is_file:
            yield from self._pcap_mmap(hdr, tsres, linktype, iface)
            return
        nano = tsres < 1e-6   # nanosecond pcap: exact integer times
        f = self._f
        off = 24
        while True:
            rh = _read_exact(f, 16)
            if not rh:
                break
            if len(rh) < 16:
                raise CaptureError(f"{self.name}: truncated record header at byte offset {off} "
                                   f"({len(rh)} of 16 bytes) after {self.packets} packets")
            sec, frac, caplen, wirelen = hdr.unpack(rh)
            if caplen > MAX_RECORD:
                raise CaptureError(f"{self.name}: corrupt record at byte offset {off}: "
                                   f"length {caplen} after {self.packets} packets")
            data = _read_exact(f, caplen)
            if len(data) < caplen:
                raise CaptureError(f"{self.name}: truncated record at byte offset {off}: "
                                   f"{len(data)} of {caplen} bytes present, after "
                                   f"{self.packets} complete packets")
            off += 16 + caplen
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
            while off < size:
                if off + 16 > size:
                    raise CaptureError(f"{self.name}: truncated record header at byte offset {off} "
                                       f"({size - off} of 16 bytes) after {self.packets} packets")
                sec, frac, caplen, wirelen = unpack(mm, off)
                end = off + 16 + caplen
                if caplen > MAX_RECORD:
                    raise CaptureError(f"{self.name}: corrupt record at byte offset {off}: "
                                       f"length {caplen} after {self.packets} packets")
                if end > size:
                    raise CaptureError(f"{self.name}: truncated record at byte offset {off}: "
                                       f"{size - off - 16} of {caplen} bytes present, after "
                                       f"{self.packets} complete packets")
                data = mm[off + 16:end]
                off = end
                self.offset = off
                self.packets += 1
                if nano:
                    yield NsPacket(data, sec * 1_000_000_000 + frac, wirelen, linktype, iface)
                else:
                    yield P(data, sec + frac * tsres, wirelen, linktype, iface)
        finally:
            mm.close()

    # -- pcapng: scapy's reader -----------------------------------------------------------

    def _pcapng(self, magic: bytes) -> Iterator[Packet]:
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapNgReader

        f = self._f
        try:
            if self.is_file:
                f.seek(4)
            # Bypass the reader's metaclass (it wants to open a file itself) so it reads
            # from our stream, stdin included, which cannot seek back over the magic.
            reader = object.__new__(RawPcapNgReader)
            reader.__init__(self.name, f, magic)
        except (Scapy_Exception, EOFError, struct.error) as exc:
            raise CaptureError(f"{self.name}: bad pcapng header: {exc}") from exc
        iface_default = self.interface
        while True:
            try:
                off = _tell(f)
                item = reader._read_packet()
            except EOFError:
                break
            except (Scapy_Exception, struct.error, ValueError) as exc:
                raise CaptureError(f"{self.name}: corrupt pcapng block near byte offset {off} "
                                   f"after {self.packets} packets: {exc}") from exc
            data, meta = item
            linktype = getattr(meta, "linktype", None)
            if linktype is None:
                ifid = getattr(meta, "ifid", 0) or 0
                linktype = reader.interfaces[ifid][0] if ifid < len(reader.interfaces) else 1
            tshigh, tslow, tsresol = meta.tshigh, meta.tslow, meta.tsresol
            units = (tshigh << 32) + tslow
            self.linktype = linktype
            self.packets += 1
            self.offset = _tell(f)
            if tsresol > 1_000_000:  # finer than microseconds: keep exact nanoseconds
                yield NsPacket(data, units * 1_000_000_000 // tsresol,
                               meta.wirelen or len(data), linktype, iface_default)
            else:
                yield Packet(data, units / tsresol, meta.wirelen or len(data), linktype,
                             iface_default)


def _tell(f: BinaryIO) -> int | str:
    try:
        return f.tell()
    except (OSError, ValueError, AttributeError):
        return "?"


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read n bytes, looping over short reads (pipes); fewer only at end of stream."""
    buf = f.read(n)
    if buf is None:
        buf = b""
    if len(buf) == n or not buf:
        return buf
    parts = [buf]
    got = len(buf)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


# -- live capture ----------------------------------------------------------------------

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
RECV_BUFFER = 262144


def list_interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


class LiveSource:
    """Live capture on one or more interfaces (or all, with ``interfaces=None``).

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
                self._socks.append((self._open(name, buffer_size), name))
        except PermissionError as exc:
            self.close()
            raise CaptureError("live capture needs root or CAP_NET_RAW "
                               f"(opening a packet socket failed: {exc.strerror})") from exc
        except CaptureError:
            self.close()
            raise
        self.linktype = 1

    def _open(self, iface: str | None, buffer_size: int) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)
            try:  # beyond rmem_max when we are root
                s.setsockopt(socket.SOL_SOCKET, 33, buffer_size)  # SO_RCVBUFFORCE
            except OSError:
                pass
            if self.bpf_filter:
                from scapy.error import Scapy_Exception
                try:
                    attach_filter(s, self.bpf_filter, self.snaplen, _linktype_of(iface))
                except (Scapy_Exception, ImportError, OSError) as exc:
                    msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    raise CaptureError(f"bad capture filter {self.bpf_filter!r}: {msg}") from exc
            if iface is not None:  # unbound, a packet socket hears every interface
                try:
                    s.bind((iface, ETH_P_ALL))
                except OSError as exc:
                    raise CaptureError(f"cannot capture on {iface!r}: {exc.strerror}") from exc
            # Drain anything that arrived before the filter was attached.
            s.setblocking(False)
            try:
                while True:
                    s.recv(65536)
            except (BlockingIOError, InterruptedError):
                pass
            s.setblocking(True)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
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
            try:
                got, dropped = self._stats(s)
            except OSError:
                continue
            self.kernel_packets += got
            self.kernel_drops += dropped
        return {"packets": self.packets, "kernel_packets": self.kernel_packets,
                "kernel_drops": self.kernel_drops}

    def close(self) -> None:
        if self._closed:
            return
        for s, _ in self._socks:
            try:
                self.stats()
            except OSError:
                pass
            s.close()
        self._closed = True

    def __iter__(self) -> Iterator[Packet | None]:
        """Yields packets; yields None when idle for ``poll_timeout`` so the caller can do
        timed work (interval pokes) and check for shutdown."""
        socks = [s for s, _ in self._socks]
        names = {s.fileno(): n for s, n in self._socks}
        cmsg_size = socket.CMSG_SPACE(16)
        snap = self.snaplen
        while not self._closed:
            try:
                ready, _, _ = select.select(socks, [], [], self.poll_timeout)
            except (OSError, ValueError):
                if self._closed:
                    return
                raise
            if not ready:
                yield None
                continue
            for s in ready:
                try:
                    # A buffer larger than any frame (loopback's MTU is 64 KiB): no
                    # MSG_TRUNC, whose "real length" return would make Python hand back
                    # bytes past what the kernel wrote.
                    data, anc, flags, addr = s.recvmsg(RECV_BUFFER, cmsg_size)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    if self._closed:
                        return
                    raise
                ifname, pkttype, hatype = addr[0], addr[2], addr[3]
                if pkttype == PACKET_OUTGOING and _is_loopback(ifname):
                    continue
                ts_ns = None
                for level, ctype, cdata in anc:
                    if level == socket.SOL_SOCKET and ctype == SCM_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        ts_ns = sec * 1_000_000_000 + nsec
                if ts_ns is None:
                    ts_ns = time.time_ns()
                wirelen = len(data)
                if wirelen > snap:
                    data = data[:snap]
                self.packets += 1
                yield NsPacket(data, ts_ns, wirelen, _HATYPE_LINKTYPE.get(hatype, 1),
                               names.get(s.fileno()) or ifname)


SO_ATTACH_FILTER = 26
BPF_RET_K = 0x06


def attach_filter(sock: socket.socket, expression: str, snaplen: int,
                  linktype: int = 1) -> None:
    """Compile a BPF expression (libpcap, through scapy) and attach it to ``sock``.

    scapy compiles with a snaplen of 65535, and a classic BPF program's "accept" returns
    that many bytes: the kernel would cut longer frames (loopback carries 65549-byte frames)
    to 65535 bytes, silently losing their tails. The accept values are raised to ``snaplen``.
    """
    import ctypes

    from scapy.arch.common import compile_filter
    from scapy.libs.structures import sock_fprog

    program = compile_filter(expression, linktype=linktype)
    try:
        for i in range(program.bf_len):
            insn = program.bf_insns[i]
            if insn.code == BPF_RET_K and insn.k > 0:
                insn.k = snaplen
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        bytes(sock_fprog(program.bf_len, program.bf_insns)))
    finally:
        try:
            from scapy.libs.winpcapy import pcap_freecode
            pcap_freecode(ctypes.byref(program))
        except (ImportError, OSError, AttributeError):
            pass


#: ARPHRD_* of the receiving interface -> pcap linktype of the frames it delivers.
_HATYPE_LINKTYPE = {1: 1, 772: 1, 65534: 101, 776: 101, 778: 101}
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
                v = fh.read().strip() == "772"  # ARPHRD_LOOPBACK
        except OSError:
            v = ifname == "lo"
        _LOOPBACKS[ifname] = v
    return v
