"""Fluentd forward messages -> dumpling payloads, with each connection's ack bookkeeping.

Part of the chef shell (it reads the flow for addresses and labels): event records are cut to
a budget with their packed size stated, acks are matched to the requests that asked for them,
and a connection's close sums it up.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from netdumplings.kitchen.chef import CloseReason, Direction

from ..msgpack_stream.display import iso_time, one_line, to_jsonable
from ..msgpack_stream.values import EventTime, packed_size
from .decoder import FluentdForwardDecoder, scalar
from .events import EVENT_MODES, FluentdMessage

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


@dataclass
class Pending:
    """A request that asked for an ack (its ``chunk`` option), waiting for it."""

    timestamp: float | None
    tag: str | None
    events: int
    kind: str


class FlowState:
    """A connection's two decoders and what its payloads remember: requests waiting for an
    ack (bounded, oldest dropped first), acks matched, the auth result."""

    __slots__ = ("decoders", "pending", "acked", "auth", "max_pending")

    def __init__(self, decoders: dict[Direction, FluentdForwardDecoder], max_pending: int) -> None:
        self.decoders = decoders
        #: chunk id -> request waiting for its ack (oldest first, bounded)
        self.pending: OrderedDict[str, Pending] = OrderedDict()
        self.acked = 0
        self.auth: bool | None = None
        self.max_pending = max_pending


def event_time(value: Any) -> dict[str, Any]:
    """Both ISO and epoch for an event time, plus the exact source form."""
    if isinstance(value, EventTime):
        return {"time": iso_time(value.seconds, value.nanoseconds), "epoch": value.epoch,
                "seconds": value.seconds, "nanoseconds": value.nanoseconds,
                "time_type": "EventTime"}
    kind = "int" if isinstance(value, int) else "float"
    return {"time": iso_time(value), "epoch": float(value), "time_type": kind}


def message_payload(flow: Any, direction: Direction, state: FlowState, msg: FluentdMessage,
                    timestamp: float | None, max_record_bytes: int = 4096) -> dict[str, Any]:
    """The payload of one message seen in ``direction``; acks are matched to the request
    that asked for them (and their latency given), PONG sets the connection's auth result."""
    label = flow.label(direction)
    p: dict[str, Any] = {
        "flow": flow.describe(), "src": flow.src(direction), "dst": flow.dst(direction),
        "direction": str(direction),
        "timestamp": msg.last_timestamp if msg.last_timestamp is not None else timestamp,
        "kind": msg.kind, "offset": msg.offset, "size": msg.size,
    }
    if msg.kind in EVENT_MODES:
        p.update(_events(msg, state, max_record_bytes))
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
        line = f"ERROR {msg.fields.get('error')}"
    p["summary"] = f"{label}  {line}"
    return p


def _events(msg: FluentdMessage, state: FlowState, limit: int) -> dict[str, Any]:
    """An event message's fields; a request asking for an ack (``chunk``) is remembered."""
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
            chunk = scalar(msg.option["chunk"])
            out["chunk"] = chunk
            state.pending[str(chunk)] = Pending(msg.last_timestamp, msg.tag,
                                                msg.event_count, msg.kind)
            while len(state.pending) > state.max_pending:
                state.pending.popitem(last=False)
        if "size" in msg.option:
            out["size_option"] = scalar(msg.option["size"])
        if "compressed" in msg.option:
            out["compressed"] = scalar(msg.option["compressed"])
    return out


def close_payload(flow: Any, reason: CloseReason, state: FlowState,
                  timestamp: float | None) -> dict[str, Any] | None:
    """The connection's end: messages, errors, acks still owed and the auth result; None
    when nothing was said on the flow (e.g. a lone ACK after the close)."""
    c2s, s2c = state.decoders[C2S], state.decoders[S2C]
    if not (c2s.stream.objects or s2c.stream.objects or c2s.stream.errors
            or s2c.stream.errors):
        return None  # nothing was said on this flow (e.g. a lone ACK after the close)
    unacked = list(state.pending)[:20]
    errors = c2s.errors + s2c.errors
    auth = {None: "", True: " auth=ok", False: " auth=FAILED"}[state.auth]
    return {
        "flow": flow.describe(), "src": flow.client_str, "dst": flow.server_str,
        "direction": str(Direction.CLIENT_TO_SERVER), "timestamp": timestamp,
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
