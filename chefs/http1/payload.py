"""HTTP/1.x events as dumpling payloads: the JSON the printer, the dashboard and eaters read.

Turns the decoder's ``Transaction`` and ``Problem`` events (``events.py``) into payload
dicts with the flow's addresses and a one-line ``summary``. Framework types (``Flow``,
``Direction``) are used here, in the chef's half, never in the decoder's.
"""

from __future__ import annotations

from typing import Any

from netdumplings.kitchen.chef import Direction
from netdumplings.flows.table import Flow

from .events import HttpMessage, Problem, Side, Transaction, as_text

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


def as_direction(side: Side | str) -> Direction:
    """The kitchen's ``Direction`` for a decoder's ``Side`` (``Flow`` tells them apart by
    identity, and the two enums have the same values)."""
    return S2C if side == S2C else C2S


def problem_payload(flow: Flow, ev: Problem) -> dict[str, Any]:
    """The ``"event": "error"`` payload of a problem the decoder reported."""
    direction = as_direction(ev.direction)
    stop = "; stopped decoding" if ev.stopped else ""
    return {
        "event": "error",
        "flow": flow.describe(),
        "src": flow.src(direction),
        "dst": flow.dst(direction),
        "direction": str(direction),
        "timestamp": ev.timestamp,
        "kind": ev.kind,
        "message": ev.message,
        "summary": _one_line(f"{flow.label(direction)}  HTTP/1 {ev.kind.upper()} "
                             f"{ev.message}{stop}"),
    }


def _message_fields(msg: HttpMessage | None, prefix: str) -> dict[str, Any]:
    if msg is None:
        return {f"{prefix}_headers": None, f"{prefix}_body_length": None}
    out: dict[str, Any] = {
        f"{prefix}_headers": msg.headers,
        f"{prefix}_body_length": msg.body_length,
    }
    if msg.headers_total > len(msg.headers):
        out[f"{prefix}_headers_total"] = msg.headers_total
    if msg.trailers is not None:
        out[f"{prefix}_trailers"] = msg.trailers
    if msg.body_preview:
        out[f"{prefix}_body"] = as_text(bytes(msg.body_preview), 4 * len(msg.body_preview))
    return out


def transaction_payload(flow: Flow, tx: Transaction) -> dict[str, Any]:
    """The dumpling payload of one transaction (the keys the printer and dashboard use)."""
    req, resp = tx.request, tx.response
    latency = None
    if req.start is not None and resp is not None and resp.end is not None:
        latency = max(0.0, resp.end - req.start)
    payload: dict[str, Any] = {
        "event": "transaction",
        "flow": flow.describe(),
        "src": flow.client_str,
        "dst": flow.server_str,
        "direction": str(C2S),
        "timestamp": req.start,
        "index": tx.index,
        "outcome": tx.outcome,
        "method": req.method,
        "host": req.header("Host"),
        "path": req.target,
        "version": req.version,
        "request_chunked": req.chunked,
        **_message_fields(req, "request"),
        "status": resp.status if resp else None,
        "reason": resp.reason if resp else None,
        "response_version": resp.version if resp else None,
        **_message_fields(resp, "response"),
        "content_type": resp.header("Content-Type") if resp else None,
        "chunked": resp.chunked if resp else None,
        "latency": latency,
    }
    if resp is not None and resp.chunked:
        payload["chunk_sizes"] = resp.chunk_sizes
    if tx.informational:
        payload["informational"] = tx.informational
    if tx.upgrade is not None:
        payload["upgrade"] = tx.upgrade
    if tx.note:
        payload["note"] = tx.note
    if tx.late:
        payload["late"] = True
    if req.target_not_ascii:
        payload["target_not_ascii"] = True
    if tx.problem:
        payload["problem"] = tx.problem
    if tx.resync is not None:
        payload["resync"] = dict(tx.resync)
    payload["summary"] = _one_line(_summary(flow, tx, latency))
    return payload


def _one_line(text: str, limit: int = 400) -> str:
    """Printers show one line per dumpling: no line breaks, bounded length."""
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _summary(flow: Flow, tx: Transaction, latency: float | None) -> str:
    req, resp = tx.request, tx.response
    target = req.target if len(req.target) <= 120 else req.target[:117] + "..."
    line = f"{flow.label(C2S)}  {req.method} {target} -> "
    if resp is not None and resp.status is None and resp.version == "HTTP/0.9":
        line += f"HTTP/0.9 response {resp.body_length}B"
    elif resp is None or resp.status is None:
        line += "(no response"
        line += f": {tx.note})" if tx.note else ")"
        return line + (f" (problem: {tx.problem})" if tx.problem else "")
    else:
        line += f"{resp.status} {resp.reason}".rstrip()
    if resp.status is None:
        pass
    elif tx.upgrade is not None:
        line += f" UPGRADE {tx.upgrade}"
    else:
        line += f" {resp.body_length}B"
    if latency is not None:
        line += f" {latency * 1000:.1f}ms"
    if tx.outcome != "complete" and tx.outcome != "upgraded":
        line += f" ({tx.outcome}{': ' + tx.note if tx.note else ''})"
    if tx.late:
        line += " (late)"
    if req.target_not_ascii:
        line += " (target not ASCII)"
    if tx.problem:
        line += f" (problem: {tx.problem})"
    if tx.resync is not None:
        line += (f" (after a gap: skipped {tx.resync['client_skipped']}B client, "
                 f"{tx.resync['server_skipped']}B server)")
    return line
