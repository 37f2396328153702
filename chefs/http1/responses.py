"""The server's half of the HTTP/1.x decoder: responses, paired in order with requests.

The response parser is an h11 CLIENT-role connection told about the request it answers
(``send(Request)``, output discarded), so h11 applies the request-dependent framing rules
(HEAD, 204/304, CONNECT); the fast path's ``_Message`` does that priming only when a
response needs h11. Server bytes with no request to answer are held (bounded), an answer
without a status line to a request without a version is an HTTP/0.9 body read to the
close, and 101 / CONNECT 2xx end HTTP/1 on the connection (``switched``). Imports: the
stdlib, h11 and this package's modules only.
"""

from __future__ import annotations

from typing import Any

import h11

from .events import C2S, S2C, Event, HttpMessage, Problem, Transaction, as_text
from .fast import (_DATA_EV, _EOM_EV, _HEAD_EV, _INFO_EV, _KINDS, _WAIT, _FastData,
                   _FastRequest, _kind, _Message, _prime)
from .lenient import looks_like_status_line
from .state import MAX_INFORMATIONAL, MAX_RESYNC_LINE, DecoderState, _is_chunked


class ResponseSide(DecoderState):
    """Server -> client: responses finishing the transactions of waiting requests."""

    def _end_http09_request(self, ts: float, out: list[Event]) -> bool:
        """The server answers while the client's head is one request line without a
        version (``GET /`` and its line end): an HTTP/0.9 request, which has no headers
        and so no empty line to end them. True when it was taken as such."""
        req = self._req
        if (req.head is None or req.tx is not None or req.repaired is not None
                or self._pending or self._held_c2s is not None):
            return False
        line = b"".join(req.head)
        if (not line.endswith(b"\n") or line.count(b"\n") != 1 or len(line) > MAX_RESYNC_LINE
                or b" HTTP/" in line or not line[:1].isalpha()):
            return False
        self._feed_requests(b"\r\n", ts, out)   # the end of the head, implied
        return bool(self._pending) or bool(self.stopped)

    def _prime_response_side(self, tx: Transaction, ts: float, out: list[Event]) -> bool:
        """Start the client-role h11 connection for the response to ``tx``'s request."""
        side = self._resp
        req = tx.h11_request
        if isinstance(req, _FastRequest):
            # the fast path only takes requests h11 can be primed with (see
            # _Message._request_head), so priming waits until a response needs h11
            conn: Any = _Message(h11.CLIENT, self.max_header_bytes, request=req)
        else:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_header_bytes)
            try:
                _prime(conn, req)
            except h11.LocalProtocolError as exc:
                self._stop(out, Problem(C2S, "protocol_error", f"cannot follow request: {exc}",
                                        ts))
                return False
            if self.fast:
                conn = _Message(h11.CLIENT, self.max_header_bytes, request=req, primed=conn)
        side.conn = conn
        side.tx = tx
        side.started = False
        side.start_ts = None
        return True

    def _release_held_s2c(self, ts: float, out: list[Event]) -> None:
        if self._held_s2c and not self.stopped:
            held, held_ts = bytes(self._held_s2c), self._held_s2c_ts or ts
            self._held_s2c.clear()
            self._held_s2c_ts = None
            self._feed_responses(held, held_ts, out)

    def _feed_responses(self, data: bytes, ts: float, out: list[Event]) -> None:
        # a loop, not recursion: one chunk may end many pipelined responses
        chunk: bytes | None = data
        while chunk is not None and not self.stopped:
            chunk = self._feed_one_response(chunk, ts, out)

    def _feed_one_response(self, data: bytes, ts: float, out: list[Event]) -> bytes | None:
        side = self._resp
        if side.conn is None and data and self._end_http09_request(ts, out):
            if self.stopped:
                return None
        if side.conn is None:
            if not data:
                return None
            if len(self._held_s2c) + len(data) > self.max_held:
                self._stop(out, Problem(S2C, "unmatched_response", "server sent "
                                        f"{len(self._held_s2c) + len(data)} bytes with no "
                                        "request to answer", ts), note="unmatched response")
                return None
            if not self._held_s2c:
                self._held_s2c_ts = ts
            self._held_s2c.extend(data)
            return None
        if side.raw09:
            side.last_ts = ts
            if side.tx is not None and side.tx.response is not None:
                self._add_body(side.tx.response, _FastData(data))
            return None
        if (data and not side.started and side.tx is not None and side.tx.http09
                and looks_like_status_line(data) is False):
            # HTTP/0.9: no status line, no headers; the body runs to the close
            side.started, side.start_ts, side.raw09 = True, ts, True
            side.tx.response = HttpMessage(start=ts, version="HTTP/0.9")
            side.last_ts = ts
            self._add_body(side.tx.response, _FastData(data))
            return None
        if data and not side.started:
            side.started, side.start_ts = True, ts
        side.last_ts = ts
        try:
            side.conn.receive_data(data)
            return self._pump_responses(ts, out)
        except (h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
            self._stop(out, Problem(S2C, "protocol_error", f"bad response: {exc}", ts),
                       note="response parse error")
            return None

    def _pump_responses(self, ts: float, out: list[Event]) -> bytes | None:
        """Turn h11 events into transactions; returns bytes left over after a finished
        response when the next request's response parser is ready for them."""
        side = self._resp
        while not self.stopped and side.conn is not None:
            ev = side.conn.next_event()
            tx = side.tx
            kind = _KINDS.get(type(ev)) or _kind(ev)
            if kind is _WAIT:
                return None
            assert tx is not None
            if kind is _INFO_EV:
                if ev.status_code == 101 and tx.wants_switch:
                    tx.response = self._response_head(ev, ts)
                    tx.response.end = ts
                    self._switch(tx, out)
                    return None
                if len(tx.informational) < MAX_INFORMATIONAL:
                    tx.informational.append({"status": ev.status_code,
                                             "reason": as_text(ev.reason, 128),
                                             "timestamp": ts})
                side.start_ts = None  # the final response starts with its own first byte
            elif kind is _HEAD_EV:
                tx.response = self._response_head(ev, ts)
                if tx.request.method == "CONNECT" and 200 <= ev.status_code < 300:
                    tx.response.end = ts
                    self._switch(tx, out)
                    return None
            elif kind is _DATA_EV:
                if tx.response is not None:
                    self._add_body(tx.response, ev)
            elif kind is _EOM_EV:
                leftover = side.conn.trailing_data[0]
                if tx.response is not None:
                    self._set_trailers(tx.response, ev)
                self._finish(tx, ts, out)
                side.conn = None
                side.tx = None
                side.started = False
                side.start_ts = None
                if tx.wants_switch and self._held_c2s is not None:
                    # the server declined the switch: the held client bytes are HTTP/1
                    held, held_ts = bytes(self._held_c2s), self._held_c2s_ts or ts
                    self._held_c2s = None
                    self._held_c2s_ts = None
                    self._new_side_conn(self._req, h11.SERVER, b"", held_ts)
                    if held:
                        self._feed_requests(held, held_ts, out)
                if self.stopped:
                    return None
                if side.conn is None and self._pending:
                    if not self._prime_response_side(self._pending[0], ts, out):
                        return None
                if side.conn is not None:
                    return leftover or None   # b"" would tell h11 the connection closed
                if leftover:
                    if not self._held_s2c:
                        self._held_s2c_ts = ts
                    self._held_s2c.extend(leftover)
                return None
        return None

    def _response_head(self, ev: Any, ts: float) -> HttpMessage:
        start = self._resp.start_ts if self._resp.start_ts is not None else ts
        msg = HttpMessage(start=start, version="HTTP/" + ev.http_version.decode("ascii"),
                          status=ev.status_code, reason=as_text(ev.reason, 256))
        self._set_headers(msg, ev.headers.raw_items())
        msg.chunked = _is_chunked(ev.headers)
        return msg

    def _finish(self, tx: Transaction, ts: float, out: list[Event]) -> None:
        assert tx.response is not None
        tx.response.end = ts
        if self._pending and self._pending[0] is tx:
            self._pending.popleft()
        tx.late = tx.timeout_reported
        tx.outcome = "complete" if tx.request_done else "incomplete"
        if not tx.request_done:
            tx.note = "response ended before the request body"
        out.append(tx)

    def _switch(self, tx: Transaction, out: list[Event]) -> None:
        proto = tx.response.header("Upgrade") if tx.response else None
        if tx.request.method == "CONNECT":
            proto = "tunnel"
        tx.upgrade = (proto or tx.request.header("Upgrade") or "unknown").strip()
        tx.outcome = "upgraded"
        s2c_left = len(self._resp.conn.trailing_data[0]) if self._resp.conn else 0
        self.switched = {
            "protocol": tx.upgrade,
            "status": tx.response.status if tx.response else None,
            # where the new protocol starts in each direction's byte stream
            "client_offset": self._switch_c2s_offset,
            "server_offset": self._total[1] - s2c_left - len(self._held_s2c),
            "http2_settings": tx.request.header("HTTP2-Settings"),
            "request": {"method": tx.request.method, "path": tx.request.target},
        }
        if self._pending and self._pending[0] is tx:
            self._pending.popleft()
        out.append(tx)
        self._flush_pending(out, "connection switched protocol")
        self.stopped = "switched"
        self._held_c2s = None
        self._held_s2c.clear()
