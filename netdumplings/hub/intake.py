"""What the hub does with a kitchen's message before any eater sees it: decode (JSON or
msgpack, told apart by the first byte), validate each dumpling's metadata, and for a batch
keep the frames each kind of eater will get, each made at most once.

Validation is strict and finite: the hub relays the kitchen's bytes unchanged, so a value
that is not of the schema's type is refused rather than coerced, and NaN or infinite times
(which JSON eaters would get as null, and which would poison the latency metric) are refused.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgpack
import orjson
from pydantic import TypeAdapter, ValidationError
from websockets.asyncio.server import ServerConnection

from ..wire.dumpling import DumplingMetadata
from ..exceptions import InvalidDumpling
from .admission import printable
from ..wire.messages import NOTICE_CHEF, STATUS_CHEF, KitchenHello, msgpack_array

# Strict: the hub relays the kitchen's bytes unchanged, so nothing may be coerced ("1.5" for a
# float would pass lax validation and reach eaters as a string). ~1 us per dumpling.
_METADATA = TypeAdapter(DumplingMetadata)


_DRIVERS = frozenset(("packet", "interval"))
#: Chef names only the hub speaks as: eaters (nd-hubstatus, the dashboard, the missed
#: counters) trust dumplings of these chefs to be the hub's, so kitchens may not use them.
_HUB_CHEFS = frozenset((STATUS_CHEF, NOTICE_CHEF))
_OPTIONAL = (("sequence", int), ("capture_time", float), ("host", str))


def check_dumpling(obj: Any) -> tuple[str, str | None, str, float]:
    """Validate a decoded dumpling -> (chef, kitchen, driver, creation_time).

    The metadata goes through pydantic's ``DumplingMetadata`` (the published schema), the
    payload only has to exist: it is the chef's business and the hub never looks inside.
    Pydantic costs ~2.4 us a dumpling, a quarter of a core at 100,000/s, so metadata made
    of exactly the types the schema names (what our kitchens send) is accepted by a few
    type checks; anything else, even what strict pydantic would still accept (an int
    creation_time), is left to pydantic to accept or explain."""
    if type(obj) is dict:
        md = obj.get("metadata")
        if type(md) is dict and "payload" in obj:
            chef = md.get("chef")
            kitchen = md.get("kitchen", _METADATA)
            ct = md.get("creation_time")
            driver = md.get("driver")
            # ct - ct is 0.0 for every finite float, NaN for NaN and the infinities.
            if (type(chef) is str and (kitchen is None or type(kitchen) is str)
                    and type(ct) is float and ct - ct == 0.0
                    and type(driver) is str and driver in _DRIVERS):
                for key, kind in _OPTIONAL:
                    v = md.get(key)
                    if v is not None and (type(v) is not kind or
                                          kind is float and v - v != 0.0):
                        break
                else:
                    if chef in _HUB_CHEFS:
                        raise InvalidDumpling(f"chef {chef} is the hub's own")
                    return chef, kitchen, driver, ct
    if not isinstance(obj, dict):
        raise InvalidDumpling("dumpling is not an object")
    md = obj.get("metadata")
    if not isinstance(md, dict):
        raise InvalidDumpling("missing metadata object")
    if "payload" not in obj:
        raise InvalidDumpling("missing payload")
    try:
        m = _METADATA.validate_python(md, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidDumpling(f"metadata.{'.'.join(map(str, err['loc']))}: {err['msg']}") \
            from None
    for name, value in (("creation_time", m.creation_time), ("capture_time", m.capture_time)):
        if value is not None and not math.isfinite(value):
            raise InvalidDumpling(f"metadata.{name}: {value} is not a finite number")
    if m.chef in _HUB_CHEFS:
        raise InvalidDumpling(f"chef {m.chef} is the hub's own")
    return m.chef, m.kitchen, m.driver, m.creation_time


def decode(message: bytes) -> Any:
    """JSON or msgpack, told apart by the first byte: JSON documents start with ``{``, ``[``
    or whitespace, msgpack maps/arrays with 0x80-0x9f or 0xdc-0xdf."""
    first = message[:1]
    if first and (0x80 <= first[0] <= 0x9f or 0xdc <= first[0] <= 0xdf):
        return msgpack.unpackb(message, raw=False, strict_map_key=False)
    return orjson.loads(message)


def encode(obj: Any, mp: bool) -> bytes | None:
    """``obj`` in an eater's encoding, or None when it has no form there: msgpack can carry
    binary strings, extension types and non-string map keys that JSON cannot, and orjson
    writes at most 254 levels of nesting though it reads 1024. Such a dumpling is relayed
    as it came to eaters of its own encoding; the others are told they missed it."""
    try:
        return msgpack.packb(obj) if mp else orjson.dumps(obj)
    except (TypeError, ValueError, OverflowError):
        return None


class KitchenConn:
    __slots__ = ("ws", "hello", "info", "dumplings", "invalid", "batch", "messages",
                 "ack_event", "flood_start", "flood_count", "name", "flooded")

    def __init__(self, ws: ServerConnection, hello: KitchenHello, info: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.name = printable(hello.kitchen_name)
        self.info = info
        self.dumplings = 0
        self.invalid = 0
        self.batch = False
        self.messages = 0
        self.ack_event: asyncio.Event | None = None
        self.flood_start = 0.0
        self.flood_count = 0
        self.flooded = False     # closed for flooding: what else it sent is ignored


class Batch:
    """A kitchen's batch after validation: its frames (whole or filtered, per encoding) and
    its single dumplings' bytes, each made at most once, when the first eater needs it."""

    __slots__ = ("objs", "meta", "cts", "raw", "binary", "_frames", "_items")

    def __init__(self, objs: list[Any], meta: list[tuple[str, str | None, str]],
                 cts: list[float], raw: bytes | None, binary: bool) -> None:
        self.objs = objs
        self.meta = meta
        self.cts = cts
        self.raw = raw            # the kitchen's message, when it is exactly this batch
        self.binary = binary      # raw is msgpack
        self._frames: dict[tuple[bool, frozenset | None], tuple[bytes, int, float]] = {}
        self._items: dict[bool, list[bytes | None]] = {}

    def item(self, i: int, mp: bool) -> bytes:
        """Dumpling ``i`` encoded (b"" if it cannot be, see ``encode``)."""
        items = self._items.get(mp)
        if items is None:
            items = self._items[mp] = [None] * len(self.objs)
        data = items[i]
        if data is None:
            data = items[i] = encode(self.objs[i], mp) or b""
        return data   # b"": not encodable in this encoding

    def indices(self, sel: frozenset | None) -> list[int]:
        if sel is None:
            return list(range(len(self.objs)))
        return [i for i, k in enumerate(self.meta) if k in sel]

    def build(self, mp: bool, idx: list[int]) -> tuple[bytes, list[int]]:
        """(frame, the indices in it): dumplings that cannot be encoded are left out."""
        if len(idx) == 1:
            data = self.item(idx[0], mp)
            return data, idx if data else []
        if len(idx) == len(self.objs):
            if self.raw is not None and self.binary == mp:
                # The kitchen's own bytes: already the array, and valid through and through.
                return self.raw if mp else self.raw.strip(), idx
            data = encode(self.objs, mp)
            if data is not None:
                return data, idx
        items = [self.item(i, mp) for i in idx]
        if not all(items):
            idx = [i for i, d in zip(idx, items) if d]
            items = [d for d in items if d]
            if len(items) <= 1:
                return (items[0] if items else b""), idx
        if mp:
            return msgpack_array(items), idx
        return b"[" + b",".join(items) + b"]", idx

    def frame(self, mp: bool, sel: frozenset | None
              ) -> tuple[bytes, int, float, int, list[int]]:
        """(frame, dumplings, creation_time of its first, dumplings left out because they
        cannot be encoded, indices in the frame) for batch eaters."""
        key = (mp, sel)
        got = self._frames.get(key)
        if got is None:
            idx = self.indices(sel)
            data, used = self.build(mp, idx)
            got = self._frames[key] = (data, len(used), self.cts[used[0]] if used else 0.0,
                                       len(idx) - len(used), used)
        return got
