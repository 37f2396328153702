"""The hub's kitchen side: each data message a kitchen sends, decoded, validated, counted,
acknowledged and handed to the fan-out; a kitchen that sends too many invalid dumplings is
closed (4106). Dumplings from other hubs (the backplane) come in here too.

A part of ``Hub`` (a mixin, like ``EaterSide``): the state is the hub's.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import msgpack
import orjson
from websockets.exceptions import ConnectionClosed

from ..wire.messages import CLOSE_FLOOD
from .admission import printable
from .intake import Batch, InvalidDumpling, KitchenConn, check_dumpling, decode
from .status import MAX_LABEL_SETS

log = logging.getLogger("netdumplings.hub")

FLOOD_WINDOW = 10.0     # seconds over which invalid dumplings are counted for CLOSE_FLOOD


class KitchenSide:
    """Taking kitchens' dumplings in (see the module's docstring)."""

    def _take(self, conn: KitchenConn, messages: list[bytes]) -> None:
        """A kitchen's data messages, in order; one ack for all of them."""
        if conn.flooded:
            return
        receive = self._receive
        for message in messages:
            try:
                ok = receive(conn, message)
            except Exception as exc:  # a hub bug: drop the message, not the kitchen,
                # which would resend it after reconnecting, again and again
                self._warn(("kitchen", "error"), "message from kitchen %s not relayed",
                           conn.name, exc_info=exc)
                ok = self._invalid(conn, "invalid", "hub error")
            if not ok:
                conn.flooded = True
                self._close_later(conn.ws, CLOSE_FLOOD)
                break
            conn.messages += 1
        if conn.ack_event is not None:
            conn.ack_event.set()

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
            obj = decode(message)
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
        counts = Counter(meta)
        by_chef: dict[str, int] = {}
        for (chef, _, _), count in counts.items():
            by_chef[chef] = by_chef.get(chef, 0) + count
        for chef, count in by_chef.items():
            key = (conn.name, chef)
            if key not in in_by:
                key = self._in_key(conn.name, chef)
            in_by[key] = in_by.get(key, 0) + count
        raw = message if n == len(objs) and not measure else None
        batch = Batch(valid, meta, cts, raw, binary)
        self._publish_batch(batch)
        replay = self.replay
        if not replay.open:
            for key, count in counts.items():
                replay.count(key, count)
        elif raw is not None:
            replay.add_batch(meta, raw, binary, cts)
        else:   # some were refused: the valid ones one by one
            for i, key in enumerate(meta):
                data = batch.item(i, binary)
                if data:
                    replay.add(key, data, binary, cts[i])
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
        self.replay.add((chef, kitchen, driver), raw, binary, ct)
        if self.backplane is not None:
            self.backplane.publish(raw, chef, kitchen, driver)
        return True

    def _in_key(self, kitchen: str, chef: str) -> tuple[str, str]:
        """The dumplings_in label pair for a chef not seen yet: a printable, short name (a
        chef name can be megabytes), ``_other`` beyond MAX_LABEL_SETS pairs."""
        key = (kitchen, printable(chef))
        if key not in self.in_by and len(self.in_by) >= MAX_LABEL_SETS:
            key = ("_other", "_other")   # one series for all the rest, whoever sends them
        return key

    def deliver_remote(self, data: bytes, chef: str, kitchen: str | None,
                       driver: str) -> None:
        """A dumpling from another hub (via the backplane), JSON or msgpack bytes."""
        self.dumplings_remote += 1
        binary = data[:1] not in (b"{", b" ", b"\n", b"\t", b"\r")
        if not binary:
            self._publish(None, data, None, chef, kitchen, driver, None)
        else:
            self._publish(None, None, data, chef, kitchen, driver, None)
        self.replay.add((chef, kitchen, driver), data, binary, None)

    def _invalid(self, conn: KitchenConn, reason: str, why: str) -> bool:
        conn.invalid += 1
        self.dumplings_invalid += 1
        key = (conn.name, reason)
        if key not in self.rejected_by and len(self.rejected_by) >= MAX_LABEL_SETS:
            key = ("_other", reason)
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
