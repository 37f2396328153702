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
import time
from typing import Any, Callable, Iterable, Iterator

from ..capture.defrag import Defragmenter, DefragStats
from ..capture.packet import Packet
from ..capture.tunnels import IPPROTO_GRE, TUNNEL_UDP_PORTS
from ..flows.table import FlowTable
from ..wire.dumpling import DRIVER_INTERVAL, DRIVER_PACKET, encode
from .chef import CloseReason, DumplingChef, FlowChef, iter_payloads
from .flowside import FlowSide

log = logging.getLogger("netdumplings.kitchen")

#: Errors per chef logged with a traceback before the rest are only counted.
ERRORS_LOGGED = 5
#: Interval pokes made for one packet at most: a capture-time gap longer than this many
#: intervals skips the rest (counted in ``stats.pokes_skipped``) instead of poking, say,
#: a billion times for ``-p 1e-9`` or 17,000 times for a day-long pause at 5 s.
MAX_CATCH_UP_POKES = 1000
#: The chef methods the kitchen calls, timed per chef when ``time_chefs`` is on.
TIMED_HANDLERS = ("packet_handler", "interval_handler", "detect", "on_open", "on_data",
                  "on_gap", "on_close")

Sink = Callable[[dict[str, Any], bytes], None]



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


class Kitchen(FlowSide):
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

    def _to_packet_chefs(self, chefs: list[DumplingChef], packet: Packet) -> None:
        """``packet`` to each of ``chefs``' packet handlers: every captured packet, and each
        packet found inside a tunnel (for the chefs that want those too)."""
        ts = packet.time
        for chef in chefs:
            try:
                result = chef.packet_handler(packet)
            except Exception as exc:
                self._chef_error(chef, "packet_handler raised", exc)
                continue
            if result is not None:
                self._emit(chef, result, DRIVER_PACKET, ts, "packet_handler")

    def process(self, packet: Packet) -> None:
        ts = packet.time
        self.now = ts
        stats = self.stats
        stats.packets += 1
        stats.bytes += packet.wirelen
        self._to_packet_chefs(self.packet_chefs, packet)
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
