"""The hub: dumplings in from any number of kitchens, out to any number of eaters.

Each dumpling is parsed and validated once when it arrives, and serialised at most once per
encoding that some eater wants; every eater of that encoding gets the same bytes. Every eater
has a bounded queue: a slow eater loses its oldest dumplings (and is told how many) or is
disconnected, by its own choice, and never slows the others or grows the hub.

A kitchen that says ``protocol`` in its hello gets ``{"ack": n}`` messages (n = data messages
received on this connection so far), coalesced so that a fast kitchen costs at most one ack
per event-loop turn. The sender keeps what is not acknowledged and resends it after a
reconnect, which is what makes a hub restart lossless for kitchens; the startup replay
(``replay``) makes it lossless for the eaters that come back.

The parts: ``admission`` (hellos, tokens, limits), ``kitchens`` (taking kitchens' messages
in, acks, floods) and ``intake`` (decoding and validating them), ``queues`` (eater queues
and their shared memory budget), ``eaters`` (feeding and closing eaters), ``frames`` (a
kitchen's messages taken a socket read at a time, a plain eater's written many frames at
once), ``replay`` and ``status`` (status dumplings, metrics, /healthz, /status),
``backplane`` (several hubs over NATS). This module ties them together and fans dumplings
out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..wire import logredact
from .._version import __version__
from .admission import (MAX_HELLO_BYTES, MAX_NAME, NO_DATA_FRAMES, Admission, Quiet,
                        addr, printable)
from .eaters import EaterSide
from .kitchens import KitchenSide
from .frames import KitchenConnection
from .intake import (Batch, InvalidDumpling, KitchenConn, check_dumpling, decode,
                     encode)
from .queues import EaterConn, QueueBudget
from .replay import StartupReplay
from .status import MAX_LABEL_SETS, Histogram, StatusReport, loopback
from ..wire.messages import (CLOSE_EATER_FULL, DEFAULT_HOST, IN_PORT,
                             OUT_PORT, KitchenHello, hello_summary)

__all__ = ["Hub", "InvalidDumpling", "check_dumpling", "MAX_HELLO_BYTES", "MAX_NAME",
           "MAX_LABEL_SETS", "EaterConn"]

log = logging.getLogger("netdumplings.hub")


class Hub(Admission, KitchenSide, EaterSide, StatusReport):
    """``nd-hub``'s engine. ``await hub.start()`` binds the ports; ``await hub.stop()``.

    Memory: eater queues together stay within ``max_memory`` bytes (``hub.queues``), the
    startup replay within ``startup_buffer`` (``hub.replay``), anonymous connections within
    ``max_unauthenticated`` hellos of 64 KB per port (``hub.admission``); an eater that
    takes nothing for ``write_timeout`` seconds is closed (4107).
    """

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
                 startup_grace: float = 30.0, startup_buffer: int = 32 << 20,
                 max_memory: int = 256 << 20, write_timeout: float | None = 30.0,
                 max_unauthenticated: int = 128, backplane: Any = None) -> None:
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
        self.replay = StartupReplay(startup_grace, startup_buffer)
        self.budget = QueueBudget(max_memory, self._full)
        self.write_timeout = write_timeout
        self.max_unauthenticated = max_unauthenticated
        #: this process's hub: eaters resuming from another instance (a restart) are told
        #: what they missed (welcome "instance", eater hello "resume")
        self.instance = secrets.token_hex(8)
        self.backplane = backplane   # netdumplings.hub.backplane.NatsBackplane or None
        self.dumplings_remote = 0
        self.kitchens: dict[ServerConnection, KitchenConn] = {}
        self.eaters: dict[ServerConnection, EaterConn] = {}
        self.open = {"kitchen": 0, "eater": 0}   # connections, hello or not
        self.admitted = {"kitchen": 0, "eater": 0}   # connections past hello and token
        # Connections still to say hello, oldest first: at most max_unauthenticated (or the
        # role's limit), the oldest closed to make room, so idle unauthenticated
        # connections cannot lock out the real clients (which say hello at once).
        self._pending: dict[str, dict[ServerConnection, None]] = {"kitchen": {}, "eater": {}}
        self._warn_q = Quiet(10, 60.0)
        self._info_q = Quiet(50, 10.0)
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
        self.latency = Histogram()
        self.started = time.time()
        self._servers: list[Any] = []
        self._tasks: list[asyncio.Task] = []
        self._metrics_server: asyncio.AbstractServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        logging.getLogger("websockets.server").addFilter(NO_DATA_FRAMES)
        logredact.install("websockets.server")
        if self.replay.open:
            asyncio.get_running_loop().call_later(self.startup_grace, self.replay.close)
        # Nothing bigger than a hello is read before a hello is accepted: a kitchen's limit
        # is raised to max_message_size once it is in (hub.admission); eaters send nothing
        # but their hello, so theirs stays.
        common = dict(max_size=MAX_HELLO_BYTES, compression=None, ssl=self.ssl,
                      ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                      server_header=f"netdumplings/{__version__}")
        self._servers.append(await serve(self._kitchen, self.address, self.in_port,
                                         create_connection=KitchenConnection, **common))
        self._servers.append(await serve(self._eater, self.address, self.out_port, **common))
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
                    and not loopback(self.metrics_address)):
                log.warning("metrics on %s:%d need no token, unlike kitchens and eaters: "
                            "anyone who reaches them sees kitchen, eater and chef names; "
                            "set --metrics-token-file (or $ND_METRICS_TOKEN) or "
                            "--metrics-address 127.0.0.1", self.metrics_address,
                            self.metrics_port)
        if self.status_freq:
            self._tasks.append(asyncio.create_task(self._status_loop()))
        if self.write_timeout:
            self._tasks.append(asyncio.create_task(self._watchdog()))
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
        host, port = addr(ws)
        conn = KitchenConn(ws, hello, {"info_from_kitchen": hello_summary(
                                           raw_hello, KitchenHello.model_fields),
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
            # Messages come in the groups they were read in, from the read callback
            # (hub.frames): no recv() round trip per message.
            assert isinstance(ws, KitchenConnection)
            ws.take_messages(lambda messages: self._take(conn, messages))
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            if acker is not None:
                acker.cancel()
            self.kitchens.pop(ws, None)
            self._info(("kitchen", "disconnected"), "kitchen %s disconnected (%d dumplings, "
                       "%d invalid)", conn.name, conn.dumplings, conn.invalid)

    def _publish(self, obj: Any, jb: bytes | None, mb: bytes | None, chef: str,
                 kitchen: str | None, driver: str, ct: float | None) -> None:
        """Queue one dumpling to every eater that wants it; ``obj`` (decoded) or one of the
        encodings must be given, the others are made at most once, when first needed."""
        unencodable = False
        for eater in self.eaters.values():
            if eater.closing or not eater.matches(chef, kitchen, driver):
                continue
            if eater.msgpack:
                if mb is None:
                    if obj is None:
                        obj = orjson.loads(jb)  # type: ignore[arg-type]
                    mb = None if unencodable else encode(obj, True)
                    if mb is None:
                        unencodable = self._unencodable(eater, chef, kitchen, unencodable)
                        continue
                data = mb
            else:
                if jb is None:
                    if obj is None:
                        obj = decode(mb)  # type: ignore[arg-type]
                    jb = None if unencodable else encode(obj, False)
                    if jb is None:
                        unencodable = self._unencodable(eater, chef, kitchen, unencodable)
                        continue
                data = jb
            if not eater.push(data, ct):
                self._full(eater)

    def _unencodable(self, eater: EaterConn, chef: str | None, kitchen: str | None,
                     logged: bool, n: int = 1) -> bool:
        """``eater`` cannot get ``n`` dumplings in its encoding (``hub.intake.encode``): they
        are counted as missed, so the eater gets a notice, and the kitchen is not held up."""
        eater.drop(n)
        if not logged:
            self._warn(("unencodable",), "%d dumpling(s)%s cannot be re-encoded for %s "
                       "eaters (binary data, non-string keys or too deep): they miss it", n,
                       "" if chef is None else f" from kitchen {printable(kitchen)} (chef "
                       f"{printable(chef)})", "msgpack" if eater.msgpack else "JSON")
        return True

    def _full(self, eater: EaterConn) -> None:
        if eater.closing:
            return
        eater.closing = True
        eater.release()
        self._close_later(eater.ws, CLOSE_EATER_FULL)
        self._warn(("eater", "full"), "eater %s disconnected: queue full (%d)", eater.name,
                   eater.max_queue)

    def _publish_batch(self, batch: Batch) -> None:
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
                matches = eater.matches
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
