"""nd-cook's eater: runs chefs centrally over frames forwarded by PacketForwardChef.

Every source kitchen gets its own ``Kitchen`` (flow table, reassembly, chef instances), so
two hosts that happen to carry the same 4-tuple never share a flow, and a chef's per-kitchen
state means the same here as in the capturing kitchen. Frames go through
``Kitchen.process`` in the order they were captured, and interval handlers are poked on
capture time (as ``netdumplings.kitchen.offline`` does), so a chef produces the same dumplings here
as where the packets were captured.

A source kitchen's capture is over when the hub's status stops listing it (its sender
disconnected after delivering everything, and status dumplings travel in the same per-eater
queue as its batches, so none of them can still be behind); its ``Kitchen`` is then
finished - open flows are closed with reason ``end`` exactly as at the end of a file.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Iterable

from netdumplings.chefs.forward import BatchTracker, iter_frames
from netdumplings.eater.client import DumplingEater
from netdumplings.kitchen.kitchen import Kitchen
from netdumplings.capture.packet import Packet
from netdumplings.wire.messages import STATUS_CHEF

log = logging.getLogger("netdumplings.cook")

FORWARD_CHEF = "PacketForwardChef"
Sink = Callable[[dict[str, Any], bytes], None]


class _Source:
    __slots__ = ("kitchen", "next_poke", "packets", "batches", "last_seen")

    def __init__(self, kitchen: Kitchen) -> None:
        self.kitchen = kitchen
        self.next_poke: float | None = None
        self.packets = 0
        self.batches = 0
        self.last_seen = time.monotonic()


class Cook:
    """Forwarded batches in, dumplings out through ``sink`` (no I/O: the eater and the
    tests drive it)."""

    def __init__(self, chefs: Iterable[type], *, sink: Sink, name: str = "central",
                 chef_options: dict[str, dict[str, Any]] | None = None,
                 poke_interval: float | None = 5.0, per_source_names: bool = True,
                 **kitchen_kwargs: Any) -> None:
        self.chefs = list(chefs)
        self._sink = sink
        self.dumplings = 0
        self.name = name
        self.chef_options = chef_options or {}
        self.poke_interval = poke_interval or None
        self.per_source_names = per_source_names
        self.kitchen_kwargs = kitchen_kwargs
        self.sources: dict[tuple[str, str | None], _Source] = {}
        self.tracker = BatchTracker()
        self.batches = 0
        self.packets = 0
        self.bad_batches = 0
        self.finished = 0

    # -- sources ----------------------------------------------------------------------------

    def kitchen_name(self, kitchen: str, host: str | None) -> str:
        if not self.per_source_names:
            return self.name
        name = f"{self.name}/{kitchen}"
        # Same kitchen name on two hosts: keep their outputs apart too.
        if any(k == kitchen and h != host for k, h in self.sources):
            name += f"@{host}"
        return name

    def _source(self, key: tuple[str, str | None]) -> _Source:
        src = self.sources.get(key)
        if src is None:
            kitchen = Kitchen(self.kitchen_name(*key), self.chefs, sink=self._emit,
                              poke_interval=self.poke_interval,
                              chef_options=self.chef_options, **self.kitchen_kwargs)
            src = self.sources[key] = _Source(kitchen)
            log.info("cooking for kitchen %s (host %s) as %s", key[0], key[1], kitchen.name)
        return src

    def _emit(self, dumpling: dict[str, Any], data: bytes) -> None:
        self.dumplings += 1
        self._sink(dumpling, data)

    def finish(self, key: tuple[str, str | None]) -> None:
        """The source's capture is over: flush its flows and interval handlers."""
        src = self.sources.pop(key, None)
        if src is None:
            return
        src.kitchen.finish()
        self.tracker.forget(key)
        self.finished += 1
        log.info("kitchen %s ended: %d packets cooked into %d dumplings", key[0],
                 src.packets, src.kitchen.stats.dumplings)

    def finish_all(self) -> None:
        for key in list(self.sources):
            self.finish(key)

    # -- input ------------------------------------------------------------------------------

    def feed(self, dumpling: dict[str, Any]) -> int:
        """One dumpling from the hub; returns the number of frames cooked."""
        md = dumpling.get("metadata") or {}
        chef = md.get("chef")
        if chef == STATUS_CHEF:
            self.hub_status(dumpling.get("payload"))
            return 0
        if chef != FORWARD_CHEF:
            return 0
        payload = dumpling.get("payload")
        try:
            frames = iter_frames(payload)
        except (ValueError, TypeError) as exc:
            self.bad_batches += 1
            if self.bad_batches <= 5:
                log.warning("unusable %s dumpling from %s: %s", FORWARD_CHEF,
                            md.get("kitchen"), exc)
            return 0
        source_name = md.get("kitchen") or payload.get("kitchen") or "?"
        if source_name == self.name or str(source_name).startswith(self.name + "/"):
            return 0  # our own output forwarded back to us: cooking it again would loop
        key = (str(source_name), md.get("host") or payload.get("kitchen_host"))
        verdict = self.tracker.check(key, payload, len(frames))
        if verdict == BatchTracker.DUPLICATE:
            return 0
        if verdict == BatchTracker.RESTART:
            log.info("kitchen %s restarted: finishing its previous capture", key[0])
            self.finish(key)
            self.tracker.check(key, payload, len(frames))
        src = self._source(key)
        kitchen = src.kitchen
        interval = self.poke_interval
        for f in frames:
            pkt = Packet(f["data"], f["ts"], f["wirelen"], f["linktype"], f["interface"])
            if interval:
                t = pkt.time
                if src.next_poke is None:
                    src.next_poke = t + interval
                while t >= src.next_poke:
                    kitchen.poke()
                    src.next_poke += interval
            kitchen.process(pkt)
        src.packets += len(frames)
        src.batches += 1
        src.last_seen = time.monotonic()
        self.packets += len(frames)
        self.batches += 1
        return len(frames)

    def hub_status(self, status: Any) -> None:
        if not isinstance(status, dict) or not isinstance(status.get("dumpling_kitchens"), list):
            return
        live = set()
        for k in status["dumpling_kitchens"]:
            info = k.get("info_from_kitchen") if isinstance(k, dict) else None
            if isinstance(info, dict) and isinstance(info.get("kitchen_name"), str):
                live.add(info["kitchen_name"])
        for key in list(self.sources):
            if key[0] not in live:
                self.finish(key)

    def stats(self) -> dict[str, int]:
        return {"batches": self.batches, "packets": self.packets,
                "kitchens": len(self.sources) + self.finished,
                "dumplings": self.dumplings,
                "missed_batches": self.tracker.missed_batches,
                "missed_packets": self.tracker.missed_packets,
                "duplicates": self.tracker.duplicates, "bad_batches": self.bad_batches}


class CookEater(DumplingEater):
    """Feeds a ``Cook`` from a hub's out-port.

    ``from_kitchens`` is applied here, not as the hub's kitchen filter: that filter also
    leaves out the hub's status dumplings, and the status is how a source is known to have
    ended (a status on a second connection could overtake the source's last batches)."""

    def __init__(self, cook: Cook, *, from_kitchens: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(chef_filter=[FORWARD_CHEF, STATUS_CHEF], **kwargs)
        self.cook = cook
        self.from_kitchens = set(from_kitchens) if from_kitchens else None
        self.statuses = 0

    async def on_connect(self, hub_uri: str, websocket: Any) -> None:
        print(f"nd-cook: connected to {hub_uri}", file=sys.stderr, flush=True)

    async def on_dumpling(self, dumpling: dict[str, Any]) -> None:
        md = dumpling.get("metadata") or {}
        if md.get("chef") == STATUS_CHEF:
            self.statuses += 1
            if self.statuses == 1:
                log.info("hub status received: subscribed")
        elif self.from_kitchens is not None and md.get("kitchen") not in self.from_kitchens:
            return
        self.cook.feed(dumpling)

    async def on_connection_lost(self, exc: BaseException) -> None:
        log.warning("connection to the hub lost (%s)%s", exc or type(exc).__name__,
                    "; reconnecting" if self.reconnect else "")
