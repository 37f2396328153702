"""HTTP/2 over cleartext TCP (h2c): frames, HPACK header blocks and per-stream exchanges.

``Http2Decoder`` is sans-I/O: it is fed each direction's reassembled bytes and gives
events back. It follows one connection from its start, either from the prior-knowledge
client preface or from an HTTP/1.1 ``Upgrade: h2c`` exchange (the HTTP/1.1 request becomes
stream 1). HPACK is stateful across the whole connection, so there is one ``hpack``
decoder per direction, and any loss of bytes (a capture gap, a header block that fails to
decode, framing that makes no sense) stops decoding of the connection for good: guessing on
would only produce wrong headers. Streams still open at that point are reported incomplete.

Joining mid-connection (the capture began while the connection was open, which for
long-lived gRPC channels is the usual case): each direction starts at its first captured
chunk made of whole frames. HPACK state from before the capture is unknown, so a header
block that refers to a table entry made before it cannot be decoded; it is reported as
unknown (``headers_unknown``), never guessed, and that direction's HPACK decoder starts
afresh: entries made from then on are the same in both tables (RFC 7541 numbers dynamic
entries from the newest), so later blocks that refer only to them decode exactly. Streams
already open at the join are not reported as exchanges (their start was not seen).

``Http2Chef`` turns the events into one dumpling per finished stream (request/response
headers, trailers, DATA sizes, reset, latency), optional per-frame dumplings
(``--chef-option Http2Chef.frames=true``) and one connection summary when the flow ends.

The package, one job per module. The decoder side imports only the standard library,
h11, hpack, hyperframe and its own modules (no kitchen, flows, scapy, sockets or asyncio):
``names`` (preface, frame/error/setting names, caps), ``events`` (``Side`` and what the
decoder returns), ``text`` (bytes shown as JSON), ``detect`` (is this h2c? whole frames?),
``state`` (one direction's parser state), ``handshake`` (how decoding begins), ``frames``
(what each frame does), ``decoder`` (``Http2Decoder``). ``payload`` turns events into
JSON payloads without the kitchen. Only ``chef`` (``Http2Chef``) imports the framework.
"""

from __future__ import annotations

from .chef import Http2Chef
from .decoder import Http2Decoder
from .detect import looks_like_h2c
from .events import (BodyPreview, BodySink, DecodeError, Event, FrameEvent, Http2Stream, Joined,
                     Side, StreamEnded)
from .names import (ERROR_NAMES, FRAME_NAMES, MAX_HPACK_TABLE, PREFACE, SETTING_NAMES,
                    error_name)
from .text import show_bytes

__all__ = [
    "BodyPreview", "BodySink", "DecodeError", "ERROR_NAMES", "Event", "FRAME_NAMES",
    "FrameEvent", "Http2Chef", "Http2Decoder", "Http2Stream", "Joined", "MAX_HPACK_TABLE",
    "PREFACE", "SETTING_NAMES", "Side", "StreamEnded", "error_name", "looks_like_h2c",
    "show_bytes",
]
