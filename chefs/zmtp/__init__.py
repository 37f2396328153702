"""ZeroMQ (ZMTP 3.0/3.1) on the wire: a sans-I/O decoder and the chef around it.

Modules, and what each may import:

- ``decoder``: ``ZmtpDecoder``, one direction's bytes in, events out (greeting, commands,
  multipart messages, gaps, resync). Only the stdlib and this package's ``events`` and
  ``commands``: no framework module, no scapy, sockets or asyncio, so it is usable on its
  own, as h11 is.
- ``events``: the event dataclasses it returns, and how their bytes are shown (stdlib only).
- ``commands``: command bodies (READY metadata, ERROR, PING, PLAIN HELLO...) to fields.
- ``payload``: events -> dumpling payloads (reads the flow for addresses).
- ``chef``: ``ZmtpChef``, the chef shell (the framework's chef API, two decoders per flow).

Every name below stays importable as ``netdumplings.chefs.zmtp.<name>``.
"""

from .chef import ZmtpChef
from .commands import command_fields, parse_properties
from .decoder import (CURVE_BOXED, FLAG_COMMAND, FLAG_LONG, FLAG_MORE, FLAG_RESERVED,
                      GREETING_SIZE, HANDSHAKE_END, RESYNC_TRIES, SIGNATURE_SIZE, SUBSCRIBERS,
                      SYNC_TRIES, ZmtpDecoder, handshake_result)
from .events import (Command, DecodeError, Event, Frame, Greeting, Joined, Message, NotZmtp,
                     Resynced, as_text, show)
from .payload import close_payload, command_brief, event_payload

__all__ = [
    "CURVE_BOXED", "FLAG_COMMAND", "FLAG_LONG", "FLAG_MORE", "FLAG_RESERVED", "GREETING_SIZE",
    "HANDSHAKE_END", "RESYNC_TRIES", "SIGNATURE_SIZE", "SUBSCRIBERS", "SYNC_TRIES", "Command",
    "DecodeError", "Event", "Frame", "Greeting", "Joined", "Message", "NotZmtp", "Resynced",
    "ZmtpChef", "ZmtpDecoder", "as_text", "close_payload", "command_brief", "command_fields",
    "event_payload", "handshake_result", "parse_properties", "show",
]
