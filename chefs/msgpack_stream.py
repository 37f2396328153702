"""MessagePack streams: a sans-I/O stream decoder and a chef that shows every object.

The decoder wraps msgpack's streaming ``Unpacker`` (which already copes with objects split
across TCP segments or packed many to a segment) and adds what a sniffer needs on top:
capture timestamps per object, a hard memory bound, and recovery from bytes that are not
msgpack. The Fluentd forward chef builds on it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, NamedTuple

import msgpack

from netdumplings.chef import CloseReason, Direction, FlowChefOptions, StreamChef

__all__ = [
    "EventTime", "MsgpackChef", "MsgpackError", "MsgpackObject", "MsgpackStreamDecoder",
    "iso_time", "to_jsonable",
]

log = logging.getLogger(__name__)


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


# -- display helpers -------------------------------------------------------------------


def iso_time(seconds: int | float, nanoseconds: int | None = None) -> str | None:
    """UTC ISO 8601 with as many fraction digits as the source had (None if out of range)."""
    try:
        if nanoseconds is None:
            if isinstance(seconds, float):
                if not math.isfinite(seconds):
                    return None
                whole, micros = divmod(round(seconds * 1_000_000), 1_000_000)
                frac = f".{micros:06d}"
            else:
                whole, frac = seconds, ""
        else:
            whole, frac = seconds, f".{nanoseconds:09d}"
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + frac + "Z"
    except (OverflowError, OSError, ValueError):
        return None


def text(value: str) -> str:
    """A decoded msgpack str with any invalid UTF-8 shown as ``\\xNN`` escapes."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def raw_bytes(value: Any) -> bytes | None:
    """The bytes behind a bin or a (possibly invalid UTF-8) str value."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return None


def bytes_text(value: bytes, limit: int = 256) -> str:
    """Bytes for a one-line or scalar field: text when printable, else hex (capped)."""
    if value.isascii() and value.decode("ascii").isprintable():
        shown = value.decode("ascii")
        return shown if len(shown) <= limit else shown[:limit] + f"…(+{len(shown) - limit})"
    shown = value[: limit // 2].hex()
    return shown if len(value) <= limit // 2 else shown + f"…(+{len(value) - limit // 2} bytes)"


#: Keys of one map shown (a hostile map may hold millions); past it a "…" key says how
#: many more there were.
MAX_KEYS_SHOWN = 256
#: Characters a map value gets however little of the budget is left, so that every key
#: keeps a readable start of its value.
MIN_VALUE_SHARE = 24


def _rough_size(v: Any) -> int:
    """How much room ``v`` would like, cheaply: to hand out room smallest first."""
    if isinstance(v, (str, bytes, bytearray)):
        return len(v) * (2 if not isinstance(v, str) else 1)
    if isinstance(v, (list, tuple, dict)):
        return 16 * len(v) + 16
    return 8


class _Budget:
    __slots__ = ("left", "truncated")

    def __init__(self, size: int) -> None:
        self.left = size
        self.truncated = False


def to_jsonable(value: Any, budget: int = 4096, max_depth: int = 32) -> tuple[Any, bool]:
    """Turn a decoded msgpack value into JSON-able data of roughly ``budget`` characters.

    Returns (value, truncated). Strings and bins past the budget are cut with a note of what
    was left out, containers stop with a ``…`` marker, and nesting past ``max_depth`` is
    elided, so a hostile or huge object always gives a small, printable result."""
    b = _Budget(budget)
    return _conv(value, b, 0, max_depth), b.truncated


def _conv(v: Any, b: _Budget, depth: int, max_depth: int) -> Any:
    if v is None or isinstance(v, bool):
        b.left -= 5
        return v
    if isinstance(v, int):
        b.left -= 8
        return v
    if isinstance(v, float):
        b.left -= 8
        return v if math.isfinite(v) else str(v)
    if isinstance(v, str):
        t = text(v)
        room = max(b.left, 0)
        b.left -= len(t) + 2
        if len(t) > room:
            b.truncated = True
            return t[:room] + f"…(+{len(t) - room} chars)"
        return t
    if isinstance(v, (bytes, bytearray)):
        room = max(b.left, 0) // 2
        b.left -= 2 * len(v) + 12
        if len(v) > room:
            b.truncated = True
            return {"$bin": bytes(v[:room]).hex(), "$size": len(v)}
        return {"$bin": bytes(v).hex()}
    if isinstance(v, EventTime):
        b.left -= 40
        return {"$eventtime": iso_time(v.seconds, v.nanoseconds), "seconds": v.seconds,
                "nanoseconds": v.nanoseconds}
    if isinstance(v, msgpack.Timestamp):
        b.left -= 40
        return {"$timestamp": iso_time(v.seconds, v.nanoseconds), "seconds": v.seconds,
                "nanoseconds": v.nanoseconds}
    if isinstance(v, msgpack.ExtType):
        data = _conv(v.data, b, depth + 1, max_depth)
        return {"$ext": v.code, "$bin": data["$bin"], **({"$size": data["$size"]}
                                                          if "$size" in data else {})}
    if depth >= max_depth:
        b.truncated = True
        return "…(nested too deep)"
    if isinstance(v, (list, tuple)):
        out: list[Any] = []
        b.left -= 2
        for i, item in enumerate(v):
            if b.left <= 0:
                b.truncated = True
                out.append(f"…(+{len(v) - i} more)")
                break
            out.append(_conv(item, b, depth + 1, max_depth))
        return out
    if isinstance(v, dict):
        # Every key of a map is kept (up to MAX_KEYS_SHOWN): a record's long value is cut,
        # it never takes the keys after it along. The room left is shared out smallest
        # value first, so short fields come whole and the long ones split what remains.
        b.left -= 2
        items = list(v.items())
        more = len(items) - MAX_KEYS_SHOWN
        if more > 0:
            b.truncated = True
            items = items[:MAX_KEYS_SHOWN]
        shown: dict[int, tuple[str, Any]] = {}
        order = sorted(range(len(items)), key=lambda i: _rough_size(items[i][1]))
        for n, i in enumerate(order):
            key, item = items[i]
            name = _key(key)
            b.left -= len(name) + 4
            share = max(b.left // (len(order) - n), MIN_VALUE_SHARE)
            rest = b.left - share
            b.left = share
            shown[i] = (name, _conv(item, b, depth + 1, max_depth))
            b.left += rest
        out_d: dict[str, Any] = dict(shown[i] for i in range(len(items)))
        if more > 0:
            out_d["…"] = f"+{more} more"
        return out_d
    b.left -= 16
    return repr(v)[:64]


def _key(key: Any) -> str:
    if isinstance(key, str):
        return text(key)
    if isinstance(key, (bytes, bytearray)):
        return bytes_text(bytes(key), 128)
    try:
        return json.dumps(to_jsonable(key, 128, 4)[0], ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(key)[:128]


def one_line(value: Any, limit: int = 120) -> str:
    """A short JSON rendering for summary lines."""
    try:
        shown = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def type_name(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bytes, bytearray)):
        return "bin"
    if isinstance(value, EventTime):  # before arrays: both ext types are tuples
        return "EventTime"
    if isinstance(value, msgpack.ExtType):
        return f"ext({value.code})"
    if isinstance(value, msgpack.Timestamp):
        return "Timestamp"
    if isinstance(value, (list, tuple)):
        return f"array({len(value)})"
    if isinstance(value, dict):
        return f"map({len(value)})"
    return type(value).__name__


# -- the sans-I/O stream decoder ---------------------------------------------------------


@dataclass
class MsgpackObject:
    """One whole top-level object: where it sat in the stream and when its bytes arrived."""

    value: Any
    offset: int
    size: int
    first_timestamp: float | None
    last_timestamp: float | None


@dataclass
class MsgpackError:
    """Bytes the decoder could not use (bad data, an oversized object, a gap, a cut end)."""

    reason: str
    offset: int
    #: bytes given up on at this point (more may be skipped silently while resyncing)
    skipped: int = 0
    #: the decoder stopped decoding this stream for good
    fatal: bool = False


MsgpackEvent = MsgpackObject | MsgpackError


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


# -- the chef ------------------------------------------------------------------------------


class MsgpackChef(StreamChef):
    """Any msgpack stream on the ports you give -> one dumpling per top-level object.

    It has no default ports and no detection: msgpack has no signature, so every byte
    stream "looks like" msgpack and only the user knows where it really is
    (``--chef-option MsgpackChef.ports=7000``)."""

    class Options(FlowChefOptions):
        #: Roughly how many characters of each object the payload shows.
        max_value_bytes: int = 4096
        #: Largest single object decoded; bigger ones are reported and skipped.
        max_object_bytes: int = 1 << 20

    default_ports: ClassVar[tuple[int, ...]] = ()

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        return False

    def new_flow_state(self, flow: Any) -> dict[Direction, MsgpackStreamDecoder]:
        size = self.options.max_object_bytes  # type: ignore[attr-defined]
        return {d: MsgpackStreamDecoder(size) for d in Direction}

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float) -> Any:
        for event in self.flow_state(flow)[direction].feed(data, timestamp):
            yield self._payload(flow, direction, event, timestamp)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Any:
        for event in self.flow_state(flow)[direction].gap(size):
            yield self._payload(flow, direction, event, self.now)

    def on_close(self, flow: Any, reason: CloseReason) -> Any:
        for direction, decoder in self.flow_state(flow).items():
            for event in decoder.close():
                yield self._payload(flow, direction, event, self.now)

    def _payload(self, flow: Any, direction: Direction, event: MsgpackEvent,
                 timestamp: float | None) -> dict[str, Any]:
        base = {"flow": flow.describe(), "src": flow.src(direction), "dst": flow.dst(direction),
                "direction": str(direction)}
        if isinstance(event, MsgpackError):
            self.logger.info("%s: %s (offset %d, %d bytes skipped)", flow.label(direction),
                             event.reason, event.offset, event.skipped)
            return {**base, "timestamp": timestamp, "kind": "error", "error": event.reason,
                    "offset": event.offset, "skipped": event.skipped, "fatal": event.fatal,
                    "summary": f"{flow.label(direction)}  ERROR {event.reason}"}
        budget = self.options.max_value_bytes  # type: ignore[attr-defined]
        value, truncated = to_jsonable(event.value, budget)
        kind = type_name(event.value)
        return {**base, "timestamp": event.last_timestamp, "kind": "object", "type": kind,
                "offset": event.offset, "size": event.size, "value": value,
                "truncated": truncated,
                "summary": f"{flow.label(direction)}  {kind} {event.size}B {one_line(value)}"}
