"""The DNS chef shell: feeds each flow's datagrams (or TCP stream) to a ``DnsDecoder`` and
turns its events into dumplings, plus the netdumplings 0.5 interval summary."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Iterator

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChef, FlowChefOptions

from .decoder import DnsDecoder, DnsTcpFramer
from .events import DecodeError, DnsMessage, Event, Query
from .payload import error_payload, lookup_payload


class _TcpFlow:
    """A DNS-over-TCP connection: one decoder (queries pair with responses by id across
    the two directions, pipelined or not) and a framer per direction."""

    __slots__ = ("decoder", "framers")

    def __init__(self, decoder: DnsDecoder) -> None:
        self.decoder = decoder
        self.framers = {Direction.CLIENT_TO_SERVER: DnsTcpFramer(),
                        Direction.SERVER_TO_CLIENT: DnsTcpFramer()}


class DNSLookupChef(FlowChef):
    """DNS lookups per flow: one dumpling per answered (or unanswered) query.

    UDP and TCP (the two-byte length framing of RFC 7766: truncated answers retried over
    TCP, large responses, zone transfers) on the same ports.

    The lookup dumpling carries the question, the response code, the answer, authority
    and additional records, EDNS of both sides and the query-to-response latency. A
    query nobody answers is reported after ``query_timeout`` seconds of capture time
    (checked when the flow sees more traffic) or when its flow ends. Every interval the
    chef sends ``{"lookups_seen": {hostname: {"count": n, "latest": epoch_ms}}}`` like
    netdumplings 0.5 (counting queries, not responses, so a lookup counts once).
    """

    default_ports: ClassVar[tuple[int, ...]] = (53,)
    transports: ClassVar[frozenset[str]] = frozenset({"udp", "tcp"})

    class Options(FlowChefOptions):
        #: Also follow multicast DNS (port 5353).
        mdns: bool = False
        #: Also decode DNS over TCP on the same ports.
        tcp: bool = True
        #: Seconds (capture time) after which an unanswered query is reported.
        query_timeout: float = 5.0
        #: Hostnames kept in ``lookups_seen`` (least recently looked up dropped first).
        max_hostnames: int = 10_000
        #: Outstanding queries kept per flow.
        max_pending: int = 256

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.lookups_seen: OrderedDict[str, dict[str, int]] = OrderedDict()
        self.decode_errors = 0

    def _configure(self) -> None:
        super()._configure()
        if self.options.mdns:  # before the kitchen reads ``ports``
            self.ports = self.ports | {5353}
        if not self.options.tcp:  # likewise ``transports``
            self.transports = frozenset({"udp"})

    def new_flow_state(self, flow: Any) -> DnsDecoder | _TcpFlow:
        decoder = DnsDecoder(self.options.query_timeout, self.options.max_pending)
        return _TcpFlow(decoder) if flow.transport == "tcp" else decoder

    def on_data(self, flow: Any, direction: Direction, data: bytes,
                timestamp: float) -> Iterator[dict[str, Any]]:
        state = self.flow_state(flow)
        if type(state) is DnsDecoder:   # UDP: the datagram is the message
            decoder, messages = state, (data,)
        else:
            decoder, messages = state.decoder, state.framers[direction].feed(data)
        for message in messages:
            for event in decoder.feed(message, direction, timestamp):
                payload = self._payload(flow, event)
                if payload is not None:
                    yield payload

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        state = self.flow_state(flow)
        if not isinstance(state, _TcpFlow) or state.framers[direction].stopped:
            return
        dropped = state.framers[direction].gap(size)
        lost = f" and {dropped} bytes of a message" if dropped else ""
        yield self._payload(flow, DecodeError(
            reason=f"{size} bytes missing from the capture{lost}: DNS over TCP has no way "
                   f"to find the next message, so this direction is no longer decoded",
            size=size, hex_prefix="", direction=direction, timestamp=self.now))

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        state = flow.state.get(self.name)
        if isinstance(state, _TcpFlow):
            for direction, framer in state.framers.items():
                if framer.buffered and not framer.stopped:
                    yield self._payload(flow, DecodeError(
                        reason=f"connection ended inside a message ({framer.buffered} "
                               f"bytes, length prefix included)",
                        size=framer.buffered, hex_prefix="", direction=direction,
                        timestamp=getattr(flow, "last_seen", None)))
            decoder = state.decoder
        elif isinstance(state, DnsDecoder):
            decoder = state
        else:
            return
        for event in decoder.close():
            payload = self._payload(flow, event)
            if payload is not None:
                payload["closed_by"] = str(reason)
                yield payload

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        return {"lookups_seen": {host: dict(v) for host, v in self.lookups_seen.items()}}

    # Several workers (nd-sniff --workers N): each counts the lookups of its flows; the
    # interval dumpling has, per hostname, the counts added and the latest time, ordered
    # by that time (the least recent dropped first beyond ``max_hostnames``, as here).
    shard = "merge"

    def worker_state(self) -> list[tuple[str, int, int]]:
        return [(host, v["count"], v["latest"]) for host, v in self.lookups_seen.items()]

    def merge_worker_states(self, states: list[list[tuple[str, int, int]]]) -> None:
        merged: dict[str, list[int]] = {}
        for state in states:
            for host, count, latest in state:
                have = merged.get(host)
                if have is None:
                    merged[host] = [count, latest]
                else:
                    have[0] += count
                    have[1] = max(have[1], latest)
        ordered = sorted(merged.items(), key=lambda kv: kv[1][1])
        ordered = ordered[max(0, len(ordered) - self.options.max_hostnames):]
        self.lookups_seen = OrderedDict(
            (host, {"count": c, "latest": t}) for host, (c, t) in ordered)

    # -- events to payloads -------------------------------------------------------------

    def _count(self, msg: DnsMessage, timestamp: float | None) -> None:
        q = msg.question
        if q is None:
            return
        host = q["name"][:-1] if q["name"].endswith(".") and q["name"] != "." else q["name"]
        when = int(round((timestamp or 0.0) * 1000))
        seen = self.lookups_seen.get(host)
        if seen is None:
            if len(self.lookups_seen) >= self.options.max_hostnames:
                self.lookups_seen.popitem(last=False)
            self.lookups_seen[host] = {"count": 1, "latest": when}
        else:
            seen["count"] += 1
            seen["latest"] = when
            self.lookups_seen.move_to_end(host)

    def _payload(self, flow: Any, event: Event) -> dict[str, Any] | None:
        if isinstance(event, Query):
            if not event.retransmission:
                self._count(event.message, event.timestamp)
            return None
        if isinstance(event, DecodeError):
            self.decode_errors += 1
            self.logger.debug("%s: not DNS (%d bytes): %s",
                              flow.label(event.direction or Direction.CLIENT_TO_SERVER),
                              event.size, event.reason)
            return error_payload(flow, event)
        return lookup_payload(flow, event)
