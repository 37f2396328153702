"""One direction of a msgpack byte stream -> ``MsgpackObject`` / ``MsgpackError`` events.

The decoder wraps msgpack's streaming ``Unpacker`` (which already copes with objects split
across TCP segments or packed many to a segment) and adds what a sniffer needs on top:
capture timestamps per object, a hard memory bound, and recovery from bytes that are not
msgpack. Sans-I/O: it imports only the stdlib, msgpack and this package's ``events`` and
``values`` (no framework module, no scapy, sockets or asyncio); the Fluentd forward
decoder builds on it.
"""

from __future__ import annotations

import re
from typing import Iterable

import msgpack

from .events import MsgpackError, MsgpackEvent, MsgpackObject
from .values import new_unpacker


class MsgpackStreamDecoder:
    """One direction of a msgpack byte stream -> ``MsgpackObject`` / ``MsgpackError`` events.

    Memory is bounded by about twice ``max_buffer_size``: the Unpacker's buffer plus a copy
    of the bytes of the object still being received, kept so that after bad data the
    decoder can restart just past where the broken object began. A top-level object must
    begin with one of ``start_bytes`` (a protocol can narrow this to its message starts);
    after an error the decoder skips to the next such byte, and after ``max_errors``
    errors it stops and ignores the rest of the stream.
    """

    def __init__(self, max_buffer_size: int = 1 << 20, max_errors: int = 16,
                 start_bytes: Iterable[int] | None = None) -> None:
        self.max_buffer_size = max(16, max_buffer_size)
        self.max_errors = max_errors
        starts = frozenset(range(256)) - {0xC1} if start_bytes is None else frozenset(start_bytes)
        self._starts = starts  # 0xc1 is never used by msgpack
        self._start_re = re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in sorted(starts))
                                    + b"]")
        self._unpacker = new_unpacker(self.max_buffer_size)
        self._origin = 0          # stream offset where the current Unpacker started
        self._buf = bytearray()   # bytes of the object(s) not yet complete
        self._buf_start = 0       # stream offset of _buf[0]
        self._pos = 0             # stream offset after everything fed
        self._first_ts: float | None = None
        self._resyncing = False
        self.stopped = False
        self.objects = 0
        self.errors = 0
        self.skipped_bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an object not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes, timestamp: float | None = None) -> list[MsgpackEvent]:
        events: list[MsgpackEvent] = []
        base = self._pos
        self._pos += len(data)
        if self.stopped:
            self.skipped_bytes += len(data)
            return events
        data = bytes(data)
        i, n = 0, len(data)
        # fed in pieces no bigger than the room left, so that whole objects after the end
        # of a large one are never lost to the cap
        while i < n and not self.stopped:
            if self._resyncing:
                j = self._find_start(data, i)
                if j is None:
                    self.skipped_bytes += n - i
                    break
                self.skipped_bytes += j - i
                i = j
                self._resyncing = False
                self._restart(base + i, b"")
            if not self._buf:
                self._buf_start = base + i
                self._first_ts = timestamp
            room = self.max_buffer_size - len(self._buf)
            if room <= 0:
                self._fail(events, f"object larger than {self.max_buffer_size} bytes",
                           len(self._buf))
                self._drop_all()
                continue
            piece = data[i:i + room]
            i += len(piece)
            self._buf += piece
            try:
                self._unpacker.feed(piece)
            except msgpack.BufferFull:  # pragma: no cover - guarded by the room check
                self._fail(events, "msgpack buffer full", len(self._buf))
                self._drop_all()
                continue
            self._drain(events, timestamp)
        return events

    def gap(self, size: int) -> list[MsgpackEvent]:
        """Bytes lost for good: whatever was being received is broken; find a new start."""
        events: list[MsgpackEvent] = []
        if self.stopped:
            self._pos += size
            return events
        self._fail(events, f"{size} bytes missing from the capture", len(self._buf) + size,
                   offset=self._buf_start if self._buf else self._pos)
        self._pos += size
        self._drop_all()
        return events

    def close(self) -> list[MsgpackEvent]:
        """End of stream: report an object cut short, if any."""
        events: list[MsgpackEvent] = []
        if self._buf and not self.stopped:
            self.errors += 1
            self.skipped_bytes += len(self._buf)
            events.append(MsgpackError(f"stream ended inside an object ({len(self._buf)} bytes "
                                       "buffered)", self._buf_start, len(self._buf)))
            self._buf = bytearray()
        return events

    def stop(self, reason: str) -> list[MsgpackEvent]:
        """Give up on this stream (e.g. a protocol layer saw too many bad messages)."""
        if self.stopped:
            return []
        self.stopped = True
        self._buf = bytearray()
        self._unpacker = new_unpacker(16)
        return [MsgpackError(reason, self._pos, 0, fatal=True)]

    # -- internals ------------------------------------------------------------------

    def _drain(self, events: list[MsgpackEvent], timestamp: float | None) -> None:
        while not self.stopped:
            try:
                if self._buf and self._buf[0] not in self._starts:
                    # checked here, not left to the Unpacker: a top-level str header that
                    # claims gigabytes would otherwise just wait for them
                    raise ValueError(f"byte 0x{self._buf[0]:02x} cannot start a message")
                value = next(self._unpacker)
            except StopIteration:
                return
            except Exception as exc:  # FormatError, StackError, ValueError, TypeError...
                self._fail(events, f"not msgpack: {type(exc).__name__}: {exc}".rstrip(": "), 1)
                if self.stopped:
                    return
                rest = self._buf[1:]
                i = self._find_start(rest, 0)
                if i is None:
                    self.skipped_bytes += len(rest)
                    self._drop_all()
                    return
                self.skipped_bytes += i
                self._restart(self._buf_start + 1 + i, bytes(rest[i:]))
                continue
            end = self._origin + self._unpacker.tell()
            size = end - self._buf_start
            self.objects += 1
            events.append(MsgpackObject(value, self._buf_start, size, self._first_ts, timestamp))
            del self._buf[:size]
            self._buf_start = end
            if not self._buf:
                self._first_ts = None

    def _restart(self, offset: int, data: bytes) -> None:
        self._unpacker = new_unpacker(self.max_buffer_size)
        self._origin = self._buf_start = offset
        self._buf = bytearray(data)
        if data:
            self._unpacker.feed(data)

    def _drop_all(self) -> None:
        self._buf = bytearray()
        self._unpacker = new_unpacker(self.max_buffer_size)
        self._buf_start = self._origin = self._pos
        self._resyncing = not self.stopped

    def _find_start(self, data: bytes | bytearray, start: int) -> int | None:
        found = self._start_re.search(data, start)
        return None if found is None else found.start()

    def _fail(self, events: list[MsgpackEvent], reason: str, skipped: int,
              offset: int | None = None) -> None:
        self.errors += 1
        self.skipped_bytes += skipped
        events.append(MsgpackError(reason, self._buf_start if offset is None else offset,
                                   skipped))
        if self.errors >= self.max_errors:
            events.extend(self.stop(f"gave up after {self.errors} errors"))
