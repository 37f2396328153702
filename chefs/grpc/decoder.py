"""The gRPC message decoder: one direction's DATA of one call in, length-prefixed messages
out (1 compressed-flag byte, 4-byte big-endian length, then the message), as it arrives.

``GrpcMessages`` is an ``Http2Decoder`` body sink (it only needs ``feed(bytes)`` and
``length``, so it works on its own as well). It keeps only the first ``max_bytes`` of each
message and at most ``max_messages`` of them, within a ``Budget`` shared by all the calls
of a connection, so a long stream costs bounded memory; every message is still counted
with its full size. ``decompress`` inflates a gzip/deflate message, bounded.

Sans-I/O: the standard library only.
"""

from __future__ import annotations

import zlib
from typing import Any


class Budget:
    """Message bytes one connection may keep at once, shared by all its calls."""

    __slots__ = ("left",)

    def __init__(self, size: int) -> None:
        self.left = size


class GrpcMessages:
    """Body sink for one direction of one call: splits DATA into gRPC messages.

    Keeps at most ``max_messages`` messages in detail and ``max_bytes`` of each; every
    message is still counted, with its full size.
    """

    __slots__ = ("max_bytes", "max_messages", "budget", "kept", "length", "count", "messages",
                 "_prefix", "_left", "_current", "bad")

    def __init__(self, max_bytes: int = 65536, max_messages: int = 64,
                 budget: Budget | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.budget = budget or Budget(max_bytes * max_messages)
        self.kept = 0
        self.length = 0
        self.count = 0
        self.messages: list[dict[str, Any]] = []
        self._prefix = bytearray()
        self._left = 0
        self._current: dict[str, Any] | None = None
        self.bad = False

    def feed(self, data: bytes) -> None:
        self.length += len(data)
        pos = 0
        while pos < len(data):
            if self._current is None:
                take = min(5 - len(self._prefix), len(data) - pos)
                self._prefix += data[pos:pos + take]
                pos += take
                if len(self._prefix) < 5:
                    return
                flag, size = self._prefix[0], int.from_bytes(self._prefix[1:5], "big")
                self._prefix.clear()
                if flag > 1:
                    self.bad = True                # not gRPC framing; count no more
                self.count += 1
                self._current = {"compressed": bool(flag & 1), "length": size, "data": bytearray()}
                if flag > 1:
                    self._current["flag"] = flag
                self._left = size
                if len(self.messages) < self.max_messages:
                    self.messages.append(self._current)
            take = min(self._left, len(data) - pos)
            buf = self._current["data"]
            room = min(self.max_bytes - len(buf), self.budget.left)
            if room > 0 and self.messages and self._current is self.messages[-1]:
                keep = data[pos:pos + min(take, room)]
                buf += keep
                self.kept += len(keep)
                self.budget.left -= len(keep)
            pos += take
            self._left -= take
            if self._left == 0:
                self._current = None

    def release(self) -> None:
        """Give the kept bytes back to the connection's budget (the call was reported)."""
        self.budget.left += self.kept
        self.kept = 0

    @property
    def partial(self) -> bool:
        """A message was cut short by the end of the stream."""
        return self._current is not None or bool(self._prefix)


def decompress(data: bytes, encoding: str | None, limit: int) -> tuple[bytes, int | None]:
    """gzip/deflate message bodies, bounded by ``limit`` (a decompression bomb stops there)."""
    wbits = {"gzip": 31, "deflate": 15}.get((encoding or "").lower())
    if wbits is None:
        return data, None
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(data, limit)
    except zlib.error:
        return data, None
    return out, len(out)
