"""A finished HTTP/2 stream that carried a gRPC call, as ``GrpcChef``'s JSON payload: the
call's path, type (unary, client/server/bidi streaming), metadata, messages (decompressed
and decoded as schema-less protobuf when asked), status and whether its deadline passed.

``options`` is ``GrpcChef.Options`` (read for its message and protobuf caps); the flow is
only asked for its description and ``src``/``dst``/``label``, so no kitchen is needed.
"""

from __future__ import annotations

from typing import Any

from ..http2.events import StreamEnded
from ..http2.payload import base
from ..http2.text import pairs, show_bytes
from .decoder import GrpcMessages, decompress
from .metadata import RESERVED_HEADERS, percent_decode, status_name, timeout_seconds
from .protobuf import decode_protobuf


def plain_stream_payload(flow: Any, client: Any, event: StreamEnded) -> dict[str, Any]:
    """A stream that is not gRPC, briefly (``GrpcChef.non_grpc``)."""
    s = event.stream
    return {**base(flow, client, s.start), "kind": "stream", "stream_id": s.stream_id,
            "path": s.header(":path"), "status": s.header(":status", "response"),
            "complete": event.complete,
            "summary": f"{flow.label(client)}  HTTP/2 {s.header(':method')} "
                       f"{s.header(':path')} -> {s.header(':status', 'response')} (not gRPC)"}


def call_payload(flow: Any, client: Any, event: StreamEnded, options: Any) -> dict[str, Any]:
    s = event.stream
    path = s.header(":path") or ""
    service, _, method = path.lstrip("/").rpartition("/")
    req: GrpcMessages = s.request      # type: ignore[assignment]
    resp: GrpcMessages = s.response    # type: ignore[assignment]
    trailers_only = s.response_trailers is None and s.response_headers is not None and \
        any(n == "grpc-status" for n, _ in s.response_headers)
    outcome = s.response_trailers if s.response_trailers is not None else s.response_headers
    status_text = next((v for n, v in outcome or () if n == "grpc-status"), None)
    try:
        status: int | None = int(status_text) if status_text is not None else None
    except ValueError:
        status = None
    message = next((v for n, v in outcome or () if n == "grpc-message"), None)
    if message:
        message = percent_decode(message)
    if req.count > 1 and resp.count > 1:
        call_type = "bidi_streaming"
    elif req.count > 1:
        call_type = "client_streaming"
    elif resp.count > 1:
        call_type = "server_streaming"
    else:
        call_type = "unary"
    encoding = {"request": s.header("grpc-encoding"),
                "response": s.header("grpc-encoding", "response")}
    latency = s.latency if event.complete else None
    payload = {
        **base(flow, client, s.start), "kind": "grpc_call", "stream_id": s.stream_id,
        "path": path, "service": service or None, "method": method or None,
        "call_type": call_type, "authority": s.header(":authority"),
        "user_agent": s.header("user-agent"), "timeout": s.header("grpc-timeout"),
        "content_type": s.header("content-type"),
        "response_content_type": s.header("content-type", "response"),
        "encoding": encoding,
        "request_headers": pairs(s.request_headers),
        "response_headers": pairs(s.response_headers),
        "response_trailers": pairs(s.response_trailers),
        "custom_metadata": [[n, v] for n, v in s.request_headers or ()
                            if not n.startswith(":") and n not in RESERVED_HEADERS],
        "response_metadata": [[n, v] for n, v in s.response_headers or ()
                              if not n.startswith(":") and n not in RESERVED_HEADERS],
        "http_status": s.header(":status", "response"),
        "request_message_count": req.count, "response_message_count": resp.count,
        "request_bytes": req.length, "response_bytes": resp.length,
        "request_messages": messages(req, encoding["request"], options),
        "response_messages": messages(resp, encoding["response"], options),
        "grpc_status": status, "grpc_status_name": status_name(status),
        "grpc_message": message, "trailers_only": trailers_only,
        "reset": s.reset, "complete": event.complete, "end_reason": event.reason,
        "latency": latency, "headers_unknown": s.headers_unknown,
    }
    if req.partial or resp.partial or req.bad or resp.bad:
        payload["framing_error"] = True
    # A client whose deadline passes just resets the stream (RST_STREAM CANCEL, no
    # grpc-status) and reports DEADLINE_EXCEEDED to its caller: tell that apart from
    # a plain cancel by the grpc-timeout it sent.
    deadline = timeout_seconds(s.header("grpc-timeout"))
    payload["deadline_exceeded"] = bool(
        status is None and s.reset and s.reset["by"] == "client" and deadline is not None
        and s.latency is not None and s.latency >= deadline * 0.95)
    if status is not None:
        outcome_text = status_name(status) or str(status)
        if status != 0 and message:
            outcome_text += f" ({message[:80]})"
    elif s.reset:
        outcome_text = f"RST_STREAM {s.reset['error']}"
        if payload["deadline_exceeded"]:
            outcome_text += f" (deadline {s.header('grpc-timeout')} exceeded)"
    elif s.headers_unknown:
        outcome_text = "status unknown"
    else:
        outcome_text = f"no status ({event.reason})"
    lat = f" {latency * 1000:.1f}ms" if latency is not None else ""
    unknown = " (headers not decodable: joined mid-connection)" if s.headers_unknown else ""
    payload["summary"] = (f"{flow.label(client)}  gRPC {path or '?'} {call_type} -> "
                          f"{outcome_text}{lat}{unknown}")
    return payload


def messages(sink: GrpcMessages, encoding: str | None, options: Any) -> list[dict[str, Any]]:
    """The messages a sink kept, each shown as bytes and, when asked, as protobuf."""
    o = options
    out = []
    for m in sink.messages:
        data = bytes(m["data"])
        entry: dict[str, Any] = {"compressed": m["compressed"], "length": m["length"]}
        if "flag" in m:
            entry["flag"] = m["flag"]
        complete = len(data) == m["length"]
        if m["compressed"] and complete:
            data, entry["decompressed"] = decompress(data, encoding, o.max_message_bytes)
            if entry["decompressed"] is None:
                data = b""
        if not complete:
            entry["truncated"] = True
        entry["data"] = show_bytes(data, o.max_string)
        if o.protobuf and data and (complete or entry.get("decompressed")):
            entry["protobuf"] = decode_protobuf(
                data, max_depth=o.protobuf_max_depth, max_fields=o.protobuf_max_fields,
                max_string=o.max_string)
        out.append(entry)
    return out
