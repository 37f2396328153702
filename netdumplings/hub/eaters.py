"""The eater half of the hub: admitting an eater, catching it up after a restart, feeding
its queue to its socket, and closing it when it stops reading.

Everything after an eater is registered runs inside the cleanup that unregisters it: an
eater that hangs up during its welcome used to stay registered for good, its queue growing
with every dumpling (197 such "ghosts" took a hub to 1.9 GB). A send that has waited
``write_timeout`` seconds for room in the eater's socket is noticed by a watchdog and the
eater is closed (4107): websockets itself would wait for ever, keepalive pings included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgpack
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .admission import addr, printable
from .frames import write_messages
from .intake import decode, encode
from .queues import EaterConn, singles
from .status import MAX_LABEL_SETS
from ..wire.messages import (CLOSE_POLICY, CLOSE_WRITE_TIMEOUT, NOTICE_CHEF, EaterHello,
                             hello_summary)

log = logging.getLogger("netdumplings.hub")

TRIM_AFTER = 16 << 20   # bytes of queues freed before the heap is handed back to the system


def trim_heap() -> None:
    """Give freed heap pages back to the system (glibc ``malloc_trim``): queued frames are
    malloc'd bytes objects, and without this a hub that once held many stalled eaters kept
    that much memory after they left. Elsewhere (musl, macOS) this does nothing."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class EaterSide:
    """The eater half of ``Hub`` (a mixin: the hub's attributes are used as they are)."""

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
        host, port = addr(ws)
        conn = EaterConn(ws, hello, self.max_queue,
                         {"info_from_eater": hello_summary(raw_hello, EaterHello.model_fields),
                          "info_from_hub": {"host": host, "port": port}},
                         self.max_queue_bytes, self.budget, printable(hello.eater_name))
        if hello.protocol:
            conn.batch = hello.batch
            conn.msgpack = hello.encoding == "msgpack"
        # Subscribed before the welcome goes out: a client that starts its kitchens when it
        # sees the welcome must not miss their first dumplings. (The queue is only drained
        # after this, so the welcome is still the first message.) Everything from here on
        # is inside the cleanup: an eater that hangs up during the welcome is removed.
        self.eaters[ws] = conn
        self.budget.join(conn)
        reader = None
        try:
            self._catch_up(conn)
            if hello.protocol:
                await ws.send(self._welcome("eater", conn.batch, hello.encoding))
            self._info(("eater", "connected"), "eater %s connected from %s:%s", conn.name,
                       host, port)
            if self.backplane is not None:
                self._interest_changed()
                if raw_hello.get("replay") is not None:
                    await self._replay(conn, raw_hello["replay"])
            reader = asyncio.create_task(self._guard_eater(conn))
            reader.add_done_callback(lambda _: conn.event.set())  # wake the writer
            await self._feed_eater(conn, reader)
        except ConnectionClosed:
            pass
        finally:
            if reader is not None:
                reader.cancel()
            self.eaters.pop(ws, None)
            self.budget.leave(conn)
            if self.backplane is not None:
                self._interest_changed()
            self.dumplings_dropped += conn.missed_total
            self._retire(conn)
            self._info(("eater", "disconnected"), "eater %s disconnected (%d sent, %d missed)",
                       conn.name, conn.sent, conn.missed_total)

    def _catch_up(self, conn: EaterConn) -> None:
        """An eater resuming from another hub instance (its hello's ``resume``: it was
        connected before a restart) first gets what this hub has kept since it started (its
        subscription's part), and is told how many of the dumplings it wanted can no
        longer be given (hub.replay). New eaters start with the live stream."""
        resume = conn.hello.resume
        if resume is None or resume == self.instance:
            return
        replay = self.replay
        mp = conn.msgpack
        # A batch eater of the kitchen's encoding takes kept batches as they came.
        whole = min(self.batch_max, conn.max_queue) if conn.batch else 0
        for data, n, binary, ct in replay.matching(conn.matches, whole, mp):
            if binary != mp:   # (one dumpling: whole batches only in the eater's encoding)
                data = encode(decode(data), mp) or b""
                if not data:
                    conn.drop(1)
                    continue
            if not conn.push(data, ct, n):
                self._full(conn)
                return
        # On a backplane an eater may resume on another hub that was running all along:
        # "since this hub started" would then be no loss at all (the backplane's own
        # replay, --replay, is the tool there), so no count is claimed.
        lost = replay.lost_for(conn.matches) if self.backplane is None else 0
        if lost:
            conn.restart_missed = lost
            conn.drop(lost)
            conn.missed -= lost   # told in its own notice (reason "restart")
            self._warn(("eater", "restart"), "eater %s is back after a hub restart too late "
                       "for %d dumplings it wanted: told so", conn.name, lost)

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
        live = [d for d in singles(conn.queue, conn.msgpack) if d not in seen]
        conn.release()
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
        clock = time.monotonic
        while True:
            await conn.event.wait()
            conn.event.clear()
            if reader.done():
                return
            while q or conn.missed or conn.restart_missed:
                # send_started lets the watchdog close an eater whose send does not finish
                # (it stopped reading): websockets would wait for room for ever.
                conn.send_started = clock()
                if conn.restart_missed:
                    missed, conn.restart_missed = conn.restart_missed, 0
                    await ws.send(self._notice(conn, missed, "restart"), text=text)
                    continue
                if conn.missed:
                    missed, conn.missed = conn.missed, 0
                    await ws.send(self._notice(conn, missed), text=text)
                    continue  # the queue may have changed while we waited
                if conn.batch:
                    frame, n = conn.take(batch_max)
                    await ws.send(frame, text=text)
                else:   # one message a dumpling: as many as are queued, in one write
                    messages, n = conn.take_messages(batch_max)
                    await write_messages(ws, messages, text)
                conn.sent += n
                self.dumplings_out += n
                if stamps and stamps[0][0] < conn.removed:
                    now = time.time()
                    while stamps and stamps[0][0] < conn.removed:
                        self.latency.observe(now - stamps.popleft()[1])
            conn.send_started = 0.0

    async def _watchdog(self) -> None:
        """Once a second: an eater whose current send has waited ``write_timeout`` seconds
        for room in its socket, without the socket taking anything meanwhile, is not
        reading - close it (4107) and free its queue. (A big message to a slow reader takes
        long but drains: that is progress, and the clock starts again.)"""
        assert self.write_timeout
        while True:
            await asyncio.sleep(min(1.0, self.write_timeout / 2))
            if self.budget.released > TRIM_AFTER:
                self.budget.released = 0
                trim_heap()
            now = time.monotonic()
            limit = now - self.write_timeout
            for conn in list(self.eaters.values()):
                if not conn.send_started or conn.closing:
                    continue
                transport = conn.ws.transport
                buffered = transport.get_write_buffer_size() if transport else 0
                if buffered < conn.buffered:
                    conn.send_started = now   # the peer took some: still reading
                conn.buffered = buffered
                if conn.send_started < limit:
                    conn.closing = True
                    conn.release()
                    self._refuse("eater", "write_timeout")
                    self._warn(("eater", "write_timeout"), "eater %s closed: it took nothing "
                               "for %gs (write timeout)", conn.name, self.write_timeout)
                    self._close_later(conn.ws, CLOSE_WRITE_TIMEOUT)

    def _notice(self, conn: EaterConn, missed: int, reason: str | None = None) -> bytes:
        """A missed notice. ``reason`` "restart": dumplings this hub received before a
        resuming eater was back and could no longer replay (otherwise: queue full, or not
        encodable for this eater)."""
        payload: dict[str, Any] = {"notice": "missed", "missed": missed,
                                   "missed_total": conn.missed_total,
                                   "queue_size": conn.max_queue}
        if reason is not None:
            payload["reason"] = reason
        notice = {
            "metadata": {"chef": NOTICE_CHEF, "kitchen": None, "creation_time": time.time(),
                         "driver": "interval"},
            "payload": payload,
        }
        return msgpack.packb(notice) if conn.msgpack else orjson.dumps(notice)
