"""PacketForwardChef's payloads, and the receivers' side of them: a payload in, checked
frame records out, plus per-kitchen batch accounting (duplicates after a hub reconnect,
batches and frames lost, a restarted kitchen).

Forwarding ships the captured frames themselves, so that decoding can happen elsewhere: a
thin capture agent on a busy host runs only PacketForwardChef, ``nd-cook`` runs the real
chefs where the CPU is and ``nd-dump`` writes the frames to pcap/pcapng for Wireshark; both
read the payloads with this module, and so can any program. Sans-I/O: stdlib only (no
framework module, no scapy, sockets or asyncio).

Payload (``"v": 1``)::

    {"v": 1, "kitchen": str, "kitchen_host": str, "batch": n, "first": k, "snaplen": s,
     "encoding": "base64" | "bytes", "outbox_dropped_total": int | null,
     "packets": [{"ts": float, "ts_ns": int?, "caplen": int, "wirelen": int,
                  "linktype": int, "interface": str | null, "data": <frame>}]}

``batch`` counts dumplings of this chef (1, 2, ...) and ``first`` counts packets forwarded
before this batch, so a receiver can tell exactly how many batches and frames it missed.
``data`` is base64 text by default, because a JSON hub link would otherwise turn bytes into
UTF-8 text or a ``{"$base64": ...}`` object depending on their content; with
``data_encoding=bytes`` the raw bytes are left in the payload for a msgpack link, where they
travel as binary. Receivers (``decode_frame``) accept every form either choice can arrive
in, so a link that falls back to JSON loses nothing.

``ts`` is the float capture time the kitchen has (exact to the microsecond for current
dates); ``ts_ns`` is only added when the packet carries an integer nanosecond time
(``time_ns``: live capture, nanosecond pcap, pcapng with nanosecond ``if_tsresol``), since a
float cannot hold nanoseconds at today's epoch; ``nd-dump --nano`` writes it exactly.
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
