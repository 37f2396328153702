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

import functools
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..flows.table import CloseReason, Direction

if TYPE_CHECKING:  # pragma: no cover
    from ..flows.table import Flow
    from ..capture.packet import Packet


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


class ChefSetupError(ValueError):
    """A chef cannot be made: a handler the kitchen cannot call, an ``__init__`` that
    raised or did not call ``super().__init__``, a bad option, or a second chef of the same
    name in one kitchen. The message starts with the chef's name."""


class ChefOptionsError(ChefSetupError):
    """A ``--chef-option`` (or ``chef_options``) value the chef's ``Options`` refuses."""


#: The arguments the kitchen passes to each handler (after ``self``), positionally.
HANDLER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "packet_handler": ("packet",),
    "interval_handler": ("interval",),
    "detect": ("flow", "direction", "data"),
    "on_open": ("flow",),
    "on_data": ("flow", "direction", "data", "timestamp"),
    "on_gap": ("flow", "direction", "size"),
    "on_close": ("flow", "reason"),
    "new_flow_state": ("flow",),
}


def handler_problems(cls: type) -> list[str]:
    """What is wrong with the handlers of chef class ``cls``: each one the kitchen could not
    call with the arguments it passes, or could call but not use (``async def``)."""
    problems = []
    for name, args in HANDLER_ARGUMENTS.items():
        static = inspect.getattr_static(cls, name, None)
        if static is None:
            continue
        call = f"{name}(self, {', '.join(args)})"
        fn = getattr(cls, name)
        if not callable(fn):
            problems.append(f"{name} is {type(fn).__name__}, not a method {call}")
            continue
        bound = isinstance(static, (staticmethod, classmethod))
        func = static.__func__ if bound else fn
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            problems.append(f"{name} is async: the kitchen calls handlers synchronously "
                            f"and cannot await it (use a plain def)")
            continue
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):  # a builtin or C callable: cannot tell
            continue
        try:
            sig.bind(*args) if bound else sig.bind(None, *args)
        except TypeError:
            problems.append(f"{name}{sig} cannot be called as {call}")
    return problems


def _checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a chef subclass's own ``__init__`` so that a mistake in it is one clear error
    naming the chef, not a traceback without it or - when it forgot to call
    ``super().__init__`` - a chef the kitchen never hears of."""

    @functools.wraps(init)
    def __init__(self: "DumplingChef", *args: Any, **kwargs: Any) -> None:
        if type(self).__init__ is not __init__:  # a subclass's __init__ calling ours
            init(self, *args, **kwargs)
            return
        name = type(self).__name__
        try:
            init(self, *args, **kwargs)
        except ChefSetupError:
            raise
        except Exception as exc:
            raise ChefSetupError(f"{name}: __init__ raised {type(exc).__name__}: {exc}") from exc
        if "_setup_done" not in vars(self):
            raise ChefSetupError(
                f"{name}: __init__ does not call super().__init__(*args, **kwargs), so the "
                f"chef has no kitchen, name or options and would never be called")

    __init__._chef_checked = True  # type: ignore[attr-defined]
    return __init__


class DumplingChef:
    """Base class for all chefs (netdumplings 0.5 compatible).

    Subclass it and override ``packet_handler`` and/or ``interval_handler``. The kitchen
    only calls the handlers a subclass overrides, so a chef that only has an
    ``interval_handler`` costs nothing per packet.

    A subclass's own ``__init__`` must accept and pass on the kitchen and options:
    ``def __init__(self, *args, **kwargs): super().__init__(*args, **kwargs)``. Mistakes
    (a handler the kitchen cannot call, a missing ``super().__init__``, an exception in
    ``__init__``, a bad option) raise ``ChefSetupError`` naming the chef when it is made.
    """

    #: Set to False in a class to hide that class from ``nd-sniff`` (e.g. an abstract
    #: base). It is not inherited: subclasses are offered unless they set it too.
    assignable_to_kitchen: ClassVar[bool] = True
    #: The typed options this chef accepts (see ``ChefOptions``).
    Options: ClassVar[type[ChefOptions]] = ChefOptions
    #: How the chef runs in a kitchen with several workers (``nd-sniff --workers N``; see
    #: ``netdumplings.kitchen.workers``): ``"flows"`` - in every worker, each seeing whole flows
    #: (both directions, all packets of a flow), its interval handler run per worker;
    #: ``"merge"`` - in every worker too, and at each poke ``worker_state`` of every worker
    #: is handed to ``merge_worker_states`` of one more instance, whose ``interval_handler``
    #: makes the interval dumpling from the merged totals; ``"reader"`` - in the reader
    #: process only, which sees every packet in capture order (correct for any chef, but
    #: not spread over cores). ``None`` (the default) means ``"flows"`` for a FlowChef with
    #: neither ``packet_handler`` nor ``interval_handler`` (its state lives on its flows),
    #: ``"reader"`` for any other chef.
    shard: ClassVar[str | None] = None
    #: ``packet_handler`` is also given the packets the kitchen takes out of VXLAN, Geneve
    #: and GRE tunnels (``packet.tunnel`` names the tunnel), after the packet that carried
    #: them; False: only the packets as captured (e.g. a chef counting captured frames).
    tunnelled_packets: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_chef_checked", False):
            cls.__init__ = _checked_init(init)  # type: ignore[method-assign]

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        self.kitchen = kitchen
        self.name: str = type(self).__name__
        problems = handler_problems(type(self))
        if problems:
            raise ChefSetupError(f"{self.name}: " + "; ".join(problems))
        try:
            self.options = self.Options(**options)
        except ValidationError as exc:
            raise ChefOptionsError(f"{self.name}: {_describe_option_errors(exc)}") from exc
        self.dumplings_sent_count = 0
        self.logger = logging.getLogger(f"netdumplings.chef.{self.name}")
        self._logger = self.logger  # what netdumplings 0.5 chefs use
        self._configure()
        self._setup_done = True
        if kitchen is not None:
            for other in getattr(kitchen, "chefs", ()):
                if other.name == self.name and other is not self:
                    raise ChefSetupError(
                        f"{self.name}: kitchen {getattr(kitchen, 'name', '?')!r} already has a "
                        f"chef named {self.name} ({_origin(type(other))}, this one is "
                        f"{_origin(type(self))}); chefs are known by class name, in "
                        f"dumplings and per-flow state: rename one")
            kitchen.register_chef(self)

    def _configure(self) -> None:
        """Derive settings from ``self.options`` before the kitchen sees the chef."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kitchen={self.kitchen!r})"

    def packet_handler(self, packet: "Packet") -> Any:
        """Called for every packet. ``packet`` behaves like a scapy packet
        (``packet.haslayer('DNS')``, ``packet[IP].src``) but is only dissected by scapy when
        such scapy features are used; the fast fields (``packet.ip_src``, ``packet.sport``,
        ``packet.tcp_payload`` ...) cost almost nothing. A plain scapy packet works too
        (tests and 0.5 code hand chefs those), for chefs that only use scapy features.

        This base version returns netdumplings 0.5's ``"<ChefName>: <packet summary>"``, for
        subclasses that call it; the kitchen never calls it on a chef that does not
        override ``packet_handler``, so such chefs cost nothing per packet."""
        summary = packet.summary()
        self.logger.debug("%s: received packet: %s", self.name, summary)
        return f"{type(self).__name__}: {summary}"

    def interval_handler(self, interval: float | None = None) -> Any:
        """Called every poke interval (and once more at the end of a capture file)."""
        self.logger.debug("%s: received interval poke", self.name)
        return None

    # -- several workers (``shard = "merge"``) -----------------------------------------

    def worker_state(self) -> Any:
        """This worker's totals so far, as a picklable value (called in each worker at every
        poke and at the end). Only for ``shard = "merge"`` chefs, which must override it."""
        raise NotImplementedError(f"{self.name} has shard = 'merge' but no worker_state()")

    def merge_worker_states(self, states: list[Any]) -> None:
        """Set this instance's totals from the latest ``worker_state()`` of every worker
        (replacing, not adding to, what it held), before its ``interval_handler`` runs.
        Only for ``shard = "merge"`` chefs, which must override it."""
        raise NotImplementedError(f"{self.name} has shard = 'merge' but no "
                                  f"merge_worker_states()")

    def report_error(self, what: str, exc: BaseException | None = None) -> None:
        """Count an error the chef caught itself (a decoder's safety net) as the kitchen
        counts an exception a handler raised: in ``chef_errors``, ``-v`` and the exit
        summary. A chef that keeps going after a bug must not end with "0 chef errors"."""
        record = getattr(self.kitchen, "record_chef_error", None)
        if record is not None:
            record(self, what, exc)
        else:
            self.logger.error("%s%s", what, f": {type(exc).__name__}: {exc}" if exc else "",
                              exc_info=exc)

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
        cls = type(self)
        if not self.ports and not cls.all_flows and cls.detect is FlowChef.detect:
            self.logger.warning(
                "%s follows no flows: it has no ports (set default_ports, or the ports "
                "option: --chef-option %s.ports=PORT,...), no detect() and all_flows is "
                "False", self.name, self.name)

    # -- selection --------------------------------------------------------------------

    def detect(self, flow: "Flow", direction: Direction, data: bytes) -> bool:
        """Cheap heuristic on the first payload chunks of a flow not on ``ports``.

        Return True to follow the flow. Asked for each of the flow's first few chunks
        (``kitchen.flowside.DETECT_TRIES``, either direction) until it says yes, so it must not keep
        state. The chunk it says yes to is the first ``on_data`` gets; earlier chunks are
        not replayed."""
        return False

    # -- flow events (override what you need) ---------------------------------------

    def on_open(self, flow: "Flow") -> Any:
        """The chef starts following ``flow`` (its first packet, or the chunk ``detect``
        accepted)."""
        return None

    def on_data(self, flow: "Flow", direction: Direction, data: bytes, timestamp: float) -> Any:
        """The next in-order bytes of one direction; ``timestamp`` is the capture time of
        the packet that made them deliverable."""
        return None

    def on_gap(self, flow: "Flow", direction: Direction, size: int) -> Any:
        """``size`` bytes of ``direction`` are lost for good (never captured)."""
        return None

    def on_close(self, flow: "Flow", reason: CloseReason) -> Any:
        """The flow ended (called once); ``self.flow_state(flow)`` is dropped right after."""
        return None

    # -- per-flow state -------------------------------------------------------------------

    def new_flow_state(self, flow: "Flow") -> Any:
        """Create this chef's state for a newly followed flow (e.g. a sans-I/O decoder)."""
        return None

    def flow_state(self, flow: "Flow") -> Any:
        """This chef's state for ``flow``, made by ``new_flow_state`` on first use and
        dropped with the flow (after ``on_close``)."""
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


def _describe_option_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err.get("loc", ())) or "options"
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown option {key!r}")
        else:
            parts.append(f"option {key}={err.get('input')!r}: {err.get('msg')}")
    return "; ".join(parts) or str(exc)


def _origin(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    where = getattr(module, "__file__", None) or cls.__module__
    return f"{cls.__module__}.{cls.__qualname__} from {where}"


def is_assignable(cls: type) -> bool:
    """Whether ``cls`` is offered as a chef: a DumplingChef subclass other than the framework
    bases whose own class body does not set ``assignable_to_kitchen = False``."""
    return (isinstance(cls, type) and issubclass(cls, DumplingChef)
            and cls not in FRAMEWORK_BASES
            and bool(cls.__dict__.get("assignable_to_kitchen", True)))


def defined_in(cls: type, module: str) -> bool:
    """Whether ``cls`` is defined in ``module`` or, when it is a package (a chef package:
    decoder and shell apart), in one of its submodules."""
    return cls.__module__ == module or cls.__module__.startswith(module + ".")


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

    The chefs are the module's own classes (defined in it, or in a submodule of it when it
    is a package) that subclass DumplingChef and do not set ``assignable_to_kitchen =
    False``, keyed by class name. Chef classes it merely imports - a bundled chef it
    subclasses, say - are not its chefs (they would run twice), unless it defines none
    of its own: then it is a module that re-exports chefs, and those are returned.
    A file is executed once per process however often it is asked for.
    """
    module = _import_chef_module(spec)
    own: dict[str, type[DumplingChef]] = {}
    imported: dict[str, type[DumplingChef]] = {}
    for name, obj in inspect.getmembers(module, inspect.isclass):
        if not is_assignable(obj):
            continue
        (own if defined_in(obj, module.__name__) else imported)[name] = obj
    return own or imported


def hidden_chefs_in_module(spec: str) -> list[str]:
    """Names of the chef classes of ``spec`` hidden by ``assignable_to_kitchen = False``
    (for error messages)."""
    module = _import_chef_module(spec)
    return [name for name, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, DumplingChef) and obj not in FRAMEWORK_BASES
            and not is_assignable(obj)]


def _import_chef_module(spec: str) -> Any:
    if spec.endswith(".py") or os.path.sep in spec or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise ChefLoadError(f"chef module file not found: {spec}")
        path = os.path.realpath(spec)
        # One module name per file: two files both called chefs.py are two modules, and
        # asking for the same file again (listing, then running) does not run it again.
        digest = hashlib.sha1(path.encode()).hexdigest()[:8]
        mod_name = ("netdumplings_user_chefs_"
                    f"{os.path.splitext(os.path.basename(path))[0]}_{digest}")
        loaded = sys.modules.get(mod_name)
        if loaded is not None:
            return loaded
        try:
            mod_spec = importlib.util.spec_from_file_location(mod_name, path)
            if mod_spec is None or mod_spec.loader is None:
                raise ChefLoadError(f"{spec}: not an importable Python file")
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[mod_name] = module
            mod_spec.loader.exec_module(module)
        except ChefLoadError:
            raise
        except (Exception, SystemExit) as exc:  # user code: a load error, not a crash/exit
            sys.modules.pop(mod_name, None)
            raise ChefLoadError(f"{spec}: failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(spec)
    except (Exception, SystemExit) as exc:
        raise ChefLoadError(f"{spec}: failed to import: {type(exc).__name__}: {exc}") from exc
