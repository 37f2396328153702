"""The flow table: TCP and UDP conversations keyed by their 5-tuple, IPv4 and IPv6.

Roles: the client is the side that sent the first SYN (without ACK). When the capture
starts mid-connection the server is guessed from the ports (a well-known or a chef's port
is the server; otherwise the lower port). Flows are removed on close (FIN both ways or RST),
when idle longer than ``idle_timeout`` (capture time), or evicted oldest-first when the
table is full; each removal is reported to the chefs following the flow.

A TCP connection does not end on the wire when it closes: the last ACK, a late
retransmission or a RST answering it follow the FINs. A closed connection is therefore
remembered for ``time_wait`` seconds (as a host's TIME-WAIT state): its trailing packets
are found by ``lookup`` and counted for it (``Flow.closed`` says so), as tshark counts them
for the conversation, rather than starting a connection of their own; a new SYN on the same
addresses and ports starts a new connection.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict
from typing import Any, Iterator


class Direction(str, enum.Enum):
    """Which way bytes travel within a flow (names match the shared captures' ground truth)."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"

    @property
    def reverse(self) -> "Direction":
        return (Direction.SERVER_TO_CLIENT if self is Direction.CLIENT_TO_SERVER
                else Direction.CLIENT_TO_SERVER)

    def __str__(self) -> str:  # so f-strings and JSON show the plain value
        return self.value


class CloseReason(str, enum.Enum):
    """Why a flow ended, as told to ``FlowChef.on_close``."""

    FIN = "fin"            # both sides (or the one we saw) sent FIN
    RST = "rst"            # a RST ended it
    TIMEOUT = "timeout"    # idle for longer than the flow table's idle timeout
    EVICTED = "evicted"    # pushed out by the flow table's memory/flow-count limits
    END = "end"            # the capture (file or stdin) ended with the flow still open

    def __str__(self) -> str:
        return self.value


_C2S = Direction.CLIENT_TO_SERVER

#: Ports below this are taken as server ports when roles cannot be told from a SYN.
WELL_KNOWN_LIMIT = 1024
#: Seconds (capture time) a closed TCP connection keeps its trailing packets: RFC 9293's
#: TIME-WAIT is 2 MSL, 60 s on Linux.
TIME_WAIT = 60.0
#: Closed connections remembered at once (the oldest forgotten first).
MAX_CLOSED = 10_000


def format_endpoint(ip: str, port: int) -> str:
    """``127.0.0.1:80`` or ``[::1]:80``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Flow:
    """One TCP or UDP conversation, as seen by the kitchen.

    ``client``/``server`` are (ip, port) tuples, fixed when the flow is made (with their
    ``client_str``/``server_str``); ``state`` holds per-chef state (keyed by
    chef name, see ``FlowChef.flow_state``) and is dropped with the flow.
    """

    __slots__ = (
        "id", "transport", "client", "server", "first_seen", "last_seen",
        "packets", "bytes", "payload_bytes", "state", "chefs", "detect_tries",
        "roles_known", "closing", "tcp", "client_str", "server_str", "closed",
        "trailing_packets", "__weakref__",
    )

    def __init__(self, flow_id: int, transport: str, client: tuple[str, int],
                 server: tuple[str, int], timestamp: float, roles_known: bool) -> None:
        self.id = flow_id
        self.transport = transport
        self.client = client
        self.server = server
        #: ``ip:port`` / ``[ip]:port`` of each side, made once: every payload shows them
        self.client_str = format_endpoint(*client)
        self.server_str = format_endpoint(*server)
        self.first_seen = timestamp
        self.last_seen = timestamp
        #: per direction: [client_to_server, server_to_client]
        self.packets = [0, 0]
        self.bytes = [0, 0]          # bytes on the wire (frame length)
        self.payload_bytes = [0, 0]  # transport payload bytes
        self.state: dict[str, Any] = {}
        self.chefs: list[Any] = []   # FlowChefs following this flow
        self.detect_tries = 0
        self.roles_known = roles_known
        self.closing = 0             # TCP: FIN seen from c2s (1), s2c (2); bits
        self.tcp: Any = None         # TCP: per-direction reassemblers, set by the kitchen
        #: closed (FIN both ways, or RST) and only remembered for its trailing packets
        self.closed = False
        self.trailing_packets = 0    # packets counted after the close

    # -- presentation ---------------------------------------------------------------------

    def src(self, direction: Direction) -> str:
        return self.client_str if direction is _C2S else self.server_str

    def dst(self, direction: Direction) -> str:
        return self.server_str if direction is _C2S else self.client_str

    def label(self, direction: Direction = Direction.CLIENT_TO_SERVER) -> str:
        """``src -> dst`` for one direction, as the tools' one-line outputs show it."""
        return f"{self.src(direction)} -> {self.dst(direction)}"

    def describe(self) -> dict[str, Any]:
        """The JSON-able flow description every flow chef puts into its payloads."""
        return {
            "id": self.id,
            "transport": self.transport,
            "client": self.client_str,
            "server": self.server_str,
        }

    def summary(self) -> dict[str, Any]:
        return {
            **self.describe(),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "duration": self.last_seen - self.first_seen,
            "packets": {"client_to_server": self.packets[0], "server_to_client": self.packets[1]},
            "bytes": {"client_to_server": self.bytes[0], "server_to_client": self.bytes[1]},
            "payload_bytes": {"client_to_server": self.payload_bytes[0],
                              "server_to_client": self.payload_bytes[1]},
        }

    def __repr__(self) -> str:
        return f"Flow({self.id}, {self.transport} {self.client_str} -> {self.server_str})"


def flow_key(transport: str, a: tuple[str, int], b: tuple[str, int]) -> tuple:
    """Direction-independent key: the same for both directions of a conversation."""
    return (transport, a, b) if a <= b else (transport, b, a)


class FlowTable:
    """Flows by key, oldest activity first (an OrderedDict used as an LRU).

    ``max_flows`` bounds the table; when it is full the least recently active flow is
    evicted (and counted). ``idle_timeout`` is in capture-time seconds.
    """

    def __init__(self, max_flows: int = 100_000, idle_timeout: float = 300.0,
                 server_ports: frozenset[int] = frozenset(), time_wait: float = TIME_WAIT,
                 max_closed: int = MAX_CLOSED) -> None:
        if max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, not {max_flows}")
        self.max_flows = max_flows
        self.time_wait = time_wait
        self.max_closed = max_closed
        #: closed TCP connections, by key, oldest close first (see the module docstring)
        self._closed: OrderedDict[tuple, Flow] = OrderedDict()
        self.idle_timeout = idle_timeout
        self.server_ports = server_ports
        self._flows: OrderedDict[tuple, Flow] = OrderedDict()
        self._next_id = 1
        #: Flow ids go 1, 1 + id_step, ...: worker i of N numbers its flows i+1, i+1+N, ...
        #: so ids stay unique in a kitchen with several workers.
        self.id_step = 1
        self.evicted = 0
        self.timed_out = 0
        self.created = 0

    def __len__(self) -> int:
        return len(self._flows)

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self._flows.values()))

    def lookup(self, transport: str, src: tuple[str, int], dst: tuple[str, int],
               timestamp: float, syn: bool = False, syn_ack: bool = False,
               create: bool = True) -> tuple[Flow | None, Direction, bool, Flow | None]:
        """Find or create the flow of a packet.

        Returns (flow, direction of this packet, created, evicted flow or None); flow is
        None when it does not exist and ``create`` is False.
        """
        key = flow_key(transport, src, dst)
        flows = self._flows
        flow = flows.get(key)
        if flow is not None:
            flows.move_to_end(key)
            direction = (Direction.CLIENT_TO_SERVER if src == flow.client
                         else Direction.SERVER_TO_CLIENT)
            return flow, direction, False, None
        if self._closed:
            old = self._closed.get(key)
            if old is not None:
                if not syn and timestamp - old.last_seen <= self.time_wait:
                    direction = (Direction.CLIENT_TO_SERVER if src == old.client
                                 else Direction.SERVER_TO_CLIENT)
                    return old, direction, False, None
                del self._closed[key]   # a new connection on the same ports, or too late
        if not create:
            return None, Direction.CLIENT_TO_SERVER, False, None
        evicted = None
        if len(flows) >= self.max_flows:
            _, evicted = flows.popitem(last=False)
            self.evicted += 1
        if syn and not syn_ack:
            client, server, known = src, dst, True
        elif syn_ack:
            client, server, known = dst, src, True
        else:
            client, server = self._guess_roles(src, dst)
            known = False
        flow = Flow(self._next_id, transport, client, server, timestamp, known)
        self._next_id += self.id_step
        self.created += 1
        flows[key] = flow
        direction = (Direction.CLIENT_TO_SERVER if src == client else Direction.SERVER_TO_CLIENT)
        return flow, direction, True, evicted

    def _guess_roles(self, src: tuple[str, int], dst: tuple[str, int]
                     ) -> tuple[tuple[str, int], tuple[str, int]]:
        sp, dp = src[1], dst[1]
        ports = self.server_ports
        if dp in ports and sp not in ports:
            return src, dst
        if sp in ports and dp not in ports:
            return dst, src
        if (dp < WELL_KNOWN_LIMIT) != (sp < WELL_KNOWN_LIMIT):
            return (src, dst) if dp < WELL_KNOWN_LIMIT else (dst, src)
        return (src, dst) if dp <= sp else (dst, src)

    def remove(self, flow: Flow) -> None:
        self._flows.pop(flow_key(flow.transport, flow.client, flow.server), None)

    def remember_closed(self, flow: Flow) -> None:
        """Take a closed TCP connection out of the table, keeping it for its trailing
        packets (``time_wait`` seconds after its last packet; ``max_closed`` at most)."""
        key = flow_key(flow.transport, flow.client, flow.server)
        self._flows.pop(key, None)
        flow.closed = True
        closed = self._closed
        closed[key] = flow
        closed.move_to_end(key)
        while len(closed) > self.max_closed:
            closed.popitem(last=False)

    def forget_closed(self, now: float) -> None:
        """Drop the closed connections whose time-wait has passed at ``now``."""
        closed = self._closed
        limit = now - self.time_wait
        while closed:
            key, flow = next(iter(closed.items()))
            if flow.last_seen >= limit:
                break
            del closed[key]

    def expire(self, now: float) -> list[Flow]:
        """Remove and return flows idle for longer than ``idle_timeout`` at ``now``."""
        out = []
        flows = self._flows
        limit = now - self.idle_timeout
        while flows:
            key, flow = next(iter(flows.items()))
            if flow.last_seen >= limit:
                break
            del flows[key]
            out.append(flow)
        self.timed_out += len(out)
        return out

    def drain(self) -> list[Flow]:
        """Remove and return every flow (end of capture)."""
        out = list(self._flows.values())
        self._flows.clear()
        self._closed.clear()
        return out


def ip_version(ip: str) -> int:
    return ipaddress.ip_address(ip).version
