"""The exceptions netdumplings 0.5 exported, in its hierarchy.

``NetDumplingsError`` is the base of every netdumplings error a 0.5 program catches.
``InvalidDumpling`` is also what the hub raises for a dumpling it refuses (it was
``netdumplings.hub.InvalidDumpling`` before, and still is the same class there); it stays
a ``ValueError`` too, so code written against the hub's earlier class keeps catching it.
"""

from __future__ import annotations


class NetDumplingsError(Exception):
    """Base class of netdumplings' own errors."""


class InvalidDumpling(NetDumplingsError, ValueError):
    """A dumpling (usually its JSON) is not a valid dumpling."""


class InvalidDumplingPayload(NetDumplingsError):
    """A dumpling's payload cannot be serialised to JSON."""


__all__ = ["InvalidDumpling", "InvalidDumplingPayload", "NetDumplingsError"]
