"""The fast path of the HTTP/1.x decoder: plain messages parsed without h11, as h11 would.

Most HTTP/1.1 messages are plain: a head that arrives whole, a Content-Length body (or
none). For those, running h11's state machine (and priming a client-role connection for
every response) costs far more than the parsing itself. ``_Message`` stands in for the
h11 connection of one message: it parses such a message itself, with the same grammar
(RFC 9112, as h11 applies it), and produces the events h11 would. Anything else - a head
split over segments, chunked or close-delimited bodies, 1xx, CONNECT/Upgrade, duplicate
or odd framing headers, versions other than 1.0/1.1 - it hands, with every byte it was
given, to a real h11 connection before it has produced any event, so h11 decides those
exactly as before. tests/chefs/test_http1.py runs both paths over the same streams and compares.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import h11

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VCHAR = rb"[^\x00\s]"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ((?:[ \t]|" + _FIELD_VCHAR + rb")*))?")
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:" + _FIELD_VCHAR + rb"+(?:[ \t]+"
                          + _FIELD_VCHAR + rb"+)*)?)[ \t]*")
_DIGITS = re.compile(rb"[0-9]{1,20}")

_EOM = h11.EndOfMessage()
_HEAD, _BODY, _DONE = 0, 1, 2


class _FastHeaders:
    """The two views of h11's ``Headers`` the decoder uses: raw and lower-cased names."""

    __slots__ = ("raw", "lower")

    def __init__(self, raw: list[tuple[bytes, bytes]], lower: list[bytes]) -> None:
        self.raw = raw
        self.lower = lower

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        return self.raw

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter([(n, v) for n, (_, v) in zip(self.lower, self.raw)])


class _FastRequest:
    __slots__ = ("method", "target", "http_version", "headers")

    def __init__(self, method: bytes, target: bytes, version: bytes,
                 headers: _FastHeaders) -> None:
        self.method, self.target, self.http_version, self.headers = \
            method, target, version, headers


class _FastResponse:
    __slots__ = ("status_code", "reason", "http_version", "headers")

    def __init__(self, status: int, reason: bytes, version: bytes,
                 headers: _FastHeaders) -> None:
        self.status_code, self.reason, self.http_version, self.headers = \
            status, reason, version, headers


class _FastData:
    __slots__ = ("data",)
    chunk_start = chunk_end = False   # never chunked: chunked bodies go to h11

    def __init__(self, data: bytes) -> None:
        self.data = data


# What the pump loops do with an event, by its exact type: h11's events are ABCs, and
# isinstance on an ABC costs more than the rest of a small message's handling.
_WAIT, _HEAD_EV, _INFO_EV, _DATA_EV, _EOM_EV, _OTHER = "wait", "head", "info", "data", "eom", "other"
_KINDS: dict[type, str] = {
    h11.Request: _HEAD_EV, _FastRequest: _HEAD_EV, h11.Response: _HEAD_EV,
    _FastResponse: _HEAD_EV, h11.InformationalResponse: _INFO_EV, h11.Data: _DATA_EV,
    _FastData: _DATA_EV, h11.EndOfMessage: _EOM_EV, h11.ConnectionClosed: _WAIT,
}


def _kind(ev: Any) -> str:
    """The slow way, for anything not in ``_KINDS`` (h11's sentinels, subclasses)."""
    if ev is h11.NEED_DATA or ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
        return _WAIT
    for cls, kind in _KINDS.items():
        if isinstance(ev, cls):
            return kind
    return _OTHER


def _split_head(buf: bytes) -> tuple[list[bytes], int] | None:
    """(lines of the head, offset after it), if the whole head is in ``buf``."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    # a bare LF anywhere makes a line fail the grammar below (\n is not a field char), so
    # heads h11 would end at an earlier "\n\n" are declined, not misread
    return buf[:end].split(b"\r\n"), end + 4


def _header_fields(lines: list[bytes]) -> tuple[list[tuple[bytes, bytes]], list[bytes]] | None:
    raw = []
    lower = []
    match = _HEADER_LINE.fullmatch
    for line in lines:
        m = match(line)   # obs-fold (leading space) and junk fail here: h11 decides
        if m is None:
            return None
        name = m.group(1)
        raw.append((name, m.group(2)))
        lower.append(name.lower())
    return raw, lower


def _content_length(raw: list[tuple[bytes, bytes]], lower: list[bytes]) -> int | None | bool:
    """The body length announced (None: none announced); False when h11 must decide
    (Transfer-Encoding, repeated or non-numeric Content-Length)."""
    if b"transfer-encoding" in lower:
        return False
    n = lower.count(b"content-length")
    if n == 0:
        return None
    if n > 1:
        return False
    value = raw[lower.index(b"content-length")][1]
    if _DIGITS.fullmatch(value) is None:
        return False
    return int(value)


class _Message:
    """Stands in for the h11 connection of one message (see "fast path" above)."""

    __slots__ = ("role", "max_size", "request", "primed", "h11", "buf", "closed", "state",
                 "remaining")

    def __init__(self, role: Any, max_size: int, request: Any = None,
                 primed: h11.Connection | None = None) -> None:
        self.role = role
        self.max_size = max_size
        self.request = request      # for a response: the request it answers
        self.primed = primed        # an h11 connection already told about that request
        self.h11: h11.Connection | None = None
        self.buf = b""
        self.closed = False
        self.state = _HEAD
        self.remaining = 0

    def receive_data(self, data: bytes) -> None:
        if self.h11 is not None:
            self.h11.receive_data(data)
        elif not data:
            self.closed = True
        elif self.buf:
            self.buf += data
        else:
            self.buf = bytes(data)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        if self.h11 is not None:
            return self.h11.trailing_data
        return self.buf, self.closed

    def next_event(self) -> Any:
        if self.h11 is not None:
            return self.h11.next_event()
        if self.state == _BODY:
            remaining = self.remaining
            if remaining == 0:
                self.state = _DONE
                return _EOM
            buf = self.buf
            if not buf:
                if self.closed:
                    raise h11.RemoteProtocolError(
                        "peer closed connection without sending complete message body")
                return h11.NEED_DATA
            if len(buf) <= remaining:
                self.buf = b""
            else:
                buf, self.buf = buf[:remaining], buf[remaining:]
            self.remaining = remaining - len(buf)
            return _FastData(buf)
        if self.state == _DONE:   # h11 pauses after a message; the decoder never asks
            return h11.PAUSED
        if not self.buf and not self.closed:
            return h11.NEED_DATA
        ev = None
        if self.buf:
            ev = self._request_head() if self.role is h11.SERVER else self._response_head()
        if ev is None:
            return self._to_h11().next_event()
        return ev

    def _to_h11(self) -> h11.Connection:
        """Hand the message to h11, with everything received so far (no event given yet)."""
        conn = self.primed
        if conn is None:
            conn = h11.Connection(self.role, max_incomplete_event_size=self.max_size)
            if self.request is not None:
                _prime(conn, self.request)
        if self.buf:
            conn.receive_data(self.buf)
            self.buf = b""
        if self.closed:
            conn.receive_data(b"")
        self.h11 = conn
        return conn

    def _request_head(self) -> _FastRequest | None:
        head = _split_head(self.buf)
        if head is None:
            return None
        lines, end = head
        m = _REQUEST_LINE.fullmatch(lines[0])
        if m is None:
            return None
        method = m.group(1)
        if method == b"CONNECT":
            return None
        fields = _header_fields(lines[1:])
        if fields is None:
            return None
        raw, lower = fields
        if b"upgrade" in lower:
            return None
        hosts = lower.count(b"host")
        version = b"1." + m.group(3)
        # h11 refuses a 1.1 request without Host, and priming the response side would
        # refuse two Host headers in any version: both are h11's to report
        if hosts > 1 or (hosts == 0 and version == b"1.1"):
            return None
        length = _content_length(raw, lower)
        if length is False:
            return None
        self.buf = self.buf[end:]
        self.state = _BODY
        self.remaining = length or 0
        return _FastRequest(method, m.group(2), version, _FastHeaders(raw, lower))

    def _response_head(self) -> _FastResponse | None:
        method = self.request.method if self.request is not None else None
        if method is None or method == b"CONNECT":
            return None
        head = _split_head(self.buf)
        if head is None:
            return None
        lines, end = head
        m = _STATUS_LINE.fullmatch(lines[0])
        if m is None:
            return None
        status = int(m.group(2))
        if status < 200:   # 1xx (and 101 switches) stay with h11
            return None
        fields = _header_fields(lines[1:])
        if fields is None:
            return None
        raw, lower = fields
        length = _content_length(raw, lower)
        if length is False:
            return None
        if status == 204 or status == 304 or method == b"HEAD":
            length = 0
        elif length is None:   # delimited by the close: h11's http/1.0 framing
            return None
        self.buf = self.buf[end:]
        self.state = _BODY
        self.remaining = length
        reason = m.group(3)
        return _FastResponse(status, reason if reason is not None else b"",
                             b"1." + m.group(1), _FastHeaders(raw, lower))


def _prime(conn: h11.Connection, req: Any) -> None:
    """Tell a client-role connection about the request, so it frames the response right."""
    headers = [(n, v) for n, v in req.headers.raw_items()
               if n.lower() not in (b"content-length", b"transfer-encoding")]
    if not any(n.lower() == b"host" for n, _ in headers):
        headers.append((b"Host", b"unknown"))  # HTTP/1.0 requests may omit it
    conn.send(h11.Request(method=req.method, target=req.target, headers=headers))
    conn.send(h11.EndOfMessage())
