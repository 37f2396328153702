"""How msgpack values are read here: Fluentd's EventTime ext type, and the one Unpacker setup
every decoder in this package (and the Fluentd chef) uses.

The msgpack library does the parsing; this module only configures it (text, bins, ext types,
length limits) and measures what a value packs to. Stdlib and msgpack only.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgpack


class EventTime(NamedTuple):
    """Fluentd's EventTime (msgpack ext type 0): seconds and nanoseconds since the epoch.

    Decoded for every msgpack stream, because the ext code is unlikely to mean anything
    else in practice and showing a time beats showing 8 opaque bytes."""

    seconds: int
    nanoseconds: int

    @property
    def epoch(self) -> float:
        return self.seconds + self.nanoseconds / 1e9


def ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanoseconds = struct.unpack(">II", data)
        return EventTime(seconds, nanoseconds)
    return msgpack.ExtType(code, data)


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, EventTime):
        return msgpack.ExtType(0, struct.pack(">II", obj.seconds, obj.nanoseconds))
    raise TypeError(f"cannot pack {type(obj).__name__}")


def packed_size(obj: Any) -> int | None:
    """Encoded size of a decoded value, to state what a truncated display stood for."""
    try:
        return len(msgpack.packb(obj, default=_pack_default, unicode_errors="surrogateescape",
                                 strict_types=True))
    except Exception:  # exotic keys and the like: the size is a nicety, not a must
        return None


def new_unpacker(max_buffer_size: int) -> msgpack.Unpacker:
    """An Unpacker set up the same way everywhere: text as str (invalid UTF-8 kept as
    surrogate escapes so nothing is lost or raised), bin as bytes, any map key type, and
    every length limit derived from ``max_buffer_size`` so no header can make it allocate
    more than that."""
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=ext_hook,
                            strict_map_key=False, max_buffer_size=max_buffer_size)
