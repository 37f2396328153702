"""The kitchen's flow side: packets to the flow table, TCP reassembled in order for the
stream chefs that follow a flow, datagrams to datagram chefs, fragments defragmented,
tunnels opened, flows opened and closed.

A part of ``Kitchen`` (a mixin: the state is the kitchen's), apart from the chef calls and
the clock so each reads on its own. The per-packet path goes through here: keep it lean.
"""

from __future__ import annotations

import logging
import struct

from ..capture.defrag import MAX_DATAGRAM
from ..capture.packet import (ETH_IPV6, LINKTYPE_RAW, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
                              NsPacket, Packet)
from ..capture.tunnels import IPPROTO_GRE, TUNNEL_UDP_PORTS, decapsulate
from ..flows.reassembly import TcpDirection
from ..flows.table import CloseReason, Direction, Flow
from ..wire.dumpling import DRIVER_PACKET

log = logging.getLogger("netdumplings.kitchen")

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
#: How many data chunks of a flow ``detect`` is shown before the flow is given up.
DETECT_TRIES = 4
#: Tunnels looked into per packet at most (VXLAN inside GRE is two).
MAX_TUNNEL_DEPTH = 2
_pack_ip4 = struct.Struct("!BBHHHBBH4s4s").pack
_pack_ip6 = struct.Struct("!IHBB16s16s").pack


class FlowSide:
    """Flows, reassembly and stream delivery (see the module's docstring)."""

    def _to_flows(self, packet: Packet, depth: int) -> None:
        """The flow path: whole datagrams (fragments wait for the rest), and what is inside
        a tunnel rather than the tunnel (packet chefs see that inner packet first)."""
        if packet.ip_frag is not None:
            if self.flow_chefs:
                self._fragment(packet, depth)
            return
        l4 = packet.l4
        if self.decapsulate and depth < MAX_TUNNEL_DEPTH and (
                (l4 == "udp" and packet.dport in TUNNEL_UDP_PORTS)
                or (l4 is None and packet.ip_proto == IPPROTO_GRE)):
            found = decapsulate(packet)
            if found is not None:
                self.stats.decapsulated += 1
                data, linktype, kind = found
                if isinstance(packet, NsPacket):   # keeps the exact nanoseconds
                    inner: Packet = NsPacket(data, packet.time_ns, None, linktype,
                                             packet.interface)
                else:
                    inner = Packet(data, packet.time, linktype=linktype,
                                   interface=packet.interface)
                outer = packet.tunnel
                inner.tunnel = kind if outer is None else f"{outer}/{kind}"
                if self.tunnel_packet_chefs:
                    self._to_packet_chefs(self.tunnel_packet_chefs, inner)
                self._to_flows(inner, depth + 1)
                return
        if l4 in self.flow_transports and packet.sport is not None:
            self._flow_packet(packet)

    def _fragment(self, pkt: Packet, depth: int) -> None:
        """An IP fragment: the flow path gets the datagram once it is whole (packet chefs
        have seen each fragment as it came)."""
        ident, offset, more, start, proto = pkt.ip_frag
        data, end, l3 = pkt.data, pkt.ip_end, pkt.l3_offset
        if end is None or len(data) < end:
            # cut by the snaplen: the datagram cannot be made whole (its other fragments
            # are counted as dropped when it expires, or at the end of the capture)
            return
        v6 = pkt.eth_type == ETH_IPV6
        if v6:
            src, dst = data[l3 + 8:l3 + 24], data[l3 + 24:l3 + 40]
        else:
            src, dst = data[l3 + 12:l3 + 16], data[l3 + 16:l3 + 20]
        defrag = self.defrag
        whole = defrag.feed((src, dst, proto, ident), offset, more, data[start:end], pkt.time,
                            MAX_DATAGRAM if v6 else MAX_DATAGRAM - 20)
        self._warn_defrag_drops()
        if whole is None:
            return
        if v6:
            head = _pack_ip6(0x60000000, len(whole), proto, 64, src, dst)
        else:
            head = _pack_ip4(0x45, 0, 20 + len(whole), ident, 0, 64, proto, 0, src, dst)
        self._to_flows(Packet(head + whole, pkt.time, linktype=LINKTYPE_RAW,
                              interface=pkt.interface), depth)

    def _warn_defrag_drops(self) -> None:
        """Warn once, at the first datagram that could not be reassembled."""
        ds = self.defrag.stats
        if ds.dropped and not self._defrag_warned:
            self._defrag_warned = True
            log.warning("%s: a fragmented datagram could not be reassembled (%s); such "
                        "datagrams are counted, not decoded", self.name,
                        ", ".join(f"{k} {v}" for k, v in ds.as_dict().items() if v))

    def _flow_packet(self, pkt: Packet) -> None:
        ts = pkt.time
        tcp = pkt.l4 == "tcp"
        flags = pkt.tcp_flags if tcp else 0
        syn = bool(flags & TCP_SYN)
        # Any TCP packet opens a flow, as any opens a tshark conversation (a keep-alive, a
        # teardown of a connection joined late): the trailing packets of a connection that
        # closed are found in the table's closed connections instead (``flows``).
        flow, direction, created, evicted = self.flows.lookup(
            pkt.l4, (pkt.ip_src, pkt.sport), (pkt.ip_dst, pkt.dport), ts,
            syn=syn, syn_ack=syn and bool(flags & TCP_ACK))
        if flow.closed:
            # After the close (the last ACK, a RST answering a late segment): counted for
            # the connection, as tshark counts its conversation; nothing more to decode.
            d = 0 if direction is C2S else 1
            flow.last_seen = ts
            flow.packets[d] += 1
            flow.bytes[d] += pkt.wirelen
            flow.payload_bytes[d] += pkt.l4_length
            flow.trailing_packets += 1
            return
        if evicted is not None:
            self.stats.flows_evicted += 1
            self._close(evicted, CloseReason.EVICTED)
        if created:
            self._open(flow)
        d = 0 if direction is C2S else 1
        flow.last_seen = ts
        flow.packets[d] += 1
        flow.bytes[d] += pkt.wirelen
        flow.payload_bytes[d] += pkt.l4_length
        if not tcp:
            if pkt.l4_length and (flow.chefs or flow.detect_tries < DETECT_TRIES):
                payload = pkt.l4_payload
                if len(payload) < pkt.l4_length:
                    # Cut by the capture's snaplen: not the datagram that was sent, and a
                    # decoder would take the cut for the message's end. Counted, not decoded.
                    self._truncated(flow, direction, len(payload), pkt.l4_length)
                    return
                self._deliver(flow, direction, payload, ts)
            return
        streams = flow.tcp
        if streams is not None:
            payload = pkt.l4_payload
            fin = bool(flags & TCP_FIN)
            rst = bool(flags & TCP_RST)
            stream = streams[d]
            before = stream.buffered
            events = stream.feed(pkt.tcp_seq, payload, syn=syn, fin=fin, rst=False,
                                 missing=pkt.l4_length - len(payload))
            if flags & TCP_ACK:
                other = streams[1 - d]
                b2 = other.buffered
                acked = other.ack(pkt.tcp_ack)
                self.reassembly_bytes += other.buffered - b2
                if acked:
                    self._stream_events(flow, direction.reverse, acked, ts)
            self.reassembly_bytes += stream.buffered - before
            if events:
                self._stream_events(flow, direction, events, ts)
            if rst:
                self._close(flow, CloseReason.RST)
                return
            if fin:
                flow.closing |= 1 << d
            if flow.closing == 3 and streams[0].finished and streams[1].finished:
                self._close(flow, CloseReason.FIN)
                return
            if self.reassembly_bytes > self.max_reassembly_bytes:
                self._shed_reassembly()
        else:
            if flags & TCP_RST:
                self._close(flow, CloseReason.RST)
            elif flags & TCP_FIN:
                flow.closing |= 1 << d
                if flow.closing == 3:
                    self._close(flow, CloseReason.FIN)

    def _truncated(self, flow: Flow, direction: Direction, got: int, size: int) -> None:
        self.stats.truncated_datagrams += 1
        if self.stats.truncated_datagrams == 1:
            log.warning("%s: %s: a %d-byte datagram was captured as %d bytes (snaplen): "
                        "datagrams cut short are counted, not decoded", self.name,
                        flow.label(direction), size, got)

    def _open(self, flow: Flow) -> None:
        port = flow.server[1]
        t = flow.transport
        self.flows_by_port[(t, port)] += 1
        for chef in self.flow_chefs:
            if t in chef.transports and (port in chef.ports or chef.all_flows):
                flow.chefs.append(chef)
                self.flows_followed[chef.name] += 1
                self._call(chef, chef.on_open, (flow,), DRIVER_PACKET, flow.first_seen)
        if not self._detectors[t]:
            flow.detect_tries = DETECT_TRIES
        if t == "tcp" and (any(c.wants_data for c in flow.chefs)
                           or flow.detect_tries < DETECT_TRIES):
            flow.tcp = (TcpDirection(max_buffer=self.max_flow_buffer),
                        TcpDirection(max_buffer=self.max_flow_buffer))

    def _stream_events(self, flow: Flow, direction: Direction, events: list, ts: float) -> None:
        for ev in events:
            if ev.kind == "data":
                if ev.data:
                    self._deliver(flow, direction, ev.data, ts)
            elif ev.kind == "gap":
                self.stats.gaps += 1
                self.stats.gap_bytes += ev.size
                for chef in flow.chefs:
                    self._call(chef, chef.on_gap, (flow, direction, ev.size), DRIVER_PACKET, ts)

    def _deliver(self, flow: Flow, direction: Direction, data: bytes, ts: float) -> None:
        if flow.detect_tries < DETECT_TRIES:
            flow.detect_tries += 1
            for chef in self._detectors[flow.transport]:
                if chef in flow.chefs:
                    continue
                try:
                    wanted = chef.detect(flow, direction, data)
                except Exception as exc:
                    self._chef_error(chef, "detect raised", exc)
                    wanted = False
                if wanted:
                    flow.chefs.append(chef)
                    self.flows_followed[chef.name] += 1
                    self._call(chef, chef.on_open, (flow,), DRIVER_PACKET, ts)
            if flow.detect_tries >= DETECT_TRIES and flow.tcp is not None and \
                    not any(c.wants_data for c in flow.chefs):
                self._drop_reassembly(flow)
        for chef in flow.chefs:
            if not chef.wants_data:
                continue
            try:
                result = chef.on_data(flow, direction, data, ts)
            except Exception as exc:
                self._chef_error(chef, "on_data raised", exc)
                continue
            if result is not None:
                self._emit(chef, result, DRIVER_PACKET, ts, "on_data")

    def _drop_reassembly(self, flow: Flow) -> None:
        if flow.tcp is not None:
            self.reassembly_bytes -= flow.tcp[0].buffered + flow.tcp[1].buffered
            flow.tcp = None

    def _close(self, flow: Flow, reason: CloseReason) -> None:
        if flow.tcp is not None:
            # Give back the flow's share of the global budget before flushing empties it.
            self.reassembly_bytes -= flow.tcp[0].buffered + flow.tcp[1].buffered
            for d, stream in ((C2S, flow.tcp[0]), (S2C, flow.tcp[1])):
                events = stream.flush()
                if events:
                    self._stream_events(flow, d, events, flow.last_seen)
                stats = self.stats
                stats.reassembly_evictions += stream.evictions
                stats.retransmissions += stream.duplicates
                stats.overlaps += stream.overlaps
            flow.tcp = None
        for chef in flow.chefs:
            self._call(chef, chef.on_close, (flow, reason), DRIVER_PACKET, flow.last_seen)
        flow.chefs = []
        flow.state.clear()
        if reason is CloseReason.FIN or reason is CloseReason.RST:
            self.flows.remember_closed(flow)
        else:
            self.flows.remove(flow)

    def _shed_reassembly(self) -> None:
        """Global reassembly budget exceeded: close the least recently active flows that
        hold buffered bytes until under budget."""
        for flow in self.flows:
            if self.reassembly_bytes <= self.max_reassembly_bytes * 0.9:
                break
            if flow.tcp is not None and (flow.tcp[0].buffered or flow.tcp[1].buffered):
                self.stats.flows_evicted += 1
                self._close(flow, CloseReason.EVICTED)

    # -- time -----------------------------------------------------------------------------
