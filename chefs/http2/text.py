"""Bytes shown in JSON: header values as bounded text, binary metadata as gRPC's base64,
bodies as text when printable and hex otherwise. Shared by the decoder (header values)
and the payload builders of this package and of the gRPC chef."""

from __future__ import annotations

import base64
from typing import Any

from .names import MAX_HEADER_VALUE_CHARS


def show_bytes(data: bytes, limit: int) -> dict[str, Any]:
    """JSON-able view of some bytes: text when printable UTF-8, else hex; capped."""
    cut = data[:limit]
    out: dict[str, Any] = {"length": len(data)}
    text = _printable(cut)
    if text is None and len(data) > limit:
        # a multi-byte character cut in two at the limit still counts as text
        text = next((t for k in (1, 2, 3) if (t := _printable(cut[:-k])) is not None), None)
    if text is not None:
        out["text"] = text
    else:
        out["hex"] = cut.hex()
    if len(data) > limit:
        out["truncated"] = True
    return out


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None


def header_text(value: bytes) -> str:
    """A header name or value as text, cut at ``MAX_HEADER_VALUE_CHARS``."""
    s = value.decode("utf-8", "backslashreplace")
    if len(s) > MAX_HEADER_VALUE_CHARS:
        s = s[:MAX_HEADER_VALUE_CHARS] + f"...[{len(value)} bytes]"
    return s


def bin_value(value: bytes) -> str:
    """A gRPC binary header sent as "true binary": NUL, then the raw bytes.

    grpc-core peers that both announce SETTINGS 0xFE03 send ``-bin`` metadata this way
    instead of base64; shown as raw text it came out as NULs and escapes. It is shown here
    in the form every gRPC peer understands, unpadded base64 (gRPC over HTTP/2 spec)."""
    return header_text(base64.b64encode(value[1:]).rstrip(b"="))


def pairs(headers: list[tuple[str, str]] | None) -> list[list[str]] | None:
    """Header tuples as JSON lists (None stays None: the block never came)."""
    return None if headers is None else [[n, v] for n, v in headers]
