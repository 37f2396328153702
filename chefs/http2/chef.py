"""``Http2Chef``: the kitchen's side of ``Http2Decoder``. One decoder per TCP flow, fed
the flow's reassembled bytes, gaps and close; its events become dumplings (see
``payload``), with a safety net so that a decoder or payload bug is reported as a chef
error and costs one flow's output, never the kitchen."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterator

from pydantic import Field

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChefOptions, StreamChef

from . import payload as _payload
from .decoder import Http2Decoder
from .detect import looks_like_h2c
from .events import BodyPreview, DecodeError, Event, FrameEvent, Joined, Side, StreamEnded

C2S = Direction.CLIENT_TO_SERVER


def _direction(side: Side | None) -> Direction:
    """The kitchen's direction for a decoder's side (the client's when it names none)."""
    return C2S if side is None else Direction(side.value)


class Http2Chef(StreamChef):
    """HTTP/2 cleartext (h2c) exchanges, one dumpling per stream; see the module docstring.

    Flows are followed on ``ports`` or when their first client bytes are the h2c preface or
    an HTTP/1.1 request with ``Upgrade: h2c``.
    """

    class Options(FlowChefOptions):
        #: Also send one dumpling per HTTP/2 frame (perisco-style views).
        frames: bool = False
        #: Body bytes shown per direction of a stream (text or hex).
        body_preview: int = Field(256, ge=0, le=65536)
        #: Open streams kept per connection; the oldest is reported early beyond this.
        max_streams: int = Field(1000, ge=1, le=100_000)
        #: Largest non-DATA frame buffered (DATA is streamed whatever its size).
        max_frame_size: int = Field(1 << 20, ge=16384, le=(1 << 24) - 1)

    default_ports: ClassVar[tuple[int, ...]] = ()
    options: Options

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        return direction is C2S and looks_like_h2c(data)

    def new_flow_state(self, flow: Any) -> Http2Decoder:
        limit = self.options.body_preview
        return Http2Decoder(max_frame_size=self.options.max_frame_size,
                            max_streams=self.options.max_streams,
                            body_sink=lambda stream, direction: BodyPreview(limit),
                            midstream=not getattr(flow, "roles_known", True))

    # -- flow events -----------------------------------------------------------------

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float) -> Any:
        return self._run(flow, lambda dec: dec.feed(direction, data, timestamp))

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Any:
        return self._run(flow, lambda dec: dec.gap(direction, size, self.now))

    def on_close(self, flow: Any, reason: CloseReason) -> Any:
        yield from self._run(flow, lambda dec: dec.close(f"connection closed ({reason})",
                                                         self.now))
        try:
            summary = self.connection_payload(flow, self.flow_state(flow), reason)
        except Exception:
            self.logger.exception("connection summary failed on %r", flow)
            return
        if summary is not None:
            yield summary

    def _run(self, flow: Any, step: Callable[[Http2Decoder], list[Event]]) -> Iterator[Any]:
        decoder: Http2Decoder = self.flow_state(flow)
        try:
            events = step(decoder)
        except Exception as exc:  # never let bad input escape the chef
            self.report_error(f"decoder failed on {flow!r}", exc)
            decoder.stopped = decoder.stopped or f"internal error: {exc}"
            events = [DecodeError(None, self.now, f"internal error: {type(exc).__name__}", True)]
        while decoder.internal_errors:
            self.report_error(f"decoder failed on {flow!r}", decoder.internal_errors.pop(0))
        for event in events:
            try:
                payload = self.event_payload(flow, decoder, event)
            except Exception:
                self.logger.exception("payload building failed on %r", flow)
                continue
            if payload is not None:
                yield payload

    # -- payloads (built in ``payload``; methods so that GrpcChef can override them) ------

    def _base(self, flow: Any, direction: Direction, timestamp: float | None) -> dict[str, Any]:
        return _payload.base(flow, direction, timestamp)

    def event_payload(self, flow: Any, decoder: Http2Decoder, event: Event) -> dict[str, Any] | None:
        if isinstance(event, StreamEnded):
            return self.stream_payload(flow, event)
        if isinstance(event, FrameEvent):
            return self.frame_payload(flow, event) if self.options.frames else None
        if isinstance(event, Joined):
            return _payload.joined_payload(flow, _direction(event.direction), event)
        if isinstance(event, DecodeError):
            direction = _direction(event.direction)
            self.logger.info("%s: %s", flow.label(direction), event.message)
            return _payload.error_payload(flow, direction, event)
        return None

    def frame_payload(self, flow: Any, event: FrameEvent) -> dict[str, Any]:
        return _payload.frame_payload(flow, _direction(event.direction), event)

    def stream_payload(self, flow: Any, event: StreamEnded) -> dict[str, Any] | None:
        return _payload.stream_payload(flow, C2S, event, self.options.body_preview)

    def connection_payload(self, flow: Any, decoder: Http2Decoder, reason: CloseReason
                           ) -> dict[str, Any] | None:
        return _payload.connection_payload(flow, C2S, decoder, reason, self.now)
