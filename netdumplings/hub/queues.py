"""Eater queues in the hub, and the one memory budget they share.

Every eater has a bounded queue of frames (one encoded dumpling, or for batch eaters an array
of them - the same bytes object for every eater that gets the same dumplings). Its own limits
(``--max-queue`` dumplings, ``--max-queue-mb``) are per eater; ``QueueBudget`` bounds all of
them together (``--max-memory-mb``), so that a thousand stalled eaters cannot each hold their
own 32 MB. Bytes are counted per entry as the frame's length plus ``ENTRY_OVERHEAD`` (the
tuple, the deque slot and the latency stamp: with small dumplings the overhead is most of
the memory), and a frame shared by several eaters counts in full for each: a bound, not a
measure.

When the budget is full, an eater whose queue is above its fair share (budget / eaters)
sheds its own oldest entries; one below it (a fast eater with a burst) takes room from the
biggest queue instead. Shedding follows the eater's policy: drop-oldest (counted, the eater
gets a missed notice) or disconnect (4102).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Iterable

import msgpack
import orjson

from ..wire.messages import EaterHello, matcher

ENTRY_OVERHEAD = 120     # bytes a queue entry costs beyond its frame (tuple, deque slot,
                         # bytes object header; a little more than CPython takes)
MERGE_BYTES = 1 << 20    # a merged eater frame stops growing here (well under max sizes)
WRITE_BYTES = 1 << 16    # messages taken for one write to a plain eater stop here: what is
                         # taken leaves the budget, so a stalled eater's socket buffer holds
                         # at most this (plus one dumpling) beyond it, as with one send each
                         # (websockets' own write buffer limit is 32 KB)


class QueueBudget:
    """Bytes queued to all eaters together: ``used`` of ``limit``."""

    __slots__ = ("limit", "used", "members", "on_full", "released")

    def __init__(self, limit: int, on_full: Callable[["EaterConn"], None]) -> None:
        self.limit = limit
        self.used = 0
        self.released = 0   # bytes freed by eaters that left, since the hub last trimmed
        self.members: set[EaterConn] = set()
        self.on_full = on_full   # an eater with the disconnect policy must go

    def share(self) -> int:
        return self.limit // max(1, len(self.members))

    def join(self, conn: "EaterConn") -> None:
        """A new eater. The others' share shrinks, but nobody loses anything until the
        budget is actually full (every push checks it)."""
        self.members.add(conn)

    def leave(self, conn: "EaterConn") -> None:
        conn.release()
        self.members.discard(conn)

    def relieve(self, needy: "EaterConn", size: int) -> None:
        """Make room for ``size`` bytes for an eater below its share: the biggest queues
        give up what is above their share."""
        share = self.share()
        for _ in range(4):
            if self.used + size <= self.limit:
                return
            victim = max(self.members, key=_qbytes, default=None)
            if victim is None or victim is needy or victim.qbytes <= share:
                return
            self._trim(victim, share)

    def _trim(self, conn: "EaterConn", target: int) -> None:
        if conn.hello.policy == "disconnect":
            conn.release()
            self.on_full(conn)
        else:
            conn.shed(target)


def _qbytes(conn: "EaterConn") -> int:
    return conn.qbytes


class EaterConn:
    """One eater's queue: entries are (frame, dumplings). Bounds and drop counts are in
    dumplings; dropping drops whole entries (oldest first)."""

    __slots__ = ("ws", "hello", "queue", "max_queue", "event", "missed", "missed_total",
                 "sent", "info", "closing", "batch", "msgpack", "name", "stamps", "pushed",
                 "removed", "queued", "everything", "entries", "qbytes", "max_bytes",
                 "budget", "matches", "send_started", "buffered", "restart_missed")

    def __init__(self, ws: Any, hello: EaterHello, max_queue: int, info: dict[str, Any],
                 max_bytes: int | None, budget: QueueBudget, name: str) -> None:
        self.ws = ws
        self.hello = hello
        self.matches = matcher(hello.chefs, hello.kitchens, hello.drivers)
        self.name = name
        self.max_queue = hello.queue_size and min(hello.queue_size, max_queue) or max_queue
        self.queue: deque[tuple[bytes, int]] = deque()
        self.queued = 0          # dumplings in the queue
        self.qbytes = 0          # bytes, frames + ENTRY_OVERHEAD each
        self.max_bytes = max_bytes or 1 << 62
        self.budget = budget
        self.event = asyncio.Event()
        self.missed = 0          # dropped since the last notice
        self.missed_total = 0
        self.restart_missed = 0  # received by this hub before a resuming eater was back
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
        self.send_started = 0.0  # monotonic time the send in progress began (0: none)
        self.buffered = 0        # bytes waiting in its socket's buffer at the last look

    def push(self, data: bytes, ct: float | None = None, n: int = 1) -> bool:
        """Queue a frame of ``n`` dumplings; False if the eater must be disconnected. A frame
        of more dumplings than the whole queue holds is the caller's to split."""
        q = self.queue
        size = len(data) + ENTRY_OVERHEAD
        budget = self.budget
        if q and (self.queued + n > self.max_queue or self.qbytes + size > self.max_bytes
                  or budget.used + size > budget.limit):
            if not self._make_room(n, size):
                return False
        elif self.queued + n > self.max_queue and self.hello.policy == "disconnect":
            return False
        if ct is not None and (not q or not self.entries & 15):
            self.stamps.append((self.pushed, ct))
        q.append((data, n))
        self.queued += n
        self.qbytes += size
        budget.used += size
        self.pushed += n
        self.entries += 1
        self.event.set()
        return True

    def _make_room(self, n: int, size: int) -> bool:
        budget = self.budget
        if budget.used + size > budget.limit and self.qbytes + size <= budget.share():
            budget.relieve(self, size)   # a small queue: the biggest pay
        if not (self.queued + n > self.max_queue or self.qbytes + size > self.max_bytes
                or budget.used + size > budget.limit):
            return True
        if self.hello.policy == "disconnect":
            return False
        q = self.queue
        dropped = 0
        while q and (self.queued + n > self.max_queue or self.qbytes + size > self.max_bytes
                     or budget.used + size > budget.limit):
            dropped += self._pop_oldest()
        self._dropped(dropped)
        return True

    def _pop_oldest(self) -> int:
        f, c = self.queue.popleft()
        size = len(f) + ENTRY_OVERHEAD
        self.queued -= c
        self.qbytes -= size
        self.budget.used -= size
        return c

    def _dropped(self, dropped: int) -> None:
        self.removed += dropped
        self.missed += dropped
        self.missed_total += dropped
        stamps = self.stamps
        while stamps and stamps[0][0] < self.removed:
            stamps.popleft()
        self.event.set()

    def shed(self, target: int) -> None:
        """Drop the oldest entries until the queue holds at most ``target`` bytes."""
        dropped = 0
        while self.queue and self.qbytes > target:
            dropped += self._pop_oldest()
        if dropped:
            self._dropped(dropped)

    def release(self) -> None:
        """The eater is going: its queue no longer counts (and is freed)."""
        self.budget.used -= self.qbytes
        self.budget.released += self.qbytes
        self.qbytes = 0
        self.queued = 0
        self.queue.clear()
        self.stamps.clear()
        self.removed = self.pushed

    def take(self, batch_max: int) -> tuple[bytes, int]:
        """The next frame to send (merged with the ones behind it for a batch eater)."""
        q = self.queue
        frame, n = q.popleft()
        if self.batch and q and n < batch_max and q[0][1] + n <= batch_max:
            frame, n, size = _merge(frame, n, q, batch_max, self.msgpack)
        else:
            size = len(frame) + ENTRY_OVERHEAD
        self.queued -= n
        self.qbytes -= size
        self.budget.used -= size
        self.removed += n
        return frame, n

    def take_messages(self, batch_max: int) -> tuple[list[bytes], int]:
        """The next entries, each its own WebSocket message (an eater that does not take
        batches), up to ``batch_max`` dumplings or ``WRITE_BYTES``: (messages, dumplings)."""
        q = self.queue
        popleft = q.popleft
        messages: list[bytes] = []
        append = messages.append
        n = size = counted = 0
        while q and n < batch_max and size < WRITE_BYTES:
            frame, c = popleft()
            append(frame)
            n += c
            size += len(frame)
            counted += len(frame) + ENTRY_OVERHEAD
        self.queued -= n
        self.qbytes -= counted
        self.budget.used -= counted
        self.removed += n
        return messages, n

    def drop(self, n: int) -> None:
        """Count ``n`` dumplings missed that never made it into the queue."""
        self.pushed += n
        self.removed += n
        self.missed += n
        self.missed_total += n
        self.event.set()


def _merge(frame: bytes, n: int, q: deque[tuple[bytes, int]], batch_max: int,
           mp: bool) -> tuple[bytes, int, int]:
    """An eater that fell behind has several small frames queued: send them as one (up to
    ``batch_max`` dumplings), fewer sends for the same dumplings. Frames of one dumpling are
    the dumpling; bigger ones are arrays, whose elements are spliced without decoding.
    -> (frame, dumplings, queue bytes the entries counted)."""
    parts = [frame if n == 1 else _body(frame, mp)]
    size = len(frame)
    counted = size + ENTRY_OVERHEAD
    while q and n + q[0][1] <= batch_max and size < MERGE_BYTES:
        f, c = q.popleft()
        parts.append(f if c == 1 else _body(f, mp))
        n += c
        size += len(f)
        counted += len(f) + ENTRY_OVERHEAD
    if mp:
        return _msgpack_head(n) + b"".join(parts), n, counted
    return b"[" + b",".join(parts) + b"]", n, counted


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


def singles(queue: Iterable[tuple[bytes, int]], mp: bool) -> list[bytes]:
    """Queued frames as one encoded dumpling each (rare: replay compares dumplings)."""
    out: list[bytes] = []
    for frame, n in queue:
        if n == 1:
            out.append(frame)
        elif mp:
            out.extend(msgpack.packb(o) for o in msgpack.unpackb(frame, raw=False,
                                                                  strict_map_key=False))
        else:
            out.extend(orjson.dumps(o) for o in orjson.loads(frame))
    return out
