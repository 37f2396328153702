"""What comes back from the workers of ``nd-sniff --workers N`` (``netdumplings.kitchen.workers``):
their dumplings, numbered into one sequence, and their counts, added up."""

from __future__ import annotations

import threading
from typing import Any

from ..wire.dumpling import decode
from .kitchen import KitchenStats, Sink


class SequencedSink:
    """Every dumpling of the kitchen, from the workers and from the reader, goes through
    here: one lock, one ``sequence``, patched into the encoded bytes (the workers number
    their own). ``"sequence":`` first occurs in the metadata: keys and strings before it
    are JSON strings, whose quotes are escaped."""

    def __init__(self, sink: Sink, wants_dict: bool) -> None:
        self.sink = sink
        self.wants_dict = wants_dict
        self.sequence = 0
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self._one(data)

    def many(self, batch: list[bytes]) -> None:
        """A worker's batch, under one lock."""
        with self.lock:
            for data in batch:
                self._one(data)

    def _one(self, data: bytes) -> None:
        self.sequence += 1
        at = data.find(b'"sequence":')
        if at >= 0:
            start = at + 11
            end = data.find(b",", start)   # the number ends at the next key (or the dict)
            if end < 0:
                end = data.find(b"}", start)
            data = b"%s%d%s" % (data[:start], self.sequence, data[end:])
        self.sink(decode(data) if self.wants_dict else {}, data)


def merge_stats(total: KitchenStats, part: dict[str, Any]) -> None:
    for key, value in part.items():
        if key in ("fragments", "datagrams_reassembled", "fragmented_datagrams_dropped"):
            continue
        setattr(total, key, getattr(total, key) + value)


class DefragTotals:
    """The fragment counts of several workers, shaped like ``DefragStats`` for the summary."""

    def __init__(self) -> None:
        self.fragments = self.reassembled = self.dropped = 0

    def add(self, fragments: int, reassembled: int, dropped: int) -> None:
        self.fragments += fragments
        self.reassembled += reassembled
        self.dropped += dropped


def add_up(total: dict[str, Any], part: dict[str, Any] | None) -> None:
    """Per chef counts (errors, seconds) of one more worker into ``total``."""
    for chef, n in (part or {}).items():
        total[chef] = total.get(chef, 0) + n
