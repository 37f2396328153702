"""Decoded msgpack values -> small JSON-able data and one-line text, for payloads.

A hostile or huge object must still give a small, printable result: strings and bins are
cut to a budget, containers stop with a marker, deep nesting is elided, and every map key is
kept (up to ``MAX_KEYS_SHOWN``). Stdlib, msgpack and ``values`` only: usable without the
framework, by the msgpack and Fluentd chefs alike.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import msgpack

from .values import EventTime


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
