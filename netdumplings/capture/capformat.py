"""Capture file formats by their first bytes: which format, and the link type ahead.

The magic numbers of pcap (micro- and nanosecond, either byte order, and the "modified"
variant), pcapng, gzip and the compressions read elsewhere; and the link type of a
capture read from its first bytes before any packet, so that ``-f`` can be compiled (and
refused) before anything is cooked (``sources.PcapSource``).
"""

from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
#: Kuznetzov's "modified" pcap (old Linux tcpdump, editcap -F modpcap): microsecond pcap
#: whose record headers carry 8 more bytes (ifindex, protocol, packet type, padding).
PCAP_MODIFIED_MAGICS = {b"\x34\xcd\xb2\xa1": "<", b"\xa1\xb2\xcd\x34": ">"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
COMPRESSED_MAGICS = {b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4",
                     b"BZh9": "bzip2", b"\xfd7zX": "xz"}


def peek_linktype(f: BinaryIO) -> tuple[int, bool] | None:
    """(link type, big-endian) of a regular pcap file, or of a pcapng file's first
    interface when it follows the section header, read without moving the file (None: not
    known ahead)."""
    try:
        head = os.pread(f.fileno(), 512, 0)
    except (OSError, AttributeError, io.UnsupportedOperation, ValueError):
        return None
    return linktype_ahead(head)


def linktype_ahead(head: bytes) -> tuple[int, bool] | None:
    """(link type, big-endian) from the first bytes of a capture (see ``peek_linktype``)."""
    if len(head) >= 24 and (head[:4] in PCAP_MAGICS or head[:4] in PCAP_MODIFIED_MAGICS):
        endian = (PCAP_MODIFIED_MAGICS.get(head[:4]) or PCAP_MAGICS[head[:4]][0])
        return struct.unpack_from(endian + "I", head, 20)[0] & 0x03FFFFFF, endian == ">"
    if len(head) >= 12 and head[:4] == PCAPNG_MAGIC:
        endian = ">" if head[8:12] == b"\x1a\x2b\x3c\x4d" else "<"
        (shb_len,) = struct.unpack_from(endian + "I", head, 4)
        if len(head) >= shb_len + 12:
            btype, _blen, linktype = struct.unpack_from(endian + "IIH", head, shb_len)
            if btype == 1:
                return linktype, endian == ">"
    return None


def stream_head(f: BinaryIO) -> bytes:
    """The first bytes of a stream (stdin), enough for ``linktype_ahead``."""
    head = read_exact(f, 24)
    if len(head) == 24 and head[:4] == PCAPNG_MAGIC:
        endian = ">" if head[8:12] == b"\x1a\x2b\x3c\x4d" else "<"
        (shb_len,) = struct.unpack_from(endian + "I", head, 4)
        if 24 <= shb_len <= 65536:
            head += read_exact(f, shb_len + 12 - 24)
    return head


def read_exact(f: BinaryIO, n: int) -> bytes:
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
