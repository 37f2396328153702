"""The sans-I/O DNS decoder: message bytes in, ``Query`` / ``Lookup`` / ``DecodeError`` out.

``DnsDecoder`` parses the messages of one flow (the fast path when it is sure, dnslib
otherwise) and pairs each response with the query it answers (same message id within the
flow). ``DnsTcpFramer`` cuts DNS over TCP into messages by their two-byte length prefix.
Nothing here knows about kitchens, flows or dumplings.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .events import DecodeError, DnsMessage, Event, Lookup, Query
from .fast import fast_parse
from .presentation import MAX_MESSAGE
from .reference import parse_message_dnslib

#: Bytes of an undecodable message shown as hex in an error event.
ERROR_HEX_BYTES = 64


def parse_message(data: bytes) -> DnsMessage:
    """Parse one DNS message into JSON-able parts (raises on anything malformed)."""
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"{len(data)} bytes is longer than any DNS message")
    msg = fast_parse(data)
    if msg is None:
        msg = parse_message_dnslib(data)
    return msg


class DnsDecoder:
    """Parses the DNS messages of one flow and pairs responses with their queries.

    Sans-I/O: ``feed`` takes a datagram's bytes and returns events; ``expire`` and
    ``close`` report queries that were never answered. ``direction`` is opaque here: any
    value that tells the caller which way the message went (the chef's ``Direction``); it
    comes back in the events as given. Memory is bounded by
    ``max_pending`` outstanding queries (the oldest is reported unanswered when full).
    """

    def __init__(self, query_timeout: float = 5.0, max_pending: int = 256) -> None:
        self.query_timeout = query_timeout
        self.max_pending = max_pending
        # id -> (query message, direction, capture time); insertion order = age
        self._pending: OrderedDict[int, tuple[DnsMessage, Any, float | None]] = OrderedDict()
        self.messages = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, data: bytes, direction: Any = None,
             timestamp: float | None = None) -> list[Event]:
        events: list[Event] = []
        if timestamp is not None:
            events.extend(self.expire(timestamp))
        try:
            msg = parse_message(bytes(data))
        except Exception as exc:  # dnslib raises many kinds on garbage; all mean "not DNS"
            self.errors += 1
            events.append(DecodeError(
                reason=f"{type(exc).__name__}: {exc}"[:200], size=len(data),
                hex_prefix=bytes(data[:ERROR_HEX_BYTES]).hex(), direction=direction,
                timestamp=timestamp))
            return events
        self.messages += 1
        if not msg.is_response:
            if msg.id in self._pending:
                events.append(Query(msg, direction, timestamp, retransmission=True))
                return events
            if len(self._pending) >= self.max_pending:
                _, (old, old_dir, old_ts) = self._pending.popitem(last=False)
                events.append(Lookup(old, None, old_dir, old_ts, None))
            self._pending[msg.id] = (msg, direction, timestamp)
            events.append(Query(msg, direction, timestamp))
            return events
        pending = self._pending.pop(msg.id, None)
        if pending is None:
            events.append(Lookup(None, msg, None, None, timestamp, direction))
        else:
            query, q_dir, q_ts = pending
            events.append(Lookup(query, msg, q_dir, q_ts, timestamp, direction))
        return events

    def expire(self, now: float) -> list[Lookup]:
        """Queries older than ``query_timeout`` at capture time ``now``, as unanswered."""
        out = []
        limit = now - self.query_timeout
        while self._pending:
            qid, (msg, q_dir, q_ts) = next(iter(self._pending.items()))
            if q_ts is None or q_ts >= limit:
                break
            del self._pending[qid]
            out.append(Lookup(msg, None, q_dir, q_ts, None))
        return out

    def close(self) -> list[Lookup]:
        """Every outstanding query, as unanswered (the flow is over)."""
        out = [Lookup(msg, None, q_dir, q_ts, None)
               for msg, q_dir, q_ts in self._pending.values()]
        self._pending.clear()
        return out


class DnsTcpFramer:
    """DNS over TCP (RFC 1035 4.2.2, RFC 7766): every message is preceded by its length in
    two bytes. Sans-I/O: ``feed`` returns the whole messages completed by ``data``, so at
    most one message (64 KB) is held per direction. A gap loses the boundaries, and a
    two-byte length cannot be told from any other two bytes, so that direction stops
    (``stopped``; the bytes that follow are counted in ``skipped``)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stopped = False
        self.skipped = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if self.stopped:
            self.skipped += len(data)
            return []
        buf = self._buf
        buf += data
        out = []
        pos, n = 0, len(buf)
        while n - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if n - pos - 2 < size:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + size]))
            pos += 2 + size
        del buf[:pos]
        return out

    def gap(self, size: int) -> int:
        """Stop; returns the bytes of a partial message dropped with the gap."""
        dropped = len(self._buf)
        self._buf = bytearray()
        self.skipped += size + dropped
        self.stopped = True
        return dropped

