"""Hub: dumplings in from any number of kitchens, out to any number of eaters.

The server (``Hub``: two WebSocket ports), admission and authentication, reading kitchens'
frames, validation, per-eater queues and fan-out with a memory budget, resuming after a
restart, status dumplings and metrics, and the NATS backplane that joins several hubs.

May import: ``netdumplings.wire`` and ``netdumplings.exceptions``; never a packet, a flow
or a chef (the hub sees only dumplings).
"""

from .._lazy import lazy_exports

__all__ = ["Hub", "NatsBackplane"]

__getattr__, __dir__ = lazy_exports(__name__, {"Hub": ".server", "NatsBackplane": ".backplane"})
