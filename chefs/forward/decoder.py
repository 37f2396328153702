"""The receiving side of forwarded frames: a PacketForwardChef payload in, checked frame
records out, and per-kitchen batch accounting (duplicates after a hub reconnect, batches and
frames lost, a restarted kitchen).

``nd-cook`` and ``nd-dump`` use it; so can any program that reads these payloads. Sans-I/O:
stdlib only (no framework module, no scapy, sockets or asyncio). The payload format is
described in ``netdumplings.chefs.forward``; the version this module reads is
``PAYLOAD_VERSION``.
"""

from __future__ import annotations

import base64
from typing import Any

PAYLOAD_VERSION = 1


def decode_frame(data: Any, encoding: str = "base64") -> bytes:
    """A forwarded frame's bytes from any form it may arrive in: base64 text; raw bytes over
    msgpack; and, when raw bytes went through the kitchen's JSON encoder anyway, text (the
    frame was valid UTF-8) or ``{"$base64": ...}`` (it was not)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        if encoding == "bytes":
            return data.encode("utf-8")
        return base64.b64decode(data, validate=True)
    if isinstance(data, dict) and isinstance(data.get("$base64"), str):
        return base64.b64decode(data["$base64"], validate=True)
    raise ValueError(f"unsupported frame data of type {type(data).__name__}")


def iter_frames(payload: Any) -> list[dict[str, Any]]:
    """The packet records of a PacketForwardChef payload, checked just enough that a
    receiver can trust the fields it uses (raises ValueError otherwise)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("packets"), list):
        raise ValueError("not a PacketForwardChef payload (no 'packets' list)")
    encoding = payload.get("encoding", "base64")
    out = []
    for rec in payload["packets"]:
        if not isinstance(rec, dict):
            raise ValueError("packet record is not an object")
        ts = rec.get("ts")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool):
            raise ValueError("packet record has no numeric 'ts'")
        data = decode_frame(rec.get("data"), encoding)
        wirelen = rec.get("wirelen", len(data))
        linktype = rec.get("linktype", 1)
        if not isinstance(wirelen, int) or not isinstance(linktype, int):
            raise ValueError("packet record 'wirelen'/'linktype' must be integers")
        ts_ns = rec.get("ts_ns")
        out.append({"ts": float(ts), "ts_ns": ts_ns if isinstance(ts_ns, int) else None,
                    "data": data, "wirelen": max(wirelen, len(data)), "linktype": linktype,
                    "interface": rec.get("interface")})
    return out


class BatchTracker:
    """What a receiver of forwarded batches needs per source kitchen: batches resent after a
    hub reconnect are recognised as duplicates, lost ones are counted (batches and frames),
    and a restarted kitchen (batch 1 again) is told apart from a duplicate."""

    OK, DUPLICATE, RESTART = "ok", "duplicate", "restart"

    def __init__(self) -> None:
        self._last: dict[Any, tuple[int, int]] = {}   # key -> (batch, next first)
        self.missed_batches = 0
        self.missed_packets = 0
        self.duplicates = 0

    def check(self, key: Any, payload: dict[str, Any], count: int) -> str:
        batch, first = payload.get("batch"), payload.get("first")
        if not isinstance(batch, int) or not isinstance(first, int):
            return self.OK  # a producer that does not number its batches
        prev = self._last.get(key)
        self._last[key] = (batch, first + count)
        if prev is None:
            return self.OK
        if batch == 1 and first == 0:
            return self.RESTART
        if batch <= prev[0]:
            self._last[key] = prev
            self.duplicates += 1
            return self.DUPLICATE
        if batch > prev[0] + 1:
            self.missed_batches += batch - prev[0] - 1
            self.missed_packets += max(0, first - prev[1])
        return self.OK

    def forget(self, key: Any) -> None:
        self._last.pop(key, None)
