"""nd-dump's eater: forwarded frames back into pcap / pcapng files (written by
``netdumplings.capture.pcapwriter``, which says how timestamps and rotation work)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from netdumplings.chefs.forward import BatchTracker, iter_frames
from netdumplings.eater.client import DumplingEater
from netdumplings.capture.pcapwriter import Dumper

log = logging.getLogger("netdumplings.dump")

FORWARD_CHEF = "PacketForwardChef"


class DumpEater(DumplingEater):
    """Feeds a ``Dumper`` from a hub's out-port; stops when its count is reached."""

    def __init__(self, dumper: Dumper, *, from_kitchens: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(chef_filter=[FORWARD_CHEF], kitchen_filter=from_kitchens, **kwargs)
        self.dumper = dumper
        self.tracker = BatchTracker()
        self.bad_batches = 0
        self.write_error: OSError | None = None

    async def on_connect(self, hub_uri: str, websocket: Any) -> None:
        print(f"nd-dump: connected to {hub_uri}", file=sys.stderr, flush=True)

    async def on_dumpling(self, dumpling: dict[str, Any]) -> None:
        md = dumpling.get("metadata") or {}
        if md.get("chef") != FORWARD_CHEF:
            return
        payload = dumpling.get("payload")
        try:
            frames = iter_frames(payload)
        except (ValueError, TypeError) as exc:
            self.bad_batches += 1
            if self.bad_batches <= 5:
                log.warning("unusable %s dumpling from %s: %s", FORWARD_CHEF,
                            md.get("kitchen"), exc)
            return
        kitchen = md.get("kitchen")
        key = (kitchen, md.get("host"))
        if self.tracker.check(key, payload, len(frames)) == BatchTracker.DUPLICATE:
            return
        try:
            self.dumper.write_batch(kitchen, frames)
        except BrokenPipeError:  # `nd-dump -w - | head -c`, or the reader went away
            self.dumper.count = self.dumper.written
        except OSError as exc:
            # A file that cannot be created or written (no such directory, permissions, disk
            # full): fatal, not a lost connection to reconnect from while packets are lost.
            self.write_error = exc
            self.stop()
            return
        if self.dumper.done:
            self.stop()

    async def on_connection_lost(self, exc: BaseException) -> None:
        log.warning("connection to the hub lost (%s)%s", exc or type(exc).__name__,
                    "; reconnecting" if self.reconnect else "")
