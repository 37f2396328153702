"""gRPC calls seen on HTTP/2 connections, decoded without a schema.

gRPC is HTTP/2 with ``content-type: application/grpc*``, ``:path`` = ``/service/method``,
length-prefixed messages (1 compressed-flag byte, 4-byte big-endian length) in the DATA of
each direction, and the outcome in the trailers (``grpc-status``, ``grpc-message``) or, for
calls answered without messages, in the single "Trailers-Only" HEADERS frame.

The chef reuses ``chefs.http2.Http2Decoder`` (one per flow) with a body sink that splits the
DATA into messages as it arrives, keeping only the first ``max_message_bytes`` of each, so
a long stream costs bounded memory. Without ``.proto`` files the messages are decoded
generically from the protobuf wire format (field numbers, wire types, values; nested
messages where the bytes parse as one), within size, field-count and depth caps.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, ClassVar

from pydantic import Field

from netdumplings.chef import Direction, FlowChefOptions

from . import http2

C2S = Direction.CLIENT_TO_SERVER

STATUS_NAMES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
]
#: Headers that belong to HTTP/2 or the gRPC protocol itself, not to the application.
RESERVED_HEADERS = frozenset({
    "content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding",
    "grpc-accept-encoding", "grpc-status", "grpc-message", "grpc-status-details-bin",
    "content-length", "accept-encoding", "grpc-message-type",
})


def status_name(code: int | None) -> str | None:
    if code is None:
        return None
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else f"CODE_{code}"


# -- protobuf wire format --------------------------------------------------------------


class _NotProtobuf(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _NotProtobuf("bad varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def decode_protobuf(data: bytes, *, max_depth: int = 8, max_fields: int = 256,
                    max_string: int = 256, _depth: int = 0) -> list[dict[str, Any]] | None:
    """Decode protobuf wire format without a schema, or None when ``data`` is not one.

    Each field is ``{"field", "wire_type", "value"}``; varints are unsigned (plus
    ``"int64"`` when only a negative int64 makes sense), fixed32/64 add their float
    reading, length-delimited values are text when printable UTF-8, else a nested message
    (``"message"``) when the bytes parse as one, else hex. Groups (wire types 3/4,
    deprecated) are not decoded: a message using them is reported as not protobuf.
    """
    fields: list[dict[str, Any]] = []
    pos = 0
    try:
        while pos < len(data):
            if len(fields) >= max_fields:
                fields.append({"truncated": True, "remaining_bytes": len(data) - pos})
                break
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if number == 0 or number > 0x1FFFFFFF:
                raise _NotProtobuf("bad field number")
            entry: dict[str, Any] = {"field": number, "wire_type": wire}
            if wire == 0:
                value, pos = _varint(data, pos)
                entry["value"] = value
                if value >= 1 << 63:          # a negative int32/int64, two's complement
                    entry["int64"] = value - (1 << 64)
            elif wire == 1:
                if pos + 8 > len(data):
                    raise _NotProtobuf("short fixed64")
                entry["value"] = struct.unpack_from("<Q", data, pos)[0]
                entry["double"] = _finite(struct.unpack_from("<d", data, pos)[0])
                pos += 8
            elif wire == 5:
                if pos + 4 > len(data):
                    raise _NotProtobuf("short fixed32")
                entry["value"] = struct.unpack_from("<I", data, pos)[0]
                entry["float"] = _finite(struct.unpack_from("<f", data, pos)[0])
                pos += 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                if pos + size > len(data):
                    raise _NotProtobuf("length past the end")
                chunk = data[pos:pos + size]
                pos += size
                entry.update(_length_delimited(chunk, max_depth, max_fields, max_string, _depth))
            else:
                raise _NotProtobuf(f"wire type {wire}")
            fields.append(entry)
    except _NotProtobuf:
        return None
    return fields


def _finite(x: float) -> float | str:
    return x if x == x and x not in (float("inf"), float("-inf")) else str(x)


def _length_delimited(chunk: bytes, max_depth: int, max_fields: int, max_string: int,
                      depth: int) -> dict[str, Any]:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        out: dict[str, Any] = {"value": text[:max_string]}
        if len(text) > max_string:
            out["truncated"] = True
            out["length"] = len(chunk)
        return out
    if chunk and depth + 1 < max_depth:
        nested = decode_protobuf(chunk, max_depth=max_depth, max_fields=max_fields,
                                 max_string=max_string, _depth=depth + 1)
        if nested is not None:
            return {"message": nested}
    out = {"hex": chunk[:max_string].hex()}
    if len(chunk) > max_string:
        out["truncated"] = True
        out["length"] = len(chunk)
    return out


# -- length-prefixed messages ------------------------------------------------------------


class Budget:
    """Message bytes one connection may keep at once, shared by all its calls."""

    __slots__ = ("left",)

    def __init__(self, size: int) -> None:
        self.left = size


class GrpcMessages:
    """Body sink for one direction of one call: splits DATA into gRPC messages.

    Keeps at most ``max_messages`` messages in detail and ``max_bytes`` of each; every
    message is still counted, with its full size.
    """

    __slots__ = ("max_bytes", "max_messages", "budget", "kept", "length", "count", "messages",
                 "_prefix", "_left", "_current", "bad")

    def __init__(self, max_bytes: int = 65536, max_messages: int = 64,
                 budget: Budget | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.budget = budget or Budget(max_bytes * max_messages)
        self.kept = 0
        self.length = 0
        self.count = 0
        self.messages: list[dict[str, Any]] = []
        self._prefix = bytearray()
        self._left = 0
        self._current: dict[str, Any] | None = None
        self.bad = False

    def feed(self, data: bytes) -> None:
        self.length += len(data)
        pos = 0
        while pos < len(data):
            if self._current is None:
                take = min(5 - len(self._prefix), len(data) - pos)
                self._prefix += data[pos:pos + take]
                pos += take
                if len(self._prefix) < 5:
                    return
                flag, size = self._prefix[0], int.from_bytes(self._prefix[1:5], "big")
                self._prefix.clear()
                if flag > 1:
                    self.bad = True                # not gRPC framing; count no more
                self.count += 1
                self._current = {"compressed": bool(flag & 1), "length": size, "data": bytearray()}
                if flag > 1:
                    self._current["flag"] = flag
                self._left = size
                if len(self.messages) < self.max_messages:
                    self.messages.append(self._current)
            take = min(self._left, len(data) - pos)
            buf = self._current["data"]
            room = min(self.max_bytes - len(buf), self.budget.left)
            if room > 0 and self.messages and self._current is self.messages[-1]:
                keep = data[pos:pos + min(take, room)]
                buf += keep
                self.kept += len(keep)
                self.budget.left -= len(keep)
            pos += take
            self._left -= take
            if self._left == 0:
                self._current = None

    def release(self) -> None:
        """Give the kept bytes back to the connection's budget (the call was reported)."""
        self.budget.left += self.kept
        self.kept = 0

    @property
    def partial(self) -> bool:
        """A message was cut short by the end of the stream."""
        return self._current is not None or bool(self._prefix)


# -- the chef ----------------------------------------------------------------------------


class GrpcChef(http2.Http2Chef):
    """One dumpling per gRPC call; see the module docstring."""

    class Options(FlowChefOptions):
        #: Bytes kept (and decoded) of each message.
        max_message_bytes: int = Field(65536, ge=0, le=16 << 20)
        #: Messages kept in detail per direction of a call (all are counted).
        max_messages: int = Field(32, ge=0, le=10_000)
        #: Message bytes kept at once per connection, over all its open calls.
        max_connection_bytes: int = Field(4 << 20, ge=0, le=1 << 30)
        #: Decode messages generically as protobuf.
        protobuf: bool = True
        protobuf_max_depth: int = Field(8, ge=1, le=64)
        protobuf_max_fields: int = Field(256, ge=1, le=10_000)
        #: Characters of string/bytes values shown.
        max_string: int = Field(256, ge=0, le=65536)
        max_streams: int = Field(1000, ge=1, le=100_000)
        max_frame_size: int = Field(1 << 20, ge=16384, le=(1 << 24) - 1)
        #: Also report HTTP/2 streams that are not gRPC (as Http2Chef would).
        non_grpc: bool = False

    default_ports: ClassVar[tuple[int, ...]] = (50051,)
    options: Options  # type: ignore[assignment]

    def new_flow_state(self, flow: Any) -> http2.Http2Decoder:
        o = self.options
        budget = Budget(o.max_connection_bytes)
        return http2.Http2Decoder(
            max_frame_size=o.max_frame_size, max_streams=o.max_streams,
            body_sink=lambda stream, direction: GrpcMessages(o.max_message_bytes,
                                                             o.max_messages, budget),
            midstream=not getattr(flow, "roles_known", True))

    def event_payload(self, flow: Any, decoder: http2.Http2Decoder, event: Any) -> Any:
        if isinstance(event, http2.FrameEvent):
            return None
        if isinstance(event, http2.StreamEnded):
            try:
                ctype = event.stream.header("content-type") or \
                    event.stream.header("content-type", "response") or ""
                if not ctype.startswith("application/grpc") and not (
                        not ctype and event.stream.headers_unknown):
                    # (headers not decodable after joining mid-connection: on a gRPC
                    # port, still a call, with what is known of it)
                    return self._plain_stream(flow, event) if self.options.non_grpc else None
                return self.call_payload(flow, event)
            finally:
                for sink in (event.stream.request, event.stream.response):
                    if isinstance(sink, GrpcMessages):
                        sink.release()
        payload = super().event_payload(flow, decoder, event)
        if payload is not None:
            payload["protocol"] = "grpc"
        return payload

    def _plain_stream(self, flow: Any, event: http2.StreamEnded) -> dict[str, Any]:
        s = event.stream
        return {**self._base(flow, C2S, s.start), "kind": "stream", "stream_id": s.stream_id,
                "path": s.header(":path"), "status": s.header(":status", "response"),
                "complete": event.complete,
                "summary": f"{flow.label(C2S)}  HTTP/2 {s.header(':method')} "
                           f"{s.header(':path')} -> {s.header(':status', 'response')} (not gRPC)"}

    def connection_payload(self, flow: Any, decoder: http2.Http2Decoder, reason: Any) -> None:
        return None

    def call_payload(self, flow: Any, event: http2.StreamEnded) -> dict[str, Any]:
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
            message = _percent_decode(message)
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
            **self._base(flow, C2S, s.start), "kind": "grpc_call", "stream_id": s.stream_id,
            "path": path, "service": service or None, "method": method or None,
            "call_type": call_type, "authority": s.header(":authority"),
            "user_agent": s.header("user-agent"), "timeout": s.header("grpc-timeout"),
            "content_type": s.header("content-type"),
            "response_content_type": s.header("content-type", "response"),
            "encoding": encoding,
            "request_headers": http2._pairs(s.request_headers),
            "response_headers": http2._pairs(s.response_headers),
            "response_trailers": http2._pairs(s.response_trailers),
            "custom_metadata": [[n, v] for n, v in s.request_headers or ()
                                if not n.startswith(":") and n not in RESERVED_HEADERS],
            "response_metadata": [[n, v] for n, v in s.response_headers or ()
                                  if not n.startswith(":") and n not in RESERVED_HEADERS],
            "http_status": s.header(":status", "response"),
            "request_message_count": req.count, "response_message_count": resp.count,
            "request_bytes": req.length, "response_bytes": resp.length,
            "request_messages": self._messages(req, encoding["request"]),
            "response_messages": self._messages(resp, encoding["response"]),
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
        deadline = _timeout_seconds(s.header("grpc-timeout"))
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
        payload["summary"] = (f"{flow.label(C2S)}  gRPC {path or '?'} {call_type} -> "
                              f"{outcome_text}{lat}{unknown}")
        return payload

    def _messages(self, sink: GrpcMessages, encoding: str | None) -> list[dict[str, Any]]:
        o = self.options
        out = []
        for m in sink.messages:
            data = bytes(m["data"])
            entry: dict[str, Any] = {"compressed": m["compressed"], "length": m["length"]}
            if "flag" in m:
                entry["flag"] = m["flag"]
            complete = len(data) == m["length"]
            if m["compressed"] and complete:
                data, entry["decompressed"] = _decompress(data, encoding, o.max_message_bytes)
                if entry["decompressed"] is None:
                    data = b""
            if not complete:
                entry["truncated"] = True
            entry["data"] = http2.show_bytes(data, o.max_string)
            if o.protobuf and data and (complete or entry.get("decompressed")):
                entry["protobuf"] = decode_protobuf(
                    data, max_depth=o.protobuf_max_depth, max_fields=o.protobuf_max_fields,
                    max_string=o.max_string)
            out.append(entry)
        return out


def _decompress(data: bytes, encoding: str | None, limit: int) -> tuple[bytes, int | None]:
    """gzip/deflate message bodies, bounded by ``limit`` (a decompression bomb stops there)."""
    wbits = {"gzip": 31, "deflate": 15}.get((encoding or "").lower())
    if wbits is None:
        return data, None
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(data, limit)
    except zlib.error:
        return data, None
    return out, len(out)


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _timeout_seconds(value: str | None) -> float | None:
    """grpc-timeout: up to 8 digits and a unit (H M S m u n), in seconds; None if not that."""
    if not value or len(value) > 9 or value[-1] not in _TIMEOUT_UNITS \
            or not value[:-1].isdigit() or not value[:-1].isascii():
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def _percent_decode(value: str) -> str:
    """grpc-message is percent-encoded UTF-8."""
    if "%" not in value:
        return value
    from urllib.parse import unquote
    return unquote(value, errors="backslashreplace")
