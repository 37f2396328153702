"""Protobuf wire format decoded without a schema (no ``.proto`` files): field numbers,
wire types and values, nested messages where the bytes parse as one, within size,
field-count and depth caps. Bytes in, a JSON-able field list out (or None: not protobuf).
"""

from __future__ import annotations

import struct
from typing import Any


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
