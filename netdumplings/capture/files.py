"""Capture files and streams: pcap and pcapng from a path, ``-`` (stdin) or a file object,
gzip'd or not.

Every complete record before damage is delivered, then ``CaptureError`` names the byte
offset, so a cut capture still gives everything it holds. A regular file is read through
mmap; a pipe (``tcpdump -U -w - | nd-sniff -r -``) record by record as it arrives.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import struct
import sys
from typing import BinaryIO, Iterator

from .bpf import FilterError, OfflineFilter
from .capformat import (COMPRESSED_MAGICS, GZIP_MAGIC, PCAP_MAGICS,  # noqa: F401
                        PCAP_MODIFIED_MAGICS, PCAPNG_MAGIC, linktype_ahead, peek_linktype,
                        stream_head, read_exact as _read_exact)
from .linktypes import DECODED, describe
from .packet import NsPacket, Packet
from .errors import CaptureError

log = logging.getLogger("netdumplings.sources")

#: No sane capture record is larger than this; a bigger length means the file is damaged.
MAX_RECORD = 256 * 1024
#: Largest pcapng block accepted (as Wireshark: a bigger length means the file is damaged).
MAX_BLOCK = 16 * 1024 * 1024



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
