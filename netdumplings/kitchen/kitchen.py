"""The kitchen: packets from a source -> flow table and reassembly -> chefs -> dumplings.

One thread does all chef work, so chefs need no locks. The kitchen only pays for what its
chefs use: packet chefs get a lazily dissected ``Packet``; the flow table runs only when a
flow chef is present; TCP is reassembled only for flows a stream chef follows (or may still
claim by ``detect``). Dumplings are encoded once (orjson) and handed to a sink: stdout, the
hub sender's outbox, or the offline API's list.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import socket
import struct
import time
from typing import Any, Callable, Iterable, Iterator

from .chef import CloseReason, Direction, DumplingChef, FlowChef, iter_payloads
from ..capture.defrag import MAX_DATAGRAM, Defragmenter, DefragStats
from ..wire.dumpling import DRIVER_INTERVAL, DRIVER_PACKET, encode
from ..flows.table import Flow, FlowTable
from ..capture.packet import (ETH_IPV6, LINKTYPE_RAW, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, NsPacket,
                              Packet)
from ..flows.reassembly import TcpDirection
from ..capture.tunnels import IPPROTO_GRE, TUNNEL_UDP_PORTS, decapsulate

log = logging.getLogger("netdumplings.kitchen")

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
#: How many data chunks of a flow ``detect`` is shown before the flow is given up.
DETECT_TRIES = 4
#: Errors per chef logged with a traceback before the rest are only counted.
ERRORS_LOGGED = 5
#: Interval pokes made for one packet at most: a capture-time gap longer than this many
#: intervals skips the rest (counted in ``stats.pokes_skipped``) instead of poking, say,
#: a billion times for ``-p 1e-9`` or 17,000 times for a day-long pause at 5 s.
MAX_CATCH_UP_POKES = 1000
#: Tunnels looked into per packet at most (VXLAN inside GRE is two).
MAX_TUNNEL_DEPTH = 2
#: The chef methods the kitchen calls, timed per chef when ``time_chefs`` is on.
TIMED_HANDLERS = ("packet_handler", "interval_handler", "detect", "on_open", "on_data",
                  "on_gap", "on_close")

Sink = Callable[[dict[str, Any], bytes], None]

_pack_ip4 = struct.Struct("!BBHHHBBH4s4s").pack
_pack_ip6 = struct.Struct("!IHBB16s16s").pack


class KitchenStats:
    __slots__ = ("packets", "dumplings", "chef_errors", "encode_errors", "flows_evicted",
                 "reassembly_evictions", "gaps", "gap_bytes", "started", "bytes",
                 "retransmissions", "overlaps", "pokes_skipped", "truncated_datagrams",
                 "decapsulated", "defrag")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.dumplings = 0
        self.chef_errors = 0
        self.encode_errors = 0
        self.flows_evicted = 0
        self.reassembly_evictions = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.retransmissions = 0
        self.overlaps = 0
        self.pokes_skipped = 0
        self.truncated_datagrams = 0
        self.decapsulated = 0                   # VXLAN/Geneve/GRE packets looked into
        #: The defragmenter's own counts, once the kitchen has one (it has flow chefs).
        self.defrag: DefragStats | None = None
        self.started = time.monotonic()

    @property
    def fragments(self) -> int:
        """IP fragments given to the flow path."""
        return self.defrag.fragments if self.defrag is not None else 0

    @property
    def datagrams_reassembled(self) -> int:
        return self.defrag.reassembled if self.defrag is not None else 0

    @property
    def fragmented_datagrams_dropped(self) -> int:
        """Incomplete, inconsistent or too big: counted, not decoded."""
        return self.defrag.dropped if self.defrag is not None else 0

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k not in ("started", "defrag")}
        out.update(fragments=self.fragments, datagrams_reassembled=self.datagrams_reassembled,
                   fragmented_datagrams_dropped=self.fragmented_datagrams_dropped)
        return out


class Kitchen:
    """Runs chefs over packets. Use ``process`` per packet, ``poke`` per interval and
    ``finish`` at the end of a capture (or call ``run(source)`` for all three)."""

    def __init__(self, name: str = "default", chefs: Iterable[Any] = (), *,
                 sink: Sink | None = None, poke_interval: float | None = 5.0,
                 interface: str | None = None, bpf_filter: str | None = None,
                 chef_options: dict[str, dict[str, Any]] | None = None,
                 max_flows: int = 100_000, flow_idle_timeout: float = 300.0,
                 max_flow_buffer: int = 1 << 20, max_reassembly_bytes: int = 256 << 20,
                 host: str | None = None, time_chefs: bool = False,
                 decapsulate: bool = True) -> None:
        self.name = name
        #: Flow chefs see the packets inside VXLAN, Geneve and GRE tunnels (see
        #: ``netdumplings.capture.tunnels``) rather than the tunnels' own UDP/GRE packets, and
        #: packet chefs see them too, after the packet that carried them (``packet.tunnel``
        #: set), unless the chef's ``tunnelled_packets`` is False.
        self.decapsulate = decapsulate
        self._tunnel_ports = TUNNEL_UDP_PORTS if decapsulate else frozenset()
        #: Seconds spent in each chef's handlers (and in iterating the generators they
        #: return), when ``time_chefs`` is on: which chef to leave out when a live capture
        #: cannot keep up. Off by default: timing costs two clock reads per call.
        self.chef_seconds: dict[str, float] | None = {} if time_chefs else None
        self.interface = interface
        self.filter = bpf_filter
        self.poke_interval = poke_interval
        self.sink: Sink = sink or (lambda d, b: None)
        self.host = host if host is not None else socket.gethostname()
        self.stats = KitchenStats()
        self.now: float | None = None
        #: True once ``finish`` has run: the capture has ended (chefs flush what they hold).
        self.finished = False
        self._next_capture_poke: float | None = None
        self.sequence = 0
        self.chefs: list[DumplingChef] = []
        self.max_flow_buffer = max_flow_buffer
        self.max_reassembly_bytes = max_reassembly_bytes
        self.reassembly_bytes = 0
        self._flow_idle_timeout = flow_idle_timeout
        self._max_flows = max_flows
        self._errors_by_chef: dict[str, int] = {}
        self._defrag_warned = False
        self.dumplings_by_chef: dict[str, int] = {}
        #: Flows opened per (transport, server port), and flows each flow chef followed:
        #: nd-sniff names the busiest ports a chef that followed nothing did not follow.
        self.flows_by_port: collections.Counter[tuple[str, int]] = collections.Counter()
        self.flows_followed: collections.Counter[str] = collections.Counter()
        chef_options = chef_options or {}
        for chef in chefs:
            if isinstance(chef, type):
                chef(kitchen=self, **chef_options.get(chef.__name__, {}))
            else:
                self.register_chef(chef)
        self._rebuild()

    # -- chefs --------------------------------------------------------------------------

    def register_chef(self, chef: DumplingChef) -> None:
        if chef.kitchen is None:
            chef.kitchen = self
        if chef not in self.chefs:
            self.chefs.append(chef)
            if self.chef_seconds is not None:
                self._time_chef(chef)
        self._rebuild()

    def _time_chef(self, chef: DumplingChef) -> None:
        """Wrap the chef's handlers on the instance (the class, and every other kitchen's
        chefs, are untouched), so an untimed kitchen pays nothing for this."""
        seconds = self.chef_seconds
        assert seconds is not None
        name = chef.name
        seconds.setdefault(name, 0.0)
        clock = time.perf_counter

        def timed_iter(gen: Iterator[Any]) -> Iterator[Any]:
            while True:
                start = clock()
                try:
                    item = next(gen)
                except StopIteration:
                    return
                finally:
                    seconds[name] += clock() - start
                yield item

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def timed(*args: Any) -> Any:
                start = clock()
                try:
                    result = fn(*args)
                finally:
                    seconds[name] += clock() - start
                # A generator handler does its work as the kitchen iterates it.
                return timed_iter(result) if inspect.isgenerator(result) else result
            return timed

        for attr in TIMED_HANDLERS:
            fn = getattr(chef, attr, None)
            if callable(fn):
                setattr(chef, attr, wrap(fn))

    def _rebuild(self) -> None:
        chefs = getattr(self, "chefs", [])
        self.packet_chefs = [c for c in chefs if type(c).handles_packets()]
        self.tunnel_packet_chefs = [c for c in self.packet_chefs
                                    if self.decapsulate and getattr(c, "tunnelled_packets", True)]
        self.interval_chefs = [c for c in chefs if type(c).handles_intervals()]
        self.flow_chefs: list[FlowChef] = [c for c in chefs if isinstance(c, FlowChef)]
        self.flow_transports = frozenset(t for c in self.flow_chefs for t in c.transports)
        ports = frozenset(p for c in self.flow_chefs for p in c.ports)
        if self.flow_chefs and not hasattr(self, "flows"):
            self.flows = FlowTable(self._max_flows, self._flow_idle_timeout, ports)
            self.defrag = Defragmenter()
            self.stats.defrag = self.defrag.stats
        elif self.flow_chefs:
            self.flows.server_ports = ports
        self._detectors = {
            t: [c for c in self.flow_chefs
                if t in c.transports and type(c).detect is not FlowChef.detect]
            for t in ("tcp", "udp")}

    # -- dumplings ----------------------------------------------------------------------

    def _emit(self, chef: DumplingChef, result: Any, driver: str,
              capture_time: float | None, what: str = "handler") -> None:
        if result is None:
            return
        try:
            for payload in iter_payloads(result):
                self.sequence += 1
                md: dict[str, Any] = {
                    "chef": chef.name, "kitchen": self.name, "creation_time": time.time(),
                    "driver": driver, "sequence": self.sequence, "host": self.host}
                if capture_time is not None:
                    md["capture_time"] = capture_time
                dumpling = {"metadata": md, "payload": payload}
                try:
                    data = encode(dumpling)
                except (TypeError, ValueError) as exc:
                    self.sequence -= 1
                    self.stats.encode_errors += 1
                    self._chef_error(chef, f"payload is not JSON serialisable: {exc}", None)
                    continue
                chef.dumplings_sent_count += 1
                self.stats.dumplings += 1
                self.dumplings_by_chef[chef.name] = self.dumplings_by_chef.get(chef.name, 0) + 1
                self.sink(dumpling, data)
        except Exception as exc:  # a generator handler raising mid-way
            self._chef_error(chef, f"{what} raised while yielding dumplings", exc)

    def _chef_error(self, chef: DumplingChef, what: str, exc: BaseException | None) -> None:
        self.stats.chef_errors += 1
        n = self._errors_by_chef.get(chef.name, 0) + 1
        self._errors_by_chef[chef.name] = n
        if n <= ERRORS_LOGGED:
            log.error("%s: chef %s: %s%s", self.name, chef.name, what,
                      f": {type(exc).__name__}: {exc}" if exc else "",
                      exc_info=exc if (exc is not None and n == 1) else None)
            if n == ERRORS_LOGGED:
                log.error("%s: chef %s: further errors are counted, not logged",
                          self.name, chef.name)

    def record_chef_error(self, chef: DumplingChef, what: str,
                          exc: BaseException | None = None) -> None:
        """An error ``chef`` caught itself (``DumplingChef.report_error``): counted and
        logged like one its handler raised."""
        self._chef_error(chef, what, exc)

    @property
    def chef_errors(self) -> dict[str, int]:
        return dict(self._errors_by_chef)

    @property
    def chef_poke_interval(self) -> float | None:
        """netdumplings 0.5's name for ``poke_interval`` (0.5 chefs read it)."""
        return self.poke_interval

    def _call(self, chef: DumplingChef, fn: Callable[..., Any], args: tuple, driver: str,
              ts: float | None) -> None:
        try:
            result = fn(*args)
        except Exception as exc:
            self._chef_error(chef, f"{fn.__name__} raised", exc)
            return
        if result is not None:
            self._emit(chef, result, driver, ts, fn.__name__)

    # -- packets ------------------------------------------------------------------------

    def process(self, packet: Packet) -> None:
        ts = packet.time
        self.now = ts
        stats = self.stats
        stats.packets += 1
        stats.bytes += packet.wirelen
        for chef in self.packet_chefs:
            try:
                result = chef.packet_handler(packet)
            except Exception as exc:
                self._chef_error(chef, "packet_handler raised", exc)
                continue
            if result is not None:
                self._emit(chef, result, DRIVER_PACKET, ts, "packet_handler")
        # The header decode happens here, and only when some flow chef could want it (or
        # a packet chef the packets inside tunnels).
        ft = self.flow_transports
        if ft:
            l4 = packet.l4
            if packet.ip_frag is None and l4 in ft and packet.sport is not None and (
                    l4 == "tcp" or packet.dport not in self._tunnel_ports):
                self._flow_packet(packet)    # the common case, without a call more
            elif l4 is None or l4 == "udp" or packet.ip_frag is not None:
                self._to_flows(packet, 0)    # fragments, tunnels (GRE has no l4)
        elif self.tunnel_packet_chefs:
            l4 = packet.l4
            if (l4 == "udp" and packet.dport in TUNNEL_UDP_PORTS) or (
                    l4 is None and packet.ip_proto == IPPROTO_GRE):
                self._to_flows(packet, 0)

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
                    self._tunnelled_to_packet_chefs(inner)
                self._to_flows(inner, depth + 1)
                return
        if l4 in self.flow_transports and packet.sport is not None:
            self._flow_packet(packet)

    def _tunnelled_to_packet_chefs(self, packet: Packet) -> None:
        ts = packet.time
        for chef in self.tunnel_packet_chefs:
            try:
                result = chef.packet_handler(packet)
            except Exception as exc:
                self._chef_error(chef, "packet_handler raised", exc)
                continue
            if result is not None:
                self._emit(chef, result, DRIVER_PACKET, ts, "packet_handler")

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

    def poke(self) -> None:
        """Interval poke: chefs' interval handlers, then idle-flow expiry."""
        for chef in self.interval_chefs:
            self._call(chef, chef.interval_handler, (self.poke_interval,), DRIVER_INTERVAL,
                       self.now)
        self.expire()

    def expire(self) -> None:
        if self.flow_chefs and self.now is not None:
            for flow in self.flows.expire(self.now):
                self._close(flow, CloseReason.TIMEOUT)
            self.flows.forget_closed(self.now)

    def finish(self) -> None:
        """End of capture: close every open flow (reason END), then a last poke."""
        self.finished = True
        if self.flow_chefs:
            if self.defrag.finish():
                self._warn_defrag_drops()
            for flow in self.flows.drain():
                self._close(flow, CloseReason.END)
        for chef in self.interval_chefs:
            self._call(chef, chef.interval_handler, (self.poke_interval,), DRIVER_INTERVAL,
                       self.now)

    def tick(self, capture_time: float) -> None:
        """Poke every ``poke_interval`` seconds of capture time (call before processing a
        packet of a file); the first call only starts the clock."""
        due = self._next_capture_poke
        if due is None:
            self._next_capture_poke = capture_time + (self.poke_interval or 0)
            return
        interval = self.poke_interval
        if not interval:
            return
        pokes = 0
        while capture_time >= due:
            self.poke()
            due += interval
            pokes += 1
            if pokes >= MAX_CATCH_UP_POKES and capture_time >= due:
                # A long silence in the capture (or a tiny interval): the pokes in between
                # would only repeat the same state, so the clock skips to the present.
                self.stats.pokes_skipped += int((capture_time - due) // interval) + 1
                due += (int((capture_time - due) // interval) + 1) * interval
        self._next_capture_poke = due

    def run(self, source: Iterable[Packet | None], *, stop: Callable[[], bool] | None = None,
            progress: Callable[[], None] | None = None, live: bool = False) -> None:
        """Feed every packet of ``source`` through the chefs, poking every ``poke_interval``.

        Live sources are poked on the wall clock, checked at every packet and whenever the
        source yields ``None`` (idle), so steady light traffic still gets its pokes. Files are
        poked on *capture* time (a file is read far faster than it was captured, and capture
        time is what chefs' rates and timeouts mean), as ``offline.read_dumplings`` does.
        """
        interval = self.poke_interval
        process = self.process
        n = 0
        if not live:
            due = self._next_capture_poke
            for packet in source:
                if packet is None:
                    continue
                # ``tick`` only when a poke is due (or to start the clock), not per packet
                if interval and (due is None or packet.time >= due):
                    self.tick(packet.time)
                    due = self._next_capture_poke
                process(packet)
                n += 1
                if n & 0x3FF:
                    continue
                self.expire()
                if stop is not None and stop():
                    break
                if progress is not None:
                    progress()
            return
        monotonic = time.monotonic
        next_wall = monotonic() + interval if interval else float("inf")
        for packet in source:
            if packet is not None:
                process(packet)
                n += 1
                if n & 0x3FF == 0:
                    self.expire()
                if monotonic() < next_wall and n & 0x3F:
                    continue
            if stop is not None and stop():
                break
            if monotonic() >= next_wall:
                self.poke()
                next_wall += interval
                if next_wall < monotonic():
                    next_wall = monotonic() + interval
