"""DNS events as the JSON payloads of the chef's dumplings."""

from __future__ import annotations

from typing import Any

from netdumplings.kitchen.chef import Direction

from .events import DecodeError, DnsMessage, Lookup


def _question_text(msg: DnsMessage | None) -> str:
    q = msg.question if msg is not None else None
    return f"{q['type']} {q['name']}" if q else "(no question)"


def _answer_text(msg: DnsMessage) -> str:
    if not msg.answers:
        return ""
    shown = ", ".join(a["data"] if a["type"] in ("A", "AAAA") else f"{a['type']} {a['data']}"
                      for a in msg.answers[:4])
    more = len(msg.answers) - 4
    return shown + (f" (+{more} more)" if more > 0 else "")


def error_payload(flow: Any, event: DecodeError) -> dict[str, Any]:
    """Bytes that are not DNS: what they were, where, and why they were refused."""
    direction = event.direction or Direction.CLIENT_TO_SERVER
    return {
        "event": "error",
        "flow": flow.describe(),
        "src": flow.src(direction), "dst": flow.dst(direction),
        "direction": str(direction),
        "timestamp": event.timestamp,
        "summary": f"{flow.label(direction)}  not DNS ({event.size} bytes): "
                   f"{event.reason}",
        "error": event.reason, "size": event.size, "hex_prefix": event.hex_prefix,
    }


def lookup_payload(flow: Any, ev: Lookup) -> dict[str, Any]:
    """A lookup, an unanswered query or a response whose query was not seen; shown in
    the direction of the query (the reverse of the response's)."""
    direction = ev.query_direction
    if direction is None:
        direction = (ev.response_direction.reverse if ev.response_direction is not None
                     else Direction.CLIENT_TO_SERVER)
    main = ev.query or ev.response
    assert main is not None
    q = main.question or {"name": None, "type": None, "class": None}
    resp = ev.response
    if ev.query is None:
        kind = "unmatched_response"
    elif resp is None:
        kind = "unanswered"
    else:
        kind = "lookup"
    latency = ev.latency
    label = flow.label(direction)
    if resp is not None:
        outcome = resp.header["rcode"]
        answers = _answer_text(resp)
        if answers:
            outcome += " " + answers
        if latency is not None:
            outcome += f" ({latency * 1000:.1f} ms)"
    else:
        outcome = "no response"
    summary = f"{label}  {_question_text(main)} -> {outcome}"
    if kind == "unmatched_response":
        summary += " [query not seen]"
    hostname = q["name"][:-1] if q["name"] and q["name"].endswith(".") else q["name"]
    return {
        "event": kind,
        "flow": flow.describe(),
        "src": flow.src(direction), "dst": flow.dst(direction),
        "direction": str(direction),
        "timestamp": ev.query_time if ev.query_time is not None else ev.response_time,
        "response_timestamp": ev.response_time,
        "summary": summary,
        "id": main.id,
        "name": q["name"], "type": q["type"], "class": q["class"],
        "rcode": resp.header["rcode"] if resp is not None else None,
        "latency": latency,
        "answers": resp.answers if resp is not None else [],
        "authority": resp.authority if resp is not None else [],
        "additional": resp.additional if resp is not None else [],
        "query": _message_view(ev.query),
        "response": _message_view(resp),
        # netdumplings 0.5's per-lookup payload, for old eaters
        "lookup": {"hostname": hostname,
                   "when": int(round((ev.query_time or ev.response_time or 0.0) * 1000))},
    }


def _message_view(msg: DnsMessage | None) -> dict[str, Any] | None:
    if msg is None:
        return None
    return {"header": msg.header, "questions": msg.questions, "edns": msg.edns,
            "size": msg.size, "counts": msg.counts}
