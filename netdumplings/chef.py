"""Chefs: user code that turns packets (or reassembled flows) into dumpling payloads.

Two families share one base class:

* ``DumplingChef`` - the netdumplings 0.5 API. ``packet_handler(packet)`` sees every
  packet; ``interval_handler(interval)`` is poked every ``--poke-interval`` seconds.
* ``FlowChef`` (``StreamChef`` for TCP, ``DatagramChef`` for UDP) - sees only the flows it
  asked for (by server port, or by a cheap look at the first bytes), already reassembled
  into ordered byte streams for TCP.

Every handler returns its output the same way: ``None`` (no dumpling), a JSON-able payload
(one dumpling), or - when written as a generator - it *yields* payloads (one dumpling each).
A chef that raises is logged and counted by the kitchen; it never stops the kitchen.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:  # pragma: no cover
    from .flows import Flow
    from .packet import Packet


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


class ChefOptions(BaseModel):
    """Options a chef accepts from ``--chef-option Chef.key=value``.

    Subclass it as a nested ``Options`` class on the chef to add typed options; unknown
    keys are rejected so typos surface as a clear error instead of being ignored.
    """

    model_config = ConfigDict(extra="forbid")


class FlowChefOptions(ChefOptions):
    #: Server ports whose flows this chef decodes. ``None`` means the class's ``default_ports``.
    ports: list[int] | None = None

    @field_validator("ports", mode="before")
    @classmethod
    def _split_ports(cls, value: Any) -> Any:
        # "24224,24225" on the command line; a list or int from Python.
        if isinstance(value, str):
            return [int(p) for p in value.replace(" ", "").split(",") if p]
        if isinstance(value, int):
            return [value]
        return value


class DumplingChef:
    """Base class for all chefs (netdumplings 0.5 compatible).

    Subclass it and override ``packet_handler`` and/or ``interval_handler``. The kitchen
    only calls the handlers a subclass overrides, so a chef that only has an
    ``interval_handler`` costs nothing per packet.
    """

    #: Set to False in a subclass to hide it from ``nd-sniff`` (e.g. an abstract base).
    assignable_to_kitchen: ClassVar[bool] = True
    #: The typed options this chef accepts (see ``ChefOptions``).
    Options: ClassVar[type[ChefOptions]] = ChefOptions

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        self.kitchen = kitchen
        self.name: str = type(self).__name__
        self.options = self.Options(**options)
        self.dumplings_sent_count = 0
        self.logger = logging.getLogger(f"netdumplings.chef.{self.name}")
        self._configure()
        if kitchen is not None:
            kitchen.register_chef(self)

    def _configure(self) -> None:
        """Derive settings from ``self.options`` before the kitchen sees the chef."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kitchen={self.kitchen!r})"

    def packet_handler(self, packet: "Packet") -> Any:
        """Called for every packet. ``packet`` behaves like a scapy packet
        (``packet.haslayer('DNS')``, ``packet[IP].src``) but is only dissected by scapy when
        such scapy features are used; the fast fields (``packet.ip_src``, ``packet.sport``,
        ``packet.tcp_payload`` ...) cost almost nothing."""
        return None

    def interval_handler(self, interval: float | None = None) -> Any:
        """Called every poke interval (and once more at the end of a capture file)."""
        return None

    # -- what the kitchen asks of a chef -------------------------------------------------

    @classmethod
    def handles_packets(cls) -> bool:
        return cls.packet_handler is not DumplingChef.packet_handler

    @classmethod
    def handles_intervals(cls) -> bool:
        return cls.interval_handler is not DumplingChef.interval_handler

    @property
    def now(self) -> float | None:
        """The kitchen's clock: the capture time of the latest packet (None before any)."""
        return getattr(self.kitchen, "now", None)


class FlowChef(DumplingChef):
    """A chef that follows flows instead of single packets.

    The kitchen attaches the chef to a flow when the flow's server port is in
    ``options.ports`` (default ``default_ports``), or otherwise when ``detect`` returns True
    for the first payload bytes seen in the flow. Attached chefs then receive
    ``on_open``, ``on_data`` (reassembled, in order), ``on_gap`` (bytes lost for good) and
    ``on_close``. Per-flow state lives on the flow (``self.flow_state(flow)``) so it is
    freed with the flow, whatever the chef forgets.
    """

    Options: ClassVar[type[ChefOptions]] = FlowChefOptions
    #: Which transports this chef follows: {"tcp"}, {"udp"} or both.
    transports: ClassVar[frozenset[str]] = frozenset({"tcp"})
    #: Server ports followed when the user gives no ``ports`` option.
    default_ports: ClassVar[tuple[int, ...]] = ()
    #: Follow every flow of the chef's transports, whatever its ports.
    all_flows: ClassVar[bool] = False
    #: False for chefs that only want on_open/on_close and the flow's counters: the kitchen
    #: then does not reassemble the flow's bytes for them.
    wants_data: ClassVar[bool] = True

    ports: frozenset[int]

    def _configure(self) -> None:
        super()._configure()
        ports = getattr(self.options, "ports", None)
        self.ports = frozenset(self.default_ports if ports is None else ports)

    # -- selection --------------------------------------------------------------------

    def detect(self, flow: "Flow", direction: Direction, data: bytes) -> bool:
        """Cheap heuristic on the first payload bytes of a flow not on ``ports``.

        Return True to follow the flow. Called at most a few times per flow (until some
        chef claims it or enough bytes were seen), so it must not keep state."""
        return False

    # -- flow events (override what you need) ---------------------------------------

    def on_open(self, flow: "Flow") -> Any:
        return None

    def on_data(self, flow: "Flow", direction: Direction, data: bytes, timestamp: float) -> Any:
        return None

    def on_gap(self, flow: "Flow", direction: Direction, size: int) -> Any:
        return None

    def on_close(self, flow: "Flow", reason: CloseReason) -> Any:
        return None

    # -- per-flow state -------------------------------------------------------------------

    def new_flow_state(self, flow: "Flow") -> Any:
        """Create this chef's state for a newly followed flow (e.g. a sans-I/O decoder)."""
        return None

    def flow_state(self, flow: "Flow") -> Any:
        state = flow.state.get(self.name, _MISSING)
        if state is _MISSING:
            state = flow.state[self.name] = self.new_flow_state(flow)
        return state


class StreamChef(FlowChef):
    """A FlowChef for TCP: ``on_data`` gets each direction's bytes in order, reassembled."""

    transports: ClassVar[frozenset[str]] = frozenset({"tcp"})


class DatagramChef(FlowChef):
    """A FlowChef for UDP: ``on_data`` gets each datagram's payload, grouped by flow."""

    transports: ClassVar[frozenset[str]] = frozenset({"udp"})


_MISSING = object()
#: The framework's own base classes are never offered as chefs.
FRAMEWORK_BASES = frozenset({DumplingChef, FlowChef, StreamChef, DatagramChef})


def iter_payloads(result: Any) -> Iterable[Any]:
    """Normalise a handler's return value into the payloads it stands for."""
    if result is None:
        return ()
    if inspect.isgenerator(result):
        return (p for p in result if p is not None)
    return (result,)


# -- finding chefs in modules ----------------------------------------------------------


class ChefLoadError(Exception):
    """A chef module could not be imported, or holds no chefs."""


def chefs_in_module(spec: str) -> dict[str, type[DumplingChef]]:
    """Import a dotted module name or a path to a .py file and return its chef classes.

    Only classes defined in (or re-exported by) the module that subclass DumplingChef and
    are ``assignable_to_kitchen`` are returned, keyed by class name.
    """
    if spec.endswith(".py") or os.path.sep in spec or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise ChefLoadError(f"chef module file not found: {spec}")
        mod_name = "netdumplings_user_chefs_" + os.path.splitext(os.path.basename(spec))[0]
        try:
            mod_spec = importlib.util.spec_from_file_location(mod_name, spec)
            if mod_spec is None or mod_spec.loader is None:
                raise ChefLoadError(f"{spec}: not an importable Python file")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_name] = module
            mod_spec.loader.exec_module(module)
        except ChefLoadError:
            raise
        except (Exception, SystemExit) as exc:  # user code: a load error, not a crash/exit
            raise ChefLoadError(f"{spec}: failed to import: {type(exc).__name__}: {exc}") from exc
    else:
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        try:
            module = importlib.import_module(spec)
        except (Exception, SystemExit) as exc:
            raise ChefLoadError(f"{spec}: failed to import: {type(exc).__name__}: {exc}") from exc
    found = {
        name: obj for name, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, DumplingChef) and obj not in FRAMEWORK_BASES and obj.assignable_to_kitchen
    }
    return found
