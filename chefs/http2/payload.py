"""Events of ``Http2Decoder`` as the JSON payloads of ``Http2Chef``'s dumplings: one per
finished stream, per frame (when asked), per join or error, and a connection summary.

The flow is only asked for its description and its ``src``/``dst``/``label`` of a
direction, so these functions need no kitchen; the chef shell calls them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .events import BodyPreview, DecodeError, FrameEvent, Joined, StreamEnded
from .text import pairs, show_bytes

if TYPE_CHECKING:
    from .decoder import Http2Decoder


def base(flow: Any, direction: Any, timestamp: float | None) -> dict[str, Any]:
    """The fields every payload of a flow chef starts with."""
    return {"flow": flow.describe(), "src": flow.src(direction), "dst": flow.dst(direction),
            "direction": str(direction), "timestamp": timestamp}


def joined_payload(flow: Any, direction: Any, event: Joined) -> dict[str, Any]:
    label = flow.label(direction)
    skipped = f", {event.skipped} bytes skipped" if event.skipped else ""
    return {**base(flow, direction, event.timestamp), "kind": "joined",
            "protocol": "http2", "skipped": event.skipped,
            "summary": f"{label}  HTTP/2 JOINED mid-connection at a frame boundary "
                       f"(connection opened before the capture{skipped})"}


def error_payload(flow: Any, direction: Any, event: DecodeError) -> dict[str, Any]:
    return {**base(flow, direction, event.timestamp), "kind": "error",
            "protocol": "http2", "error": event.message, "fatal": event.fatal,
            "summary": f"{flow.label(direction)}  HTTP/2 error: {event.message}"}


def frame_payload(flow: Any, direction: Any, event: FrameEvent) -> dict[str, Any]:
    parts = [event.name, f"stream={event.stream_id}", f"len={event.length}"]
    if event.flags:
        parts.append("flags=" + ",".join(event.flags))
    for key, value in event.info.items():
        if key == "headers":
            parts.extend(f"{n}={v}" for n, v in value[:8])
        elif key == "settings":
            parts.extend(f"{n}={v}" for n, v in value.items())
        elif not isinstance(value, (dict, list)):
            parts.append(f"{key}={value}")
    return {**base(flow, direction, event.timestamp), "kind": "frame",
            "frame_type": event.name, "stream_id": event.stream_id, "length": event.length,
            "flags": event.flags, **event.info,
            "summary": f"{flow.label(direction)}  " + " ".join(parts)}


def stream_payload(flow: Any, client: Any, event: StreamEnded, body_preview: int
                   ) -> dict[str, Any]:
    """One finished (or cut short) exchange; ``client`` is the flow's client-to-server
    direction, ``body_preview`` the bytes of each body shown."""
    s = event.stream
    status_text = s.header(":status", "response")
    try:
        status: int | None = int(status_text) if status_text is not None else None
    except ValueError:
        status = None
    method, path = s.header(":method"), s.header(":path")
    latency = s.latency if event.complete else None   # a cut-short stream has no end
    payload = {
        **base(flow, client, s.start), "kind": "stream", "stream_id": s.stream_id,
        "method": method, "path": path, "authority": s.header(":authority"),
        "scheme": s.header(":scheme"), "status": status,
        "content_type": s.header("content-type", "response"),
        "request_headers": pairs(s.request_headers),
        "response_headers": pairs(s.response_headers),
        "informational_headers": [pairs(h) for h in s.informational],
        "request_trailers": pairs(s.request_trailers),
        "response_trailers": pairs(s.response_trailers),
        "request_body_length": s.request.length,
        "response_body_length": s.response.length,
        "request_data_frames": s.request_data_frames,
        "response_data_frames": s.response_data_frames,
        "request_data_frame_count": s.request_data_frame_count,
        "response_data_frame_count": s.response_data_frame_count,
        "request_end_stream": s.client_ended, "response_end_stream": s.server_ended,
        "reset": s.reset, "pushed_by": s.pushed_by, "upgraded": s.upgraded,
        "complete": event.complete, "end_reason": event.reason,
        "latency": latency, "headers_unknown": s.headers_unknown, "tunnel": s.tunnel,
        "time_to_response_headers": (s.response_start - s.start
                                     if s.response_start is not None and s.start is not None
                                     else None),
    }
    if body_preview:
        for key, sink in (("request_body", s.request), ("response_body", s.response)):
            if isinstance(sink, BodyPreview) and sink.length:
                view = show_bytes(bytes(sink.head), body_preview)
                view["length"] = sink.length
                if sink.length > len(sink.head):
                    view["truncated"] = True
                payload[key] = view
    outcome = str(status) if status is not None else "no response"
    if s.reset:
        outcome += f" RST_STREAM {s.reset['error']} by {s.reset['by']}"
    if not event.complete:
        outcome += f" incomplete ({event.reason})"
    lat = f" {latency * 1000:.1f}ms" if latency is not None else ""
    push = f" pushed by {s.pushed_by}" if s.pushed_by is not None else ""
    payload["summary"] = (f"{flow.label(client)}  HTTP/2 {method or '?'} {path or '?'} -> "
                          f"{outcome} {s.response.length}B{lat} (stream {s.stream_id}{push})")
    return payload


def connection_payload(flow: Any, client: Any, decoder: Http2Decoder, reason: Any,
                       timestamp: float | None) -> dict[str, Any] | None:
    """The summary of a connection that was HTTP/2 (None for one that never was)."""
    if decoder.not_http2 or not (decoder.preface_seen or decoder.upgraded
                                 or decoder.stopped or decoder.joined):
        return None
    frames = {str(d): dict(side.frames) for d, side in decoder.sides.items()}
    total = sum(sum(f.values()) for f in frames.values())
    settings = decoder.settings
    stopped = f", decoding stopped: {decoder.stopped}" if decoder.stopped else ""
    if decoder.tunnel:
        stopped = " (in a CONNECT tunnel)" + stopped
    return {**base(flow, client, timestamp), "kind": "connection",
            "close_reason": str(reason), "upgraded": decoder.upgraded,
            "tunnel": decoder.tunnel, "client_preface": decoder.preface_seen,
            "client_settings": settings["client"], "server_settings": settings["server"],
            "frames": frames, "streams_completed": decoder.streams_completed,
            "streams_incomplete": decoder.streams_incomplete, "goaway": decoder.goaway,
            "errors": decoder.errors, "stopped": decoder.stopped,
            "joined_mid_connection": decoder.joined,
            "header_blocks_unknown": decoder.header_blocks_unknown,
            "frames_of_earlier_streams": decoder.frames_of_earlier_streams,
            "summary": (f"{flow.label(client)}  HTTP/2 connection {reason}: "
                        f"{decoder.streams_completed} streams, {total} frames{stopped}")}

