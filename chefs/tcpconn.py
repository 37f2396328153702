"""Every TCP packet's flags and sizes, and a summary of every TCP connection.

A debugging view of the transport under the protocol chefs: did the handshake happen,
who sent how much, did the connection end with FIN, RST, or just stop. It follows ALL
TCP flows, so it is chatty (one dumpling per TCP packet, plus one per connection) and
makes the kitchen reassemble every TCP stream; select it explicitly when you need it,
or set ``packets=false`` to keep only the per-connection summaries.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Iterator

from netdumplings.kitchen.chef import CloseReason, Direction, FlowChefOptions, StreamChef
from netdumplings.flows.table import format_endpoint
from netdumplings.capture.packet import TCP_ACK, TCP_SYN, tcp_flag_names

#: Flags shown per packet, in the order tools usually print them.
SHOWN_FLAGS = ("SYN", "FIN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


class TcpConnChef(StreamChef):
    """Per TCP packet: flags (SYN, ACK, PSH, FIN, RST...), frame size and payload size.
    Per connection, when it ends: duration, packets and bytes each way, and how it ended
    (``fin``, ``rst``, ``timeout``, ``evicted`` or ``end`` of the capture).

    The kitchen closes a flow at its second FIN (or a RST), but the peer still sends the
    last ACK after that (and a late segment may still draw a RST). The kitchen counts such
    trailing packets for the closed connection (see ``netdumplings.flows``), so a FIN/RST
    summary waits until ``linger`` seconds of capture time have passed since the
    connection's last packet (or the capture ends) and is made from the connection's
    counts then: they match what tshark shows for the whole conversation, late
    retransmissions of data sent before the FIN included (TCP retransmits after 1, then
    3 seconds). Connections seen only from the middle (a keep-alive, a teardown) are
    connections too, with ``handshake_seen`` false.
    """

    #: The kitchen attaches this chef to every TCP flow, whatever its ports.
    all_flows: ClassVar[bool] = True
    #: Only flags, counters and how the flow ended: no reassembly needed.
    wants_data: ClassVar[bool] = False
    #: Chatty (a dumpling per TCP packet): runs only when asked for with -c.
    opt_in: ClassVar[bool] = True
    #: Several workers: a connection's packets (both directions) and its lingering summary
    #: live in one worker; the interval handler sends that worker's summaries.
    shard: ClassVar[str | None] = "flows"

    class Options(FlowChefOptions):
        #: One dumpling per TCP packet (False: only the per-connection summaries).
        packets: bool = True
        #: Seconds of quiet after a closed connection's last packet before its summary is
        #: sent (trailing ACKs, RSTs and retransmissions are counted until then).
        linger: float = 5.0
        #: Closed connections waiting at once (the oldest is sent when full).
        max_lingering: int = 10_000

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.connections_closed = 0
        self.trailing_packets = 0
        # conversation key -> (closed flow, how it ended, when its summary is due); by close
        self._lingering: OrderedDict[tuple, tuple[Any, CloseReason, float]] = OrderedDict()

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        return True

    def packet_handler(self, packet: Any) -> Iterator[dict[str, Any]]:
        if packet.l4 != "tcp":
            return
        ts = packet.time
        src = format_endpoint(packet.ip_src, packet.sport)
        dst = format_endpoint(packet.ip_dst, packet.dport)
        flags = packet.tcp_flags
        if self._lingering:
            if flags & TCP_SYN:
                key = (src, dst) if src <= dst else (dst, src)
                held = self._lingering.pop(key, None)
                if held is not None:  # the 4-tuple is reused by a new connection
                    yield self._summary(*held[:2])
            yield from self._flush(ts)
        if not self.options.packets:
            return
        names = tcp_flag_names(flags)
        shown = ",".join(n for n in SHOWN_FLAGS if n in names)
        yield {
            "event": "packet",
            "src": src,
            "dst": dst,
            "timestamp": ts,
            "flags": names,
            "flags_value": flags,
            "size": packet.wirelen,
            "payload_size": packet.l4_length,
            "seq": packet.tcp_seq,
            "ack": packet.tcp_ack if flags & TCP_ACK else None,
            "summary": f"{src} -> {dst}  [{shown}] seq={packet.tcp_seq} "
                       f"len={packet.l4_length} size={packet.wirelen}",
        }

    def on_close(self, flow: Any, reason: CloseReason) -> Iterator[dict[str, Any]]:
        self.connections_closed += 1
        if reason in (CloseReason.FIN, CloseReason.RST):
            key = _key(flow)
            old = self._lingering.pop(key, None)
            if old is not None:
                yield self._summary(*old[:2])
            self._lingering[key] = (flow, reason, flow.last_seen + self.options.linger)
            while len(self._lingering) > self.options.max_lingering:
                yield self._summary(*self._lingering.popitem(last=False)[1][:2])
        else:
            yield self._summary(flow, reason)

    def interval_handler(self, interval: float | None = None) -> Iterator[dict[str, Any]]:
        """Sends the lingering summaries that are due, and all of them at the end of the
        capture."""
        kitchen = self.kitchen
        if kitchen is None or getattr(kitchen, "finished", True) or kitchen.now is None:
            yield from self._flush(None)
        else:
            yield from self._flush(kitchen.now)

    # -- helpers ----------------------------------------------------------------------------

    def _flush(self, now: float | None) -> Iterator[dict[str, Any]]:
        """The summaries due at capture time ``now`` (None: all of them)."""
        lingering = self._lingering
        linger = self.options.linger
        while lingering:
            key, (flow, reason, due) = next(iter(lingering.items()))
            if now is not None:
                if due > now:
                    break
                later = flow.last_seen + linger
                if later > now:   # a trailing packet came meanwhile: wait from that one
                    del lingering[key]
                    lingering[key] = (flow, reason, later)
                    continue
            del lingering[key]
            yield self._summary(flow, reason)

    def _summary(self, flow: Any, reason: CloseReason) -> dict[str, Any]:
        trailing = getattr(flow, "trailing_packets", 0)
        self.trailing_packets += trailing
        info = flow.summary()
        payload = {
            "event": "connection",
            "flow": flow.describe(),
            "src": flow.client_str,
            "dst": flow.server_str,
            "direction": str(Direction.CLIENT_TO_SERVER),
            "timestamp": info["first_seen"],
            "end_timestamp": info["last_seen"],
            "duration": info["duration"],
            "ended": str(reason),
            "handshake_seen": bool(flow.roles_known),
            "packets": info["packets"],
            "bytes": info["bytes"],
            "payload_bytes": info["payload_bytes"],
            "trailing_packets": trailing,
        }
        payload["summary"] = _summary_line(payload)
        return payload


def _key(flow: Any) -> tuple[str, str]:
    a, b = flow.client_str, flow.server_str
    return (a, b) if a <= b else (b, a)


def _summary_line(p: dict[str, Any]) -> str:
    pk, by = p["packets"], p["bytes"]
    return (f"{p['src']} -> {p['dst']}  closed ({p['ended']}) after {p['duration']:.3f} s: "
            f"{pk['client_to_server']} pkts/{by['client_to_server']} B ->, "
            f"{pk['server_to_client']} pkts/{by['server_to_client']} B <-")
