"""Eaters: programs that receive dumplings from the hub.

``DumplingEater`` is netdumplings 0.5's helper (name, hub, chef_filter, async on_connect /
on_dumpling / on_connection_lost, ``run(dumpling_count)``) with the hub's extensions: the
chef filter is sent to the hub as a subscription so unwanted dumplings never cross the
network, batches are unpacked, and with ``reconnect=True`` it comes back after a hub restart.
Use it with callables or as a subclass overriding the ``on_*`` methods.

Kitchens resend what the hub had not acknowledged when it went away, so the same dumpling can
arrive twice around a hub restart; the eater drops exact repeats of (kitchen, host, sequence,
creation_time) seen among the last ``dedupe_window`` dumplings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from typing import Any, Awaitable, Callable

import msgpack
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..wire import logredact
from ..wire.dumpling05 import DumplingDict
from ..wire.messages import (CLOSE_BAD_HELLO, CLOSE_POLICY, CLOSE_REASONS, NOTICE_CHEF, OUT_PORT,
                             PROTOCOL, parse_hub_address, ws_uri)

log = logging.getLogger("netdumplings.eater")

Handler = Callable[..., Awaitable[Any]]


class HubUnavailable(ConnectionError):
    """The hub could not be reached (and ``reconnect`` is off)."""


class HubRefused(HubUnavailable):
    """The hub refused us (wrong token, invalid hello): retrying would not help."""


class DumplingEater:
    """Connects to a hub's out-port and hands each dumpling (a dict) to ``on_dumpling``."""

    def __init__(self, name: str = "nameless_eater", hub: str = f"127.0.0.1:{OUT_PORT}", *,
                 chef_filter: list[str] | None = None,
                 kitchen_filter: list[str] | None = None,
                 driver_filter: list[str] | None = None,
                 on_connect: Handler | None = None, on_dumpling: Handler | None = None,
                 on_connection_lost: Handler | None = None, reconnect: bool = False,
                 token: str | None = None, cafile: str | None = None,
                 policy: str = "drop-oldest", queue_size: int | None = None,
                 backoff_max: float = 10.0, encoding: str = "json",
                 dedupe_window: int = 100_000) -> None:
        self.name = name
        self.hub = hub
        host, port, tls = parse_hub_address(hub, OUT_PORT)
        self.hub_ws = ws_uri(host, port, tls)
        self.chef_filter = chef_filter
        self.kitchen_filter = kitchen_filter
        self.driver_filter = driver_filter
        self.reconnect = reconnect
        self.token = token
        self.policy = policy
        self.queue_size = queue_size
        self.backoff_max = backoff_max
        self.encoding = encoding
        self.dedupe_window = dedupe_window
        self.duplicates = 0
        self._seen: set[tuple] = set()
        self._seen_order: deque[tuple] = deque()
        self.ssl = ssl.create_default_context(cafile=cafile) if tls else None
        if on_connect is not None:
            self.on_connect = on_connect  # type: ignore[method-assign]
        if on_dumpling is not None:
            self.on_dumpling = on_dumpling  # type: ignore[method-assign]
        if on_connection_lost is not None:
            self.on_connection_lost = on_connection_lost  # type: ignore[method-assign]
        self.received = 0
        self.missed = 0
        self.websocket: Any = None
        #: the hub instance of our last welcome: sent back as "resume" when reconnecting,
        #: so a restarted hub replays what it got meanwhile or says how many were missed
        self.hub_instance: str | None = None
        self._stop = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, hub={self.hub!r})"

    # -- handlers (override or pass callables) ---------------------------------------------

    async def on_connect(self, hub_uri: str, websocket: Any) -> None:
        pass

    async def on_dumpling(self, dumpling: dict[str, Any]) -> None:
        """Each dumpling, a dict (``dumpling["payload"]``) that also answers netdumplings
        0.5's attributes (``dumpling.payload``, ``.chef_name``, ``.driver``)."""

    async def on_connection_lost(self, exc: BaseException) -> None:
        pass

    async def on_missed(self, notice: dict[str, Any]) -> None:
        """The hub dropped dumplings meant for this eater (its queue was full, or - with
        ``notice["reason"] == "restart"`` - they reached a restarted hub while this eater
        was away and could no longer be replayed): ``notice`` has ``missed`` (since the
        last notice) and ``missed_total``. Called whatever the filters, so that loss is
        never silent; ``self.missed`` keeps the sum."""
        if notice.get("reason") == "restart":
            log.warning("hub restarted: %s dumplings for eater %r arrived while it was away "
                        "and could not be replayed (%s missed in all)", notice.get("missed"),
                        self.name, notice.get("missed_total"))
            return
        log.warning("hub dropped %s dumplings for eater %r (its queue was full; %s in all)",
                    notice.get("missed"), self.name, notice.get("missed_total"))

    # -- running ----------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        hello: dict[str, Any] = {"eater_name": self.name, "protocol": PROTOCOL, "batch": True,
                                 "policy": self.policy}
        if self.chef_filter is not None:
            hello["chefs"] = list(self.chef_filter)
        if self.kitchen_filter is not None:
            hello["kitchens"] = list(self.kitchen_filter)
        if self.driver_filter is not None:
            hello["drivers"] = list(self.driver_filter)
        if self.token is not None:
            hello["token"] = self.token
        if self.queue_size is not None:
            hello["queue_size"] = self.queue_size
        if self.encoding != "json":
            hello["encoding"] = self.encoding
        if self.hub_instance is not None:
            hello["resume"] = self.hub_instance
        return hello

    def stop(self) -> None:
        """Ask a running eater to return from ``run``/``eat`` after the current dumpling.

        Safe to call from the eater's own handlers or from another thread."""
        self._stop = True
        ws, loop = self.websocket, self._loop
        if ws is None or loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(ws.close())
        else:
            asyncio.run_coroutine_threadsafe(ws.close(), loop)

    async def eat(self, dumpling_count: int | None = None) -> None:
        """Receive dumplings until ``dumpling_count`` have been handled (None: forever)."""
        self._loop = asyncio.get_running_loop()
        logredact.install("websockets.client")
        delay = 0.2
        while not self._stop:
            try:
                async with connect(self.hub_ws, ssl=self.ssl, max_size=None,
                                   compression=None, open_timeout=5) as ws:
                    self.websocket = ws
                    delay = 0.2
                    await ws.send(orjson.dumps(self.hello()).decode())
                    await self.on_connect(self.hub_ws, ws)
                    if await self._consume(ws, dumpling_count):
                        return
            except (OSError, InvalidHandshake, InvalidURI, asyncio.TimeoutError) as exc:
                if not self.reconnect:
                    raise HubUnavailable(f"cannot reach the hub at {self.hub_ws}: "
                                         f"{exc or type(exc).__name__}") from exc
                await self.on_connection_lost(exc)
            except ConnectionClosed as exc:
                await self.on_connection_lost(exc)
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code in (CLOSE_POLICY, CLOSE_BAD_HELLO):
                    raise HubRefused(f"the hub at {self.hub_ws} refused this eater: "
                                     f"{exc.rcvd.reason or CLOSE_REASONS[code]} "
                                     f"(close code {code})") from exc
                if not self.reconnect or self._stop:
                    return
                if code in CLOSE_REASONS and code != 1001:
                    log.warning("hub closed the connection: %s (%s)", exc.rcvd.reason, code)
            finally:
                self.websocket = None
            if self._stop:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.backoff_max)

    async def _consume(self, ws: Any, dumpling_count: int | None) -> bool:
        """True when done (count reached or stopped)."""
        async for message in ws:
            if isinstance(message, bytes):
                obj = msgpack.unpackb(message, raw=False, strict_map_key=False)
            else:
                obj = orjson.loads(message)
            items = obj if isinstance(obj, list) else (obj,)
            for item in items:
                if not isinstance(item, dict):
                    continue
                md = item.get("metadata")
                if not isinstance(md, dict):
                    if item.get("welcome") and isinstance(item.get("instance"), str):
                        self.hub_instance = item["instance"][:64]
                    continue  # the hub's welcome, or not a dumpling
                chef = md.get("chef")
                if chef == NOTICE_CHEF:
                    payload = item.get("payload")
                    if isinstance(payload, dict) and payload.get("notice") == "missed" \
                            and isinstance(payload.get("missed"), int):
                        self.missed += payload["missed"]
                        await self.on_missed(payload)
                if self.chef_filter is not None:  # a 0.5 hub does not filter for us
                    if chef not in self.chef_filter:
                        continue
                if md.get("sequence") is not None and self._duplicate(md):
                    continue
                self.received += 1
                # a dict that also reads as a netdumplings 0.5 Dumpling (dumpling.payload)
                await self.on_dumpling(DumplingDict(item))
                if dumpling_count is not None and self.received >= dumpling_count:
                    await ws.close()
                    return True
                if self._stop:
                    return True
        if self._stop:
            return True
        # The hub closed cleanly (``async for`` ended without raising): same handling as
        # an abrupt close. websockets requires the close ordering once both frames exist.
        proto = ws.protocol
        raise ConnectionClosed(proto.close_rcvd, proto.close_sent, proto.close_rcvd_then_sent)

    def _duplicate(self, md: dict[str, Any]) -> bool:
        key = (md.get("kitchen"), md.get("host"), md["sequence"], md.get("creation_time"))
        seen = self._seen
        try:
            if key not in seen:
                pass
        except TypeError:  # unhashable values from a hub that does not validate
            return False
        if key in seen:
            self.duplicates += 1
            return True
        seen.add(key)
        order = self._seen_order
        order.append(key)
        if len(order) > self.dedupe_window:
            seen.discard(order.popleft())
        return False

    def run(self, dumpling_count: int | None = None) -> None:
        """Blocking: ``asyncio.run(self.eat(dumpling_count))``; Ctrl-C returns quietly."""
        try:
            asyncio.run(self.eat(dumpling_count))
        except KeyboardInterrupt:
            pass
