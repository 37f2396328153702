"""Writing pcap and pcapng files, record by record.

The files are written by hand (a 24-byte header and 16-byte record headers for pcap; SHB,
IDB and EPB blocks for pcapng) rather than through a library writer, because the point is
that the output holds the *original* timestamps: a library that takes a float and formats
it itself may round differently. Kitchens have capture times as floats, which hold every
microsecond of a current date exactly but not every nanosecond, so microsecond files
reproduce a microsecond source exactly; nanosecond output uses ``ts_ns`` when it is known
and the microsecond time otherwise.

Rotation follows tcpdump: ``-C`` starts a new file once the current one holds that many
bytes (names: NAME, NAME1, NAME2, ...), ``-G`` once a file spans that many seconds (of
capture time, so replaying a file gives the same cut as capturing it did) and expands
strftime patterns in the name with the first packet's time. ``%k`` in the name is the
source kitchen: one set of files per kitchen instead of one merged stream.

Used by ``nd-dump`` (frames forwarded through a hub) and ``nd-sniff -w`` (the packets a
kitchen reads). A frame is a dict: ``ts`` (float seconds), ``ts_ns`` (int or None),
``data``, ``wirelen``, ``linktype``, ``interface``.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import sys
import time
from typing import Any, BinaryIO

log = logging.getLogger("netdumplings.pcapwriter")

SNAPLEN = 262144
_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_rec = struct.Struct("<IIII")


def split_time(ts: float, ts_ns: int | None, nano: bool) -> tuple[int, int]:
    """(seconds, fraction in micro- or nanoseconds) for a record header."""
    if ts_ns is not None:
        sec, ns = divmod(ts_ns, 1_000_000_000)
        return (sec, ns) if nano else (sec, ns // 1000)
    sec = math.floor(ts)
    # ts - sec is exact; its error is that of ts itself (< 0.25 us for dates before 2106),
    # so rounding gives back the microseconds the capture had.
    usec = round((ts - sec) * 1e6)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return (sec, usec * 1000) if nano else (sec, usec)


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class _PcapFile:
    """One classic pcap file: a single link type, fixed by the first packet."""

    def __init__(self, f: BinaryIO, nano: bool) -> None:
        self.f = f
        self.nano = nano
        self.linktype: int | None = None
        self.size = 0

    def accepts(self, linktype: int) -> bool:
        return self.linktype is None or self.linktype == linktype

    def write(self, frame: dict[str, Any], kitchen: str | None) -> None:
        if self.linktype is None:
            self.linktype = frame["linktype"]
            head = struct.pack("<IHHiIII", _PCAP_MAGIC_NS if self.nano else _PCAP_MAGIC_US,
                               2, 4, 0, 0, SNAPLEN, self.linktype)
            self.f.write(head)
            self.size += len(head)
        sec, frac = split_time(frame["ts"], frame["ts_ns"], self.nano)
        data = frame["data"]
        self.f.write(_rec.pack(sec, frac, len(data), frame["wirelen"]))
        self.f.write(data)
        self.size += 16 + len(data)


class _PcapNgFile:
    """One pcapng section: an interface block per (kitchen, interface, link type), so
    frames of different link types and hosts can share a file."""

    def __init__(self, f: BinaryIO, nano: bool) -> None:
        self.f = f
        self.nano = nano
        self.interfaces: dict[tuple[Any, Any, int], int] = {}
        self.size = 0
        shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + \
            _option(4, b"netdumplings nd-dump") + _option(0, b"")
        self._put(_block(0x0A0D0D0A, shb))

    def _put(self, data: bytes) -> None:
        self.f.write(data)
        self.size += len(data)

    def accepts(self, linktype: int) -> bool:
        return True

    def write(self, frame: dict[str, Any], kitchen: str | None) -> None:
        key = (kitchen, frame["interface"], frame["linktype"])
        ifid = self.interfaces.get(key)
        if ifid is None:
            ifid = self.interfaces[key] = len(self.interfaces)
            opts = b""
            if frame["interface"]:
                opts += _option(2, str(frame["interface"]).encode())
            if kitchen:
                opts += _option(3, f"kitchen {kitchen}".encode())
            opts += _option(9, bytes([9 if self.nano else 6])) + _option(0, b"")
            self._put(_block(1, struct.pack("<HHI", frame["linktype"], 0, SNAPLEN) + opts))
        sec, frac = split_time(frame["ts"], frame["ts_ns"], self.nano)
        units = sec * (1_000_000_000 if self.nano else 1_000_000) + frac
        data = frame["data"]
        body = struct.pack("<IIIII", ifid, units >> 32, units & 0xFFFFFFFF, len(data),
                           frame["wirelen"]) + data + b"\0" * ((-len(data)) % 4)
        self._put(_block(6, body))


class _Output:
    """The current file of one output stream (merged, or one kitchen's) and its rotation."""

    __slots__ = ("key", "file", "fh", "start", "part", "names")

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.file: _PcapFile | _PcapNgFile | None = None
        self.fh: BinaryIO | None = None
        self.start: float | None = None
        self.part = 0
        self.names: list[str] = []


class Dumper:
    """Writes frames to ``template`` ('-' = the ``stream``, default stdout)."""

    def __init__(self, template: str, *, pcapng: bool = False, nano: bool = False,
                 rotate_bytes: int | None = None, rotate_seconds: float | None = None,
                 count: int | None = None, stream: BinaryIO | None = None) -> None:
        self.template = template
        self.to_stream = template == "-"
        if self.to_stream and (rotate_bytes or rotate_seconds):
            raise ValueError("rotation (-C/-G) needs a file name, not '-'")
        self.per_kitchen = "%k" in template
        self.stream = stream
        self.pcapng = pcapng
        self.nano = nano
        self.rotate_bytes = rotate_bytes or None
        self.rotate_seconds = rotate_seconds or None
        self.count = count
        self.written = 0
        self.skipped_linktype = 0
        self.outputs: dict[str | None, _Output] = {}
        self.files: list[str] = []
        self._used: set[str] = set()

    @property
    def done(self) -> bool:
        return self.count is not None and self.written >= self.count

    # -- files ------------------------------------------------------------------------------

    def _name(self, out: _Output, start: float) -> str:
        name = self.template
        timed = self.rotate_seconds is not None
        if self.per_kitchen:
            kitchen = (out.key or "unknown").replace("/", "_").replace(os.sep, "_")
            name = name.replace("%k", kitchen.replace("%", "%%") if timed else kitchen)
        if timed:
            name = time.strftime(name, time.localtime(start))
        base = name
        n = out.part
        while True:
            name = base if n == 0 else f"{base}{n}"
            if name not in self._used:
                break
            n += 1
        out.part = n + 1
        self._used.add(name)
        return name

    def _open(self, out: _Output, ts: float) -> None:
        self._close_output(out)
        if self.to_stream:
            fh = self.stream or sys.stdout.buffer
            name = "-"
        else:
            name = self._name(out, ts)
            fh = open(name, "wb")
            out.names.append(name)
            self.files.append(name)
            log.info("writing %s", name)
        out.fh = fh
        out.start = ts
        out.file = _PcapNgFile(fh, self.nano) if self.pcapng else _PcapFile(fh, self.nano)

    def _close_output(self, out: _Output) -> None:
        fh, out.fh, out.file = out.fh, None, None
        if fh is None:
            return
        try:
            fh.flush()
        finally:
            if not self.to_stream:
                # Closed even when the flush failed (a full disk): else the file object
                # tries again when it is collected, and Python 3.13 prints a traceback.
                try:
                    fh.close()
                except OSError:
                    pass   # the same error as the flush's, which is raised

    def _output_for(self, kitchen: str | None, ts: float) -> _Output:
        key = kitchen if self.per_kitchen else None
        out = self.outputs.get(key)
        if out is None:
            out = self.outputs[key] = _Output(key)
        if self.rotate_seconds is not None and out.start is not None and \
                ts - out.start >= self.rotate_seconds:
            out.part = 0  # a new period: numbering (-C) starts again, as in tcpdump
            self._open(out, ts)
        elif self.rotate_bytes is not None and out.file is not None and \
                out.file.size >= self.rotate_bytes:
            self._open(out, out.start if out.start is not None else ts)
        elif out.file is None:
            self._open(out, ts)
        return out

    # -- writing ----------------------------------------------------------------------------

    def write_frame(self, frame: dict[str, Any], kitchen: str | None = None) -> bool:
        """Write one frame (buffered: see ``flush``); False if it was not written (count
        reached, or a link type this pcap file cannot hold: counted, warned once)."""
        if self.done:
            return False
        out = self._output_for(kitchen, frame["ts"])
        assert out.file is not None
        if not out.file.accepts(frame["linktype"]):
            self.skipped_linktype += 1
            if self.skipped_linktype == 1:
                log.warning("frame of link type %d skipped: this pcap file holds link type "
                            "%s (use pcapng, or %%k in the name for a file per kitchen)",
                            frame["linktype"], getattr(out.file, "linktype", "?"))
            return False
        out.file.write(frame, kitchen)
        self.written += 1
        return True

    def flush(self) -> None:
        for out in self.outputs.values():
            if out.fh is not None:
                out.fh.flush()

    def write_batch(self, kitchen: str | None, frames: list[dict[str, Any]]) -> int:
        """Write a batch of decoded frames (``forward.iter_frames``) and flush, so readers
        (``tcpdump -r -``, ``wireshark -k -i -``) see each batch as it arrives; returns how
        many were written."""
        n = 0
        for frame in frames:
            if self.done:
                break
            n += self.write_frame(frame, kitchen)
        if n:
            self.flush()
        return n

    def close(self) -> None:
        for out in self.outputs.values():
            self._close_output(out)
