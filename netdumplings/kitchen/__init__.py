"""Kitchen: every packet to every chef, and chefs' payloads out as dumplings.

The chef API (``DumplingChef``, ``FlowChef``, ``StreamChef``, ``DatagramChef``, options),
the registry that finds chefs (bundled and user modules), the ``Kitchen`` that drives
flows, reassembly and chefs, the flow-sharded workers (``--workers N``) and the offline
reader (``read_dumplings``).

May import: ``netdumplings.flows``, ``netdumplings.capture``, ``netdumplings.wire`` (the
dumplings it makes) and ``netdumplings.exceptions``; never the hub or the eaters. The
bundled chefs (``netdumplings.chefs``) build on it; the registry finds them by name at run
time, not by import.
"""

from .._lazy import lazy_exports

__all__ = ["ChefLoadError", "ChefOptions", "ChefOptionsError", "ChefSetupError", "CloseReason",
           "DatagramChef", "Direction", "DumplingChef", "FlowChef", "FlowChefOptions", "Kitchen",
           "KitchenStats", "ShardedKitchen", "StreamChef", "WorkerDied", "bundled_chefs",
           "iter_payloads", "load_chefs", "read_dumplings"]

__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: ".chef" for name in (
        "ChefLoadError", "ChefOptions", "ChefOptionsError", "ChefSetupError", "CloseReason",
        "DatagramChef", "Direction", "DumplingChef", "FlowChef", "FlowChefOptions", "StreamChef",
        "iter_payloads")},
    "Kitchen": ".kitchen", "KitchenStats": ".kitchen",
    "ShardedKitchen": ".workers", "WorkerDied": ".workers",
    "bundled_chefs": ".registry", "load_chefs": ".registry",
    "read_dumplings": ".offline",
})
