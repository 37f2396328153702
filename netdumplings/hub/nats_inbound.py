"""What a hub receives from NATS: other hubs' dumplings, gathered for one event-loop turn,
put in (hub, sequence) order, de-duplicated and handed to the hub; and the JetStream replay
an eater asks for. A part of ``NatsBackplane`` (a mixin, as the hub's own parts are), kept
apart because ordering and de-duplication are the subtle half of the backplane.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

import msgpack
import orjson

from ..wire.messages import STATUS_CHEF
from .subjects import (DEDUPE, DUMPLINGS, REPLAY_WAIT, STATUS, order_key, origin_of,
                       parse_subject)

log = logging.getLogger("netdumplings.backplane")


class Inbound:
    """Receiving and replaying (state lives on the ``NatsBackplane`` it is part of)."""


    async def _on_msg(self, msg: Any) -> None:
        self._inbox.append(msg)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Everything nats-py read in one go has reached its subscription callbacks by now:
        sort by (hub, seq) to undo the interleaving of per-subscription tasks, drop copies."""
        self._flush_scheduled = False
        batch, self._inbox = self._inbox, []
        hub = self.hub
        if hub is None:
            return
        if len(batch) > 1:
            batch.sort(key=order_key)
        for msg in batch:
            origin, seq, driver = origin_of(msg)
            if origin == self._hub_token:
                self.skipped_own += 1
                continue
            if msg.subject.startswith(STATUS + "."):
                self.received += 1
                if origin is not None:
                    self._peers[origin] = time.monotonic()
                hub.deliver_remote(msg.data, STATUS_CHEF, None, "interval")
                continue
            if origin is not None and seq and self._is_duplicate(origin, seq):
                self.duplicates += 1
                continue
            parsed = parse_subject(msg.subject)
            if parsed is None:
                continue
            kitchen, chef = parsed
            self.received += 1
            hub.deliver_remote(msg.data, chef, kitchen, driver)

    def _is_duplicate(self, origin: str, seq: int) -> bool:
        entry = self._seen.get(origin)
        if entry is None:
            entry = self._seen[origin] = (set(), deque())
        seen, order = entry
        if seq in seen:
            return True
        seen.add(seq)
        order.append(seq)
        if len(order) > DEDUPE:
            seen.discard(order.popleft())
        return False

    # -- replay ---------------------------------------------------------------------------

    async def replay(self, hello: Any, spec: Any, want_msgpack: bool = False) -> list[bytes]:
        """Stored dumplings an eater asked for (``{"last": N}`` and/or ``{"since": S}``),
        oldest first, filtered like its live ones and encoded as it wants them."""
        if not (self.jetstream and self.connected and isinstance(spec, dict)):
            return []
        last = spec.get("last")
        since = spec.get("since")
        # bounded by what the stream can hold (a huge number must not overflow below)
        last = (int(min(last, self.replay_max_msgs)) if isinstance(last, (int, float))
                and not isinstance(last, bool) and last >= 1 else None)
        since = (float(min(since, 10 * 365 * 86400)) if isinstance(since, (int, float))
                 and not isinstance(since, bool) and since > 0 else None)
        if last is None and since is None:
            return []
        from nats.js.api import ConsumerConfig, DeliverPolicy

        if since is not None:
            start = datetime.now(timezone.utc) - timedelta(seconds=since)
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                    opt_start_time=start.isoformat().replace("+00:00", "Z"))
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        keep: deque[bytes] = deque(maxlen=last) if last is not None else deque()
        deadline = time.monotonic() + REPLAY_WAIT
        try:
            info = await self.js.stream_info(self.stream)
            if not info.state.messages:
                return []
            sub = await self.js.subscribe(f"{DUMPLINGS}.>", stream=self.stream,
                                          ordered_consumer=True, config=config)
        except Exception as exc:
            log.warning("backplane replay unavailable: %s", exc)
            return []
        try:
            while time.monotonic() < deadline:
                try:
                    msg = await sub.next_msg(timeout=min(1.0, deadline - time.monotonic()))
                except Exception:
                    break   # timeout: nothing (more) stored from that point
                parsed = parse_subject(msg.subject)
                if parsed is not None:
                    kitchen, chef = parsed
                    driver = origin_of(msg)[2]
                    if hello.matches(chef, kitchen, driver):
                        keep.append(_encode(msg.data, want_msgpack))
                if msg.metadata.num_pending == 0:
                    break
        finally:
            asyncio.ensure_future(_quiet_unsubscribe(sub))
        return list(keep)

    # -- status ---------------------------------------------------------------------------


def _encode(data: bytes, want_msgpack: bool) -> bytes:
    is_msgpack = bool(data) and (0x80 <= data[0] <= 0x9F or 0xDC <= data[0] <= 0xDF)
    if is_msgpack == want_msgpack:
        return data
    if want_msgpack:
        return msgpack.packb(orjson.loads(data))
    return orjson.dumps(msgpack.unpackb(data, raw=False, strict_map_key=False))


async def _quiet_unsubscribe(sub: Any) -> None:
    try:
        await sub.unsubscribe()
    except Exception:
        pass
