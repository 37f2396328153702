"""MsgpackChef: every top-level msgpack object on the ports you give, one dumpling each.

The chef shell around ``MsgpackStreamDecoder`` (one per direction of a flow); values are
shown with ``display.to_jsonable``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChefOptions, StreamChef

from .decoder import MsgpackStreamDecoder
from .display import one_line, to_jsonable, type_name
from .events import MsgpackError, MsgpackEvent


class MsgpackChef(StreamChef):
    """Any msgpack stream on the ports you give -> one dumpling per top-level object.

    It has no default ports and no detection: msgpack has no signature, so every byte
    stream "looks like" msgpack and only the user knows where it really is
    (``--chef-option MsgpackChef.ports=7000``)."""

    class Options(FlowChefOptions):
        #: Roughly how many characters of each object the payload shows.
        max_value_bytes: int = 4096
        #: Largest single object decoded; bigger ones are reported and skipped.
        max_object_bytes: int = 1 << 20

    default_ports: ClassVar[tuple[int, ...]] = ()

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        return False

    def new_flow_state(self, flow: Any) -> dict[Direction, MsgpackStreamDecoder]:
        size = self.options.max_object_bytes  # type: ignore[attr-defined]
        return {d: MsgpackStreamDecoder(size) for d in Direction}

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float) -> Any:
        for event in self.flow_state(flow)[direction].feed(data, timestamp):
            yield self._payload(flow, direction, event, timestamp)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Any:
        for event in self.flow_state(flow)[direction].gap(size):
            yield self._payload(flow, direction, event, self.now)

    def on_close(self, flow: Any, reason: CloseReason) -> Any:
        for direction, decoder in self.flow_state(flow).items():
            for event in decoder.close():
                yield self._payload(flow, direction, event, self.now)

    def _payload(self, flow: Any, direction: Direction, event: MsgpackEvent,
                 timestamp: float | None) -> dict[str, Any]:
        base = {"flow": flow.describe(), "src": flow.src(direction), "dst": flow.dst(direction),
                "direction": str(direction)}
        if isinstance(event, MsgpackError):
            self.logger.info("%s: %s (offset %d, %d bytes skipped)", flow.label(direction),
                             event.reason, event.offset, event.skipped)
            return {**base, "timestamp": timestamp, "kind": "error", "error": event.reason,
                    "offset": event.offset, "skipped": event.skipped, "fatal": event.fatal,
                    "summary": f"{flow.label(direction)}  ERROR {event.reason}"}
        budget = self.options.max_value_bytes  # type: ignore[attr-defined]
        value, truncated = to_jsonable(event.value, budget)
        kind = type_name(event.value)
        return {**base, "timestamp": event.last_timestamp, "kind": "object", "type": kind,
                "offset": event.offset, "size": event.size, "value": value,
                "truncated": truncated,
                "summary": f"{flow.label(direction)}  {kind} {event.size}B {one_line(value)}"}
