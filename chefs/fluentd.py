"""Fluentd forward protocol (v1) over TCP: event messages, acks and the auth handshake.

The forward protocol is a plain stream of msgpack objects in each direction. The client
sends events in one of four modes (Message, Forward, PackedForward,
CompressedPackedForward) and, with a shared key, a PING; the server sends HELO, PONG and
``{"ack": chunk}`` replies. ``FluentdForwardDecoder`` turns one direction's bytes into
``FluentdMessage`` events; ``FluentdForwardChef`` keeps one decoder per direction, matches
acks to the requests that asked for them, and builds the payloads.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from netdumplings.chef import CloseReason, Direction, FlowChefOptions, StreamChef

from .msgpack_stream import (EventTime, MsgpackError, MsgpackStreamDecoder, iso_time, new_unpacker, one_line, packed_size, raw_bytes, text,
                             to_jsonable)

__all__ = ["FluentdForwardChef", "FluentdForwardDecoder", "FluentdMessage"]

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
#: Kinds of message the decoder reports.
EVENT_MODES = ("Message", "Forward", "PackedForward", "CompressedPackedForward")

#: First bytes a forward-protocol message can have: fixarray of 2..6 (events, HELO, PING,
#: PONG) or a one-key fixmap (an ack). Used to resync after bad bytes, so that garbage is
#: skipped instead of being read as a flood of tiny bogus messages.
_MESSAGE_STARTS = frozenset({0x81, 0x92, 0x93, 0x94, 0x95, 0x96})


@dataclass
class FluentdMessage:
    """One decoded forward-protocol message (or an ``error`` / ``unknown`` report)."""

    kind: str
    offset: int
    size: int
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    tag: str | None = None
    #: (time, record) pairs kept (at most ``max_events``); ``event_count`` is the real count
    entries: list[tuple[Any, Any]] = field(default_factory=list)
    event_count: int = 0
    option: Any = None
    #: handshake / ack / error fields, already JSON-able
    fields: dict[str, Any] = field(default_factory=dict)
    #: problems inside an otherwise usable message (bad entries, cut decompression)
    problems: list[str] = field(default_factory=list)


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
                msg.fields = {"ack": _scalar(value["ack"])}
                return msg
            return self._unknown(msg, value, "a map that is not an ack")
        if not isinstance(value, list) or not value:
            return self._unknown(msg, value, "not an array or an ack map")
        head, n = value[0], len(value)
        if head == "HELO" and n == 2 and isinstance(value[1], dict):
            opts = value[1]
            msg.kind = "HELO"
            msg.fields = {"nonce": _scalar(opts.get("nonce")), "auth": _scalar(opts.get("auth")),
                          "keepalive": _scalar(opts.get("keepalive", True)),
                          "options": to_jsonable(opts, 1024)[0]}
            return msg
        if head == "PING" and n == 6:
            msg.kind = "PING"
            names = ("client_hostname", "shared_key_salt", "shared_key_hexdigest", "username",
                     "password_digest")
            msg.fields = {k: _scalar(v) for k, v in zip(names, value[1:])}
            return msg
        if head == "PONG" and n == 5:
            msg.kind = "PONG"
            names = ("auth_result", "reason", "server_hostname", "shared_key_hexdigest")
            msg.fields = {k: _scalar(v) for k, v in zip(names, value[1:])}
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
        self._take_entries(msg, stream)
        if stream.tell() < len(packed) and not msg.problems:
            msg.problems.append(f"{len(packed) - stream.tell()} bytes after the last entry")
        return msg

    def _take_entries(self, msg: FluentdMessage, entries: Any) -> None:
        """Keep up to ``max_events`` [time, record] entries; count all; note bad ones."""
        bad = 0
        it = iter(entries)
        while True:
            try:
                entry = next(it)
            except StopIteration:
                break
            except Exception as exc:  # a packed stream with bad msgpack inside
                msg.problems.append(f"packed entries: {type(exc).__name__}: {exc}".rstrip(": "))
                break
            if (isinstance(entry, list) and len(entry) == 2 and _is_time(entry[0])
                    and isinstance(entry[1], dict)):
                msg.event_count += 1
                if len(msg.entries) < self.max_events:
                    msg.entries.append((entry[0], entry[1]))
            else:
                bad += 1
        if bad:
            msg.problems.append(f"{bad} entries are not [time, record]")

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


def _scalar(value: Any) -> Any:
    """Handshake fields: bytes as text when printable else hex, other values JSON-able."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() if len(value) <= 1024 else bytes(value[:1024]).hex() + "…"
    if isinstance(value, str):
        shown = text(value)
        return shown if len(shown) <= 1024 else shown[:1024] + "…"
    return to_jsonable(value, 256)[0]


def event_time(value: Any) -> dict[str, Any]:
    """Both ISO and epoch for an event time, plus the exact source form."""
    if isinstance(value, EventTime):
        return {"time": iso_time(value.seconds, value.nanoseconds), "epoch": value.epoch,
                "seconds": value.seconds, "nanoseconds": value.nanoseconds,
                "time_type": "EventTime"}
    kind = "int" if isinstance(value, int) else "float"
    return {"time": iso_time(value), "epoch": float(value), "time_type": kind}


# -- the chef ------------------------------------------------------------------------------


@dataclass
class _Pending:
    timestamp: float | None
    tag: str | None
    events: int
    kind: str


class _FlowState:
    __slots__ = ("decoders", "pending", "acked", "auth", "max_pending")

    def __init__(self, decoders: dict[Direction, FluentdForwardDecoder], max_pending: int) -> None:
        self.decoders = decoders
        #: chunk id -> request waiting for its ack (oldest first, bounded)
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.acked = 0
        self.auth: bool | None = None
        self.max_pending = max_pending


class FluentdForwardChef(StreamChef):
    """Fluentd forward protocol on TCP (default port 24224): one dumpling per message.

    Event messages show their tag, events (time as ISO and epoch, record truncated to
    ``max_record_bytes`` with its original size stated) and options; acks carry the latency
    since the last byte of the request they answer; PONG says whether auth succeeded."""

    class Options(FlowChefOptions):
        #: Records longer than this (roughly, in JSON characters) are cut in the payload.
        max_record_bytes: int = 4096
        #: Events listed per message (the count is always complete).
        max_events: int = 100
        #: Largest message decoded; bigger ones are reported and skipped.
        max_message_bytes: int = 8 << 20
        #: Cap on the decompressed size of a CompressedPackedForward message.
        max_decompressed_bytes: int = 32 << 20
        #: Requests remembered per connection while waiting for their ack.
        max_pending_acks: int = 1024

    default_ports: ClassVar[tuple[int, ...]] = (24224,)

    def new_flow_state(self, flow: Any) -> _FlowState:
        o = self.options
        decoders = {d: FluentdForwardDecoder(o.max_message_bytes, o.max_events,  # type: ignore
                                             o.max_decompressed_bytes)  # type: ignore
                    for d in Direction}
        return _FlowState(decoders, o.max_pending_acks)  # type: ignore[attr-defined]

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float) -> Any:
        state = self.flow_state(flow)
        for msg in state.decoders[direction].feed(data, timestamp):
            yield self._payload(flow, direction, state, msg, timestamp)

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Any:
        state = self.flow_state(flow)
        for msg in state.decoders[direction].gap(size):
            yield self._payload(flow, direction, state, msg, self.now)

    def on_close(self, flow: Any, reason: CloseReason) -> Any:
        state = self.flow_state(flow)
        for direction, decoder in state.decoders.items():
            for msg in decoder.close():
                yield self._payload(flow, direction, state, msg, self.now)
        c2s, s2c = state.decoders[C2S], state.decoders[S2C]
        if not (c2s.stream.objects or s2c.stream.objects or c2s.stream.errors
                or s2c.stream.errors):
            return  # nothing was said on this flow (e.g. a lone ACK after the close)
        unacked = list(state.pending)[:20]
        errors = c2s.errors + s2c.errors
        auth = {None: "", True: " auth=ok", False: " auth=FAILED"}[state.auth]
        yield {
            "flow": flow.describe(), "src": flow.client_str, "dst": flow.server_str,
            "direction": str(Direction.CLIENT_TO_SERVER), "timestamp": self.now,
            "kind": "close", "reason": str(reason),
            "messages": {"client_to_server": c2s.messages, "server_to_client": s2c.messages},
            "errors": {"client_to_server": c2s.errors, "server_to_client": s2c.errors},
            "skipped_bytes": {"client_to_server": c2s.stream.skipped_bytes,
                              "server_to_client": s2c.stream.skipped_bytes},
            "acked": state.acked, "unacked": len(state.pending), "unacked_chunks": unacked,
            "auth_result": state.auth,
            "summary": (f"{flow.label()}  CLOSE ({reason}) "
                        f"messages={c2s.messages}/{s2c.messages} acked={state.acked} "
                        f"unacked={len(state.pending)}{auth}"
                        + (f" errors={errors}" if errors else "")),
        }

    # -- payloads -----------------------------------------------------------------------

    def _payload(self, flow: Any, direction: Direction, state: _FlowState, msg: FluentdMessage,
                 timestamp: float | None) -> dict[str, Any]:
        label = flow.label(direction)
        p: dict[str, Any] = {
            "flow": flow.describe(), "src": flow.src(direction), "dst": flow.dst(direction),
            "direction": str(direction),
            "timestamp": msg.last_timestamp if msg.last_timestamp is not None else timestamp,
            "kind": msg.kind, "offset": msg.offset, "size": msg.size,
        }
        if msg.kind in EVENT_MODES:
            p.update(self._events(msg, state))
            chunk = p.get("chunk")
            line = f"{msg.kind} tag={msg.tag} events={msg.event_count}"
            if chunk is not None:
                line += f" chunk={chunk}"
            if p.get("compressed"):
                line += f" compressed={p['compressed']}"
            if msg.problems:
                line += f" PROBLEMS: {'; '.join(msg.problems)}"
            elif msg.entries:
                line += f" first={one_line(p['events'][0]['record'], 80)}"
        elif msg.kind == "ack":
            chunk = msg.fields["ack"]
            p.update(msg.fields)
            req = state.pending.pop(str(chunk), None)
            p["matched"] = req is not None
            if req is not None:
                state.acked += 1
                latency = (None if req.timestamp is None or msg.last_timestamp is None
                           else msg.last_timestamp - req.timestamp)
                p.update(ack_latency=latency, request_tag=req.tag, request_events=req.events,
                         request_kind=req.kind)
                shown = "" if latency is None else f" {latency * 1000:.1f}ms"
                line = f"ack chunk={chunk}{shown} for {req.kind} tag={req.tag} events={req.events}"
            else:
                p["ack_latency"] = None
                line = f"ack chunk={chunk} (no matching request seen)"
        elif msg.kind == "HELO":
            p.update(msg.fields)
            line = (f"HELO nonce={msg.fields['nonce']} auth={msg.fields['auth'] or '-'}"
                    f" keepalive={msg.fields['keepalive']}")
        elif msg.kind == "PING":
            p.update(msg.fields)
            line = (f"PING hostname={msg.fields['client_hostname']} "
                    f"username={msg.fields['username'] or '-'}")
        elif msg.kind == "PONG":
            p.update(msg.fields)
            ok = msg.fields["auth_result"] is True
            state.auth = ok
            p["auth"] = "ok" if ok else "failed"
            line = (f"PONG auth={'ok' if ok else 'FAILED'}"
                    + (f" reason={msg.fields['reason']!r}" if msg.fields["reason"] else "")
                    + f" hostname={msg.fields['server_hostname']}")
        else:  # error / unknown
            p.update(msg.fields)
            self.logger.info("%s: %s (offset %d)", label, msg.fields.get("error"), msg.offset)
            line = f"ERROR {msg.fields.get('error')}"
        p["summary"] = f"{label}  {line}"
        return p

    def _events(self, msg: FluentdMessage, state: _FlowState) -> dict[str, Any]:
        limit = self.options.max_record_bytes  # type: ignore[attr-defined]
        events = []
        for t, record in msg.entries:
            shown, truncated = to_jsonable(record, limit)
            event = {**event_time(t), "record": shown}
            if truncated:
                event["record_truncated"] = True
                event["record_size"] = packed_size(record)
            events.append(event)
        option, _ = to_jsonable(msg.option, 1024)
        out: dict[str, Any] = {"mode": msg.kind, "tag": msg.tag, "event_count": msg.event_count,
                               "events": events, "option": option}
        if msg.event_count > len(events):
            out["events_shown"] = len(events)
        out.update(msg.fields)
        if msg.problems:
            out["problems"] = msg.problems
        if isinstance(msg.option, dict):
            if "chunk" in msg.option:
                chunk = _scalar(msg.option["chunk"])
                out["chunk"] = chunk
                state.pending[str(chunk)] = _Pending(msg.last_timestamp, msg.tag,
                                                     msg.event_count, msg.kind)
                while len(state.pending) > state.max_pending:
                    state.pending.popitem(last=False)
            if "size" in msg.option:
                out["size_option"] = _scalar(msg.option["size"])
            if "compressed" in msg.option:
                out["compressed"] = _scalar(msg.option["compressed"])
        return out

