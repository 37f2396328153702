"""IP fragment reassembly: fragments in, whole datagrams out, for the flow path.

A UDP datagram bigger than the path MTU (a DNS answer with DNSSEC records, a big EPICS
search reply) travels as IP fragments, and only the first carries the UDP header. Handing
that first fragment to a decoder as if it were the datagram would decode a message cut
short, and the rest would be lost without a word; so the kitchen gives fragments to a
``Defragmenter`` and the flow table sees the reassembled datagram.

Sans-I/O: ``feed`` takes one fragment's payload (IPv4 or IPv6 alike) with its key, offset
and "more fragments" flag and returns the whole payload once every byte of it has come.
Memory is bounded: at most ``max_datagrams`` datagrams in progress and ``max_bytes`` held
in all (the oldest datagram is dropped first), one datagram at most 65,535 bytes, and a
datagram not complete ``timeout`` seconds (capture time) after its first fragment is
dropped. Every drop is counted by reason in ``stats``.

Overlaps: a fragment that repeats bytes already held (a duplicate) is ignored; one that
would change bytes already held is an attack or a corruption (RFC 5722 forbids overlaps in
IPv6), so the whole datagram is dropped rather than reassembled one way or the other. A
duplicate that comes after its datagram was made whole (a mirror port sending a packet
twice) is recognised by its bytes against the recently completed datagrams and counted;
a fragment whose bytes differ starts a new datagram (IPv4's 16-bit ids get reused).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

#: The largest IP payload (the 16-bit length fields of both IPv4 and IPv6).
MAX_DATAGRAM = 65535
#: Completed datagrams remembered, to recognise late duplicates of their fragments.
RECENT_DATAGRAMS = 256
RECENT_BYTES = 4 << 20


class DefragStats:
    __slots__ = ("fragments", "reassembled", "expired", "evicted", "overlaps", "too_big",
                 "incomplete_at_end", "late_duplicates")

    def __init__(self) -> None:
        self.fragments = 0          # fragments fed
        self.reassembled = 0        # datagrams made whole
        self.expired = 0            # datagrams dropped: not complete within ``timeout``
        self.evicted = 0            # datagrams dropped for room (``max_datagrams``/``max_bytes``)
        self.overlaps = 0           # datagrams dropped: fragments disagreeing on bytes
        self.too_big = 0            # datagrams dropped: past 65,535 bytes
        self.incomplete_at_end = 0  # datagrams still incomplete when the capture ended
        self.late_duplicates = 0    # fragments repeating a datagram already made whole

    @property
    def dropped(self) -> int:
        return (self.expired + self.evicted + self.overlaps + self.too_big
                + self.incomplete_at_end)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Datagram:
    __slots__ = ("first_seen", "pieces", "size", "held", "bad")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.pieces: dict[int, bytes] = {}   # offset -> bytes
        self.size: int | None = None          # known once the last fragment came
        self.held = 0
        self.bad = False


class Defragmenter:
    """Fragments of many datagrams in, whole datagrams out; see the module docstring."""

    def __init__(self, max_datagrams: int = 1024, max_bytes: int = 16 << 20,
                 timeout: float = 30.0) -> None:
        if max_datagrams < 1 or max_bytes < MAX_DATAGRAM or not timeout > 0:
            raise ValueError("max_datagrams must be at least 1, max_bytes at least 65535 and "
                             "timeout above 0")
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.stats = DefragStats()
        self._pending: OrderedDict[Hashable, _Datagram] = OrderedDict()
        self._held = 0
        # key -> (payload, when completed): the recently completed datagrams
        self._recent: OrderedDict[Hashable, tuple[bytes, float]] = OrderedDict()
        self._recent_bytes = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def held_bytes(self) -> int:
        return self._held

    def feed(self, key: Hashable, offset: int, more: bool, data: bytes, now: float,
             limit: int = MAX_DATAGRAM) -> bytes | None:
        """One fragment -> the whole datagram payload when this completes it, else None.

        ``key`` identifies the datagram (source, destination, protocol and IP id);
        ``offset`` is in bytes; ``more`` is the MF/M flag; ``limit`` is the largest
        payload the IP version allows (IPv4: 65,535 less its 20-byte header)."""
        stats = self.stats
        stats.fragments += 1
        self._expire(now)
        end = offset + len(data)
        dg = self._pending.get(key)
        if dg is None:
            done = self._recent.get(key)
            if done is not None and now - done[1] <= self.timeout and \
                    done[0][offset:end] == data and end <= len(done[0]) and \
                    (more or end == len(done[0])):
                stats.late_duplicates += 1
                return None
            dg = self._pending[key] = _Datagram(now)
        elif dg.bad:
            return None  # the rest of a datagram already dropped
        if end > limit:
            stats.too_big += 1
            self._spoil(dg)
            return None
        if (dg.size is not None and end > dg.size) or (not more and (
                (dg.size is not None and dg.size != end)
                or any(o + len(p) > end for o, p in dg.pieces.items()))) \
                or not self._merge(dg, offset, data):
            # bytes past the end the last fragment gave, two different ends, or bytes that
            # contradict bytes already held: no one datagram can be made of these
            stats.overlaps += 1
            self._spoil(dg)
            return None
        if not more:
            dg.size = end
        if dg.size is not None and dg.held == dg.size:
            del self._pending[key]
            self._held -= dg.held
            stats.reassembled += 1
            whole = b"".join(dg.pieces[o] for o in sorted(dg.pieces))
            self._remember(key, whole, now)
            return whole
        self._make_room()
        return None

    def finish(self) -> int:
        """End of capture: drop what is incomplete (counted); returns how many."""
        n = sum(not dg.bad for dg in self._pending.values())
        self.stats.incomplete_at_end += n
        self._pending.clear()
        self._held = 0
        return n

    # -- internals ----------------------------------------------------------------------

    def _merge(self, dg: _Datagram, offset: int, data: bytes) -> bool:
        """Add the bytes not held yet; False when they contradict bytes already held."""
        end = offset + len(data)
        new: list[tuple[int, bytes]] = []
        pos = offset
        for o in sorted(dg.pieces):
            piece = dg.pieces[o]
            pend = o + len(piece)
            if pend <= pos or o >= end:
                continue
            lo, hi = max(o, offset), min(pend, end)
            if piece[lo - o:hi - o] != data[lo - offset:hi - offset]:
                return False
            if o > pos:
                new.append((pos, data[pos - offset:o - offset]))
            pos = max(pos, pend)
        if pos < end:
            new.append((pos, data[pos - offset:]))
        for o, chunk in new:
            if chunk:
                dg.pieces[o] = chunk
                dg.held += len(chunk)
                self._held += len(chunk)
        return True

    def _remember(self, key: Hashable, whole: bytes, now: float) -> None:
        recent = self._recent
        old = recent.pop(key, None)
        if old is not None:
            self._recent_bytes -= len(old[0])
        recent[key] = (whole, now)
        self._recent_bytes += len(whole)
        while len(recent) > RECENT_DATAGRAMS or self._recent_bytes > RECENT_BYTES:
            _, (payload, _) = recent.popitem(last=False)
            self._recent_bytes -= len(payload)

    def _spoil(self, dg: _Datagram) -> None:
        """Drop a datagram's bytes but remember it until its timeout, so its remaining
        fragments are swallowed instead of starting (and later expiring) a new one."""
        self._held -= dg.held
        dg.pieces.clear()
        dg.held = 0
        dg.bad = True

    def _drop(self, key: Hashable) -> None:
        dg = self._pending.pop(key, None)
        if dg is not None:
            self._held -= dg.held

    def _expire(self, now: float) -> None:
        limit = now - self.timeout
        pending = self._pending
        while pending:
            key, dg = next(iter(pending.items()))
            if dg.first_seen >= limit:
                break
            self._drop(key)
            if not dg.bad:
                self.stats.expired += 1

    def _make_room(self) -> None:
        pending = self._pending
        while len(pending) > self.max_datagrams or self._held > self.max_bytes:
            key, dg = next(iter(pending.items()))
            self._drop(key)
            if not dg.bad:
                self.stats.evicted += 1
