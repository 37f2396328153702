"""``-f`` on capture files: libpcap's own filter compiler and interpreter, per link type.

tcpdump applies a filter to a file by compiling it with libpcap for the file's link type
and running the program on every record (``pcap_offline_filter``). Doing the same here,
rather than writing a filter language of our own, means an expression selects exactly the
packets it selects in tcpdump and tshark's capture filters, for every link type libpcap
knows, with libpcap's error message for one it refuses. A pcapng file may hold interfaces
of several link types: the expression is compiled once for each link type met.

Only a filtered read pays for this (one ctypes call per packet); without ``-f`` no
``OfflineFilter`` exists and the readers' loops are untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import tempfile
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    from .packet import Packet

#: As large as any record the readers accept (sources.MAX_RECORD): every accepted packet
#: returns a non-zero length, whatever the capture's own snaplen was.
SNAPLEN = 262144
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class FilterError(ValueError):
    """libpcap refused the expression (for a link type): its message."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_lib: Any = None


def _libpcap() -> Any:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise FilterError(f"libpcap is needed for -f and could not be loaded: {exc}") \
                from exc
        lib.pcap_open_offline.restype = ctypes.c_void_p
        lib.pcap_open_offline.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_Program), ctypes.POINTER(_PktHdr),
                                            ctypes.c_char_p]
        _lib = lib
    return _lib


def compile_program(expression: str, linktype: int, big_endian: bool = False,
                    snaplen: int = SNAPLEN) -> _Program:
    """libpcap's program for ``expression`` on frames of ``linktype`` (a LINKTYPE_ value)
    read from a file written in the given byte order; raises ``FilterError`` with libpcap's
    message when it refuses it.

    The handle is opened on an empty capture file of that link type and byte order, not
    with ``pcap_open_dead``: libpcap compiles some tests differently for a file than for a
    live handle (a BSD loopback file's ``ip6`` accepts the address family numbers of every
    BSD, in the file's byte order, where a dead handle would test only this host's), and
    tcpdump -r compiles for the file.
    """
    lib = _libpcap()
    header = struct.pack((">" if big_endian else "<") + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0,
                         snaplen, linktype)
    fd, path = tempfile.mkstemp(prefix="nd-bpf-", suffix=".pcap")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
        err = ctypes.create_string_buffer(512)
        handle = lib.pcap_open_offline(path.encode(), err)
    finally:
        os.unlink(path)
    if not handle:
        raise FilterError(f"libpcap cannot read captures of link type {linktype}: "
                          f"{err.value.decode('utf-8', 'replace')}")
    prog = _Program()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) == -1:
            msg = lib.pcap_geterr(handle) or b"syntax error"
            raise FilterError(msg.decode("utf-8", "replace"))
    finally:
        lib.pcap_close(handle)
    return prog


class OfflineFilter:
    """A tcpdump filter expression applied to captured records, as tcpdump -r applies it.

    ``check(linktype)`` compiles for a link type (done by the reader as soon as it knows
    the link type, so a bad expression fails before any packet is cooked);
    ``matches(data, wirelen, linktype)`` runs the program on one record.
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        #: by link type (compiled for the byte order of the first file part that has it)
        self._programs: dict[int, _Program] = {}
        self._lib = _libpcap()
        self._hdr = _PktHdr()
        self._hdr_ref = ctypes.byref(self._hdr)
        self._refs: dict[int, Any] = {}   # byref(program) by link type, made once
        self.passed = 0
        self.rejected = 0

    def check(self, linktype: int, big_endian: bool = False) -> _Program:
        prog = self._programs.get(linktype)
        if prog is None:
            prog = self._programs[linktype] = compile_program(self.expression, linktype,
                                                              big_endian)
            self._refs[linktype] = ctypes.byref(prog)
        return prog

    def select(self, packets: Iterable["Packet"]) -> Iterator["Packet"]:
        """The packets the expression passes (the readers' loop when ``-f`` is given:
        one libpcap call per packet, nothing else)."""
        run = self._lib.pcap_offline_filter
        refs = self._refs
        hdr = self._hdr
        hdr_ref = self._hdr_ref
        passed = rejected = 0
        try:
            for p in packets:
                ref = refs.get(p.linktype)
                if ref is None:
                    self.check(p.linktype)
                    ref = refs[p.linktype]
                data = p.data
                hdr.caplen = len(data)
                hdr.len = p.wirelen
                if run(ref, hdr_ref, data):
                    passed += 1
                    yield p
                else:
                    rejected += 1
        finally:
            self.passed += passed
            self.rejected += rejected

    def matches(self, data: bytes, wirelen: int, linktype: int) -> bool:
        prog = self._programs.get(linktype)
        if prog is None:
            prog = self.check(linktype)
        hdr = self._hdr
        hdr.caplen = len(data)
        hdr.len = wirelen
        if self._lib.pcap_offline_filter(ctypes.byref(prog), self._hdr_ref, data):
            self.passed += 1
            return True
        self.rejected += 1
        return False

    def close(self) -> None:
        for prog in self._programs.values():
            self._lib.pcap_freecode(ctypes.byref(prog))
        self._programs.clear()
        self._refs.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: libpcap may be gone already
            pass
