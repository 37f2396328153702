"""The wire protocol between kitchens, the hub and eaters (WebSockets, JSON).

Compatible with netdumplings 0.5: a kitchen connects to the hub's in-port and sends a JSON
hello ``{"kitchen_name", "interface", "filter", "chefs", "poke_interval"}``, then one JSON
dumpling per text message; an eater connects to the out-port, sends ``{"eater_name"}`` and
receives one JSON dumpling per text message. Everything newer is an *extension*: extra keys
in those hellos. The hub answers a hello that carries ``"protocol"`` with a ``welcome``
message saying which extensions it accepted; a 0.5 client never sends ``protocol`` and so
never sees anything but dumplings, and our clients fall back to 0.5 behaviour when a hub
sends no welcome (a 0.5 hub).

Extensions (both hellos): ``protocol`` ("netdumplings/1"), ``batch`` (true: messages may
be JSON arrays of dumplings), ``encoding`` ("json" | "msgpack": binary frames, each one
dumpling or a list of dumplings), ``token`` (auth; an ``Authorization: Bearer`` header on
the upgrade request works too). Eater hello only: ``chefs``, ``kitchens``, ``drivers``
(subscription filters; null = all), ``policy`` ("drop-oldest" | "disconnect") and
``queue_size``. A kitchen whose welcome says ``"ack": true`` receives ``{"ack": n}`` (n =
data messages the hub has processed on this connection) and resends what is unacknowledged
after a reconnect. docs/protocol.md is the full description.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

PROTOCOL = "netdumplings/1"
DEFAULT_HOST = "127.0.0.1"
IN_PORT = 11347
OUT_PORT = 11348
METRICS_PORT = 11349        # nd-hub --metrics-port: /metrics and /healthz over HTTP
STATUS_CHEF = "SystemStatusChef"
NOTICE_CHEF = "HubNoticeChef"

# Close codes. 4101/4102 are netdumplings 0.5's; the rest are ours (4000-4999 is the
# application range) or standard (RFC 6455).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008          # authentication failed / an eater tried to publish
CLOSE_TOO_BIG = 1009         # message larger than the hub accepts
CLOSE_CANCELLED = 4101       # 0.5: "connection cancelled"
CLOSE_EATER_FULL = 4102      # 0.5: "dumpling eater is full" (disconnect policy)
CLOSE_BAD_HELLO = 4103       # first message was not a valid hello
CLOSE_HELLO_TIMEOUT = 4104   # no hello within the handshake timeout
CLOSE_TOO_MANY = 4105        # connection limit for the role reached
CLOSE_FLOOD = 4106           # a kitchen sending too many invalid dumplings
CLOSE_WRITE_TIMEOUT = 4107   # an eater that took nothing for the hub's write timeout

#: Longest subscription filter (entries of ``chefs``, ``kitchens``): a hello with more is
#: refused (4103, the reason says which list). Matching costs a set lookup whatever the size;
#: the cap keeps what the hub holds per eater small.
MAX_FILTER = 1000

CLOSE_REASONS = {
    CLOSE_CANCELLED: "connection cancelled",
    CLOSE_EATER_FULL: "dumpling eater is full",
    CLOSE_BAD_HELLO: "invalid hello",
    CLOSE_HELLO_TIMEOUT: "no hello received in time",
    CLOSE_TOO_MANY: "too many connections",
    CLOSE_FLOOD: "too many invalid dumplings",
    CLOSE_POLICY: "authentication failed",
    CLOSE_TOO_BIG: "message too big",
    CLOSE_WRITE_TIMEOUT: "eater not reading (write timeout)",
}


class KitchenHello(BaseModel):
    """First message from a kitchen to the hub's in-port."""

    model_config = ConfigDict(extra="allow")

    kitchen_name: str
    interface: str | None = None
    filter: str | None = None
    chefs: list[str] = Field(default_factory=list)
    poke_interval: float | None = None
    # extensions
    protocol: str | None = None
    batch: bool = False
    encoding: Literal["json", "msgpack"] = "json"
    token: str | None = None
    host: str | None = None


class EaterHello(BaseModel):
    """First message from an eater to the hub's out-port."""

    model_config = ConfigDict(extra="allow")

    eater_name: str
    # extensions
    protocol: str | None = None
    chefs: list[str] | None = Field(default=None, max_length=MAX_FILTER)
    kitchens: list[str] | None = Field(default=None, max_length=MAX_FILTER)
    drivers: list[Literal["packet", "interval"]] | None = None
    batch: bool = False
    encoding: Literal["json", "msgpack"] = "json"
    token: str | None = None
    policy: Literal["drop-oldest", "disconnect"] = "drop-oldest"
    queue_size: int | None = Field(default=None, ge=1)
    #: the ``instance`` of the hub this eater was connected to before (its welcome said):
    #: a different hub instance (a restart) tells the eater what it missed meanwhile
    resume: str | None = Field(default=None, max_length=64)
    _match: Any = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        self._match = matcher(self.chefs, self.kitchens, self.drivers)

    def matches(self, chef: str, kitchen: str | None, driver: str) -> bool:
        """Does a dumpling pass this eater's subscription? A kitchen filter leaves out the
        hub's own status dumplings (kitchen null): asking for one kitchen means just that.
        Missed-dumpling notices are not filtered. (The hub calls ``matcher``'s function
        directly: a pydantic private attribute costs more than the match.)"""
        return self._match(chef, kitchen, driver)


def matcher(chefs: list[str] | None, kitchens: list[str] | None,
            drivers: list[str] | None) -> Callable[[str, str | None, str], bool]:
    """A subscription as a function of (chef, kitchen, driver), its lists made sets once:
    matching is a lookup per filter, not a scan of a list once per dumpling per eater (20
    eaters with 4,500-chef lists saturated a hub)."""
    cs = None if chefs is None else frozenset(chefs)
    ks = None if kitchens is None else frozenset(kitchens)
    ds = None if drivers is None else frozenset(drivers)
    if ks is None and ds is None:
        if cs is None:
            return lambda chef, kitchen, driver: True
        return lambda chef, kitchen, driver: chef in cs

    def matches(chef: str, kitchen: str | None, driver: str) -> bool:
        return ((cs is None or chef in cs) and (ks is None or kitchen in ks)
                and (ds is None or driver in ds))
    return matches


class Welcome(BaseModel):
    """The hub's answer to a hello that carries ``protocol``."""

    model_config = ConfigDict(extra="allow")

    welcome: Literal["netdumplings"] = "netdumplings"
    protocol: str = PROTOCOL
    hub_version: str
    role: Literal["kitchen", "eater"]
    batch: bool
    encoding: Literal["json", "msgpack"]
    max_message_size: int
    ack: bool | None = None   # kitchens only: the hub sends {"ack": n}


def parse_hub_address(address: str, default_port: int) -> tuple[str, int, bool]:
    """``host:port``, ``host``, ``ws://host:port`` or ``wss://host:port`` ->
    (host, port, tls)."""
    tls = False
    if "://" in address:
        scheme, address = address.split("://", 1)
        if scheme not in ("ws", "wss"):
            raise ValueError(f"unsupported scheme {scheme!r} (use ws:// or wss://)")
        tls = scheme == "wss"
        address = address.rstrip("/")
    if address.startswith("["):  # [ipv6]:port
        host, _, rest = address[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad address {address!r} (use [ipv6]:port)")
        return host, _port(rest[1:], address) if rest else default_port, tls
    if address.count(":") == 1:
        host, port_s = address.split(":")
        return host or DEFAULT_HOST, _port(port_s, address), tls
    return address or DEFAULT_HOST, default_port, tls


def _port(text: str, address: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port {text} in {address!r} is not a port number (1-65535)")
    return int(text)


def ws_uri(host: str, port: int, tls: bool = False) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{'wss' if tls else 'ws'}://{h}:{port}"


SUMMARY_TEXT = 200    # characters of a string kept in a hello summary
SUMMARY_ITEMS = 20    # entries of a list kept in a hello summary


def hello_summary(hello: dict[str, Any], fields: Any = None) -> dict[str, Any]:
    """What the hub shows of a hello in status dumplings: never the token, only the keys the
    protocol defines (``fields``: a hello model's fields; None: any key), strings cut to
    ``SUMMARY_TEXT`` characters and lists to ``SUMMARY_ITEMS`` entries (then a last entry
    "... N more"). A hello may be 64 KB and is repeated in every status dumpling to every
    eater: the summary keeps that a few hundred bytes per peer."""
    out: dict[str, Any] = {}
    for k, v in hello.items():
        if k == "token" or (fields is not None and k not in fields):
            continue
        out[k] = _small(v)
    return out


def _small(v: Any) -> Any:
    if isinstance(v, str):
        return v if len(v) <= SUMMARY_TEXT else v[:SUMMARY_TEXT] + "..."
    if isinstance(v, list):
        items = [_small(x) if isinstance(x, (str, int, float, bool)) or x is None else "..."
                 for x in v[:SUMMARY_ITEMS]]
        if len(v) > SUMMARY_ITEMS:
            items.append(f"... {len(v) - SUMMARY_ITEMS} more")
        return items
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    return "..."   # objects: not shown (their size is the sender's choice)


def msgpack_array(items: list[bytes]) -> bytes:
    """A msgpack array from already-packed elements (no re-encoding)."""
    n = len(items)
    if n < 16:
        head = bytes((0x90 | n,))
    elif n < 65536:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + b"".join(items)
