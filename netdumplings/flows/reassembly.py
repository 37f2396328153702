"""TCP reassembly, sans-I/O: sequence numbers and payloads in, ordered byte-stream events out.

A sniffer is not the receiver: it cannot ask for a retransmission, it may miss packets the
receiver got, and it may see a snaplen-cut copy of a segment. So the stream it rebuilds has
holes, and a decoder above it must be told exactly where bytes are missing ("gap" events)
rather than be handed invented bytes or have the stream silently shift. Everything here is
bounded: held out-of-order data never exceeds ``max_buffer`` bytes or ``max_segments``
pieces; beyond that the earliest hole is given up as a gap.

Sequence numbers are unwrapped into a plain, ever-growing integer relative to the next
expected byte (serial-number arithmetic, RFC 1982), so wrap-around at 2**32 needs no special
case anywhere else and held pieces sort as ordinary ints.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple

__all__ = ["Event", "TcpDirection", "DATA", "GAP"]

MASK = 0xFFFFFFFF
_HALF = 1 << 31
#: A segment cannot be longer than this on the wire (IPv4/IPv6 jumbo limits are far below);
#: a larger ``missing`` is garbage and would only produce absurd gaps.
_MAX_MISSING = 1 << 24

DATA = "data"
GAP = "gap"


class Event(NamedTuple):
    """``("data", bytes, len)`` or ``("gap", None, bytes_lost)``, in stream order."""

    kind: str
    data: bytes | None
    size: int


class TcpDirection:
    """Reassembles ONE direction of a TCP connection into an ordered byte stream.

    Counters (``delivered``/``gap_bytes`` in bytes, the others in segments or events) are
    public so the kitchen can report how clean a capture was. ``duplicates`` counts segments
    that brought no new byte, ``overlaps`` segments that were partly redundant (first copy
    wins), ``after_fin`` segments or pieces cut off because they lay beyond the FIN.
    """

    __slots__ = (
        "max_buffer", "max_segments", "_next", "_fin", "_starts", "_chunks", "_plain",
        "_end", "buffered", "finished", "delivered", "gaps", "gap_bytes", "duplicates", "overlaps",
        "evictions", "after_fin",
    )

    def __init__(self, *, max_buffer: int = 1 << 20, max_segments: int = 1024) -> None:
        self.max_buffer = max(1, int(max_buffer))
        self.max_segments = max(1, int(max_segments))
        self._next: int | None = None   # unwrapped next expected sequence number
        self._fin: int | None = None    # unwrapped sequence number of the FIN, once seen
        self._end: int | None = None    # where the stream ended (FIN or RST), once finished
        # Held pieces, non-overlapping, all at or after _next: sorted starts, and
        # start -> (end, bytes) for captured data or (end, None) for bytes known lost.
        self._starts: list[int] = []
        self._chunks: dict[int, tuple[int, bytes | None]] = {}
        self._plain = False             # fast path allowed: started, nothing held, no FIN
        self.buffered = 0
        self.finished = False
        self.delivered = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.duplicates = 0
        self.overlaps = 0
        self.evictions = 0
        self.after_fin = 0

    # -- public view ------------------------------------------------------------------------

    @property
    def next_seq(self) -> int | None:
        """Next expected sequence number on the wire (32-bit), None before the first one."""
        return None if self._next is None else self._next & MASK

    @property
    def segments(self) -> int:
        """Pieces held out of order right now (counted against ``max_segments``)."""
        return len(self._starts)

    def __repr__(self) -> str:
        return (f"<TcpDirection next_seq={self.next_seq} held={len(self._starts)}/"
                f"{self.buffered}B finished={self.finished} delivered={self.delivered} "
                f"gaps={self.gaps}/{self.gap_bytes}B dup={self.duplicates} "
                f"overlap={self.overlaps} evict={self.evictions}>")

    # -- feeding --------------------------------------------------------------------------

    def feed(self, seq: int, payload: bytes, *, syn: bool = False, fin: bool = False,
             rst: bool = False, missing: int = 0) -> list[Event]:
        """One segment of this direction; returns what became deliverable, in order.

        ``missing`` is the number of payload bytes that were on the wire after ``payload``
        but not captured (snaplen); they come out as a gap, never as invented bytes.
        """
        # Fast path, the common case of a clean capture: the segment is exactly the next
        # one. No copy, no bookkeeping beyond two additions.
        if self._plain and payload and not (syn or fin or rst or missing):
            try:
                hit = (seq - self._next) & MASK == 0 and type(payload) is bytes
            except TypeError:
                hit = False
            if hit:
                n = len(payload)
                self._next += n
                self.delivered += n
                return [Event(DATA, payload, n)]
        if not (payload or syn or fin or rst or missing):
            return []                   # a pure ACK: nothing for the stream
        return self._feed(seq, payload, syn, fin, rst, missing)

    def _feed(self, seq: int, payload: bytes, syn: bool, fin: bool, rst: bool,
              missing: int) -> list[Event]:
        events: list[Event] = []
        try:
            seq = int(seq) & MASK
        except (TypeError, ValueError, OverflowError):
            return events
        try:
            missing = min(max(int(missing), 0), _MAX_MISSING)
        except (TypeError, ValueError, OverflowError):
            missing = 0
        if payload is None:
            payload = b""
        elif type(payload) is not bytes:
            try:
                payload = bytes(payload)
            except (TypeError, ValueError):
                payload = b""
        if self.finished:
            if payload or missing:
                end = self._end
                if (end is not None and self._next is not None and end >= self._unwrap(
                        (seq + 1) & MASK if syn else seq) + len(payload) + missing):
                    self.duplicates += 1    # a late retransmission, not data after the end
                else:
                    self.after_fin += 1
            return events
        start = (seq + 1) & MASK if syn else seq
        if self._next is None:
            if not (syn or payload or missing or fin):
                if rst:
                    self.finished = True
                return events
            self._next = start
        if payload or missing or fin:
            self._add(self._unwrap(start), payload, missing, fin)
            self._drain(events)
            self._enforce_limits(events)
        if rst and not self.finished:
            self._flush(events)
            if not self.finished:
                self.finished = True
                self._fin = None
                self._end = self._next
        self._update()
        return events

    def ack(self, ack: int) -> list[Event]:
        """The peer's ACK for this direction: holes below it were lost by the capture only.

        The receiver has every byte below ``ack``, so no retransmission will ever fill a hole
        there; waiting longer would only stall the stream.
        """
        events: list[Event] = []
        if self._next is None or self.finished or (not self._starts and self._fin is None):
            return events
        try:
            target = self._unwrap(int(ack) & MASK)
        except (TypeError, ValueError, OverflowError):
            return events
        while target > self._next and not self.finished:
            boundary = self._starts[0] if self._starts else self._fin
            if boundary is None:
                break                   # nothing seen after this point: no known hole
            hole_end = min(boundary, target)
            self._gap(events, hole_end - self._next)
            self._next = hole_end
            self._drain(events)
        self._update()
        return events

    def flush(self) -> list[Event]:
        """Connection end: report every remaining hole and release what was held after it."""
        events: list[Event] = []
        if self._next is not None:
            self._flush(events)
            self._update()
        return events

    # -- internals --------------------------------------------------------------------------

    def _unwrap(self, seq: int) -> int:
        nxt = self._next
        return nxt + ((seq - nxt + _HALF) & MASK) - _HALF

    def _update(self) -> None:
        self._plain = (self._next is not None and not self._starts and self._fin is None
                       and not self.finished)

    def _gap(self, events: list[Event], size: int) -> None:
        if size <= 0:
            return
        self.gap_bytes += size
        if events and events[-1].kind == GAP:   # adjacent losses are one hole to a decoder
            events[-1] = Event(GAP, None, events[-1].size + size)
        else:
            events.append(Event(GAP, None, size))
            self.gaps += 1

    def _add(self, start: int, payload: bytes, missing: int, fin: bool) -> None:
        """Store the new bytes of a segment (holes only: first copy wins)."""
        end = start + len(payload) + missing
        if fin and self._fin is None and end >= self._next:
            self._fin = end
            self._cut_held_at_fin()
        if self._fin is not None and end > self._fin:
            if start >= self._fin:
                if end > start:
                    self.after_fin += 1
                return
            self.after_fin += 1
            keep = self._fin - start
            if len(payload) > keep:
                payload, missing = payload[:keep], 0
            else:
                missing = keep - len(payload)
            end = self._fin
        size = end - start
        if size <= 0:
            return
        nxt = self._next
        if end <= nxt:
            self.duplicates += 1
            return
        redundant = 0
        if start < nxt:
            redundant = nxt - start
            if redundant >= len(payload):
                missing -= redundant - len(payload)
                payload = b""
            else:
                payload = payload[redundant:]
            start = nxt
        added = 0
        if payload:
            added += self._fill(start, payload, start + len(payload))
        if missing:
            added += self._fill(start + len(payload), None, end)
        if added == 0:
            self.duplicates += 1
        elif redundant or added < end - start:
            self.overlaps += 1

    def _fill(self, a: int, data: bytes | None, b: int) -> int:
        """Hold the parts of [a, b) not held yet; returns how many bytes were new."""
        starts, chunks = self._starts, self._chunks
        i = bisect_right(starts, a)
        pos = a
        if i and chunks[starts[i - 1]][0] > pos:
            pos = chunks[starts[i - 1]][0]
        added = 0
        while pos < b:
            nxt_start = starts[i] if i < len(starts) else b
            hole_end = nxt_start if nxt_start < b else b
            if hole_end > pos:
                if data is None:
                    piece = None
                else:
                    piece = data[pos - a:hole_end - a]   # whole slice returns data itself
                    self.buffered += len(piece)
                starts.insert(i, pos)
                chunks[pos] = (hole_end, piece)
                added += hole_end - pos
                i += 1
            if nxt_start >= b:
                break
            end = chunks[nxt_start][0]
            if end > pos:
                pos = end
            i += 1
        return added

    def _drain(self, events: list[Event]) -> None:
        """Release held pieces that start exactly at the next expected byte."""
        starts, chunks = self._starts, self._chunks
        nxt = self._next
        k = 0
        n = len(starts)
        while k < n and starts[k] == nxt:
            end, data = chunks.pop(nxt)
            if data is None:
                self._gap(events, end - nxt)
            else:
                size = len(data)
                self.buffered -= size
                self.delivered += size
                events.append(Event(DATA, data, size))
            nxt = end
            k += 1
        if k:
            del starts[:k]
        self._next = nxt
        if self._fin is not None and nxt >= self._fin:
            self._end = self._fin
            self._next = self._fin + 1          # the FIN takes one sequence number
            self._fin = None
            self.finished = True
            self._drop_all()

    def _enforce_limits(self, events: list[Event]) -> None:
        """Give up on the earliest hole while more is held than allowed."""
        starts = self._starts
        while starts and (self.buffered > self.max_buffer or len(starts) > self.max_segments):
            self._gap(events, starts[0] - self._next)
            self._next = starts[0]
            self.evictions += 1
            self._drain(events)

    def _flush(self, events: list[Event]) -> None:
        starts = self._starts
        while starts and not self.finished:
            self._gap(events, starts[0] - self._next)
            self._next = starts[0]
            self._drain(events)
        if self._fin is not None and not self.finished:
            self._gap(events, self._fin - self._next)
            self._next = self._fin
            self._drain(events)

    def _cut_held_at_fin(self) -> None:
        """A FIN ends the stream: held bytes beyond it can never be part of it."""
        fin, starts, chunks = self._fin, self._starts, self._chunks
        while starts:
            s = starts[-1]
            end, data = chunks[s]
            if end <= fin:
                break
            self.after_fin += 1
            if s >= fin:
                starts.pop()
                del chunks[s]
                if data is not None:
                    self.buffered -= len(data)
            else:
                if data is not None:
                    self.buffered -= end - fin
                    data = data[:fin - s]
                chunks[s] = (fin, data)
                break

    def _drop_all(self) -> None:
        self._starts.clear()
        self._chunks.clear()
        self.buffered = 0
