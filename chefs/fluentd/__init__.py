"""Fluentd forward protocol (v1) over TCP: a sans-I/O decoder and the chef around it.

Modules, and what each may import:

- ``decoder``: ``FluentdForwardDecoder``, one direction's bytes in, ``FluentdMessage`` events
  out (the four event modes, HELO/PING/PONG, acks, bad messages). It reads the msgpack
  objects with the shared ``netdumplings.chefs.msgpack_stream`` decoder and may import only
  the stdlib, this package's ``events`` and that package's decoder-side modules
  (``decoder``, ``events``, ``values``, ``display``): no framework module, no scapy, sockets
  or asyncio, so it is usable on its own, as h11 is.
- ``events``: ``FluentdMessage`` and the event-mode names (stdlib only).
- ``payload``: messages -> dumpling payloads, and each connection's ack bookkeeping.
- ``chef``: ``FluentdForwardChef``, the chef shell (the framework's chef API).

Every name below stays importable as ``netdumplings.chefs.fluentd.<name>``.
"""

from .chef import FluentdForwardChef
from .decoder import FluentdForwardDecoder, scalar
from .events import EVENT_MODES, FluentdMessage
from .payload import FlowState, Pending, close_payload, event_time, message_payload

__all__ = [
    "EVENT_MODES", "FlowState", "FluentdForwardChef", "FluentdForwardDecoder", "FluentdMessage",
    "Pending", "close_payload", "event_time", "message_payload", "scalar",
]
