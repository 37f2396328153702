"""What a freshly started hub received, kept for the eaters coming back to it.

After a hub restart the kitchens reconnect at once and resend what the old hub never
acknowledged, then go on sending; eaters come back on their own backoff, often later. Relayed
at once, all of that reached nobody (35-43 % of 100k dumplings in a test), while the kitchens
saw it acknowledged. So during the startup grace (``--startup-grace``, on by default) the hub
keeps what it accepts, up to ``--startup-buffer-mb``. An eater that was connected before the
restart says so in its hello (``resume``: the instance of the hub it had, from that hub's
welcome; our ``DumplingEater`` does this when it reconnects): it first gets what was kept
(filtered by its subscription), then the live stream. Back within the grace, it loses nothing;
what it had already had from the old hub comes again and is dropped by the eater (same
kitchen, host, sequence). New eaters start with the live stream, as before.

What cannot be replayed - evicted when the buffer was full, or accepted after the grace - is
counted per (chef, kitchen, driver), and a resuming eater is told how many of those its
subscription covers: a missed notice with ``"reason": "restart"``. Nothing is dropped without
being counted.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterator, Sequence

import msgpack
import orjson

from .queues import ENTRY_OVERHEAD

Key = tuple[str, "str | None", str]   # (chef, kitchen, driver) as in dumplings' metadata
MAX_KEYS = 10_000   # distinct keys counted; beyond, one catch-all key that every eater matches
KEY_OVERHEAD = 104  # bytes each held dumpling costs beyond its share of the entry's bytes:
                    # its key tuple, its creation time and their list slots


class StartupReplay:
    """The startup buffer and the counts of what it no longer holds."""

    __slots__ = ("open", "max_bytes", "entries", "bytes", "lost", "lost_total")

    def __init__(self, grace: float, max_bytes: int) -> None:
        self.open = grace > 0 and max_bytes > 0
        self.max_bytes = max_bytes
        # (keys, bytes, msgpack?, creation_times): one dumpling (keys of length 1, the
        # dumpling's bytes) or a kitchen's whole batch as it came (an array): kept as
        # bytes, not objects, and re-read only when an eater is caught up
        self.entries: deque[tuple[Sequence[Key], bytes, bool, Sequence[float | None]]] = \
            deque()
        self.bytes = 0
        self.lost: dict[Key | None, int] = {}
        self.lost_total = 0

    def add(self, key: Key, data: bytes, binary: bool, ct: float | None) -> None:
        """One dumpling accepted (``data``: its bytes in the kitchen's encoding)."""
        if self.open:
            # Tuples, not lists: tuples of strings and numbers leave the garbage
            # collector's lists, and the buffer holds ~100,000 such entries (tracked
            # lists of one made every collection walk them all: ~2 us a dumpling).
            self._hold((key,), data, binary, (ct,))
        else:
            self.count(key)

    def add_batch(self, keys: list[Key], data: bytes, binary: bool,
                  cts: list[float]) -> None:
        """A kitchen's batch accepted whole: ``data`` is its array, ``keys`` its dumplings'."""
        if self.open:
            self._hold(keys, data, binary, cts)   # type: ignore[arg-type]
        else:
            for key in keys:
                self.count(key)

    def _hold(self, keys: Sequence[Key], data: bytes, binary: bool,
              cts: Sequence[float | None]) -> None:
        entries = self.entries
        entries.append((keys, data, binary, cts))
        self.bytes += len(data) + ENTRY_OVERHEAD + KEY_OVERHEAD * len(keys)
        while self.bytes > self.max_bytes and entries:
            old_keys, old, _, _ = entries.popleft()
            self.bytes -= len(old) + ENTRY_OVERHEAD + KEY_OVERHEAD * len(old_keys)
            for key in old_keys:
                self.count(key)

    def count(self, key: Key | None, n: int = 1) -> None:
        """``n`` dumplings of ``key`` that an eater resuming later cannot be given."""
        lost = self.lost
        if key not in lost and len(lost) >= MAX_KEYS:
            key = None
        lost[key] = lost.get(key, 0) + n
        self.lost_total += n

    def close(self) -> None:
        """The grace is over: what is held becomes counted."""
        self.open = False
        for keys, _, _, _ in self.entries:
            for key in keys:
                self.count(key)
        self.entries.clear()
        self.bytes = 0

    def matching(self, matches: Callable[[str, str | None, str], bool], whole: int = 0,
                 mp: bool = False) -> Iterator[tuple[bytes, int, bool, float | None]]:
        """The held dumplings a subscription wants, oldest first: (bytes in the kitchen's
        encoding, dumplings in them, msgpack?, creation_time of the first). One dumpling at
        a time, except that a kitchen's batch in encoding ``mp``, wanted whole and of at
        most ``whole`` dumplings, comes as it came (for a batch eater: no decoding)."""
        for keys, data, binary, cts in self.entries:
            if len(keys) == 1 and not _array(data, binary):
                if matches(*keys[0]):
                    yield data, 1, binary, cts[0]
                continue
            wanted = [i for i, key in enumerate(keys) if matches(*key)]
            if not wanted:
                continue
            if len(wanted) == len(keys) <= whole and binary == mp:
                yield (data if binary else data.strip()), len(keys), binary, cts[0]
                continue
            objs = (msgpack.unpackb(data, raw=False, strict_map_key=False) if binary
                    else orjson.loads(data))
            for i in wanted:
                yield (msgpack.packb(objs[i]) if binary else orjson.dumps(objs[i])), 1, \
                    binary, cts[i]

    def lost_for(self, matches: Callable[[str, str | None, str], bool]) -> int:
        """How many dumplings this subscription wanted that can no longer be replayed (the
        catch-all key counts for everyone: more than the truth, never less)."""
        return sum(n for key, n in self.lost.items() if key is None or matches(*key))


def _array(data: bytes, binary: bool) -> bool:
    first = data.lstrip()[:1] if not binary else data[:1]
    if not binary:
        return first == b"["
    return 0x90 <= first[0] <= 0x9f or first[0] in (0xdc, 0xdd)
