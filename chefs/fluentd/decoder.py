"""Fluentd forward protocol (v1): one direction's bytes -> ``FluentdMessage`` events.

The forward protocol is a plain stream of msgpack objects in each direction. The client
sends events in one of four modes (Message, Forward, PackedForward,
CompressedPackedForward) and, with a shared key, a PING; the server sends HELO, PONG and
``{"ack": chunk}`` replies. ``FluentdForwardDecoder`` reads the objects with the shared
sans-I/O ``MsgpackStreamDecoder`` (msgpack's Unpacker underneath) and tells the message
shapes apart. Sans-I/O: it imports only the stdlib, this package's ``events`` and the
msgpack package's decoder-side modules (``decoder``, ``events``, ``values``, ``display``,
never its chef): no framework module, no scapy, sockets or asyncio.
"""

from __future__ import annotations

import zlib
from typing import Any

from ..msgpack_stream.decoder import MsgpackStreamDecoder
from ..msgpack_stream.display import one_line, raw_bytes, text, to_jsonable
from ..msgpack_stream.events import MsgpackError
from ..msgpack_stream.values import EventTime, new_unpacker
from .events import FluentdMessage


#: First bytes a forward-protocol message can have: fixarray of 2..6 (events, HELO, PING,
#: PONG) or a one-key fixmap (an ack). Used to resync after bad bytes, so that garbage is
#: skipped instead of being read as a flood of tiny bogus messages.
_MESSAGE_STARTS = frozenset({0x81, 0x92, 0x93, 0x94, 0x95, 0x96})


class FluentdForwardDecoder:
    """One direction of a forward-protocol connection -> ``FluentdMessage`` events.

    Bounded: a single message may be at most ``max_message_bytes`` on the wire, packed
    entry streams are decompressed up to ``max_decompressed_bytes``, and at most
    ``max_events`` entries per message are kept (the rest are only counted). After
    ``max_errors`` bad messages the direction is given up on.
    """

    def __init__(self, max_message_bytes: int = 8 << 20, max_events: int = 1000,
                 max_decompressed_bytes: int = 32 << 20, max_errors: int = 16) -> None:
        self.max_events = max_events
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_errors = max_errors
        self.stream = MsgpackStreamDecoder(max_message_bytes, max_errors,
                                           start_bytes=_MESSAGE_STARTS)
        self.messages = 0
        self.errors = 0

    def feed(self, data: bytes, timestamp: float | None = None) -> list[FluentdMessage]:
        return self._convert(self.stream.feed(data, timestamp))

    def gap(self, size: int) -> list[FluentdMessage]:
        return self._convert(self.stream.gap(size))

    def close(self) -> list[FluentdMessage]:
        return self._convert(self.stream.close())

    def _convert(self, events: list[Any]) -> list[FluentdMessage]:
        out: list[FluentdMessage] = []
        for event in events:
            if isinstance(event, MsgpackError):
                if not event.fatal:
                    self.errors += 1
                out.append(FluentdMessage("error", event.offset, event.skipped, fields={
                    "error": event.reason, "skipped": event.skipped, "fatal": event.fatal}))
                continue
            message = self._classify(event.value, event.offset, event.size)
            message.first_timestamp = event.first_timestamp
            message.last_timestamp = event.last_timestamp
            out.append(message)
            if message.kind == "unknown":
                self.errors += 1
                if self.errors >= self.max_errors:
                    for stop in self.stream.stop(f"gave up after {self.errors} bad messages"):
                        out.append(FluentdMessage("error", stop.offset, 0, fields={
                            "error": stop.reason, "skipped": 0, "fatal": True}))
            else:
                self.messages += 1
        return out

    # -- message shapes ---------------------------------------------------------------

    def _classify(self, value: Any, offset: int, size: int) -> FluentdMessage:
        msg = FluentdMessage("unknown", offset, size)
        if isinstance(value, dict):
            if len(value) == 1 and "ack" in value:
                msg.kind = "ack"
                msg.fields = {"ack": scalar(value["ack"])}
                return msg
            return self._unknown(msg, value, "a map that is not an ack")
        if not isinstance(value, list) or not value:
            return self._unknown(msg, value, "not an array or an ack map")
        head, n = value[0], len(value)
        if head == "HELO" and n == 2 and isinstance(value[1], dict):
            opts = value[1]
            msg.kind = "HELO"
            msg.fields = {"nonce": scalar(opts.get("nonce")), "auth": scalar(opts.get("auth")),
                          "keepalive": scalar(opts.get("keepalive", True)),
                          "options": to_jsonable(opts, 1024)[0]}
            return msg
        if head == "PING" and n == 6:
            msg.kind = "PING"
            names = ("client_hostname", "shared_key_salt", "shared_key_hexdigest", "username",
                     "password_digest")
            msg.fields = {k: scalar(v) for k, v in zip(names, value[1:])}
            return msg
        if head == "PONG" and n == 5:
            msg.kind = "PONG"
            names = ("auth_result", "reason", "server_hostname", "shared_key_hexdigest")
            msg.fields = {k: scalar(v) for k, v in zip(names, value[1:])}
            return msg
        if not isinstance(head, str):
            return self._unknown(msg, value, "first element is not a tag")
        msg.tag = text(head)
        if n in (3, 4) and _is_time(value[1]) and isinstance(value[2], dict):
            msg.kind = "Message"
            msg.fields["array_length"] = n
            msg.option = value[3] if n == 4 else None
            msg.entries = [(value[1], value[2])]
            msg.event_count = 1
            return msg
        if n not in (2, 3):
            return self._unknown(msg, value, f"array of {n} with a tag")
        msg.option = value[2] if n == 3 else None
        body = value[1]
        if isinstance(body, list):
            msg.kind = "Forward"
            self._take_entries(msg, body)
            return msg
        packed = raw_bytes(body)
        if packed is None:
            return self._unknown(msg, value, "entries are neither an array nor bin")
        msg.fields["packed_entries_length"] = len(packed)
        compressed = isinstance(msg.option, dict) and msg.option.get("compressed")
        if compressed:
            msg.kind = "CompressedPackedForward"
            msg.fields["compressed_entries_length"] = len(packed)
            if compressed != "gzip":
                msg.problems.append(f"unknown compression {one_line(to_jsonable(compressed)[0])}")
                return msg
            packed = self._gunzip(msg, packed)
            msg.fields["packed_entries_length"] = len(packed)
        else:
            msg.kind = "PackedForward"
        stream = new_unpacker(max(len(packed), 16))
        stream.feed(packed)
        used = self._take_entries(msg, stream)
        if used < len(packed) and not msg.problems:
            # msgpack's tell() also counts an object it could not finish, hence ``used``
            msg.problems.append(f"{len(packed) - used} bytes after the last whole entry "
                                f"(an entry cut short)")
        return msg

    def _take_entries(self, msg: FluentdMessage, entries: Any) -> int:
        """Keep up to ``max_events`` [time, record] entries; count all; note bad ones.
        Returns, for a packed stream (an Unpacker), the bytes its whole entries took."""
        bad = used = 0
        tell = getattr(entries, "tell", None)
        it = iter(entries)
        while True:
            try:
                entry = next(it)
            except StopIteration:
                break
            except Exception as exc:  # a packed stream with bad msgpack inside
                msg.problems.append(f"packed entries: {type(exc).__name__}: {exc}".rstrip(": "))
                break
            if tell is not None:
                used = tell()
            if (isinstance(entry, list) and len(entry) == 2 and _is_time(entry[0])
                    and isinstance(entry[1], dict)):
                msg.event_count += 1
                if len(msg.entries) < self.max_events:
                    msg.entries.append((entry[0], entry[1]))
            else:
                bad += 1
        if bad:
            msg.problems.append(f"{bad} entries are not [time, record]")
        return used

    def _gunzip(self, msg: FluentdMessage, data: bytes) -> bytes:
        """Concatenated gzip members, with a cap against decompression bombs."""
        out = bytearray()
        limit = self.max_decompressed_bytes
        while data and len(out) <= limit:
            d = zlib.decompressobj(wbits=31)
            try:
                out += d.decompress(data, limit + 1 - len(out))
            except zlib.error as exc:
                msg.problems.append(f"gzip: {exc}")
                break
            if d.unconsumed_tail:
                break
            if not d.eof:
                msg.problems.append("gzip: data cut short")
                break
            data = d.unused_data
        if len(out) > limit:
            msg.problems.append(f"decompressed entries larger than {limit} bytes; cut")
            del out[limit:]
        return bytes(out)

    @staticmethod
    def _unknown(msg: FluentdMessage, value: Any, why: str) -> FluentdMessage:
        msg.kind = "unknown"
        msg.tag = None
        msg.fields = {"error": f"not a forward-protocol message: {why}",
                      "value": to_jsonable(value, 512)[0]}
        return msg


def _is_time(value: Any) -> bool:
    return isinstance(value, EventTime) or (isinstance(value, (int, float))
                                            and not isinstance(value, bool))


def scalar(value: Any) -> Any:
    """Handshake fields: bytes as text when printable else hex, other values JSON-able."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() if len(value) <= 1024 else bytes(value[:1024]).hex() + "…"
    if isinstance(value, str):
        shown = text(value)
        return shown if len(shown) <= 1024 else shown[:1024] + "…"
    return to_jsonable(value, 256)[0]
