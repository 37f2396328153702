"""netdumplings: distributed network sniffing and protocol decoding.

Kitchens sniff packets and hand them to chefs; chefs turn them into dumplings; a hub relays
dumplings from any number of kitchens to any number of eaters.

netdumplings 0.5's names (``Dumpling``, ``DumplingDriver``, ``DumplingKitchen``,
``DumplingHub``, ``DumplingEater`` and its exceptions) are here too, loaded on first use so
that ``import netdumplings`` stays cheap (see ``netdumplings.compat``).
"""

from typing import TYPE_CHECKING, Any

from .chef import (CloseReason, DatagramChef, Direction, DumplingChef, FlowChef,
                   StreamChef)

from ._version import __version__

#: netdumplings 0.5's top-level names -> the module that defines them.
_COMPAT05 = {
    "Dumpling": "compat.dumpling",
    "DumplingDriver": "compat.dumpling",
    "DumplingKitchen": "compat.kitchen",
    "DumplingHub": "compat.hub",
    "DumplingEater": "compat.eater",
    "NetDumplingsError": "exceptions",
    "InvalidDumpling": "exceptions",
    "InvalidDumplingPayload": "exceptions",
}

if TYPE_CHECKING:  # pragma: no cover
    from .compat.dumpling import Dumpling, DumplingDriver
    from .compat.eater import DumplingEater
    from .compat.hub import DumplingHub
    from .compat.kitchen import DumplingKitchen
    from .exceptions import InvalidDumpling, InvalidDumplingPayload, NetDumplingsError


def __getattr__(name: str) -> Any:
    where = _COMPAT05.get(name)
    if where is None:
        raise AttributeError(f"module 'netdumplings' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_COMPAT05))


__all__ = [
    "CloseReason", "DatagramChef", "Direction", "DumplingChef", "FlowChef", "StreamChef",
    "__version__", *_COMPAT05,
]
