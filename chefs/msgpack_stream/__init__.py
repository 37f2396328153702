"""MessagePack streams: a sans-I/O stream decoder, shared with the Fluentd chef, and a chef
that shows every object.

Modules, and what each may import:

- ``decoder``: ``MsgpackStreamDecoder``, one direction's bytes in, whole objects and errors
  out (timestamps per object, a hard memory bound, resync after bad bytes). Only the stdlib,
  msgpack and this package's ``events`` and ``values``: no framework module, no scapy,
  sockets or asyncio, so it is usable on its own, as h11 is.
- ``events``: ``MsgpackObject`` and ``MsgpackError``, what the decoder returns.
- ``values``: how values are unpacked (the EventTime ext type, one Unpacker setup).
- ``display``: decoded values -> bounded JSON-able data and one-line text.
- ``chef``: ``MsgpackChef``, the chef shell (the framework's chef API).

``netdumplings.chefs.fluentd`` builds on ``decoder``, ``values`` and ``display`` (never on
``chef``). Every name below stays importable as ``netdumplings.chefs.msgpack_stream.<name>``.
"""

from .chef import MsgpackChef
from .decoder import MsgpackStreamDecoder
from .display import (MAX_KEYS_SHOWN, MIN_VALUE_SHARE, bytes_text, iso_time, one_line, raw_bytes,
                      text, to_jsonable, type_name)
from .events import MsgpackError, MsgpackEvent, MsgpackObject
from .values import EventTime, ext_hook, new_unpacker, packed_size

__all__ = [
    "MAX_KEYS_SHOWN", "MIN_VALUE_SHARE", "EventTime", "MsgpackChef", "MsgpackError",
    "MsgpackEvent", "MsgpackObject", "MsgpackStreamDecoder", "bytes_text", "ext_hook",
    "iso_time", "new_unpacker", "one_line", "packed_size", "raw_bytes", "text", "to_jsonable",
    "type_name",
]
