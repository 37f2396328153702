"""Flows: packets grouped into TCP and UDP conversations, TCP reassembled into byte streams.

The flow table (5-tuple, client and server roles, TIME-WAIT, idle timeout, eviction) and
the per-direction TCP reassembler (ordered bytes, gaps reported, memory bounded).

May import: the standard library and ``netdumplings.capture``. The kitchen drives it;
chefs see its ``Flow`` objects.
"""

from .._lazy import lazy_exports

__all__ = ["CloseReason", "Direction", "Flow", "FlowTable", "TcpDirection", "format_endpoint"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "CloseReason": ".table", "Direction": ".table", "Flow": ".table", "FlowTable": ".table",
    "format_endpoint": ".table", "TcpDirection": ".reassembly",
})
