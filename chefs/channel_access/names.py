"""What a CA circuit has set up, so that every message can name its PV.

A ``ReadNotifyResponse`` only carries an ioid, a monitor update only a subscription id:
caproto parses each message alone, and a passive observer has to remember the circuit's
cid/sid/ioid/subscription maps (each bounded) to tie them back to a channel name, and the
request times to give notify and search responses a latency.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .events import CAEvent

#: Commands whose response pairs with a request by ioid.
IOID_REQUESTS = {"ReadNotifyRequest", "WriteNotifyRequest", "ReadRequest"}
IOID_RESPONSES = {"ReadNotifyResponse", "WriteNotifyResponse", "ReadResponse"}


class CircuitNames:
    """The id maps of one circuit (or of one UDP flow's searches), each holding at most
    ``max_names`` entries (the least recently set dropped first)."""

    def __init__(self, max_names: int = 4096) -> None:
        self.max_names = max_names
        self.cids: OrderedDict[int, str] = OrderedDict()
        self.sids: OrderedDict[int, str] = OrderedDict()
        #: ioid -> (pv, request time, request command)
        self.ioids: OrderedDict[int, tuple[str | None, float | None, str]] = OrderedDict()
        #: subscription id -> pv (None when the channel is unknown): the active monitors
        self.subscriptions: OrderedDict[int, str | None] = OrderedDict()
        self.searches: OrderedDict[int, tuple[str, float | None]] = OrderedDict()
        #: subscription id -> sid, for cancels not yet acknowledged
        self.cancelling: OrderedDict[int, int] = OrderedDict()

    def _remember(self, table: OrderedDict, key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_names:
            table.popitem(last=False)

    def track(self, event: CAEvent) -> None:
        """Learn from a decoded message; set its ``pv`` (and ``latency`` for a response)."""
        f = event.fields
        name = event.command
        ts = event.timestamp
        pv: str | None = None
        if name == "CreateChanRequest":
            pv = f.get("name")
            self._remember(self.cids, f.get("cid"), pv)
        elif name == "CreateChanResponse":
            pv = self.cids.get(f.get("cid"))
            self._remember(self.sids, f.get("sid"), pv)
        elif name in ("AccessRightsResponse", "ServerDisconnResponse"):
            pv = self.cids.get(f.get("cid"))
        elif name == "CreateChFailResponse":
            pv = self.cids.pop(f.get("cid"), None)
        elif name == "ClearChannelRequest":
            pv = self.sids.get(f.get("sid")) or self.cids.get(f.get("cid"))
        elif name == "ClearChannelResponse":
            pv = self.sids.pop(f.get("sid"), None) or self.cids.get(f.get("cid"))
            self.cids.pop(f.get("cid"), None)
        elif name in IOID_REQUESTS:
            pv = self.sids.get(f.get("sid"))
            self._remember(self.ioids, f.get("ioid"), (pv, ts, name))
        elif name in ("WriteRequest", "EventCancelRequest"):
            pv = self.sids.get(f.get("sid"))
            if name == "EventCancelRequest":
                self._remember(self.cancelling, f.get("subscriptionid"), f.get("sid"))
        elif name in IOID_RESPONSES:
            pv, sent, _ = self.ioids.pop(f.get("ioid"), (None, None, ""))
            if sent is not None and ts is not None:
                event.latency = ts - sent
        elif name == "EventAddRequest":
            pv = self.sids.get(f.get("sid"))
            self._remember(self.subscriptions, f.get("subscriptionid"), pv)
        elif name in ("EventAddResponse", "EventCancelResponse"):
            sub = f.get("subscriptionid")
            pv = self.subscriptions.get(sub)
            if name == "EventCancelResponse":
                self.subscriptions.pop(sub, None)
                self.cancelling.pop(sub, None)
        elif name == "SearchRequest":
            pv = f.get("name")
            self._remember(self.searches, f.get("cid"), (pv, ts))
        elif name in ("SearchResponse", "NotFoundResponse"):
            pv, sent = self.searches.get(f.get("cid"), (None, None))
            if sent is not None and ts is not None:
                event.latency = ts - sent
        elif name == "ErrorResponse":
            original = f.get("original_request") or {}
            if original.get("name") in IOID_REQUESTS:
                pv, _, _ = self.ioids.pop(original.get("parameter2"), (None, None, ""))
            pv = pv or self.cids.get(f.get("cid"))
        event.pv = pv

