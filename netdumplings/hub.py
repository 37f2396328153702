"""The hub: dumplings in from any number of kitchens, out to any number of eaters.

Each dumpling is parsed and validated once when it arrives, and serialised at most once per
encoding that some eater wants; every eater of that encoding gets the same bytes. Every eater
has a bounded queue: a slow eater loses its oldest dumplings (and is told how many) or is
disconnected, by its own choice, and never slows the others or grows the hub.

A kitchen that says ``protocol`` in its hello gets ``{"ack": n}`` messages (n = data messages
received on this connection so far), coalesced so that a fast kitchen costs at most one ack
per event-loop turn. The sender keeps what is not acknowledged and resends it after a
reconnect, which is what makes a hub restart lossless for kitchens.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import ssl
import time
from bisect import bisect_left
from collections import Counter, deque
from typing import Any, Iterable

import msgpack
import orjson
from pydantic import TypeAdapter, ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import __version__
from .dumpling import DumplingMetadata
from .exceptions import InvalidDumpling
from .wire import (CLOSE_BAD_HELLO, CLOSE_EATER_FULL, CLOSE_FLOOD, CLOSE_HELLO_TIMEOUT,
                   CLOSE_POLICY, CLOSE_REASONS, CLOSE_TOO_MANY, DEFAULT_HOST, IN_PORT,
                   NOTICE_CHEF, OUT_PORT, STATUS_CHEF, EaterHello, KitchenHello,
                   Welcome, hello_summary, msgpack_array)

log = logging.getLogger("netdumplings.hub")

# Strict: the hub relays the kitchen's bytes unchanged, so nothing may be coerced ("1.5" for a
# float would pass lax validation and reach eaters as a string). ~1 us per dumpling.
_METADATA = TypeAdapter(DumplingMetadata)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
MAX_LABEL_SETS = 1000   # beyond this many kitchen/chef (or eater) label values: "_other"
FLOOD_WINDOW = 10.0     # seconds over which invalid dumplings are counted for CLOSE_FLOOD
MAX_NAME = 200          # characters of a peer-chosen name (kitchen, eater, chef) kept for
                        # logs and metric labels
MAX_HELLO_BYTES = 64 << 10  # a hello is a few hundred bytes; it is kept for the connection's
                        # life and repeated in every status dumpling, so bigger ones are refused


_DRIVERS = frozenset(("packet", "interval"))
#: Chef names only the hub speaks as: eaters (nd-hubstatus, the dashboard, the missed
#: counters) trust dumplings of these chefs to be the hub's, so kitchens may not use them.
_HUB_CHEFS = frozenset((STATUS_CHEF, NOTICE_CHEF))
_OPTIONAL = (("sequence", int), ("capture_time", float), ("host", str))


def check_dumpling(obj: Any) -> tuple[str, str | None, str, float]:
    """Validate a decoded dumpling -> (chef, kitchen, driver, creation_time).

    The metadata goes through pydantic's ``DumplingMetadata`` (the published schema), the
    payload only has to exist: it is the chef's business and the hub never looks inside.
    Pydantic costs ~2.4 us a dumpling, a quarter of a core at 100,000/s, so metadata made
    of exactly the types the schema names (what our kitchens send) is accepted by a few
    type checks; anything else, even what strict pydantic would still accept (an int
    creation_time), is left to pydantic to accept or explain."""
    if type(obj) is dict:
        md = obj.get("metadata")
        if type(md) is dict and "payload" in obj:
            chef = md.get("chef")
            kitchen = md.get("kitchen", _METADATA)
            ct = md.get("creation_time")
            driver = md.get("driver")
            if (type(chef) is str and (kitchen is None or type(kitchen) is str)
                    and type(ct) is float and type(driver) is str and driver in _DRIVERS):
                for key, kind in _OPTIONAL:
                    v = md.get(key)
                    if v is not None and type(v) is not kind:
                        break
                else:
                    if chef in _HUB_CHEFS:
                        raise InvalidDumpling(f"chef {chef} is the hub's own")
                    return chef, kitchen, driver, ct
    if not isinstance(obj, dict):
        raise InvalidDumpling("dumpling is not an object")
    md = obj.get("metadata")
    if not isinstance(md, dict):
        raise InvalidDumpling("missing metadata object")
    if "payload" not in obj:
        raise InvalidDumpling("missing payload")
    try:
        m = _METADATA.validate_python(md, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidDumpling(f"metadata.{'.'.join(map(str, err['loc']))}: {err['msg']}") \
            from None
    if m.chef in _HUB_CHEFS:
        raise InvalidDumpling(f"chef {m.chef} is the hub's own")
    return m.chef, m.kitchen, m.driver, m.creation_time


def _printable(name: Any) -> str:
    """A peer-chosen name made safe for a log line or a metric label: at most ``MAX_NAME``
    characters, control characters escaped (a newline in a name cannot forge log lines)."""
    text = str(name)[:MAX_NAME]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class _NoDataFrames(logging.Filter):
    """websockets logs every frame at debug level (nd-hub -vv): hellos with their tokens,
    and one line per dumpling. Data frames are left out; everything else stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.DEBUG and record.msg in ("< %s", "> %s")
                    and record.args and str(record.args[0]).startswith(  # type: ignore
                        ("TEXT", "BINARY", "CONT")))


_NO_DATA_FRAMES = _NoDataFrames()


class _Quiet:
    """At most ``burst`` log lines per kind of event per ``window`` seconds, then one line
    saying how many were left out: a peer failing or reconnecting in a loop cannot flood
    the log (the counts are in the metrics)."""

    def __init__(self, burst: int, window: float) -> None:
        self.burst = burst
        self.window = window
        self.seen: dict[tuple[str, ...], list[float]] = {}   # key -> [window start, events]

    def __call__(self, level: int, key: tuple[str, ...], msg: str, *args: Any,
                 **kwargs: Any) -> None:
        now = time.monotonic()
        seen = self.seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            if seen is not None and seen[1] > self.burst:
                log.log(level, "%d more %s messages were not logged", seen[1] - self.burst,
                        "/".join(key))
            seen = self.seen[key] = [now, 0]
        seen[1] += 1
        if seen[1] <= self.burst:
            log.log(level, msg, *args, **kwargs)
            if seen[1] == self.burst:
                log.log(level, "(more %s messages in the next %.0fs are only counted)",
                        "/".join(key), self.window - (now - seen[0]))


def _decode(message: bytes) -> Any:
    """JSON or msgpack, told apart by the first byte: JSON documents start with ``{``, ``[``
    or whitespace, msgpack maps/arrays with 0x80-0x9f or 0xdc-0xdf."""
    first = message[:1]
    if first and (0x80 <= first[0] <= 0x9f or 0xdc <= first[0] <= 0xdf):
        return msgpack.unpackb(message, raw=False, strict_map_key=False)
    return orjson.loads(message)


def _encode(obj: Any, mp: bool) -> bytes | None:
    """``obj`` in an eater's encoding, or None when it has no form there: msgpack can carry
    binary strings, extension types and non-string map keys that JSON cannot, and orjson
    writes at most 254 levels of nesting though it reads 1024. Such a dumpling is relayed
    as it came to eaters of its own encoding; the others are told they missed it."""
    try:
        return msgpack.packb(obj) if mp else orjson.dumps(obj)
    except (TypeError, ValueError, OverflowError):
        return None

MERGE_BYTES = 1 << 20   # a merged eater frame stops growing here (well under max sizes)


def _merge(frame: bytes, n: int, q: deque[tuple[bytes, int]], batch_max: int,
           mp: bool) -> tuple[bytes, int, int]:
    """An eater that fell behind has several small frames queued: send them as one (up to
    ``batch_max`` dumplings), fewer sends for the same dumplings. Frames of one dumpling are
    the dumpling; bigger ones are arrays, whose elements are spliced without decoding."""
    parts = [frame if n == 1 else _body(frame, mp)]
    size = len(frame)
    while q and n + q[0][1] <= batch_max and size < MERGE_BYTES:
        f, c = q.popleft()
        parts.append(f if c == 1 else _body(f, mp))
        n += c
        size += len(f)
    if mp:
        return _msgpack_head(n) + b"".join(parts), n, size
    return b"[" + b",".join(parts) + b"]", n, size


def _body(frame: bytes, mp: bool) -> bytes:
    """The elements of an array frame, without the array around them."""
    if not mp:
        return frame[1:-1]
    first = frame[0]
    return frame[1:] if first < 0xdc else frame[3:] if first == 0xdc else frame[5:]


def _msgpack_head(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _singles(queue: Iterable[tuple[bytes, int]], mp: bool) -> list[bytes]:
    """Queued frames as one encoded dumpling each (rare: replay compares dumplings)."""
    out: list[bytes] = []
    for frame, n in queue:
        if n == 1:
            out.append(frame)
        elif mp:
            out.extend(msgpack.packb(o) for o in _decode(frame))
        else:
            out.extend(orjson.dumps(o) for o in orjson.loads(frame))
    return out


class _Histogram:
    """Prometheus-style cumulative histogram kept as plain counters (scraped rarely,
    observed often)."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        if value < 0:
            value = 0.0
        self.counts[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for bound, n in zip(LATENCY_BUCKETS + (float("inf"),), self.counts):
            acc += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        return out


class EaterConn:
    """One eater's queue: entries are (frame, dumplings) - a frame is one encoded dumpling
    or, for batch eaters, a whole array of them, the same bytes object for every eater that
    gets the same dumplings. Bounds and drop counts are in dumplings; dropping drops whole
    entries (oldest first)."""

    __slots__ = ("ws", "hello", "queue", "max_queue", "event", "missed", "missed_total",
                 "sent", "info", "closing", "batch", "msgpack", "name", "stamps", "pushed",
                 "removed", "queued", "everything", "entries", "qbytes", "max_bytes")

    def __init__(self, ws: ServerConnection, hello: EaterHello, max_queue: int,
                 info: dict[str, Any], max_bytes: int | None = None) -> None:
        self.ws = ws
        self.hello = hello
        self.name = _printable(hello.eater_name)
        self.max_queue = hello.queue_size and min(hello.queue_size, max_queue) or max_queue
        self.queue: deque[tuple[bytes, int]] = deque()
        self.queued = 0          # dumplings in the queue
        # Frames shared with other eaters count in full for each: a bound, not a measure.
        self.qbytes = 0
        self.max_bytes = max_bytes or 0
        self.event = asyncio.Event()
        self.missed = 0          # dropped since the last notice
        self.missed_total = 0
        self.sent = 0
        self.info = info
        self.closing = False
        self.batch = False
        self.msgpack = False
        self.everything = (hello.chefs is None and hello.kitchens is None
                           and hello.drivers is None)
        # Latency sampling: (dumpling index, creation_time) of some queued entries; pushed
        # and removed count dumplings in and out (sent or dropped).
        self.stamps: deque[tuple[int, float]] = deque()
        self.pushed = 0
        self.removed = 0
        self.entries = 0

    def push(self, data: bytes, ct: float | None = None, n: int = 1) -> bool:
        """Queue a frame of ``n`` dumplings; False if the eater must be disconnected. A frame
        of more dumplings than the whole queue holds is the caller's to split."""
        q = self.queue
        size = len(data)
        if self.queued + n > self.max_queue or (
                self.max_bytes and self.qbytes + size > self.max_bytes and q):
            if self.hello.policy == "disconnect":
                return False
            dropped = 0
            while q and (self.queued + n > self.max_queue or
                         self.max_bytes and self.qbytes + size > self.max_bytes):
                f, c = q.popleft()
                self.queued -= c
                self.qbytes -= len(f)
                dropped += c
            self.removed += dropped
            self.missed += dropped
            self.missed_total += dropped
            stamps = self.stamps
            while stamps and stamps[0][0] < self.removed:
                stamps.popleft()
        if ct is not None and (not q or not self.entries & 15):
            self.stamps.append((self.pushed, ct))
        q.append((data, n))
        self.queued += n
        self.qbytes += size
        self.pushed += n
        self.entries += 1
        self.event.set()
        return True

    def drop(self, n: int) -> None:
        """Count ``n`` dumplings missed that never made it into the queue."""
        self.pushed += n
        self.removed += n
        self.missed += n
        self.missed_total += n
        self.event.set()


class KitchenConn:
    __slots__ = ("ws", "hello", "info", "dumplings", "invalid", "batch", "messages",
                 "ack_event", "flood_start", "flood_count", "name")

    def __init__(self, ws: ServerConnection, hello: KitchenHello, info: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.name = _printable(hello.kitchen_name)
        self.info = info
        self.dumplings = 0
        self.invalid = 0
        self.batch = False
        self.messages = 0
        self.ack_event: asyncio.Event | None = None
        self.flood_start = 0.0
        self.flood_count = 0


class _Batch:
    """A kitchen's batch after validation: its frames (whole or filtered, per encoding) and
    its single dumplings' bytes, each made at most once, when the first eater needs it."""

    __slots__ = ("objs", "meta", "cts", "raw", "binary", "_frames", "_items")

    def __init__(self, objs: list[Any], meta: list[tuple[str, str | None, str]],
                 cts: list[float], raw: bytes | None, binary: bool) -> None:
        self.objs = objs
        self.meta = meta
        self.cts = cts
        self.raw = raw            # the kitchen's message, when it is exactly this batch
        self.binary = binary      # raw is msgpack
        self._frames: dict[tuple[bool, frozenset | None], tuple[bytes, int, float]] = {}
        self._items: dict[bool, list[bytes | None]] = {}

    def item(self, i: int, mp: bool) -> bytes:
        """Dumpling ``i`` encoded (b"" if it cannot be, see ``_encode``)."""
        items = self._items.get(mp)
        if items is None:
            items = self._items[mp] = [None] * len(self.objs)
        data = items[i]
        if data is None:
            data = items[i] = _encode(self.objs[i], mp) or b""
        return data   # b"": not encodable in this encoding

    def indices(self, sel: frozenset | None) -> list[int]:
        if sel is None:
            return list(range(len(self.objs)))
        return [i for i, k in enumerate(self.meta) if k in sel]

    def build(self, mp: bool, idx: list[int]) -> tuple[bytes, list[int]]:
        """(frame, the indices in it): dumplings that cannot be encoded are left out."""
        if len(idx) == 1:
            data = self.item(idx[0], mp)
            return data, idx if data else []
        if len(idx) == len(self.objs):
            if self.raw is not None and self.binary == mp:
                # The kitchen's own bytes: already the array, and valid through and through.
                return self.raw if mp else self.raw.strip(), idx
            data = _encode(self.objs, mp)
            if data is not None:
                return data, idx
        items = [self.item(i, mp) for i in idx]
        if not all(items):
            idx = [i for i, d in zip(idx, items) if d]
            items = [d for d in items if d]
            if len(items) <= 1:
                return (items[0] if items else b""), idx
        if mp:
            return msgpack_array(items), idx
        return b"[" + b",".join(items) + b"]", idx

    def frame(self, mp: bool, sel: frozenset | None
              ) -> tuple[bytes, int, float, int, list[int]]:
        """(frame, dumplings, creation_time of its first, dumplings left out because they
        cannot be encoded, indices in the frame) for batch eaters."""
        key = (mp, sel)
        got = self._frames.get(key)
        if got is None:
            idx = self.indices(sel)
            data, used = self.build(mp, idx)
            got = self._frames[key] = (data, len(used), self.cts[used[0]] if used else 0.0,
                                       len(idx) - len(used), used)
        return got


class Hub:
    """``nd-hub``'s engine. ``await hub.start()`` binds the ports; ``await hub.stop()``."""

    def __init__(self, address: str = DEFAULT_HOST, in_port: int = IN_PORT,
                 out_port: int = OUT_PORT, status_freq: float = 5.0, *,
                 max_queue: int = 100_000, max_queue_bytes: int = 32 << 20,
                 max_message_size: int = 16 << 20,
                 max_dumpling_size: int = 4 << 20,
                 hello_timeout: float = 10.0, batch_max: int = 500,
                 kitchen_token: str | None = None, eater_token: str | None = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 max_kitchens: int = 256, max_eaters: int = 1024,
                 ping_interval: float | None = 20.0, ping_timeout: float | None = 20.0,
                 flood_limit: int = 1000, metrics_port: int | None = None,
                 metrics_address: str | None = None, metrics_optional: bool = False,
                 metrics_token: str | None = None,
                 startup_grace: float = 0.0, backplane: Any = None) -> None:
        self.address = address
        self.in_port = in_port
        self.out_port = out_port
        self.status_freq = status_freq
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_message_size = max_message_size
        self.max_dumpling_size = max_dumpling_size
        self.hello_timeout = hello_timeout
        self.batch_max = batch_max
        self.kitchen_token = kitchen_token or None
        self.eater_token = eater_token or None
        self.ssl: ssl.SSLContext | None = None
        if certfile:
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.load_cert_chain(certfile, keyfile)
        self.limits = {"kitchen": max_kitchens, "eater": max_eaters}
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.flood_limit = flood_limit
        self.metrics_port = metrics_port
        self.metrics_address = metrics_address or address
        self.metrics_optional = metrics_optional
        #: with a token, /metrics needs "Authorization: Bearer TOKEN" (it names kitchens,
        #: eaters and chefs); /healthz stays open for probes and says only "ok" and counts
        self.metrics_token = metrics_token or None
        self.startup_grace = startup_grace
        self.backplane = backplane   # netdumplings.backplane.NatsBackplane or None
        self.dumplings_remote = 0
        self._eater_seen: asyncio.Event | None = None
        self.kitchens: dict[ServerConnection, KitchenConn] = {}
        self.eaters: dict[ServerConnection, EaterConn] = {}
        self.open = {"kitchen": 0, "eater": 0}   # connections, hello or not
        self.admitted = {"kitchen": 0, "eater": 0}   # connections past hello and token
        # Connections still to say hello, oldest first: at most the role's limit, the
        # oldest closed to make room, so idle unauthenticated connections cannot lock out
        # the real clients (which say hello at once).
        self._pending: dict[str, dict[ServerConnection, None]] = {"kitchen": {}, "eater": {}}
        self._warn_q = _Quiet(10, 60.0)
        self._info_q = _Quiet(50, 10.0)
        self._closers: set[asyncio.Future] = set()
        self.dumplings_in = 0
        self.dumplings_out = 0
        self.dumplings_dropped = 0
        self.dumplings_invalid = 0
        # metrics (plain dicts on the hot path; turned into Prometheus families on scrape)
        self.in_by: dict[tuple[str, str], int] = {}
        self.rejected_by: dict[tuple[str, str], int] = {}
        self.out_by_eater: dict[str, int] = {}       # eaters gone; live ones added on scrape
        self.dropped_by_eater: dict[str, int] = {}
        self.refused: dict[tuple[str, str], int] = {}  # (role, reason) -> connections refused
        self.latency = _Histogram()
        self.started = time.time()
        self._servers: list[Any] = []
        self._tasks: list[asyncio.Task] = []
        self._metrics_server: asyncio.AbstractServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        logging.getLogger("websockets.server").addFilter(_NO_DATA_FRAMES)
        self._eater_seen = asyncio.Event()
        self._grace_until = time.monotonic() + self.startup_grace
        common = dict(max_size=self.max_message_size, compression=None, ssl=self.ssl,
                      ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                      server_header=f"netdumplings/{__version__}")
        self._servers.append(await serve(self._kitchen, self.address, self.in_port, **common))
        # Eaters send nothing but their hello: a bigger message is closed (1009) unread.
        self._servers.append(await serve(self._eater, self.address, self.out_port,
                                         **{**common, "max_size": MAX_HELLO_BYTES}))
        if self.in_port == 0:
            self.in_port = self._servers[0].sockets[0].getsockname()[1]
        if self.out_port == 0:
            self.out_port = self._servers[1].sockets[0].getsockname()[1]
        if self.metrics_port is not None:
            try:
                self._metrics_server = await asyncio.start_server(
                    self._http, self.metrics_address, self.metrics_port)
            except OSError as exc:
                if not self.metrics_optional:
                    await self.stop()
                    raise
                log.warning("no metrics: cannot listen on %s:%d (%s)", self.metrics_address,
                            self.metrics_port, exc.strerror or exc)
            if self._metrics_server is not None and self.metrics_port == 0:
                self.metrics_port = self._metrics_server.sockets[0].getsockname()[1]
            if (self._metrics_server is not None and self.metrics_token is None
                    and (self.kitchen_token or self.eater_token)
                    and not _loopback(self.metrics_address)):
                log.warning("metrics on %s:%d need no token, unlike kitchens and eaters: "
                            "anyone who reaches them sees kitchen, eater and chef names; "
                            "set --metrics-token-file (or $ND_METRICS_TOKEN) or "
                            "--metrics-address 127.0.0.1", self.metrics_address,
                            self.metrics_port)
        if self.status_freq:
            self._tasks.append(asyncio.create_task(self._status_loop()))
        if self.backplane is not None:
            await self.backplane.start(self)
        scheme = "wss" if self.ssl else "ws"
        log.info("hub listening: dumplings in %s://%s:%d, out %s://%s:%d%s", scheme,
                 self.address, self.in_port, scheme, self.address, self.out_port,
                 f", metrics http://{self.metrics_address}:{self.metrics_port}/metrics"
                 if self._metrics_server else "")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.backplane is not None:
            await self.backplane.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    # -- hellos ---------------------------------------------------------------------------

    def _refuse(self, role: str, reason: str) -> None:
        key = (role, reason)
        self.refused[key] = self.refused.get(key, 0) + 1

    def _warn(self, key: tuple[str, ...], msg: str, *args: Any, **kwargs: Any) -> None:
        self._warn_q(logging.WARNING, key, msg, *args, **kwargs)

    def _info(self, key: tuple[str, ...], msg: str, *args: Any) -> None:
        self._info_q(logging.INFO, key, msg, *args)

    def _close_later(self, ws: ServerConnection, code: int) -> None:
        fut = asyncio.ensure_future(ws.close(code, CLOSE_REASONS[code]))
        self._closers.add(fut)
        fut.add_done_callback(self._closers.discard)

    async def _hello(self, ws: ServerConnection, role: str) -> dict[str, Any] | None:
        pending = self._pending[role]
        pending[ws] = None
        if len(pending) > self.limits[role]:
            oldest = next(iter(pending))
            del pending[oldest]
            self._refuse(role, "hello_timeout")
            self._warn((role, "hello_timeout"), "%s from %s closed: no hello yet and %d "
                       "newer connections waiting", role, _peer(oldest), len(pending))
            self._close_later(oldest, CLOSE_HELLO_TIMEOUT)
        try:
            raw = await asyncio.wait_for(ws.recv(), self.hello_timeout)
        except asyncio.TimeoutError:
            self._refuse(role, "hello_timeout")
            await ws.close(CLOSE_HELLO_TIMEOUT, CLOSE_REASONS[CLOSE_HELLO_TIMEOUT])
            return None
        finally:
            pending.pop(ws, None)
        try:
            if len(raw) > MAX_HELLO_BYTES:
                raise ValueError(f"hello of {len(raw)} bytes (limit {MAX_HELLO_BYTES})")
            hello = orjson.loads(raw)
            if not isinstance(hello, dict):
                raise ValueError("hello is not a JSON object")
        except ValueError as exc:
            self._warn((role, "bad_hello"), "bad %s hello from %s: %s", role, _peer(ws), exc)
            self._refuse(role, "bad_hello")
            await ws.close(CLOSE_BAD_HELLO, CLOSE_REASONS[CLOSE_BAD_HELLO])
            return None
        return hello

    def _authorized(self, ws: ServerConnection, token: Any, expected: str | None) -> bool:
        if expected is None:
            return True
        if not isinstance(token, str) or not token:
            header = ws.request.headers.get("Authorization", "") if ws.request else ""
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                return False
        return hmac.compare_digest(token.strip().encode(), expected.encode())

    def _welcome(self, role: str, batch: bool, encoding: str) -> str:
        extra = {"ack": True} if role == "kitchen" else {}
        return Welcome(hub_version=__version__, role=role, batch=batch, encoding=encoding,
                       max_message_size=self.max_message_size, **extra).model_dump_json(
            exclude_none=True)

    async def _admit(self, ws: ServerConnection, role: str, model: Any,
                     token: str | None) -> tuple[Any, dict[str, Any]] | None:
        """Hello, validation, auth, limit: the parsed hello or None (connection closed).
        The caller decrements ``admitted[role]`` when an admitted connection ends. Only
        clients with the token count towards the limit."""
        raw_hello = await self._hello(ws, role)
        if raw_hello is None:
            return None
        try:
            hello = model.model_validate(raw_hello)
        except ValidationError as exc:
            self._warn((role, "bad_hello"), "bad %s hello from %s: %s", role, _peer(ws),
                       exc.errors()[0].get("msg"))
            self._refuse(role, "bad_hello")
            await ws.close(CLOSE_BAD_HELLO, CLOSE_REASONS[CLOSE_BAD_HELLO])
            return None
        if not self._authorized(ws, raw_hello.get("token"), token):
            self._warn((role, "auth"), "%s from %s refused: wrong or missing token", role,
                       _peer(ws))
            self._refuse(role, "auth")
            await ws.close(CLOSE_POLICY, CLOSE_REASONS[CLOSE_POLICY])
            return None
        if self.admitted[role] >= self.limits[role]:
            self._refuse(role, "too_many")
            self._warn((role, "too_many"), "%s from %s refused: %d connections already", role,
                       _peer(ws), self.limits[role])
            await ws.close(CLOSE_TOO_MANY, CLOSE_REASONS[CLOSE_TOO_MANY])
            return None
        self.admitted[role] += 1
        return hello, raw_hello

    # -- kitchens -------------------------------------------------------------------------

    async def _kitchen(self, ws: ServerConnection) -> None:
        self.open["kitchen"] += 1
        try:
            admitted = await self._admit(ws, "kitchen", KitchenHello, self.kitchen_token)
            if admitted is not None:
                try:
                    await self._run_kitchen(ws, *admitted)
                finally:
                    self.admitted["kitchen"] -= 1
        except ConnectionClosed:
            pass
        finally:
            self.open["kitchen"] -= 1

    async def _run_kitchen(self, ws: ServerConnection, hello: KitchenHello,
                           raw_hello: dict[str, Any]) -> None:
        host, port = _addr(ws)
        conn = KitchenConn(ws, hello, {"info_from_kitchen": hello_summary(raw_hello),
                                       "info_from_hub": {"host": host, "port": port}})
        acker = None
        if hello.protocol:
            conn.batch = hello.batch
            await ws.send(self._welcome("kitchen", conn.batch, hello.encoding))
            conn.ack_event = asyncio.Event()
            acker = asyncio.create_task(self._acker(conn))
        self.kitchens[ws] = conn
        self._info(("kitchen", "connected"), "kitchen %s connected from %s:%s", conn.name,
                   host, port)
        try:
            await self._grace()
            while True:
                message = await ws.recv(decode=False)
                try:
                    ok = self._receive(conn, message)
                except Exception as exc:  # a hub bug: drop the message, not the kitchen,
                    # which would resend it after reconnecting, again and again
                    self._warn(("kitchen", "error"), "message from kitchen %s not relayed",
                               conn.name, exc_info=exc)
                    ok = self._invalid(conn, "invalid", "hub error")
                if not ok:
                    await ws.close(CLOSE_FLOOD, CLOSE_REASONS[CLOSE_FLOOD])
                    break
                conn.messages += 1
                if conn.ack_event is not None:
                    conn.ack_event.set()
        except ConnectionClosed:
            pass
        finally:
            if acker is not None:
                acker.cancel()
            self.kitchens.pop(ws, None)
            self._info(("kitchen", "disconnected"), "kitchen %s disconnected (%d dumplings, "
                       "%d invalid)", conn.name, conn.dumplings, conn.invalid)

    async def _grace(self) -> None:
        """Just after a (re)start, hold kitchens' data until the first eater is back (or the
        grace period ends): kitchens resend what the old hub never acknowledged, and relaying
        it before any eater has reconnected would lose it. TCP backpressure keeps it in the
        kitchens' outboxes meanwhile."""
        left = self._grace_until - time.monotonic()
        if left > 0 and self._eater_seen is not None and not self._eater_seen.is_set():
            try:
                await asyncio.wait_for(self._eater_seen.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _acker(self, conn: KitchenConn) -> None:
        """One ack per wake-up, carrying the latest count: many messages, few acks."""
        event, ws = conn.ack_event, conn.ws
        assert event is not None
        try:
            while True:
                await event.wait()
                event.clear()
                await ws.send(b'{"ack":%d}' % conn.messages, text=True)
        except ConnectionClosed:
            pass

    def _receive(self, conn: KitchenConn, message: bytes) -> bool:
        """Handle one data message; False when the kitchen was closed for flooding."""
        try:
            obj = _decode(message)
        except (ValueError, msgpack.UnpackException, msgpack.ExtraData) as exc:
            return self._invalid(conn, "not_decodable", f"cannot decode: {exc}")
        if isinstance(obj, list) and conn.batch:
            return self._accept_batch(conn, obj, message)
        binary = message[:1] not in (b"{", b" ", b"\n", b"\t", b"\r")
        return self._accept(conn, obj, message, binary)

    def _accept_batch(self, conn: KitchenConn, objs: list[Any], message: bytes) -> bool:
        """Validate every dumpling of a batch, then fan the valid ones out as one batch."""
        binary = message[:1] not in (b"[", b" ", b"\n", b"\t", b"\r")
        # A dumpling cannot be bigger than the message it came in: measure each one only
        # when the whole message is over the limit.
        measure = len(message) > self.max_dumpling_size
        valid: list[Any] = []
        meta: list[tuple[str, str | None, str]] = []
        cts: list[float] = []
        ok = True
        for item in objs:
            try:
                chef, kitchen, driver, ct = check_dumpling(item)
            except InvalidDumpling as exc:
                if not self._invalid(conn, "invalid", str(exc)):
                    ok = False
                    break
                continue
            if measure:
                size = len(msgpack.packb(item) if binary else orjson.dumps(item))
                if size > self.max_dumpling_size:
                    if not self._invalid(conn, "too_big", f"dumpling of {size} bytes (limit "
                                                          f"{self.max_dumpling_size})"):
                        ok = False
                        break
                    continue
            valid.append(item)
            meta.append((chef, kitchen, driver))
            cts.append(ct)
        if not valid:
            return ok
        n = len(valid)
        conn.dumplings += n
        self.dumplings_in += n
        in_by = self.in_by
        for chef, count in Counter(m[0] for m in meta).items():
            key = (conn.name, chef)
            if key not in in_by:
                key = self._in_key(conn.name, chef)
            in_by[key] = in_by.get(key, 0) + count
        raw = message if n == len(objs) and not measure else None
        batch = _Batch(valid, meta, cts, raw, binary)
        self._publish_batch(batch)
        if self.backplane is not None:
            publish = self.backplane.publish
            for i, (chef, kitchen, driver) in enumerate(meta):
                data = batch.item(i, binary)
                if data:
                    publish(data, chef, kitchen, driver)
        return ok

    def _accept(self, conn: KitchenConn, obj: Any, raw: bytes, binary: bool) -> bool:
        try:
            chef, kitchen, driver, ct = check_dumpling(obj)
        except InvalidDumpling as exc:
            return self._invalid(conn, "invalid", str(exc))
        if binary:
            jb, mb = None, raw
        else:
            jb, mb = raw, None
        if len(raw) > self.max_dumpling_size:
            return self._invalid(conn, "too_big", f"dumpling of {len(raw)} bytes (limit "
                                                  f"{self.max_dumpling_size})")
        conn.dumplings += 1
        key = (conn.name, chef)
        n = self.in_by.get(key)
        if n is None:
            key = self._in_key(conn.name, chef)
            n = self.in_by.get(key)
        self.in_by[key] = (n or 0) + 1
        self.dumplings_in += 1
        self._publish(obj, jb, mb, chef, kitchen, driver, ct)
        if self.backplane is not None:
            self.backplane.publish(raw, chef, kitchen, driver)
        return True

    def _in_key(self, kitchen: str, chef: str) -> tuple[str, str]:
        """The dumplings_in label pair for a chef not seen yet: a printable, short name (a
        chef name can be megabytes), ``_other`` beyond MAX_LABEL_SETS pairs."""
        key = (kitchen, _printable(chef))
        if key not in self.in_by and len(self.in_by) >= MAX_LABEL_SETS:
            key = (kitchen, "_other")
        return key

    def deliver_remote(self, data: bytes, chef: str, kitchen: str | None,
                       driver: str) -> None:
        """A dumpling from another hub (via the backplane), JSON or msgpack bytes."""
        self.dumplings_remote += 1
        if data[:1] in (b"{", b" ", b"\n", b"\t", b"\r"):
            self._publish(None, data, None, chef, kitchen, driver, None)
        else:
            self._publish(None, None, data, chef, kitchen, driver, None)

    def _invalid(self, conn: KitchenConn, reason: str, why: str) -> bool:
        conn.invalid += 1
        self.dumplings_invalid += 1
        key = (conn.name if len(self.rejected_by) < MAX_LABEL_SETS else "_other", reason)
        self.rejected_by[key] = self.rejected_by.get(key, 0) + 1
        if conn.invalid <= 5:
            self._warn(("kitchen", "invalid"), "invalid dumpling from kitchen %s: %s",
                       conn.name, why)
        now = time.monotonic()
        if now - conn.flood_start > FLOOD_WINDOW:
            conn.flood_start, conn.flood_count = now, 0
        conn.flood_count += 1
        if conn.flood_count > self.flood_limit:
            self._warn(("kitchen", "flood"), "kitchen %s closed: %d invalid dumplings in %gs",
                       conn.name, conn.flood_count, FLOOD_WINDOW)
            return False
        return True

    def _publish(self, obj: Any, jb: bytes | None, mb: bytes | None, chef: str,
                 kitchen: str | None, driver: str, ct: float | None) -> None:
        """Queue one dumpling to every eater that wants it; ``obj`` (decoded) or one of the
        encodings must be given, the others are made at most once, when first needed."""
        unencodable = False
        for eater in self.eaters.values():
            if eater.closing or not eater.hello.matches(chef, kitchen, driver):
                continue
            if eater.msgpack:
                if mb is None:
                    if obj is None:
                        obj = orjson.loads(jb)  # type: ignore[arg-type]
                    mb = None if unencodable else _encode(obj, True)
                    if mb is None:
                        unencodable = self._unencodable(eater, chef, kitchen, unencodable)
                        continue
                data = mb
            else:
                if jb is None:
                    if obj is None:
                        obj = _decode(mb)  # type: ignore[arg-type]
                    jb = None if unencodable else _encode(obj, False)
                    if jb is None:
                        unencodable = self._unencodable(eater, chef, kitchen, unencodable)
                        continue
                data = jb
            if not eater.push(data, ct):
                self._full(eater)

    def _unencodable(self, eater: EaterConn, chef: str | None, kitchen: str | None,
                     logged: bool, n: int = 1) -> bool:
        """``eater`` cannot get ``n`` dumplings in its encoding (see ``_encode``): they are
        counted as missed, so the eater gets a notice, and the kitchen is not held up."""
        eater.drop(n)
        if not logged:
            self._warn(("unencodable",), "%d dumpling(s)%s cannot be re-encoded for %s "
                       "eaters (binary data, non-string keys or too deep): they miss it", n,
                       "" if chef is None else f" from kitchen {_printable(kitchen)} (chef "
                       f"{_printable(chef)})", "msgpack" if eater.msgpack else "JSON")
        return True

    def _full(self, eater: EaterConn) -> None:
        eater.closing = True
        self._close_later(eater.ws, CLOSE_EATER_FULL)
        self._warn(("eater", "full"), "eater %s disconnected: queue full (%d)", eater.name,
                   eater.max_queue)

    def _publish_batch(self, batch: "_Batch") -> None:
        """Queue a kitchen's batch to every eater that wants it. A batch eater that wants all
        of it gets the batch's one frame (per encoding), shared with every other such eater;
        one whose subscription leaves some out gets a frame of the rest (shared by eaters
        that leave out the same); a non-batch eater gets one entry per dumpling, whose bytes
        are also made once. No per-dumpling work per eater, unless it asked for it."""
        keys: set[tuple[str, str | None, str]] | None = None
        n = len(batch.cts)
        for eater in self.eaters.values():
            if eater.closing:
                continue
            sel: frozenset | None = None   # None: all of it
            if not eater.everything:
                if keys is None:
                    keys = set(batch.meta)
                matches = eater.hello.matches
                wanted = [k for k in keys if matches(*k)]
                if not wanted:
                    continue
                if len(wanted) < len(keys):
                    sel = frozenset(wanted)
            mp = eater.msgpack
            if not eater.batch:
                meta = batch.meta
                for i in range(n):
                    if sel is None or meta[i] in sel:
                        data = batch.item(i, mp)
                        if not data:
                            self._unencodable(eater, *meta[i][:2], False)
                        elif not eater.push(data, batch.cts[i]):
                            self._full(eater)
                            break
                continue
            frame, count, first, missed, idx = batch.frame(mp, sel)
            if missed:
                self._unencodable(eater, None, None, False, missed)
                if not count:
                    continue
            if count > eater.max_queue and eater.hello.policy != "disconnect":
                # Bigger than the whole queue: keep the newest that fit, like one at a time.
                eater.drop(count - eater.max_queue)
                frame, idx = batch.build(mp, idx[count - eater.max_queue:])
                count, first = len(idx), batch.cts[idx[0]]
            if not eater.push(frame, first, count):
                self._full(eater)

    # -- eaters ---------------------------------------------------------------------------

    async def _eater(self, ws: ServerConnection) -> None:
        self.open["eater"] += 1
        try:
            admitted = await self._admit(ws, "eater", EaterHello, self.eater_token)
            if admitted is not None:
                try:
                    await self._run_eater(ws, *admitted)
                finally:
                    self.admitted["eater"] -= 1
        except ConnectionClosed:
            pass
        finally:
            self.open["eater"] -= 1

    async def _run_eater(self, ws: ServerConnection, hello: EaterHello,
                         raw_hello: dict[str, Any]) -> None:
        host, port = _addr(ws)
        conn = EaterConn(ws, hello, self.max_queue,
                         {"info_from_eater": hello_summary(raw_hello),
                          "info_from_hub": {"host": host, "port": port}},
                         self.max_queue_bytes)
        if hello.protocol:
            conn.batch = hello.batch
            conn.msgpack = hello.encoding == "msgpack"
        # Subscribed before the welcome goes out: a client that starts its kitchens when it
        # sees the welcome must not miss their first dumplings. (The queue is only drained
        # after this, so the welcome is still the first message.)
        self.eaters[ws] = conn
        if hello.protocol:
            await ws.send(self._welcome("eater", conn.batch, hello.encoding))
        if self._eater_seen is not None:
            self._eater_seen.set()
        self._info(("eater", "connected"), "eater %s connected from %s:%s", conn.name, host,
                   port)
        if self.backplane is not None:
            self._interest_changed()
            if raw_hello.get("replay") is not None:
                await self._replay(conn, raw_hello["replay"])
        reader = asyncio.create_task(self._guard_eater(conn))
        reader.add_done_callback(lambda _: conn.event.set())  # wake the writer to notice
        try:
            await self._feed_eater(conn, reader)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            self.eaters.pop(ws, None)
            if self.backplane is not None:
                self._interest_changed()
            self.dumplings_dropped += conn.missed_total
            self._retire(conn)
            self._info(("eater", "disconnected"), "eater %s disconnected (%d sent, %d missed)",
                       conn.name, conn.sent, conn.missed_total)

    def _interest_changed(self) -> None:
        self.backplane.update_interest([e.hello for e in self.eaters.values()])

    async def _replay(self, conn: EaterConn, spec: Any) -> None:
        """Stored dumplings first, then live ones, nothing twice: the eater is already
        registered (so nothing live is missed while the store answers); what arrived live
        meanwhile and is also in the replay is dropped from the queue."""
        try:
            old = await self.backplane.replay(conn.hello, spec, conn.msgpack)
        except Exception as exc:  # the store is optional: live dumplings still flow
            log.warning("replay for eater %s failed: %s", conn.name, exc)
            return
        if not old:
            return
        seen = set(old)
        live = [d for d in _singles(conn.queue, conn.msgpack) if d not in seen]
        conn.queue.clear()
        conn.queued = conn.qbytes = 0
        conn.stamps.clear()
        conn.removed = conn.pushed
        for d in old[-conn.max_queue:] + live:
            conn.push(d)

    def _retire(self, conn: EaterConn) -> None:
        name = conn.name if (conn.name in self.out_by_eater or
                             len(self.out_by_eater) < MAX_LABEL_SETS) else "_other"
        self.out_by_eater[name] = self.out_by_eater.get(name, 0) + conn.sent
        self.dropped_by_eater[name] = self.dropped_by_eater.get(name, 0) + conn.missed_total

    async def _guard_eater(self, conn: EaterConn) -> None:
        """Eaters have nothing to say after the hello: reading keeps pings answered and sees
        a closing handshake; anything else is an eater trying to publish."""
        ws = conn.ws
        try:
            async for _ in ws:
                self._warn(("eater", "publish"), "eater %s tried to send data: closed",
                           conn.name)
                self._refuse("eater", "publish")
                conn.closing = True
                await ws.close(CLOSE_POLICY, "eaters cannot publish")
                return
        except ConnectionClosed:
            pass

    async def _feed_eater(self, conn: EaterConn, reader: asyncio.Task) -> None:
        ws = conn.ws
        q = conn.queue
        stamps = conn.stamps
        text = not conn.msgpack
        batch_max = self.batch_max
        while True:
            await conn.event.wait()
            conn.event.clear()
            if reader.done():
                return
            while q:
                if conn.missed:
                    missed, conn.missed = conn.missed, 0
                    await ws.send(self._notice(conn, missed), text=text)
                    continue  # the queue may have changed while we waited
                frame, n = q.popleft()
                if conn.batch and q and n < batch_max and q[0][1] + n <= batch_max:
                    frame, n, size = _merge(frame, n, q, batch_max, conn.msgpack)
                else:
                    size = len(frame)
                conn.queued -= n
                conn.qbytes -= size
                conn.removed += n
                await ws.send(frame, text=text)
                conn.sent += n
                self.dumplings_out += n
                if stamps and stamps[0][0] < conn.removed:
                    now = time.time()
                    while stamps and stamps[0][0] < conn.removed:
                        self.latency.observe(now - stamps.popleft()[1])

    def _notice(self, conn: EaterConn, missed: int) -> bytes:
        notice = {
            "metadata": {"chef": NOTICE_CHEF, "kitchen": None, "creation_time": time.time(),
                         "driver": "interval"},
            "payload": {"notice": "missed", "missed": missed,
                        "missed_total": conn.missed_total, "queue_size": conn.max_queue},
        }
        return msgpack.packb(notice) if conn.msgpack else orjson.dumps(notice)

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The SystemStatusChef payload (netdumplings 0.5 fields first)."""
        return {
            "total_dumplings_in": self.dumplings_in,
            "total_dumplings_out": self.dumplings_out,
            "server_uptime": time.time() - self.started,
            "dumpling_kitchen_count": len(self.kitchens),
            "dumpling_eater_count": len(self.eaters),
            "dumpling_kitchens": [
                {**k.info, "dumplings": k.dumplings, "invalid": k.invalid}
                for k in self.kitchens.values()],
            "dumpling_eaters": [
                {**e.info, "sent": e.sent, "queue_depth": e.queued,
                 "queue_size": e.max_queue, "dropped": e.missed_total,
                 "policy": e.hello.policy}
                for e in self.eaters.values()],
            "total_dumplings_dropped": self.dumplings_dropped + sum(
                e.missed_total for e in self.eaters.values()),
            "total_dumplings_invalid": self.dumplings_invalid,
            "connections_refused": {f"{r}:{why}": n for (r, why), n in self.refused.items()},
            "hub_version": __version__,
            **({"hub_id": self.backplane.hub_id, "backplane": self.backplane.status(),
                "total_dumplings_remote":
                self.dumplings_remote} if self.backplane is not None else {}),
        }

    def status_dumpling(self) -> dict[str, Any]:
        return {
            "metadata": {"chef": STATUS_CHEF, "kitchen": None, "creation_time": time.time(),
                         "driver": "interval"},
            "payload": self.status(),
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_freq)
            self.publish_status()

    def publish_status(self) -> None:
        obj = self.status_dumpling()
        jb = mb = None
        if self.backplane is not None:
            jb = orjson.dumps(obj)
            self.backplane.publish_status(jb)
        for eater in self.eaters.values():
            if not eater.closing and eater.hello.matches(STATUS_CHEF, None, "interval"):
                if eater.msgpack:
                    mb = mb or msgpack.packb(obj)
                    eater.push(mb)
                else:
                    jb = jb or orjson.dumps(obj)
                    eater.push(jb)

    # -- metrics --------------------------------------------------------------------------

    def collect(self) -> Iterable[Any]:
        """Prometheus metric families (a ``prometheus_client`` custom collector)."""
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        p = "netdumplings_hub_"
        c = CounterMetricFamily(p + "dumplings_in", "Dumplings accepted from kitchens",
                                labels=["kitchen", "chef"])
        for (k, chef), n in self.in_by.items():
            c.add_metric([k, chef], n)
        yield c
        c = CounterMetricFamily(p + "dumplings_rejected", "Dumplings refused (invalid, too "
                                "big, not decodable)", labels=["kitchen", "reason"])
        for (k, why), n in self.rejected_by.items():
            c.add_metric([k, why], n)
        yield c
        out, dropped = dict(self.out_by_eater), dict(self.dropped_by_eater)
        depth: dict[str, int] = {}
        for e in self.eaters.values():
            out[e.name] = out.get(e.name, 0) + e.sent
            dropped[e.name] = dropped.get(e.name, 0) + e.missed_total
            depth[e.name] = depth.get(e.name, 0) + e.queued
        c = CounterMetricFamily(p + "dumplings_out", "Dumplings sent to eaters",
                                labels=["eater"])
        for name, n in out.items():
            c.add_metric([name], n)
        yield c
        c = CounterMetricFamily(p + "dumplings_dropped", "Dumplings an eater missed because "
                                "its queue was full", labels=["eater"])
        for name, n in dropped.items():
            c.add_metric([name], n)
        yield c
        g = GaugeMetricFamily(p + "queue_depth", "Dumplings waiting per eater",
                              labels=["eater"])
        for name, n in depth.items():
            g.add_metric([name], n)
        yield g
        g = GaugeMetricFamily(p + "connections", "Open connections (with a valid hello)",
                              labels=["role"])
        g.add_metric(["kitchen"], len(self.kitchens))
        g.add_metric(["eater"], len(self.eaters))
        yield g
        c = CounterMetricFamily(p + "connections_refused", "Connections closed at the hello "
                                "(auth, limits, bad or missing hello) or for publishing "
                                "eaters", labels=["role", "reason"])
        for (role, why), n in self.refused.items():
            c.add_metric([role, why], n)
        yield c
        h = self.latency
        yield HistogramMetricFamily(p + "relay_latency_seconds", "Kitchen creation_time to "
                                    "hub send (sampled)", buckets=h.buckets(), sum_value=h.sum)
        yield GaugeMetricFamily(p + "uptime_seconds", "Seconds since the hub started",
                                value=time.time() - self.started)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Just enough HTTP/1.1 for Prometheus and health checks: GET, one response."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?")[0] if len(parts) >= 2 else b""
            if path == b"/metrics" and not self._metrics_authorised(head):
                status, ctype, body = b"401 Unauthorized", b"text/plain", \
                    b"/metrics needs Authorization: Bearer <metrics token>\n"
                self._refuse("metrics", "auth")
            elif path == b"/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
                status, ctype, body = b"200 OK", CONTENT_TYPE_LATEST.encode(), \
                    generate_latest(_Registry(self))
            elif path == b"/healthz":
                status, ctype, body = b"200 OK", b"application/json", orjson.dumps(
                    {"status": "ok", "kitchens": len(self.kitchens),
                     "eaters": len(self.eaters), "uptime": time.time() - self.started})
            else:
                status, ctype, body = b"404 Not Found", b"text/plain", b"not found\n"
            extra = b"WWW-Authenticate: Bearer\r\n" if status.startswith(b"401") else b""
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
                         b"\r\nContent-Length: %d\r\n" % len(body) + extra +
                         b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    def _metrics_authorised(self, head: bytes) -> bool:
        if self.metrics_token is None:
            return True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    token.strip(), self.metrics_token.encode())
        return False


def _loopback(address: str | None) -> bool:
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Registry:
    """What ``generate_latest`` needs: ``collect()`` - one hub's metrics, no globals, so
    several hubs in one process (tests) do not mix."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterable[Any]:
        return self.hub.collect()


def _addr(ws: ServerConnection) -> tuple[str, int]:
    ra = ws.remote_address or ("?", 0)
    return ra[0], ra[1]


def _peer(ws: ServerConnection) -> str:
    host, port = _addr(ws)
    return f"{host}:{port}"
