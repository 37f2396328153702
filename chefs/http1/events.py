"""What the HTTP/1.x decoder returns: transactions and problems, and the side bytes came from.

Plain dataclasses, no framework types: the decoder's callers (the chef shell, tests, other
tools) read them as they are. ``Side`` has the same values as the kitchen's ``Direction``
(both are ``str`` enums), so either may be given to the decoder and they compare equal.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any


class Side(enum.StrEnum):
    """Which way bytes travel on the connection (values as the kitchen's ``Direction``)."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"


C2S = Side.CLIENT_TO_SERVER
S2C = Side.SERVER_TO_CLIENT

#: Characters of a header value shown by default (longer ones are cut, their size given).
MAX_VALUE_CHARS = 1024

#: Bytes ``as_text`` shows as they are without looking closer (printable ASCII, TAB, CR, LF).
_PLAIN_TEXT = re.compile(rb"[\x20-\x7e\t\r\n]*\Z")


def as_text(raw: bytes, limit: int = MAX_VALUE_CHARS) -> str:
    """Bytes as JSON-safe text: printable ASCII/UTF-8 as is, anything else as hex.

    Over ``limit`` characters the text is cut and the original byte size is stated, so a
    reader never mistakes a cut value for the real one."""
    if _PLAIN_TEXT.match(raw):   # nearly every header: skip the per-character check
        text = raw.decode("ascii")
    else:
        try:
            text = raw.decode("utf-8")
            if not all(c.isprintable() or c in "\t\r\n" for c in text):
                raise ValueError
        except ValueError:
            text = "hex:" + raw.hex()
    if len(text) > limit:
        text = f"{text[:limit]}...[{len(raw)} bytes]"
    return text


@dataclass
class HttpMessage:
    """One request or response as far as it was seen."""

    start: float | None = None            # capture time of its first byte
    end: float | None = None              # capture time of its last byte (None: unfinished)
    version: str = ""
    headers: list[list[str]] = field(default_factory=list)
    headers_total: int = 0
    body_length: int = 0
    body_preview: bytearray = field(default_factory=bytearray)
    chunked: bool = False
    chunk_sizes: list[int] = field(default_factory=list)
    #: a chunk's data is still coming: 0 no, 1 yes and it is in chunk_sizes, 2 yes, past the cap
    chunk_open: int = 0
    #: trailer fields after the last chunk of a chunked body (None: there were none)
    trailers: list[list[str]] | None = None
    # request only
    method: str = ""
    target: str = ""
    #: the request-target had raw bytes 0x80-0xFF (not RFC 9112); ``target`` shows them
    #: percent-encoded, e.g. ``/caf%C3%A9`` for the raw UTF-8 of ``/café``
    target_not_ascii: bool = False
    # response only
    status: int | None = None
    reason: str = ""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None


@dataclass
class Transaction:
    """A request and (as far as it came) its response - the decoder's main event.

    ``outcome``: "complete"; "no_response" (none started; ``note`` says why we gave up:
    timeout, close, gap, error); "incomplete" (the response, or the request, was cut off);
    "upgraded" (101 / CONNECT 2xx: the flow left HTTP/1 here).

    ``resync``: set on the first transaction after a gap - the bytes each side skipped since
    the gap (``client_skipped``, ``server_skipped``, lost bytes of later gaps included)."""

    index: int
    request: HttpMessage
    response: HttpMessage | None = None
    informational: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "complete"
    note: str | None = None
    upgrade: str | None = None
    late: bool = False                  # the response came after a timeout was reported
    timeout_reported: bool = False
    wants_switch: bool = False          # Upgrade header or CONNECT: the flow may leave HTTP/1
    resync: dict[str, int] | None = None   # first transaction after a gap: bytes skipped
    request_done: bool = False
    h11_request: Any = field(default=None, repr=False)   # to prime the response parser
    #: what h11 refused in the request and the decoder read past (see lenient.py)
    problem: str | None = None
    #: the request line had no version: the response may be a bare HTTP/0.9 body
    http09: bool = False


@dataclass
class Problem:
    """Something the decoder could not parse or did not see; unless ``stopped`` is False
    the flow's decoding stopped. A gap does not stop it: the decoder resynchronises."""

    direction: Side
    kind: str            # protocol_error | gap | overflow | unmatched_response | truncated | not_http1
    message: str
    timestamp: float | None
    stopped: bool = True


Event = Transaction | Problem
