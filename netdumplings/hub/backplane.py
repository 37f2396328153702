"""NATS backplane: several hubs that share their dumplings (``nd-hub --backplane nats://...``).

Each hub delivers its own kitchens' dumplings to its own eaters directly, so it keeps serving
them while NATS is away, and also publishes them on ``dumplings.<kitchen>.<chef>`` with
one header, ``Nd-Origin: <hub-id> <sequence> <driver>`` (one header, not three: nats-py
spends most of a publish on headers, per key). What comes back from NATS with its own hub
id is skipped; everything else goes to local eaters through ``hub.deliver_remote``. That
gives exactly one copy per eater without any coordination between hubs.

Core NATS keeps nothing for a subscriber that is not connected, so after an outage a hub
holds what it kept until the hubs it knew have announced themselves again on
``hubs.<hub-id>`` (at most ``HOLD_MAX`` seconds).

The hub subscribes to the union of its eaters' filters, so filtering happens in the NATS
server: an eater asking for kitchen ``k`` and chef ``c`` costs ``dumplings.k.c``; one with no
filter makes it ``dumplings.>``. Overlapping subscriptions (``dumplings.k.*`` and
``dumplings.*.c``) make NATS deliver a message once per subscription, and nats-py runs one task
per subscription, so messages are gathered for one event-loop turn, sorted by (hub, sequence)
and de-duplicated before delivery: eaters keep exactly-once and per-kitchen order.

Hub status dumplings travel on ``status.<hub-id>``; every hub relays the others' to its
eaters, so ``nd-hubstatus`` shows the whole cluster. With ``--replay`` a bounded JetStream
stream (max age, max messages) keeps recent dumplings for eaters whose hello says
``"replay": {"last": N}`` or ``{"since": SECONDS}``.

The hub's side of the contract: ``await bp.start(hub)``, ``bp.publish(data, chef, kitchen,
driver)`` for each dumpling from its kitchens, ``bp.publish_status(data)``,
``bp.update_interest(hellos)`` when eaters come and go, ``await bp.replay(hello, spec,
msgpack)`` for an eater that asks, ``bp.status()`` for its status dumpling and ``await
bp.stop()``; the backplane calls ``hub.deliver_remote(data, chef, kitchen, driver)``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from typing import Any, Iterable, Protocol

import orjson

from ..wire.messages import NOTICE_CHEF

log = logging.getLogger("netdumplings.backplane")

from .nats_inbound import Inbound
from .subjects import (DUMPLINGS, H_INSTANCE, H_ORIGIN, HOLD_MAX, MAX_SUBJECT, OUTBOX, PEER_TTL,
                       PRESENCE, REPLAY_MAX_MSGS, STATUS, STREAM, WARN_EVERY, dumpling_subject,
                       escape, interest_subjects, new_hub_id, origin_of, subject_fits)

class HubHooks(Protocol):
    def deliver_remote(self, data: bytes, chef: str, kitchen: str | None,
                       driver: str) -> None: ...


# -- subject names -----------------------------------------------------------------------------


# -- the backplane ---------------------------------------------------------------------------


class NatsBackplane(Inbound):
    """One hub's connection to NATS (reconnecting forever; the hub never waits for it)."""

    def __init__(self, url: str, *, hub_id: str | None = None, replay: float | None = None,
                 replay_max_msgs: int = REPLAY_MAX_MSGS, outbox: int = OUTBOX,
                 reconnect_wait: float = 1.0, user_credentials: str | None = None,
                 stream: str = STREAM) -> None:
        self.url = url
        self.hub_id = hub_id or new_hub_id()
        self._hub_token = escape(self.hub_id)
        self._instance = secrets.token_hex(8)
        self._origin0 = {H_ORIGIN: f"{self._hub_token} 0 interval", H_INSTANCE: self._instance}
        self.id_conflicts = 0
        self._conflict_logged = 0.0
        self.replay_age = replay
        self.replay_max_msgs = replay_max_msgs
        self.reconnect_wait = reconnect_wait
        self.user_credentials = user_credentials
        self.stream = stream
        self.nc: Any = None
        self.js: Any = None
        self.hub: HubHooks | None = None
        self.connected = False
        self.jetstream = False
        self.outages = 0
        self.published = 0
        self.received = 0
        self.skipped_own = 0
        self.duplicates = 0
        self.dropped = 0
        self.too_big = 0        # dumplings over the server's max_payload: not published
        self.long_names = 0     # kitchen/chef names too long for a subject: not published
        self._warned: dict[str, float] = {}
        self.seq = 0
        self._outbox: deque[tuple[str, bytes, dict[str, str]]] = deque()
        self._outbox_max = outbox
        self._wake = asyncio.Event()
        self._subjects: list[str] = []
        self._subs: dict[str, Any] = {}
        self._status_sub: Any = None
        self._interest_task: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._inbox: list[Any] = []
        self._flush_scheduled = False
        self._seen: dict[str, tuple[set[int], deque[int]]] = {}
        self._down_since: float | None = None
        self._unavailable = False
        self._peers: dict[str, float] = {}
        self._expect: set[str] = set()
        self._hold_until = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, hub: HubHooks) -> None:
        self.hub = hub
        self._tasks.append(asyncio.create_task(self._connect_loop()))
        self._tasks.append(asyncio.create_task(self._pump()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.drain(), 2)
            except Exception:
                pass
            try:
                await self.nc.close()
            except Exception:
                pass

    async def _connect_loop(self) -> None:
        """First connection (retried until NATS answers); nats-py reconnects after that."""
        try:
            import nats
        except ImportError:
            log.error("--backplane needs nats-py (pip install 'netdumplings[nats]'): "
                      "serving local kitchens and eaters only")
            return

        while True:
            try:
                nc = await nats.connect(
                    servers=[u.strip() for u in self.url.split(",") if u.strip()], name=f"nd-hub {self.hub_id}", allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=self.reconnect_wait,
                    connect_timeout=2, ping_interval=5, max_outstanding_pings=2,
                    user_credentials=self.user_credentials,
                    disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error, closed_cb=self._on_closed)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._on_error(exc)
                await asyncio.sleep(self.reconnect_wait)
        self.nc = nc
        self._status_sub = await nc.subscribe(f"{STATUS}.>", cb=self._on_msg)
        await nc.subscribe(f"{PRESENCE}.>", cb=self._on_presence)
        await self._apply_interest()
        await self._setup_stream()
        self.connected = True
        await self._announce(b"up")
        log.info("backplane connected: %s as hub %s%s", self.url, self.hub_id,
                 f", replay stream {self.stream}" if self.jetstream else "")
        if self._unavailable:
            self._outage_notice("connected", None)
        self._wake.set()

    async def _setup_stream(self) -> None:
        if not self.replay_age:
            return
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        self.js = self.nc.jetstream(timeout=5)
        config = StreamConfig(name=self.stream, subjects=[f"{DUMPLINGS}.>"],
                              max_age=self.replay_age, max_msgs=self.replay_max_msgs,
                              retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
                              storage=StorageType.FILE)
        try:
            try:
                await self.js.stream_info(self.stream)
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)
            self.jetstream = True
        except Exception as exc:
            log.warning("backplane: no replay (JetStream stream %s: %s)", self.stream, exc)
            self.jetstream = False

    async def _on_disconnected(self) -> None:
        if self.connected:
            self.connected = False
            self.outages += 1
            self._down_since = time.monotonic()
            log.warning("backplane %s lost: serving local kitchens and eaters only, "
                        "reconnecting", self.url)
            self._outage_notice("lost", None)

    async def _on_reconnected(self) -> None:
        now = time.monotonic()
        # Core NATS keeps nothing for a hub that is not connected yet: hold what we kept
        # through the outage until the hubs we knew are back (or HOLD_MAX passes).
        since = (self._down_since or now) - PEER_TTL
        self._expect = {h for h, seen in self._peers.items() if seen > since}
        self._hold_until = now + HOLD_MAX
        self.connected = True
        await self._announce(b"up")
        down = now - self._down_since if self._down_since else 0.0
        log.info("backplane %s back after %.1fs: relaying again (%d dumplings waiting)",
                 self.url, down, len(self._outbox))
        self._outage_notice("reconnected", None, down)
        if self._interest_task is None or self._interest_task.done():
            # subscriptions that failed while the connection was away
            self._interest_task = asyncio.create_task(self._apply_interest())
        if self.replay_age:
            await self._setup_stream()  # a NATS restarted with an empty store
        self._wake.set()

    async def _on_error(self, exc: Exception) -> None:
        """nats-py retries the first connection forever itself, reporting each failure
        here: say once that the hub is on its own for now."""
        if self.nc is None and not self._unavailable:
            self._unavailable = True
            why = exc.__class__.__name__ + (f": {exc}" if str(exc) else "")
            log.warning("backplane %s unavailable (%s); serving local kitchens and eaters, "
                        "retrying every %gs", self.url, why, self.reconnect_wait)
            self._outage_notice("unavailable", why)
        else:
            log.debug("backplane: %s", exc)

    async def _on_closed(self) -> None:
        self.connected = False

    def _outage_notice(self, state: str, error: str | None, down: float | None = None) -> None:
        if self.hub is None:
            return
        payload: dict[str, Any] = {"notice": "backplane", "state": state, "url": self.url,
                                   "hub_id": self.hub_id}
        if error:
            payload["error"] = error
        if down is not None:
            payload["outage_seconds"] = round(down, 3)
        notice = {"metadata": {"chef": NOTICE_CHEF, "kitchen": None,
                               "creation_time": time.time(), "driver": "interval"},
                  "payload": payload}
        self.hub.deliver_remote(orjson.dumps(notice), NOTICE_CHEF, None, "interval")

    # -- out ------------------------------------------------------------------------------

    def publish(self, data: bytes, chef: str, kitchen: str | None, driver: str) -> None:
        """One dumpling from this hub's kitchens (its bytes as received, JSON or msgpack).

        Local eaters already have it; what cannot cross NATS at all (a subject too long, a
        dumpling over the server's max_payload) is counted and warned about, never queued
        or retried: one such dumpling must not stall the others or the connection."""
        subject = dumpling_subject(kitchen, chef)
        if not subject_fits(subject):
            self.long_names += 1
            self._warn_unpublishable(
                "name", "backplane: kitchen/chef name too long for a NATS subject "
                f"({len(subject)} > {MAX_SUBJECT} bytes escaped, kitchen {str(kitchen)[:60]!r}, "
                f"chef {chef[:60]!r}): not published, local eaters only "
                f"({self.long_names} so far)")
            return
        self.seq += 1
        self._queue(subject, data, {H_ORIGIN: f"{self._hub_token} {self.seq} {driver}"})

    def _warn_unpublishable(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(kind, -WARN_EVERY) >= WARN_EVERY:
            self._warned[kind] = now
            log.warning("%s", message)

    def _fits_payload(self, subject: str, data: bytes, headers: dict[str, str]) -> bool:
        """Would nats-server take it? It counts headers in max_payload (nats-py does not,
        and a violation makes the server close the connection)."""
        limit = getattr(self.nc, "max_payload", 0) or 0
        if limit <= 0:
            return True
        size = len(data) + 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())
        if size <= limit:
            return True
        if subject.startswith(DUMPLINGS + "."):
            self.too_big += 1
            self._warn_unpublishable(
                "payload", f"backplane: a {size}-byte dumpling on {subject[:120]} is over the "
                f"NATS server's max_payload ({limit} bytes): not published, local eaters only "
                f"({self.too_big} so far)")
        else:
            self._warn_unpublishable(
                "status", f"backplane: {subject[:120]} ({size} bytes) is over the NATS "
                f"server's max_payload ({limit} bytes): not published")
        return False

    def publish_status(self, data: bytes) -> None:
        """Straight out, never held: a status is only worth anything while it is fresh."""
        if self.connected and self.nc is not None:
            asyncio.ensure_future(self._send(f"{STATUS}.{self._hub_token}", data,
                                             self._origin0))

    async def _send(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        if not self._fits_payload(subject, data, headers):
            return
        try:
            await self.nc.publish(subject, data, headers=headers)
        except Exception as exc:
            log.debug("backplane: %s not sent: %s", subject, exc)

    async def _announce(self, what: bytes) -> None:
        await self._send(f"{PRESENCE}.{self._hub_token}", what, self._origin0)

    async def _on_presence(self, msg: Any) -> None:
        origin = origin_of(msg)[0]
        if origin is None:
            return
        if origin == self._hub_token:
            instance = (msg.headers or {}).get(H_INSTANCE)
            if instance and instance != self._instance:
                self._id_conflict(msg.data == b"up")
            return
        self._peers[origin] = time.monotonic()
        if origin in self._expect:
            self._expect.discard(origin)
            if not self._expect:
                self._wake.set()
        if msg.data == b"up":   # a hub (re)joined: tell it we are here
            await self._announce(b"here")

    def _id_conflict(self, they_joined: bool) -> None:
        """Another hub announces itself with our hub id: neither relays the other's
        dumplings to its eaters (each skips them as its own echo). Loud and counted; a
        hub that just joined is answered so it hears of it too."""
        self.id_conflicts += 1
        now = time.monotonic()
        if now - self._conflict_logged >= 60.0:
            self._conflict_logged = now
            log.error("backplane: another hub uses hub id %r: dumplings between the two are "
                      "lost (each takes the other's for its own); give every hub its own "
                      "--hub-id (or leave it out for a random one)", self.hub_id)
        if they_joined:
            asyncio.ensure_future(self._announce(b"here"))

    def _queue(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        if len(self._outbox) >= self._outbox_max:
            self._outbox.popleft()
            self.dropped += 1
        self._outbox.append((subject, data, headers))
        self._wake.set()

    async def _pump(self) -> None:
        """Hands the outbox to nats-py while connected; holds it (bounded) while not, so a
        short outage delays remote eaters instead of losing their dumplings."""
        box = self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._expect and time.monotonic() < self._hold_until:
                await asyncio.sleep(0.05)
            if self._expect:
                log.info("backplane: hubs %s not back after %gs; publishing anyway",
                         ", ".join(sorted(self._expect)), HOLD_MAX)
                self._expect.clear()
            n = 0
            while box and self.connected and self.nc is not None:
                subject, data, headers = box[0]
                if not self._fits_payload(subject, data, headers):
                    box.popleft()
                    continue
                try:
                    await self.nc.publish(subject, data, headers=headers)
                except Exception as exc:
                    if not _transient(exc):
                        # it would fail the same way forever and hold up everything behind
                        box.popleft()
                        self.dropped += 1
                        self._warn_unpublishable(
                            "error", f"backplane: dumpling on {subject[:120]} not published: "
                            f"{exc.__class__.__name__} {exc}")
                        continue
                    # reconnecting and nats-py's own buffer is full: try again shortly
                    log.debug("backplane publish deferred: %s", exc)
                    await asyncio.sleep(0.1)
                    self._wake.set()
                    break
                box.popleft()
                self.published += 1
                n += 1
                if n % 1024 == 0:
                    await asyncio.sleep(0)   # let kitchens and eaters run too

    # -- interest --------------------------------------------------------------------------

    def update_interest(self, hellos: Iterable[Any]) -> None:
        self._subjects = interest_subjects(list(hellos))
        if self.nc is not None and (self._interest_task is None or self._interest_task.done()):
            self._interest_task = asyncio.create_task(self._apply_interest())

    async def _apply_interest(self) -> None:
        """Subscribe before unsubscribing, so an eater present before and after a change
        misses nothing (the overlap is removed by the de-duplication)."""
        while True:
            target = list(self._subjects)
            for subject in target:
                if subject not in self._subs:
                    try:
                        self._subs[subject] = await self.nc.subscribe(
                            subject, cb=self._on_msg, pending_msgs_limit=200_000,
                            pending_bytes_limit=256 << 20)
                    except Exception as exc:  # closed or draining: retried on reconnect
                        log.debug("backplane: cannot subscribe to %s now: %s", subject, exc)
                        return
            for subject in [s for s in self._subs if s not in target]:
                sub = self._subs.pop(subject)
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
            if target == self._subjects:
                log.debug("backplane subscriptions: %s", target or "none")
                return

    def subscriptions(self) -> list[str]:
        return sorted(self._subs)

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "hub_id": self.hub_id, "connected": self.connected,
                "outages": self.outages, "published": self.published,
                "received": self.received, "duplicates": self.duplicates,
                "waiting": len(self._outbox), "dropped": self.dropped,
                "too_big": self.too_big, "long_names": self.long_names,
                "id_conflicts": self.id_conflicts,
                "subscriptions": self.subscriptions(),
                "replay": {"stream": self.stream, "max_age": self.replay_age,
                           "max_msgs": self.replay_max_msgs} if self.jetstream else None}


def _transient(exc: Exception) -> bool:
    """Errors that go away with the connection coming back (anything else is about the
    message itself and would repeat forever)."""
    try:
        from nats import errors
    except ImportError:
        return True
    return isinstance(exc, (errors.OutboundBufferLimitError, errors.ConnectionClosedError,
                            errors.ConnectionDrainingError, errors.ConnectionReconnectingError,
                            errors.StaleConnectionError, errors.FlushTimeoutError,
                            errors.TimeoutError, OSError, asyncio.TimeoutError))
