"""Eater: the client side of the hub's out port, which every eater builds on.

``DumplingEater`` connects, says hello (with its subscription), reconnects with backoff and
hands each dumpling to ``on_dumpling``; the bundled eaters (``netdumplings.eaters``) and
netdumplings 0.5's ``DumplingEater`` are subclasses.

May import: ``netdumplings.wire`` and ``netdumplings.exceptions``; never the hub, the
kitchen or anything that reads packets.
"""

from .._lazy import lazy_exports

__all__ = ["DumplingEater", "HubRefused", "HubUnavailable"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "DumplingEater": ".client", "HubRefused": ".client", "HubUnavailable": ".client",
})
