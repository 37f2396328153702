"""netdumplings: distributed network sniffing and protocol decoding.

Kitchens sniff packets and hand them to chefs; chefs turn them into dumplings; a hub relays
dumplings from any number of kitchens to any number of eaters. The code follows the data:
``capture`` -> ``flows`` -> ``kitchen`` (and the chefs) -> ``wire`` -> ``hub`` -> ``eater``
(docs/architecture.md).

This package's names are the public API (tests/test_public_api.py lists them): the chef
API, the main class of each stage, and netdumplings 0.5's names (``Dumpling``,
``DumplingDriver``, ``DumplingKitchen``, ``DumplingHub``, ``DumplingEater`` and its
exceptions, see ``netdumplings.compat``). All but the chef API load on first use, so that
``import netdumplings`` stays cheap.
"""

from typing import TYPE_CHECKING

from . import _moved
from ._lazy import lazy_exports
from ._version import __version__
from .kitchen.chef import (ChefOptions, ChefSetupError, CloseReason, DatagramChef, Direction,
                           DumplingChef, FlowChef, FlowChefOptions, StreamChef)

_moved.install()

#: netdumplings 0.5's top-level names -> the module that defines them.
_COMPAT05 = {
    "Dumpling": ".compat.dumpling",
    "DumplingDriver": ".compat.dumpling",
    "DumplingKitchen": ".compat.kitchen",
    "DumplingHub": ".compat.hub",
    "DumplingEater": ".compat.eater",
    "NetDumplingsError": ".exceptions",
    "InvalidDumpling": ".exceptions",
    "InvalidDumplingPayload": ".exceptions",
}
#: Today's main classes, one a stage.
_STAGES = {
    "Kitchen": ".kitchen.kitchen",
    "read_dumplings": ".kitchen.offline",
    "Hub": ".hub.server",
    "HubSender": ".wire.sender",
}

if TYPE_CHECKING:  # pragma: no cover
    from .compat.eater import DumplingEater
    from .compat.hub import DumplingHub
    from .compat.kitchen import DumplingKitchen
    from .exceptions import InvalidDumpling, InvalidDumplingPayload, NetDumplingsError
    from .hub.server import Hub
    from .kitchen.kitchen import Kitchen
    from .kitchen.offline import read_dumplings
    from .wire.dumpling05 import Dumpling, DumplingDriver
    from .wire.sender import HubSender

__getattr__, __dir__ = lazy_exports(__name__, {**_COMPAT05, **_STAGES})

__all__ = [
    "ChefOptions", "ChefSetupError", "CloseReason", "DatagramChef", "Direction", "DumplingChef",
    "FlowChef", "FlowChefOptions", "StreamChef", "__version__", *_STAGES, *_COMPAT05,
]
