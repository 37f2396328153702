"""The kitchen's outbox and the link to the hub.

Capture must never wait for the network: the kitchen thread puts encoded dumplings into a
bounded outbox (size in bytes) and returns at once. A background thread runs an asyncio
loop that connects to the hub (retrying with exponential backoff and jitter), says hello,
and drains the outbox - in batches when the hub accepts them. When the hub is away,
dumplings wait in the outbox; when the outbox is full the oldest are dropped and counted,
and the count is logged and sent as a notice dumpling once the hub is back. Sequence numbers
in the dumplings let eaters see exactly what was lost.

A hub that acknowledges (its welcome says ``"ack": true``) tells us how many messages it has
processed; until then what we sent stays in the outbox, and after a reconnect it is sent
again. A hub killed mid-stream therefore loses nothing the outbox could hold; the price is
possible duplicates, which eaters drop by (kitchen, host, sequence, creation_time).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
import time
from collections import deque
from typing import Any, Callable

import msgpack
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from . import logredact
from .messages import CLOSE_BAD_HELLO, CLOSE_POLICY, CLOSE_REASONS, PROTOCOL, msgpack_array, ws_uri

log = logging.getLogger("netdumplings.sender")


class Outbox:
    """Thread-safe bounded FIFO of encoded dumplings, bounded by total bytes.

    Items move from *pending* to *in flight* when sent, and leave when the hub acknowledges
    them (or at once with a hub that does not ack). After a reconnect everything in flight
    goes back to the front of pending, in order, to be sent again. Both count towards the
    byte bound. Overflow drops the oldest *pending* item: in-flight ones have probably
    reached the hub, so dropping them would report losses that did not happen (the sender
    keeps at most half the outbox in flight; only if that alone overflows is the oldest
    in-flight item dropped)."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._q: deque[bytes] = deque()         # pending
        self._inflight: deque[bytes] = deque()  # sent, not acknowledged
        self._bytes = 0
        self.inflight_bytes = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # signalled when bytes leave
        self.dropped = 0          # since the last report
        self.dropped_total = 0
        self.put_total = 0
        self.resent_total = 0
        self._inflight_dropped = 0  # dropped from in flight, still to be matched by an ack

    def put(self, data: bytes, wait: Callable[[], bool] | None = None) -> None:
        """Queue ``data``. When full, drop the oldest - or, with ``wait``, block until the
        hub has taken enough for ``data`` to fit, for as long as ``wait()`` says so: a
        capture file can be read more slowly, a live interface cannot."""
        with self._lock:
            q = self._q
            if wait is not None:
                while self._bytes + len(data) > self.max_bytes and self._bytes and wait():
                    self._room.wait(0.1)
            q.append(data)
            self._bytes += len(data)
            self.put_total += 1
            while self._bytes > self.max_bytes and len(q) + len(self._inflight) > 1:
                if len(q) > 1 or not self._inflight:
                    old = q.popleft()
                else:
                    old = self._inflight.popleft()
                    self.inflight_bytes -= len(old)
                    self._inflight_dropped += 1
                self._bytes -= len(old)
                self.dropped += 1
                self.dropped_total += 1

    def peek(self, n: int) -> list[bytes]:
        with self._lock:
            q = self._q
            return [q[i] for i in range(min(n, len(q)))]

    def pop(self, items: list[bytes]) -> None:
        """Remove ``items`` (the head, as peeked) unless they were dropped meanwhile."""
        with self._lock:
            q = self._q
            for item in items:
                if q and q[0] is item:
                    q.popleft()
                    self._bytes -= len(item)
            self._room.notify_all()

    def take(self, n: int, window: int | None = None) -> list[bytes]:
        """Move up to ``n`` pending items to in flight, atomically, and return them: once
        taken, an item can only be dropped as in flight, never as pending while it is on
        its way. With ``window``, stop before in-flight bytes would exceed it (but take at
        least one item)."""
        with self._lock:
            q, fl = self._q, self._inflight
            items: list[bytes] = []
            size = self.inflight_bytes
            while q and len(items) < n:
                if window is not None and items and size + len(q[0]) > window:
                    break
                item = q.popleft()
                size += len(item)
                items.append(item)
            fl.extend(items)
            self.inflight_bytes = size
            return items

    def acked(self, n: int) -> None:
        """The hub has the oldest ``n`` in-flight items (fewer if some were dropped)."""
        with self._lock:
            gone = min(n, self._inflight_dropped)
            self._inflight_dropped -= gone
            n -= gone
            fl = self._inflight
            for _ in range(min(n, len(fl))):
                size = len(fl.popleft())
                self._bytes -= size
                self.inflight_bytes -= size
            self._room.notify_all()

    def requeue(self) -> int:
        """Connection lost: in-flight items go back to the front, to be resent."""
        with self._lock:
            self._inflight_dropped = 0
            n = len(self._inflight)
            if n:
                self._q.extendleft(reversed(self._inflight))
                self._inflight.clear()
                self.inflight_bytes = 0
                self.resent_total += n
            return n

    def take_dropped(self) -> int:
        with self._lock:
            n, self.dropped = self.dropped, 0
            return n

    def __len__(self) -> int:
        return len(self._q) + len(self._inflight)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def bytes(self) -> int:
        return self._bytes


class HubSender:
    """Sends a kitchen's dumplings to the hub from a background thread."""

    def __init__(self, host: str, port: int, hello: dict[str, Any], *, tls: bool = False,
                 cafile: str | None = None, outbox_bytes: int = 64 << 20,
                 batch_max: int = 500, backoff_max: float = 10.0,
                 welcome_timeout: float = 2.0, encoding: str = "json",
                 linger: float = 0.001) -> None:
        self.uri = ws_uri(host, port, tls)
        self.hello = dict(hello)
        self.hello.setdefault("protocol", PROTOCOL)
        self.hello.setdefault("batch", True)
        if encoding != "json":
            self.hello["encoding"] = encoding
        self.outbox = Outbox(outbox_bytes)
        self.batch_max = batch_max
        #: a batch link sends at most one message per ``linger`` seconds while dumplings
        #: keep coming (the first after a pause goes at once): at a few thousand a second
        #: that makes a message of several dumplings instead of one each, and the hub's
        #: work (a send per eater per message) falls with it, for at most ``linger`` latency
        self.linger = linger
        self.backoff_max = backoff_max
        self.welcome_timeout = welcome_timeout
        self.ssl: ssl.SSLContext | None = None
        if tls:
            self.ssl = ssl.create_default_context(cafile=cafile)
        self.connected = threading.Event()
        self.sent = 0
        self.messages = 0         # WebSocket messages those dumplings took
        self.acked = 0
        self.connects = 0
        self._msg_sizes: deque[int] = deque()  # items per unacknowledged message, in order
        self._acked_msgs = 0
        self.notice_hook = None  # callable(dropped) -> bytes | None, set by the kitchen
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._stopping = False
        #: why the hub refused this kitchen for good (wrong token, invalid hello): the
        #: sender has stopped, since retrying cannot help; None while all is well
        self.refused: str | None = None
        self._thread = threading.Thread(target=self._run, name="hub-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, data: bytes, wait: Callable[[], bool] | None = None) -> None:
        """Hand a dumpling to the sender thread; ``wait`` as for ``Outbox.put``."""
        self.outbox.put(data, wait)
        loop = self._loop
        if loop is not None and not self._wake_pending:
            self._wake_pending = True
            try:
                loop.call_soon_threadsafe(self._set_wake)
            except RuntimeError:  # loop closed
                pass

    def _set_wake(self) -> None:
        self._wake_pending = False
        if self._wake is not None:
            self._wake.set()

    def close(self, timeout: float = 10.0, join: float = 3.0) -> bool:
        """Flush what is in the outbox (up to ``timeout`` s) and stop. True if all sent.

        ``join``: how long to wait for the sender thread to end (it may be in the middle
        of a connection attempt; it is a daemon thread, so exiting without it is safe)."""
        deadline = time.monotonic() + timeout
        while len(self.outbox) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.02)
        flushed = len(self.outbox) == 0
        self._stopping = True
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._set_wake)
            except RuntimeError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout=join)
        return flushed

    # -- the sender thread --------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        logredact.install("websockets.client")
        delay = 0.2
        warned = False
        while not self._stopping:
            try:
                async with connect(self.uri, ssl=self.ssl, max_size=None, compression=None,
                                   open_timeout=5, ping_interval=20) as ws:
                    self.connects += 1
                    batch, ack, binary = await self._handshake(ws)
                    # Only a hello the hub took resets the backoff: one refused (1008,
                    # 4105) right after connecting must not make us retry at once.
                    delay = 0.2
                    if warned:
                        log.warning("reconnected to the hub at %s", self.uri)
                    warned = False
                    self.connected.set()
                    await self._pump(ws, batch, ack, binary)
            except (OSError, ConnectionClosed, InvalidHandshake, asyncio.TimeoutError,
                    InvalidURI) as exc:
                self.connected.clear()
                if self._stopping:
                    break
                if self._refused_for_good(exc):
                    break
                if not warned:
                    log.warning("hub at %s not reachable (%s); retrying with backoff, "
                                "holding dumplings in the outbox (%d MB)%s", self.uri,
                                _why(exc), self.outbox.max_bytes >> 20, _where(exc))
                    warned = True
                await self._sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max)

    def _refused_for_good(self, exc: BaseException) -> bool:
        """1008 (wrong or missing token) or 4103 (invalid hello): say so and stop."""
        rcvd = getattr(exc, "rcvd", None)
        code = rcvd.code if rcvd is not None else None
        if code not in (CLOSE_POLICY, CLOSE_BAD_HELLO):
            return False
        if code == CLOSE_POLICY:
            what = ("the kitchen token was refused (wrong or missing): check --token-file / "
                    "$ND_KITCHEN_TOKEN against the hub's kitchen token")
        else:
            what = f"the hello was refused: {rcvd.reason or CLOSE_REASONS[code]}"
        self.refused = f"hub at {self.uri} refused this kitchen (close code {code}): {what}"
        log.error("%s; not retrying", self.refused)
        return True

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake_when_stopping(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _wake_when_stopping(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()

    async def _handshake(self, ws: Any) -> tuple[bool, bool, bool]:
        """Hello -> (batch, ack, msgpack) as the hub's welcome allows; no welcome: 0.5."""
        await ws.send(orjson.dumps(self.hello).decode())
        try:
            raw = await asyncio.wait_for(ws.recv(), self.welcome_timeout)
        except asyncio.TimeoutError:
            log.info("hub sent no welcome: speaking netdumplings 0.5 (one dumpling a message)")
            return False, False, False
        try:
            welcome = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False, False, False
        if not (isinstance(welcome, dict) and welcome.get("welcome")):
            return False, False, False
        return (bool(welcome.get("batch")), bool(welcome.get("ack")),
                welcome.get("encoding") == "msgpack")

    async def _pump(self, ws: Any, batch: bool, ack: bool, binary: bool) -> None:
        outbox = self.outbox
        self._msg_sizes.clear()
        self._acked_msgs = 0
        resend = outbox.requeue()
        if resend:
            log.info("resending %d unacknowledged dumplings", resend)
        reader = asyncio.create_task(self._read(ws))
        loop = asyncio.get_running_loop()
        last_send = 0.0
        try:
            while True:
                dropped = outbox.take_dropped()
                if dropped:
                    log.warning("outbox overflowed while the hub was away: %d dumplings "
                                "dropped (%d in total)", dropped, outbox.dropped_total)
                    if self.notice_hook is not None:
                        notice = self.notice_hook(dropped)
                        if notice:
                            self._msg_sizes.append(0)  # before sending: the ack may beat us
                            await ws.send(_pack(notice) if binary else notice.decode())
                if batch and self.linger and len(outbox) - outbox.in_flight < self.batch_max:
                    wait = last_send + self.linger - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if ack and outbox.inflight_bytes * 2 >= outbox.max_bytes:
                    items = []  # window full: wait for acks (they wake us)
                else:
                    items = outbox.take(self.batch_max if batch else 1,
                                        outbox.max_bytes // 2 if ack else None)
                if not items:
                    if self._stopping:
                        await ws.close()
                        return
                    self._wake.clear()
                    if len(outbox) == outbox.in_flight or \
                            outbox.inflight_bytes * 2 >= outbox.max_bytes:
                        await self._wake.wait()
                    if reader.done():
                        raise ConnectionClosed(None, None)
                    continue
                if ack:
                    self._msg_sizes.append(len(items))  # before sending: the ack may beat us
                if binary:
                    packed = [_pack(i) for i in items]
                    await ws.send(msgpack_array(packed) if batch else packed[0])
                elif batch and len(items) > 1:
                    await ws.send(b"[" + b",".join(items) + b"]", text=True)
                else:
                    await ws.send(items[0], text=True)
                if not ack:  # a 0.5 hub: sent is as good as it gets
                    outbox.acked(len(items))
                self.sent += len(items)
                self.messages += 1
                last_send = loop.time()
        finally:
            reader.cancel()

    async def _read(self, ws: Any) -> None:
        """Acks from the hub release in-flight dumplings; reading also keeps pings answered
        and notices a closed connection promptly."""
        try:
            async for message in ws:
                try:
                    n = orjson.loads(message).get("ack")
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                if isinstance(n, int):
                    self._ack(n)
        except ConnectionClosed:
            pass
        if self._wake is not None:
            self._wake.set()

    def _ack(self, n: int) -> None:
        items, sizes = 0, self._msg_sizes
        while self._acked_msgs < n and sizes:
            items += sizes.popleft()
            self._acked_msgs += 1
        if items:
            self.outbox.acked(items)
            self.acked += items
            if self._wake is not None:
                self._wake.set()


def _pack(data: bytes) -> bytes:
    """JSON dumpling bytes -> msgpack (for a hub that accepted ``"encoding": "msgpack"``)."""
    return msgpack.packb(orjson.loads(data))


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _where(exc: BaseException) -> str:
    """For a refused connection, where to look (the usual first mistake is a port)."""
    if isinstance(exc, ConnectionRefusedError) or "Errno 111" in str(exc):
        return (". Nothing accepts connections there: is nd-hub running, and is this its "
                "in-port (kitchens connect to the in-port, 11347 unless nd-hub -i says "
                "otherwise; eaters to the out-port)?")
    return ""
