"""WebSocket messages in bulk, for clients that send or take one dumpling per message.

A netdumplings 0.5 kitchen, or a hand-written one, sends one dumpling per WebSocket message;
such eaters take one per message. Through websockets' ``recv()`` and ``send()`` each message
costs the hub a few microseconds of futures, locks and context managers on top of the frame
itself (measured: about half the hub's time per dumpling with one plain kitchen and one plain
eater, and most of it with ten eaters). Two changes keep websockets for everything it does
(handshake, frame parsing and unmasking, size limits, pings, closing handshake, flow control)
and only skip the per-message round trip:

* ``KitchenConnection`` (the in-port's connection class): once a kitchen is admitted, the
  data frames websockets parsed from one read of the socket are handed to the hub together,
  synchronously, instead of one ``recv()`` each. Until then the hello goes through
  ``recv()`` as for every connection, and frames after it are held, with reading paused, so
  an unadmitted peer still cannot make the hub read more than a hello (and one socket read).
* ``write_messages``: an eater's queued dumplings go out as many frames in one write to its
  socket, inside websockets' own send context (state check before, flow control after). A
  frame from server to client is a header and the payload, unmasked (RFC 6455 5.2), so the
  hub only adds the header; connections with a negotiated extension (the hub negotiates
  none: ``compression=None``) fall back to one ``send`` a message.

This relies on three methods of websockets' asyncio ``Connection`` that its API reference
does not list: ``process_event`` and ``data_received`` (asyncio's protocol callback),
overridden in a subclass given to ``serve(create_connection=...)``, which is documented, and
``send_context``, whose docstring shows this very use. tests/hub/test_hub_frames.py checks them
against the installed websockets (17.4 when this was written).
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Sequence

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame, Opcode

#: how the hub takes a kitchen's messages once it is admitted: the complete messages of
#: one socket read, in order
Sink = Callable[[list[bytes]], None]

_U16 = struct.Struct("!BBH").pack
_U64 = struct.Struct("!BBQ").pack


def frame_header(length: int, text: bool) -> bytes:
    """The header of an unfragmented, unmasked server frame of ``length`` payload bytes
    (RFC 6455 5.2: FIN, opcode 1 text or 2 binary, 7-bit length or 126 + 16-bit or 127 +
    64-bit, no mask)."""
    first = 0x81 if text else 0x82
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _U16(first, 126, length)
    return _U64(first, 127, length)


async def write_messages(ws: Any, messages: Sequence[bytes], text: bool) -> None:
    """Send ``messages`` as that many WebSocket messages, in one write when websockets'
    connection allows it (no extension negotiated), else one ``send`` each. Raises
    ``ConnectionClosed`` as ``send`` does."""
    if ws.protocol.extensions:
        for m in messages:
            await ws.send(m, text=text)
        return
    parts: list[bytes] = []
    append = parts.append
    for m in messages:
        append(frame_header(len(m), text))
        append(m)
    async with ws.send_context():
        ws.transport.write(b"".join(parts))


class KitchenConnection(ServerConnection):
    """A kitchen's connection: after ``take_messages(sink)``, complete data messages go to
    ``sink`` in the groups they arrived in, from the event loop's read callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink: Sink | None = None
        self._hello_in = False         # the first message went the usual way (recv)
        self._held: list[Frame] = []   # data frames after it, until the sink is set
        self._parts: list[bytes] = []  # a fragmented message in progress
        self._paused = False
        self._refused = False          # closed before admission: data frames are dropped

    def process_event(self, event: Any) -> None:
        if self._hello_in and isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            if not self._refused:
                self._held.append(event)
            return
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES and event.fin:
            self._hello_in = True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._held:
            if self.sink is not None:
                self._deliver()
            elif not self._paused and self.transport is not None:
                # Not admitted (yet): read nothing more until the hub decides.
                self._paused = True
                self.transport.pause_reading()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """As websockets' ``close``; a kitchen closed before it was admitted (refused, or
        no hello in time) has what it sent after its hello dropped, and reading resumes so
        that its close frame is read (otherwise the close would wait for the timeout)."""
        if self.sink is None:
            self._refused = True
            self._held.clear()
            if self._paused:
                self._paused = False
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.resume_reading()
        await super().close(code, reason)

    def take_messages(self, sink: Sink) -> None:
        """From now on (the kitchen is admitted) its messages go to ``sink``, starting with
        any that came with the hello."""
        self.sink = sink
        if self._held:
            self._deliver()
        if self._paused:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _deliver(self) -> None:
        frames, self._held = self._held, []
        messages: list[bytes] = []
        parts = self._parts
        for frame in frames:
            data = bytes(frame.data)
            if frame.opcode is Opcode.CONT:
                if data:
                    parts.append(data)
                if frame.fin:
                    messages.append(b"".join(parts))
                    parts.clear()
            elif frame.fin:
                messages.append(data)
            else:
                parts.clear()
                parts.append(data)
        if messages:
            assert self.sink is not None
            self.sink(messages)
