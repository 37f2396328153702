"""The hub: dumplings in from any number of kitchens, out to any number of eaters.

Each dumpling is parsed and checked once when it arrives, and serialised once; eaters get
the same bytes. Every eater has a bounded queue: a slow eater loses its oldest dumplings (and
is told how many) or is disconnected, by its own choice, and never slows the others or grows
the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import __version__
from .dumpling import encode
from .wire import (CLOSE_BAD_HELLO, CLOSE_EATER_FULL, CLOSE_HELLO_TIMEOUT, CLOSE_REASONS,
                   DEFAULT_HOST, IN_PORT, NOTICE_CHEF, OUT_PORT, STATUS_CHEF, EaterHello,
                   KitchenHello, Welcome, hello_summary)

log = logging.getLogger("netdumplings.hub")

_DRIVERS = ("packet", "interval")


class InvalidDumpling(ValueError):
    pass


def check_dumpling(obj: Any) -> tuple[str, str | None, str]:
    """Cheap structural validation of a decoded dumpling -> (chef, kitchen, driver).

    Mirrors ``dumpling.Dumpling``'s schema for the fields the hub relies on; done by hand
    because it runs for every dumpling at 100k+/s.
    """
    if not isinstance(obj, dict):
        raise InvalidDumpling("dumpling is not a JSON object")
    md = obj.get("metadata")
    if not isinstance(md, dict):
        raise InvalidDumpling("missing metadata object")
    if "payload" not in obj:
        raise InvalidDumpling("missing payload")
    chef = md.get("chef")
    if not isinstance(chef, str):
        raise InvalidDumpling("metadata.chef must be a string")
    kitchen = md.get("kitchen")
    if kitchen is not None and not isinstance(kitchen, str):
        raise InvalidDumpling("metadata.kitchen must be a string or null")
    driver = md.get("driver")
    if driver not in _DRIVERS:
        raise InvalidDumpling("metadata.driver must be 'packet' or 'interval'")
    ct = md.get("creation_time")
    if not isinstance(ct, (int, float)) or isinstance(ct, bool):
        raise InvalidDumpling("metadata.creation_time must be a number")
    return chef, kitchen, driver


class EaterConn:
    __slots__ = ("ws", "hello", "queue", "max_queue", "event", "missed", "missed_total",
                 "sent", "info", "closing", "batch")

    def __init__(self, ws: ServerConnection, hello: EaterHello, max_queue: int,
                 info: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.max_queue = hello.queue_size and min(hello.queue_size, max_queue) or max_queue
        self.queue: deque[bytes] = deque()
        self.event = asyncio.Event()
        self.missed = 0          # dropped since the last notice
        self.missed_total = 0
        self.sent = 0
        self.info = info
        self.closing = False
        self.batch = hello.batch

    def push(self, data: bytes) -> bool:
        """Queue one encoded dumpling; False if the eater must be disconnected."""
        q = self.queue
        if len(q) >= self.max_queue:
            if self.hello.policy == "disconnect":
                return False
            q.popleft()
            self.missed += 1
            self.missed_total += 1
        q.append(data)
        self.event.set()
        return True


class KitchenConn:
    __slots__ = ("ws", "hello", "info", "dumplings", "invalid", "batch")

    def __init__(self, ws: ServerConnection, hello: KitchenHello, info: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.info = info
        self.dumplings = 0
        self.invalid = 0
        self.batch = False


class Hub:
    """``nd-hub``'s engine. ``await hub.start()`` binds both ports; ``await hub.stop()``."""

    def __init__(self, address: str = DEFAULT_HOST, in_port: int = IN_PORT,
                 out_port: int = OUT_PORT, status_freq: float = 5.0, *,
                 max_queue: int = 10_000, max_message_size: int = 16 << 20,
                 hello_timeout: float = 10.0, batch_max: int = 500) -> None:
        self.address = address
        self.in_port = in_port
        self.out_port = out_port
        self.status_freq = status_freq
        self.max_queue = max_queue
        self.max_message_size = max_message_size
        self.hello_timeout = hello_timeout
        self.batch_max = batch_max
        self.kitchens: dict[ServerConnection, KitchenConn] = {}
        self.eaters: dict[ServerConnection, EaterConn] = {}
        self.dumplings_in = 0
        self.dumplings_out = 0
        self.dumplings_dropped = 0
        self.dumplings_invalid = 0
        self.started = time.time()
        self._servers: list[Any] = []
        self._status_task: asyncio.Task | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        common = dict(max_size=self.max_message_size, compression=None,
                      ping_interval=20, ping_timeout=20)
        self._servers.append(await serve(self._kitchen, self.address, self.in_port, **common))
        self._servers.append(await serve(self._eater, self.address, self.out_port, **common))
        if self.in_port == 0:
            self.in_port = self._servers[0].sockets[0].getsockname()[1]
        if self.out_port == 0:
            self.out_port = self._servers[1].sockets[0].getsockname()[1]
        if self.status_freq:
            self._status_task = asyncio.create_task(self._status_loop())
        log.info("hub listening: dumplings in ws://%s:%d, out ws://%s:%d", self.address,
                 self.in_port, self.address, self.out_port)

    async def stop(self) -> None:
        if self._status_task:
            self._status_task.cancel()
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

    async def _hello(self, ws: ServerConnection) -> dict[str, Any] | None:
        try:
            raw = await asyncio.wait_for(ws.recv(), self.hello_timeout)
        except asyncio.TimeoutError:
            await ws.close(CLOSE_HELLO_TIMEOUT, CLOSE_REASONS[CLOSE_HELLO_TIMEOUT])
            return None
        try:
            hello = orjson.loads(raw)
            if not isinstance(hello, dict):
                raise ValueError("hello is not a JSON object")
        except ValueError as exc:
            log.warning("bad hello from %s: %s", _peer(ws), exc)
            await ws.close(CLOSE_BAD_HELLO, CLOSE_REASONS[CLOSE_BAD_HELLO])
            return None
        return hello

    def _welcome(self, role: str, batch: bool, encoding: str) -> str:
        return Welcome(hub_version=__version__, role=role, batch=batch, encoding=encoding,
                       max_message_size=self.max_message_size).model_dump_json()

    # -- kitchens -------------------------------------------------------------------------

    async def _kitchen(self, ws: ServerConnection) -> None:
        raw_hello = await self._hello(ws)
        if raw_hello is None:
            return
        try:
            hello = KitchenHello.model_validate(raw_hello)
        except Exception as exc:
            log.warning("bad kitchen hello from %s: %s", _peer(ws), exc)
            await ws.close(CLOSE_BAD_HELLO, CLOSE_REASONS[CLOSE_BAD_HELLO])
            return
        host, port = _addr(ws)
        conn = KitchenConn(ws, hello, {"info_from_kitchen": hello_summary(raw_hello),
                                       "info_from_hub": {"host": host, "port": port}})
        if hello.protocol:
            conn.batch = hello.batch
            await ws.send(self._welcome("kitchen", conn.batch, "json"))
        self.kitchens[ws] = conn
        log.info("kitchen %s connected from %s:%s", hello.kitchen_name, host, port)
        try:
            async for message in ws:
                self._receive(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self.kitchens.pop(ws, None)
            log.info("kitchen %s disconnected (%d dumplings)", hello.kitchen_name,
                     conn.dumplings)

    def _receive(self, conn: KitchenConn, message: str | bytes) -> None:
        try:
            obj = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            self._invalid(conn, f"not JSON: {exc}")
            return
        if isinstance(obj, list) and conn.batch:
            for item in obj:
                try:
                    chef, kitchen, driver = check_dumpling(item)
                except InvalidDumpling as exc:
                    self._invalid(conn, str(exc))
                    continue
                self._publish(orjson.dumps(item), chef, kitchen, driver)
                conn.dumplings += 1
            return
        try:
            chef, kitchen, driver = check_dumpling(obj)
        except InvalidDumpling as exc:
            self._invalid(conn, str(exc))
            return
        conn.dumplings += 1
        self._publish(message.encode() if isinstance(message, str) else message,
                      chef, kitchen, driver)

    def _invalid(self, conn: KitchenConn, why: str) -> None:
        conn.invalid += 1
        self.dumplings_invalid += 1
        if conn.invalid <= 5:
            log.warning("invalid dumpling from kitchen %s: %s", conn.hello.kitchen_name, why)

    def _publish(self, data: bytes, chef: str, kitchen: str | None, driver: str) -> None:
        self.dumplings_in += 1
        for eater in self.eaters.values():
            if eater.closing or not eater.hello.matches(chef, kitchen, driver):
                continue
            if not eater.push(data):
                eater.closing = True
                asyncio.ensure_future(eater.ws.close(CLOSE_EATER_FULL,
                                                     CLOSE_REASONS[CLOSE_EATER_FULL]))
                log.warning("eater %s disconnected: queue full (%d)", eater.hello.eater_name,
                            eater.max_queue)

    # -- eaters ---------------------------------------------------------------------------

    async def _eater(self, ws: ServerConnection) -> None:
        raw_hello = await self._hello(ws)
        if raw_hello is None:
            return
        try:
            hello = EaterHello.model_validate(raw_hello)
        except Exception as exc:
            log.warning("bad eater hello from %s: %s", _peer(ws), exc)
            await ws.close(CLOSE_BAD_HELLO, CLOSE_REASONS[CLOSE_BAD_HELLO])
            return
        host, port = _addr(ws)
        conn = EaterConn(ws, hello, self.max_queue,
                         {"info_from_eater": hello_summary(raw_hello),
                          "info_from_hub": {"host": host, "port": port}})
        if not hello.protocol:
            conn.batch = False
        else:
            await ws.send(self._welcome("eater", conn.batch, "json"))
        self.eaters[ws] = conn
        log.info("eater %s connected from %s:%s", hello.eater_name, host, port)
        reader = asyncio.create_task(self._drain_incoming(ws))
        reader.add_done_callback(lambda _: conn.event.set())  # wake the writer to notice
        try:
            await self._feed_eater(conn, reader)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            self.eaters.pop(ws, None)
            self.dumplings_dropped += conn.missed_total
            log.info("eater %s disconnected (%d sent, %d missed)", hello.eater_name, conn.sent,
                     conn.missed_total)

    @staticmethod
    async def _drain_incoming(ws: ServerConnection) -> None:
        """Eaters have nothing to say after the hello; read (and ignore) so pings work and
        a closing handshake is seen."""
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    async def _feed_eater(self, conn: EaterConn, reader: asyncio.Task) -> None:
        ws = conn.ws
        q = conn.queue
        while True:
            await conn.event.wait()
            conn.event.clear()
            if reader.done():
                return
            while q:
                if conn.missed:
                    missed, conn.missed = conn.missed, 0
                    await ws.send(self._notice(conn, missed))
                if conn.batch and len(q) > 1:
                    n = min(len(q), self.batch_max)
                    items = [q.popleft() for _ in range(n)]
                    await ws.send(b"[" + b",".join(items) + b"]", text=True)
                    conn.sent += n
                    self.dumplings_out += n
                else:
                    await ws.send(q.popleft(), text=True)
                    conn.sent += 1
                    self.dumplings_out += 1

    def _notice(self, conn: EaterConn, missed: int) -> str:
        return encode({
            "metadata": {"chef": NOTICE_CHEF, "kitchen": None, "creation_time": time.time(),
                         "driver": "interval"},
            "payload": {"notice": "missed", "missed": missed,
                        "missed_total": conn.missed_total, "queue_size": conn.max_queue},
        }).decode()

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
                {**e.info, "sent": e.sent, "queue_depth": len(e.queue),
                 "queue_size": e.max_queue, "dropped": e.missed_total}
                for e in self.eaters.values()],
            "total_dumplings_dropped": self.dumplings_dropped + sum(
                e.missed_total for e in self.eaters.values()),
            "total_dumplings_invalid": self.dumplings_invalid,
            "hub_version": __version__,
        }

    def status_dumpling(self) -> bytes:
        return encode({
            "metadata": {"chef": STATUS_CHEF, "kitchen": None, "creation_time": time.time(),
                         "driver": "interval"},
            "payload": self.status(),
        })

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_freq)
            self.publish_status()

    def publish_status(self) -> None:
        data = self.status_dumpling()
        for eater in self.eaters.values():
            if not eater.closing and eater.hello.matches(STATUS_CHEF, None, "interval"):
                eater.push(data)


def _addr(ws: ServerConnection) -> tuple[str, int]:
    ra = ws.remote_address or ("?", 0)
    return ra[0], ra[1]


def _peer(ws: ServerConnection) -> str:
    host, port = _addr(ws)
    return f"{host}:{port}"
