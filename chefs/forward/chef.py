"""PacketForwardChef: ship the captured frames themselves, in batches (the payload format
and the receivers' side of it are in ``decoder.py``)."""

from __future__ import annotations

import base64
from typing import Any, ClassVar, Literal

from pydantic import Field

from netdumplings.kitchen.chef import ChefOptions, DumplingChef

from .decoder import PAYLOAD_VERSION


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
