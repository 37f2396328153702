"""PacketForwardChef: ship the captured frames themselves, so decoding can happen elsewhere.

A thin capture agent on a busy host runs only this chef; ``nd-cook`` runs the real chefs
where the CPU is, and ``nd-dump`` writes the frames to pcap/pcapng for Wireshark. Frames
are batched because one dumpling per packet would cost more in framing and hub work than
the packet itself.

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
from typing import Any, ClassVar, Literal

from pydantic import Field

from netdumplings.chef import ChefOptions, DumplingChef

PAYLOAD_VERSION = 1


class PacketForwardChef(DumplingChef):
    """Forwards raw captured frames in batches (for nd-cook / nd-dump)."""

    #: Forwarding every frame is expensive and only useful with a consumer downstream, so
    #: it runs only when named (``-c PacketForwardChef``).
    opt_in: ClassVar[bool] = True
    #: Several workers: runs in the reader, which sees every packet in capture order, so
    #: its batches and packet numbers are those of one kitchen.
    shard: ClassVar[str | None] = "reader"
    #: Ships the frames as captured; the receiving kitchen looks into tunnels itself.
    tunnelled_packets: ClassVar[bool] = False

    class Options(ChefOptions):
        batch_packets: int = Field(100, ge=1, le=100_000)
        #: Capture-time span of one batch; an idle link is flushed by the interval poke.
        batch_ms: float = Field(100.0, ge=0)
        #: Bounds one dumpling's size whatever the frame sizes (hub message limits).
        batch_bytes: int = Field(1 << 20, ge=1)
        snaplen: int = Field(262144, ge=1)
        data_encoding: Literal["base64", "bytes"] = "base64"

    def _configure(self) -> None:
        o = self.options
        self.batch_packets: int = o.batch_packets  # type: ignore[attr-defined]
        self.batch_span: float = o.batch_ms / 1000.0  # type: ignore[attr-defined]
        self.batch_bytes: int = o.batch_bytes  # type: ignore[attr-defined]
        self.snaplen: int = o.snaplen  # type: ignore[attr-defined]
        self.raw_bytes: bool = o.data_encoding == "bytes"  # type: ignore[attr-defined]
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._batch_start: float | None = None
        self.batches = 0
        self.forwarded = 0
        self.cut = 0

    def packet_handler(self, packet: Any) -> Any:
        data = packet.data
        if len(data) > self.snaplen:
            data = data[:self.snaplen]
            self.cut += 1
        ts = packet.time
        rec: dict[str, Any] = {
            "ts": ts, "caplen": len(data), "wirelen": packet.wirelen,
            "linktype": packet.linktype, "interface": packet.interface,
            "data": bytes(data) if self.raw_bytes else base64.b64encode(data).decode("ascii"),
        }
        # Looked up on the class: an unknown attribute of a Packet instance is handed to
        # scapy, which would dissect every frame (~50 us each) just to say "no".
        if hasattr(type(packet), "time_ns"):
            ts_ns = packet.time_ns
            if isinstance(ts_ns, int):
                rec["ts_ns"] = ts_ns
        if self._batch_start is None:
            self._batch_start = ts
        self._pending.append(rec)
        self._pending_bytes += len(data)
        if (len(self._pending) >= self.batch_packets or self._pending_bytes >= self.batch_bytes
                or ts - self._batch_start >= self.batch_span):
            return self._flush()
        return None

    def interval_handler(self, interval: float | None = None) -> Any:
        # Also the end-of-capture call (Kitchen.finish): nothing is left behind.
        return self._flush() if self._pending else None

    def _flush(self) -> dict[str, Any]:
        packets = self._pending
        self._pending = []
        self._pending_bytes = 0
        self._batch_start = None
        self.batches += 1
        first = self.forwarded
        self.forwarded += len(packets)
        kitchen = self.kitchen
        return {
            "v": PAYLOAD_VERSION,
            "kitchen": getattr(kitchen, "name", None),
            "kitchen_host": getattr(kitchen, "host", None),
            "batch": self.batches, "first": first, "snaplen": self.snaplen,
            "encoding": "bytes" if self.raw_bytes else "base64",
            "outbox_dropped_total": outbox_dropped_total(kitchen),
            "packets": packets,
        }


def outbox_dropped_total(kitchen: Any) -> int | None:
    """Dumplings the kitchen's hub outbox dropped so far, when the kitchen exposes its
    sender (``kitchen.sender`` or ``kitchen.outbox``); None when it cannot be known (no
    hub, or a kitchen that does not say)."""
    outbox = getattr(kitchen, "outbox", None)
    if outbox is None:
        outbox = getattr(getattr(kitchen, "sender", None), "outbox", None)
    value = getattr(outbox, "dropped_total", None)
    return value if isinstance(value, int) else None


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
