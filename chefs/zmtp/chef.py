"""ZmtpChef: the chef shell around ``ZmtpDecoder`` (two decoders per TCP flow).

It feeds each direction's bytes, gaps and end to that direction's decoder, tells each
decoder its peer's greeting version (ZMTP 3.0 subscriptions depend on both), stops a
direction whose decoder hits a bug (reported through ``report_error``) and turns the events
into payloads (``payload.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator

from pydantic import Field

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChefOptions, StreamChef

from .decoder import SIGNATURE_SIZE, ZmtpDecoder
from .events import DecodeError, Event, Greeting, NotZmtp
from .payload import close_payload, event_payload


class _FlowDecoders:
    """A flow's two decoders plus what is said once per flow."""

    __slots__ = ("decoders", "reported_not_zmtp")

    def __init__(self, make: Any) -> None:
        self.decoders = {Direction.CLIENT_TO_SERVER: make(), Direction.SERVER_TO_CLIENT: make()}
        self.reported_not_zmtp = False


class ZmtpChef(StreamChef):
    """ZeroMQ connections: one dumpling per greeting, command and whole multipart message.

    ZeroMQ endpoints use any port, so flows are found by their greeting signature
    (``detect``) as well as by the ``ports`` option.
    """

    default_ports: ClassVar[tuple[int, ...]] = ()

    class Options(FlowChefOptions):
        #: Bytes of each frame shown (the rest is counted and hashed).
        max_shown: int = Field(2048, ge=0, le=1 << 20)
        #: Frames of one message shown (the rest are counted).
        max_frames: int = Field(64, ge=1, le=10_000)
        #: Bytes of a command body kept for decoding.
        max_command: int = Field(65536, ge=64, le=1 << 24)
        #: A declared frame length above this is taken as a lie (stream out of step).
        max_frame: int = Field(1 << 32, ge=0)
        #: Also make a dumpling for each connection's end (handshake result, counts).
        report_close: bool = True

    def _configure(self) -> None:
        super()._configure()
        self.errors = 0

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        # Every ZMTP 2.0/3.x peer opens with 0xFF, 8 padding bytes, 0x7F.
        return len(data) >= SIGNATURE_SIZE and data[0] == 0xFF and data[9] == 0x7F

    def new_flow_state(self, flow: Any) -> _FlowDecoders:
        o = self.options
        midstream = not getattr(flow, "roles_known", True)
        return _FlowDecoders(lambda: ZmtpDecoder(o.max_shown, o.max_frames, o.max_command,
                                                 o.max_frame, midstream))

    def on_data(self, flow: Any, direction: Direction, data: bytes,
                timestamp: float) -> Iterator[dict[str, Any]]:
        state: _FlowDecoders = self.flow_state(flow)
        decoder = state.decoders[direction]
        try:
            events = decoder.feed(data)
        except Exception as exc:  # a decoder bug must not lose the flow's other direction
            events = [self._crashed(decoder, exc)]
        yield from self._payloads(flow, direction, state, events, timestamp)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        state: _FlowDecoders = self.flow_state(flow)
        yield from self._payloads(flow, direction, state, state.decoders[direction].gap(size),
                                  None)

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        state: _FlowDecoders = self.flow_state(flow)
        for direction, decoder in state.decoders.items():
            try:
                events = decoder.end()
            except Exception as exc:
                events = [self._crashed(decoder, exc)]
            yield from self._payloads(flow, direction, state, events,
                                      getattr(flow, "last_seen", None))
        if not self.options.report_close or state.reported_not_zmtp:
            return
        c2s = state.decoders[Direction.CLIENT_TO_SERVER]
        s2c = state.decoders[Direction.SERVER_TO_CLIENT]
        if all(d.greeting is None and not d.messages and not d.commands
               for d in (c2s, s2c)):
            return
        yield close_payload(flow, reason, c2s, s2c)

    # -- events to payloads ----------------------------------------------------------------

    def _crashed(self, decoder: ZmtpDecoder, exc: Exception) -> DecodeError:
        self.report_error("ZMTP decoder failed; direction stopped", exc)
        decoder.halt()
        decoder.errors += 1
        return DecodeError(f"decoder error {type(exc).__name__}: {exc}", True)

    def _payloads(self, flow: Any, direction: Direction, state: _FlowDecoders,
                  events: list[Event], timestamp: float | None) -> Iterator[dict[str, Any]]:
        for ev in events:
            if isinstance(ev, Greeting):
                peer = state.decoders[direction.reverse]
                peer.peer_version = ev.version
                if peer.greeting is not None:
                    state.decoders[direction].peer_version = peer.greeting.version
            elif isinstance(ev, NotZmtp):
                if state.reported_not_zmtp:
                    continue
                state.reported_not_zmtp = True
            elif isinstance(ev, DecodeError):
                self.errors += 1
                self.logger.info("%s: %s", flow.label(direction), ev.error)
            yield event_payload(flow, direction, ev, timestamp)
