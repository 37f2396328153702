"""The bodies of ZMTP commands (READY/INITIATE metadata, ERROR, SUBSCRIBE/CANCEL, PING/PONG,
PLAIN's HELLO), read into JSON-able fields.

Sans-I/O like the decoder that calls it: bytes in, a dict of fields out, every length
checked before it is used, so a body that lies about its lengths gives an ``error`` field
rather than an exception.
"""

from __future__ import annotations

from typing import Any

from .events import as_text, show


def command_fields(name: str, data: bytes, mechanism: str, fields: dict[str, Any],
                   max_shown: int = 2048) -> int:
    """Add the fields of command ``name`` (body ``data`` after the name) to ``fields``.

    Returns how many errors were found (each also put in ``fields["error"]``); the Socket-Type
    of READY/INITIATE is left in ``fields["properties"]`` for the decoder to remember."""
    errors = 0
    if name in ("READY", "INITIATE"):
        props, hexes, err = parse_properties(data, max_shown)
        fields["properties"] = props
        fields["properties_hex"] = hexes
        if err:
            fields["error"] = err
            errors += 1
    elif name == "ERROR":
        n = data[0] if data else 0
        reason = data[1:1 + n]
        fields["reason"] = show(reason)
        if len(reason) < n:
            fields["error"] = "reason is cut short"
            errors += 1
    elif name in ("SUBSCRIBE", "CANCEL"):
        fields["topic"] = show(data[:max_shown])
        fields["topic_hex"] = data[:max_shown].hex()
        fields["topic_length"] = len(data)
    elif name == "PING":
        if len(data) < 2:
            fields["error"] = "PING shorter than its 2-byte TTL"
            errors += 1
            return errors
        ttl = int.from_bytes(data[:2], "big")
        fields["ttl_deciseconds"] = ttl
        fields["ttl_seconds"] = ttl / 10
        fields["context_hex"] = data[2:18].hex()
    elif name == "PONG":
        fields["context_hex"] = data[:16].hex()
    elif name == "HELLO" and mechanism == "PLAIN":
        n = data[0] if data else 0
        user = data[1:1 + n]
        rest = data[1 + n:]
        m = rest[0] if rest else 0
        password = rest[1:1 + m]
        fields["username"] = show(user)
        # The password is on the wire in clear; a sniffer must not spread it further.
        fields["password"] = "*" * 8 if m else ""
        fields["password_length"] = m
        if len(user) < n or not rest or len(password) < m:
            fields["error"] = "HELLO is cut short"
            errors += 1
    elif name == "WELCOME":
        pass  # PLAIN WELCOME has no body
    elif data:
        fields["body_hex"] = data[:max_shown].hex()
        fields["body_text"] = as_text(data[:max_shown])
    return errors


def parse_properties(data: bytes, max_shown: int = 2048
                     ) -> tuple[dict[str, str], dict[str, str], str | None]:
    """READY/INITIATE metadata: name-length byte, name, 4-byte value length, value.

    Returns (name -> value shown as text or hex, name -> value hex, error or None); what
    parses before an inconsistency is kept.
    """
    props: dict[str, str] = {}
    hexes: dict[str, str] = {}
    pos, n = 0, len(data)
    while pos < n:
        name_len = data[pos]
        if name_len == 0 or pos + 1 + name_len + 4 > n:
            return props, hexes, f"property at offset {pos} is cut short or has no name"
        name = show(data[pos + 1:pos + 1 + name_len])
        pos += 1 + name_len
        value_len = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
        if pos + value_len > n:
            return props, hexes, (f"property {name!r} claims {value_len} bytes, "
                                  f"{n - pos} left")
        value = data[pos:pos + min(value_len, max_shown)]
        props[name] = show(value)
        hexes[name] = value.hex()
        pos += value_len
    return props, hexes, None
