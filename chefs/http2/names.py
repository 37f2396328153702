"""The HTTP/2 vocabulary (RFC 9113): the client preface, frame, error and setting names,
and the caps this package keeps on what one connection may make it hold."""

from __future__ import annotations

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

FRAME_NAMES = {
    0x0: "DATA", 0x1: "HEADERS", 0x2: "PRIORITY", 0x3: "RST_STREAM", 0x4: "SETTINGS",
    0x5: "PUSH_PROMISE", 0x6: "PING", 0x7: "GOAWAY", 0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION", 0xA: "ALTSVC", 0xC: "ORIGIN", 0x10: "PRIORITY_UPDATE",
}
ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM", 0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM", 0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}
SETTING_NAMES = {
    0x1: "HEADER_TABLE_SIZE", 0x2: "ENABLE_PUSH", 0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE", 0x5: "MAX_FRAME_SIZE", 0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL", 0x9: "NO_RFC7540_PRIORITIES",
}
#: A peer may grow the HPACK table via SETTINGS; more than this is refused (memory bound).
MAX_HPACK_TABLE = 1 << 20
#: Captured chunks tried for a frame boundary when joining mid-connection.
SYNC_TRIES = 64
#: Cap on frame-size lists and header values kept per stream, so one stream stays small.
MAX_FRAME_SIZES_KEPT = 512
MAX_HEADER_VALUE_CHARS = 2048
MAX_INFORMATIONAL_KEPT = 4
#: Bytes of an HTTP/1.1 upgrade request/response head we are willing to buffer.
MAX_HTTP1_HEAD = 32 * 1024


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"0x{code:x}")
