"""netdumplings: distributed network sniffing and protocol decoding.

Kitchens sniff packets and hand them to chefs; chefs turn them into dumplings; a hub relays
dumplings from any number of kitchens to any number of eaters.
"""

from .chef import (CloseReason, DatagramChef, Direction, DumplingChef, FlowChef,
                   StreamChef)

__version__ = "1.0.0.dev0"

__all__ = [
    "CloseReason", "DatagramChef", "Direction", "DumplingChef", "FlowChef", "StreamChef",
    "__version__",
]
