"""FluentdForwardChef: the chef shell around ``FluentdForwardDecoder``.

One decoder per direction of a TCP flow; the payloads (ack matching, record budgets, the
close summary) are made by ``payload.py``; messages the decoder could not use are logged.
"""

from __future__ import annotations

from typing import Any, ClassVar

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChefOptions, StreamChef

from .decoder import FluentdForwardDecoder
from .events import FluentdMessage
from .payload import FlowState, close_payload, message_payload


class FluentdForwardChef(StreamChef):
    """Fluentd forward protocol on TCP (default port 24224): one dumpling per message.

    Event messages show their tag, events (time as ISO and epoch, record truncated to
    ``max_record_bytes`` with its original size stated) and options; acks carry the latency
    since the last byte of the request they answer; PONG says whether auth succeeded."""

    class Options(FlowChefOptions):
        #: Records longer than this (roughly, in JSON characters) are cut in the payload.
        max_record_bytes: int = 4096
        #: Events listed per message (the count is always complete).
        max_events: int = 100
        #: Largest message decoded; bigger ones are reported and skipped.
        max_message_bytes: int = 8 << 20
        #: Cap on the decompressed size of a CompressedPackedForward message.
        max_decompressed_bytes: int = 32 << 20
        #: Requests remembered per connection while waiting for their ack.
        max_pending_acks: int = 1024

    default_ports: ClassVar[tuple[int, ...]] = (24224,)

    def new_flow_state(self, flow: Any) -> FlowState:
        o = self.options
        decoders = {d: FluentdForwardDecoder(o.max_message_bytes, o.max_events,  # type: ignore
                                             o.max_decompressed_bytes)  # type: ignore
                    for d in Direction}
        return FlowState(decoders, o.max_pending_acks)  # type: ignore[attr-defined]

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float) -> Any:
        state = self.flow_state(flow)
        for msg in state.decoders[direction].feed(data, timestamp):
            yield self._payload(flow, direction, state, msg, timestamp)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Any:
        state = self.flow_state(flow)
        for msg in state.decoders[direction].gap(size):
            yield self._payload(flow, direction, state, msg, self.now)

    def on_close(self, flow: Any, reason: CloseReason) -> Any:
        state = self.flow_state(flow)
        for direction, decoder in state.decoders.items():
            for msg in decoder.close():
                yield self._payload(flow, direction, state, msg, self.now)
        close = close_payload(flow, reason, state, self.now)
        if close is not None:
            yield close

    def _payload(self, flow: Any, direction: Direction, state: FlowState, msg: FluentdMessage,
                 timestamp: float | None) -> dict[str, Any]:
        if msg.kind in ("error", "unknown"):
            self.logger.info("%s: %s (offset %d)", flow.label(direction),
                             msg.fields.get("error"), msg.offset)
        return message_payload(flow, direction, state, msg, timestamp,
                               self.options.max_record_bytes)  # type: ignore[attr-defined]
