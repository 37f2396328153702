"""Telling HTTP/2 from other bytes cheaply: a flow's first client bytes (the h2c preface,
an ``Upgrade: h2c`` request, a CONNECT tunnel), an HTTP/1.x request line starting, and a
chunk that is whole frames (where a decoder joining mid-connection may begin)."""

from __future__ import annotations

from .names import FRAME_NAMES, MAX_HTTP1_HEAD, PREFACE


def whole_frames(data: bytes, max_frame_size: int) -> bool:
    """Whether ``data`` is one or more whole HTTP/2 frames of known types (the R bit of
    each stream id clear), ending exactly at its end: what a segment boundary that is also
    a frame boundary looks like. Random bytes rarely pass (types, lengths adding up)."""
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < 9:
            return False
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] not in FRAME_NAMES or data[pos + 5] & 0x80 or length > max_frame_size:
            return False
        pos += 9 + length
    return pos == n and n > 0


def looks_like_request(buf: bytes) -> bool:
    """An HTTP/1.x request line is starting (method token, then a space)."""
    head = buf[:16]
    sp = head.find(b" ")
    token = head if sp < 0 else head[:sp]
    return 0 < len(token) <= 12 and token.isalpha() and token.isupper() and (sp > 0 or len(head) < 13)


def looks_like_h2c(data: bytes) -> bool:
    """Cheap test on a flow's first client bytes: the h2c preface, or an upgrade request."""
    if len(data) >= 4 and PREFACE.startswith(data[:len(PREFACE)]):
        return True
    if data.startswith(PREFACE):
        return True
    if data.startswith(b"CONNECT "):   # gRPC through a proxy: h2 inside the tunnel
        return True
    if looks_like_request(data):
        head = data[:MAX_HTTP1_HEAD].split(b"\r\n\r\n", 1)[0].lower()
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip() == b"upgrade" and b"h2c" in value:
                return True
    return False
