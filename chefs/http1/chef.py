"""The HTTP/1.x chef shell: the kitchen's flows fed to ``Http1Decoder``, its events as dumplings.

Options, per-flow decoders, the response timeout (the interval handler), the hand-over to
another chef after a protocol switch (``UPGRADE_STATE_KEY``) and the counts; the decoding
itself is ``decoder.py``'s, the payloads ``payload.py``'s.
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from typing import Any, ClassVar, Iterator

from pydantic import Field

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChefOptions, StreamChef
from netdumplings.flows.table import Flow

from .decoder import Http1Decoder
from .events import MAX_VALUE_CHARS, Event, Problem
from .payload import as_direction, problem_payload, transaction_payload

C2S = Direction.CLIENT_TO_SERVER

#: Key in ``flow.state`` set when a flow leaves HTTP/1 (101 Switching Protocols or a
#: successful CONNECT), so another chef (e.g. the HTTP/2 chef for ``h2c``) can take over.
UPGRADE_STATE_KEY = "http1.upgrade"

#: A request line, as the first client bytes of a flow on a port we do not follow.
REQUEST_LINE = re.compile(rb"^[A-Z]+ \S+ HTTP/1\.[01]\r\n")


class Http1Chef(StreamChef):
    """HTTP/1.x: one dumpling per request/response transaction, with latency.

    Transactions are matched in order per connection; a request left unanswered is reported
    after ``response_timeout`` seconds of capture time (from the interval poke) and at
    connection close. A request h11 refuses but a server would still answer (no version
    or no target on the request line, ``HTTP/1.``, no ``Host``, malformed header lines) is
    decoded with its response (also an HTTP/0.9 answer without a status line) and says
    what was wrong in ``"problem"``. Other decoding problems give an ``"event": "error"``
    dumpling and stop that connection's decoding. A gap in the capture gives an
    ``"event": "error"`` dumpling of kind ``gap`` too, but decoding resynchronises at the
    next request line (and its response): the first transaction after the gap has
    ``"resync"``, the bytes each side skipped.
    """

    default_ports: ClassVar[tuple[int, ...]] = (80, 8000, 8080)
    #: Several workers: the interval handler only reports the requests of the worker's own
    #: flows that waited too long, so it runs per worker (no totals to merge).
    shard: ClassVar[str | None] = "flows"

    class Options(FlowChefOptions):
        #: seconds (capture time) to wait for a response before reporting the request
        response_timeout: float = Field(30.0, gt=0)
        #: body bytes shown per message (lengths are always reported in full)
        body_preview: int = Field(256, ge=0, le=65536)
        #: largest request/response head accepted, in bytes
        max_header_bytes: int = Field(65536, ge=1024, le=1 << 20)
        #: requests that may wait for their responses on one connection
        max_pipelined: int = Field(64, ge=1, le=10000)
        #: characters of a request-target shown; a longer one is cut and its size given
        max_target_chars: int = Field(8192, ge=16, le=1 << 20, description=(
            "characters of a request-target shown; a longer one is cut and its size given"))
        #: characters of a header (or trailer) value shown; longer ones are cut likewise
        max_value_chars: int = Field(MAX_VALUE_CHARS, ge=16, le=1 << 20, description=(
            "characters of a header or trailer value shown; a longer one is cut likewise"))

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.counts: Counter[str] = Counter()
        self._waiting: weakref.WeakValueDictionary[int, Flow] = weakref.WeakValueDictionary()

    def detect(self, flow: Flow, direction: Direction, data: bytes) -> bool:
        return direction is C2S and REQUEST_LINE.match(data) is not None

    def new_flow_state(self, flow: Flow) -> Http1Decoder:
        o = self.options
        return Http1Decoder(body_preview=o.body_preview,  # type: ignore[attr-defined]
                            max_header_bytes=o.max_header_bytes,  # type: ignore[attr-defined]
                            max_pipelined=o.max_pipelined,  # type: ignore[attr-defined]
                            max_target_chars=o.max_target_chars,  # type: ignore[attr-defined]
                            max_value_chars=o.max_value_chars)  # type: ignore[attr-defined]

    def on_data(self, flow: Flow, direction: Direction, data: bytes,
                timestamp: float) -> Iterator[dict[str, Any]]:
        decoder: Http1Decoder = self.flow_state(flow)
        events = decoder.feed(direction, data, timestamp)
        if decoder.pending:
            self._waiting[flow.id] = flow
        yield from self._payloads(flow, decoder, events)

    def on_gap(self, flow: Flow, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        decoder: Http1Decoder = self.flow_state(flow)
        yield from self._payloads(flow, decoder, decoder.gap(direction, size, self.now))

    def on_close(self, flow: Flow, reason: CloseReason) -> Iterator[dict[str, Any]]:
        decoder: Http1Decoder = self.flow_state(flow)
        self._waiting.pop(flow.id, None)
        events = decoder.close(str(reason), reason is CloseReason.FIN, flow.last_seen)
        yield from self._payloads(flow, decoder, events)

    def interval_handler(self, interval: float | None = None) -> Iterator[dict[str, Any]]:
        now = self.now
        if now is None:
            return
        timeout = self.options.response_timeout  # type: ignore[attr-defined]
        for flow_id, flow in list(self._waiting.items()):
            decoder = flow.state.get(self.name)
            if not isinstance(decoder, Http1Decoder) or not decoder.pending or decoder.stopped:
                self._waiting.pop(flow_id, None)
                continue
            yield from self._payloads(flow, decoder, decoder.expire(now, timeout))

    # -- payloads ---------------------------------------------------------------------

    def _payloads(self, flow: Flow, decoder: Http1Decoder,
                  events: list[Event]) -> Iterator[dict[str, Any]]:
        for ev in events:
            if isinstance(ev, Problem):
                self.counts[ev.kind] += 1
                if ev.kind == "not_http1":
                    self.logger.debug("%s: %s", flow.label(), ev.message)
                    continue
                if ev.kind == "internal_error":   # a decoder bug, not bad input: count it
                    self.report_error(f"{flow.label(as_direction(ev.direction))}: decoder failed: "
                                      f"{ev.message}")
                self.logger.info("%s: %s: %s", flow.label(as_direction(ev.direction)), ev.kind, ev.message)
                yield problem_payload(flow, ev)
            else:
                self.counts["transactions"] += 1
                self.counts[ev.outcome] += 1
                if ev.resync is not None:
                    self.counts["resync"] += 1
                if ev.upgrade is not None and decoder.switched is not None:
                    flow.state[UPGRADE_STATE_KEY] = dict(decoder.switched, by=self.name)
                yield transaction_payload(flow, ev)
