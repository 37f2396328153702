"""The Channel Access chef shell: one ``ChannelAccessDecoder`` per flow, UDP search names
resolved across flows (a broadcast search and its unicast reply are two different UDP
flows), events turned into dumplings, and an interval summary of PVs, searches, circuits
and monitors."""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, ClassVar, Iterator

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChef, FlowChefOptions

from .decoder import ChannelAccessDecoder, looks_like_version_header
from .describe import describe_event
from .events import CAEvent, Side

#: Names a broadcast search reply may carry instead of the server's address.
ANY_ADDRESS = {"255.255.255.255", "0.0.0.0"}

#: The kitchen's directions and the decoder's sides (same names and values).
_SIDE = {Direction.CLIENT_TO_SERVER: Side.CLIENT_TO_SERVER,
         Direction.SERVER_TO_CLIENT: Side.SERVER_TO_CLIENT}
_DIRECTION = {side: direction for direction, side in _SIDE.items()}


class ChannelAccessChef(FlowChef):
    """One dumpling per EPICS Channel Access command, UDP searches and TCP circuits.

    Bytes lost from a circuit (a gap in the capture) give an ``error`` dumpling, then a
    ``resynced`` one when decoding resumes at the next captured segment of whole messages;
    the circuit's channel and subscription history is kept, so later messages still name
    their PVs. A circuit that was already open when the capture began (CA circuits live
    for days) starts the same way, at its first segment of whole messages, with a
    ``joined`` dumpling; PVs set up before the capture are not known by name.
    """

    transports: ClassVar[frozenset[str]] = frozenset({"tcp", "udp"})
    default_ports: ClassVar[tuple[int, ...]] = (5064, 5065)

    class Options(FlowChefOptions):
        #: Messages with a bigger payload are reported by header and skipped.
        max_message_bytes: int = 1 << 20
        #: Data array items shown per message (the true count is given when cut).
        max_data_items: int = 64
        #: Channel/ioid/subscription ids remembered per circuit.
        max_names: int = 4096
        #: Include DBR metadata (alarm status, timestamp, units, limits).
        include_metadata: bool = True
        #: PV names listed in the interval summary.
        max_pvs_listed: int = 200

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self._circuits: dict[int, ChannelAccessDecoder] = {}
        #: (client endpoint, cid) -> (pv, time): searches, across UDP flows
        self._searches: OrderedDict[tuple[str, int], tuple[str, float | None]] = OrderedDict()
        self._pvs: OrderedDict[str, int] = OrderedDict()
        self._search_counts: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        #: Set on the instance that reports for several workers (``merge_worker_states``).
        self._merged_monitors: list[dict[str, Any]] | None = None
        self._merged_circuits: int | None = None

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        # caproto servers may take any TCP port; every circuit opens with a version header.
        return looks_like_version_header(data)

    def new_flow_state(self, flow: Any) -> ChannelAccessDecoder:
        o = self.options
        decoder = ChannelAccessDecoder(max_message_bytes=o.max_message_bytes,
                                       max_data_items=o.max_data_items,
                                       max_names=o.max_names,
                                       include_metadata=o.include_metadata,
                                       midstream=flow.transport == "tcp"
                                       and not getattr(flow, "roles_known", True))
        if flow.transport == "tcp":
            self._circuits[flow.id] = decoder
        return decoder

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float
                ) -> Iterator[dict[str, Any]]:
        decoder: ChannelAccessDecoder = self.flow_state(flow)
        if flow.transport == "udp":
            sender = flow.client if direction is Direction.CLIENT_TO_SERVER else flow.server
            events = decoder.datagram(_SIDE[direction], data, timestamp, sender=sender)
        else:
            events = decoder.feed(_SIDE[direction], data, timestamp)
        for event in events:
            yield self._payload(flow, event)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        for event in self.flow_state(flow).gap(_SIDE[direction], size, self.now):
            yield self._payload(flow, event)

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        decoder = self._circuits.pop(flow.id, None)
        if decoder is None:
            return
        for event in decoder.close(self.now):
            yield self._payload(flow, event)

    # -- several workers (nd-sniff --workers N) --------------------------------------
    # Each worker decodes its flows; a UDP search and its reply (which comes on another
    # flow when the search was broadcast) share the client's endpoint, which is what the
    # reader shards UDP by, so they meet in one worker. The interval statistics add the
    # workers' counts; PVs seen are ordered by when each worker last saw them.
    shard = "merge"

    def worker_state(self) -> dict[str, Any]:
        return {"pvs": list(self._pvs.items()), "counts": dict(self.counts),
                "search_counts": dict(self._search_counts),
                "circuits": len(self._circuits), "monitors": self._monitors()}

    def merge_worker_states(self, states: list[dict[str, Any]]) -> None:
        pvs: OrderedDict[str, int] = OrderedDict()
        counts: Counter[str] = Counter()
        searches: Counter[str] = Counter()
        monitors: list[dict[str, Any]] = []
        circuits = 0
        for state in states:
            for pv, n in state["pvs"]:
                pvs[pv] = pvs.pop(pv, 0) + n
            counts.update(state["counts"])
            searches.update(state["search_counts"])
            monitors.extend(state["monitors"])
            circuits += state["circuits"]
        while len(pvs) > 10_000:
            pvs.popitem(last=False)
        self._pvs, self.counts, self._search_counts = pvs, counts, searches
        self._merged_monitors, self._merged_circuits = monitors, circuits

    # -- payloads -------------------------------------------------------------------

    def _payload(self, flow: Any, event: CAEvent) -> dict[str, Any]:
        direction = _DIRECTION[event.direction]
        src, dst = flow.src(direction), flow.dst(direction)
        self.counts[event.command] += 1
        payload: dict[str, Any] = {
            "flow": flow.describe(),
            "src": src,
            "dst": dst,
            "direction": str(direction),
            "timestamp": event.timestamp,
            "transport": flow.transport,
            "command": event.command,
            "command_id": event.command_id,
            "fields": event.fields,
            "pv": event.pv,
        }
        if event.error is not None:
            payload["error"] = event.error
            self.logger.debug("%s %s: %s", flow, direction, event.error)
        if flow.transport == "udp":
            self._udp_search(event, src, dst, payload)
        if event.latency is not None:
            payload["latency"] = event.latency
        if event.pv:
            self._pvs[event.pv] = self._pvs.pop(event.pv, 0) + 1
            while len(self._pvs) > 10_000:
                self._pvs.popitem(last=False)
        payload["summary"] = f"{src} -> {dst}  {describe_event(event)}"
        return payload

    def _udp_search(self, event: CAEvent, src: str, dst: str, payload: dict[str, Any]
                    ) -> None:
        """Name search replies: the reply comes on another flow when the search was
        broadcast, so the request is remembered by client endpoint and cid."""
        f = event.fields
        if event.command == "SearchRequest":
            self._searches[(src, f.get("cid"))] = (f.get("name"), event.timestamp)
            self._searches.move_to_end((src, f.get("cid")))
            while len(self._searches) > 10_000:
                self._searches.popitem(last=False)
            self._search_counts[f.get("name")] += 1
            if len(self._search_counts) > 10_000:
                self._search_counts = Counter(dict(self._search_counts.most_common(5_000)))
        elif event.command in ("SearchResponse", "NotFoundResponse"):
            found = self._searches.get((dst, f.get("cid")))
            if found is not None:
                event.pv = event.pv or found[0]
                payload["pv"] = event.pv
                if event.latency is None and found[1] is not None and event.timestamp:
                    event.latency = event.timestamp - found[1]
            if event.command == "SearchResponse":
                ip = f.get("ip")
                sender_ip = src.rsplit(":", 1)[0].strip("[]")
                host = sender_ip if ip in ANY_ADDRESS else ip
                payload["server_address"] = f"{host}:{f.get('port')}"

    def _monitors(self) -> list[dict[str, Any]]:
        if self._merged_monitors is not None:
            return self._merged_monitors
        return [
            {"circuit": flow_id, "subscriptionid": sub, "pv": pv}
            for flow_id, decoder in self._circuits.items()
            for sub, pv in decoder.subscriptions.items()
        ]

    def interval_handler(self, interval: float | None = None) -> dict[str, Any]:
        monitors = self._monitors()
        pvs = list(self._pvs)
        searches = self.counts["SearchRequest"]
        errors = self.counts["error"]
        circuits = (len(self._circuits) if self._merged_circuits is None
                    else self._merged_circuits)
        return {
            "kind": "stats",
            "summary": (f"channel access: {len(pvs)} PVs seen, {searches} searches, "
                        f"{circuits} circuits open, {len(monitors)} monitors "
                        f"active, {errors} errors"),
            "pvs_seen": pvs[-self.options.max_pvs_listed:],
            "pv_count": len(pvs),
            "search_requests": searches,
            "search_responses": self.counts["SearchResponse"],
            "searches_by_pv": dict(self._search_counts.most_common(self.options.max_pvs_listed)),
            "circuits_open": circuits,
            "monitors_active": len(monitors),
            "monitors": monitors[:self.options.max_pvs_listed],
            "commands": dict(self.counts),
            "errors": errors,
        }
