"""The client's half of the HTTP/1.x decoder: requests, one parser per message.

Each request is parsed by a fresh parser (the fast path's ``_Message``, or an h11
SERVER-role connection) seeded with the bytes left over from the previous one, which is
what lets the decoder follow pipelining. A request h11 refuses is repaired once
(``lenient.py``); a request-target with raw bytes 0x80-0xFF is percent-encoded before any
parser sees it. Imports: the stdlib, h11 and this package's modules only.
"""

from __future__ import annotations

import re
from typing import Any

import h11

from .events import C2S, Event, HttpMessage, Problem, Transaction, as_text
from .fast import _DATA_EV, _EOM_EV, _HEAD_EV, _KINDS, _WAIT, _kind, _Message
from .lenient import repair_request_head
from .state import DecoderState, _is_chunked, _SideState

#: The HTTP/2 connection preface: a client that speaks HTTP/2 with prior knowledge.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n"

#: A request line (as h11 splits it: up to the first LF) whose target may hold raw
#: non-ASCII bytes; anything else in it as strict as h11's grammar.
_RAW_TARGET_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+) ([\x21-\x7e\x80-\xff]+)"
                              rb"( HTTP/[0-9]\.[0-9]\r?\n)")
_NOT_ASCII = re.compile(rb"[\x80-\xff]")


def _ascii_target(head: bytes) -> bytes | None:
    """``head`` (from the start of a request, past its first LF) with the request-target's
    bytes 0x80-0xFF percent-encoded, or None when its request line is not one h11 would
    take after that (left for the parser to refuse)."""
    m = _RAW_TARGET_LINE.match(head)
    if m is None:
        return None
    target = _NOT_ASCII.sub(lambda c: b"%%%02X" % c.group()[0], m.group(2))
    return m.group(1) + b" " + target + m.group(3) + head[m.end():]


class RequestSide(DecoderState):
    """Client -> server: requests into transactions waiting for their responses."""

    def _parser(self, role: Any) -> Any:
        """A parser for one side's next message (fast path or h11 alone)."""
        if self.fast:
            return _Message(role, self.max_header_bytes)
        return h11.Connection(role, max_incomplete_event_size=self.max_header_bytes)

    def _new_side_conn(self, side: _SideState, role: Any, leftover: bytes, ts: float) -> None:
        side.conn = self._parser(role)
        side.started = bool(leftover)
        side.start_ts = ts if leftover else None
        side.tx = None
        side.line = b""
        side.odd_target = False
        side.head = [leftover] if leftover else []   # chunks, not copied
        side.head_size = len(leftover)
        side.repaired = None
        if leftover:
            self._receive_request(side, leftover)

    def _receive_request(self, side: _SideState, data: bytes) -> None:
        """Give client bytes to the request parser, making a request-target with raw
        non-ASCII bytes acceptable to it (see the class docstring).

        The bytes go to the parser as they come; until the first LF of the message (where
        h11 ends the request line) a copy is kept. Neither parser gives an event before the
        whole head is in, so if that line needs percent-encoding, the parser is replaced by
        a fresh one given the fixed bytes, and TCP segmentation changes nothing."""
        conn = side.conn
        assert conn is not None
        conn.receive_data(data)
        line = side.line
        if line is None:
            return
        end = data.find(b"\n")
        if end < 0:
            if line:
                line += data        # a bytearray: no quadratic copying, byte by byte
            else:
                side.line = bytearray(data)
            return
        side.line = None
        if data[:end].isascii() and (not line or line.isascii()):
            return   # nearly always
        fixed = _ascii_target(bytes(line) + data if line else data)
        if fixed is not None:
            side.conn = self._parser(h11.SERVER)
            side.conn.receive_data(fixed)
            side.odd_target = True

    def _feed_requests(self, data: bytes, ts: float, out: list[Event]) -> None:
        if self._held_c2s is not None:
            self._hold_c2s(data, ts, out)
            return
        side = self._req
        if side.conn is None:
            if self._total[0] == len(data) and data.startswith(_H2_PREFACE):
                self._stop(out, Problem(C2S, "not_http1", "HTTP/2 prior-knowledge preface", ts))
                self.skipped[0] += len(data)
                return
            self._new_side_conn(side, h11.SERVER, b"", ts)
        if not side.started:
            side.started, side.start_ts = True, ts
        side.last_ts = ts
        head = side.head
        if head is not None:
            side.head_size += len(data)
            if side.head_size > 2 * self.max_header_bytes:
                side.head = None   # h11 refuses a head this long anyway
            else:
                head.append(data)
        if side.line is None:
            side.conn.receive_data(data)  # type: ignore[union-attr]
        else:
            self._receive_request(side, data)
        while True:
            try:
                self._pump_requests(ts, out)
                return
            except (h11.RemoteProtocolError, h11.LocalProtocolError) as exc:
                if self.stopped:
                    return
                if not self._repair_request():
                    self._stop(out, Problem(C2S, "protocol_error", f"bad request: {exc}", ts),
                               note="request parse error")
                    return

    def _repair_request(self) -> bool:
        """h11 refused the request head in progress: give the parser that head as repaired
        by ``repair_request_head`` (what a server would still answer), once per request.
        False when it cannot be repaired (the caller stops, as before)."""
        side = self._req
        if side.head is None or side.tx is not None or side.repaired is not None:
            return False
        fixed = repair_request_head(b"".join(side.head))
        if fixed is None:
            return False
        side.conn = self._parser(h11.SERVER)
        side.repaired = fixed
        side.head = None
        side.line = None
        side.odd_target = False
        side.conn.receive_data(fixed.head)
        return True

    def _pump_requests(self, ts: float, out: list[Event]) -> None:
        side = self._req
        while not self.stopped and side.conn is not None:
            ev = side.conn.next_event()
            kind = _KINDS.get(type(ev)) or _kind(ev)
            if kind is _WAIT:
                return
            if kind is _HEAD_EV:
                self._on_request(ev, side.start_ts if side.start_ts is not None else ts, out)
                if self.stopped:
                    return
            elif kind is _DATA_EV:
                if side.tx is not None:
                    self._add_body(side.tx.request, ev)
            elif kind is _EOM_EV:
                tx = side.tx
                leftover = side.conn.trailing_data[0]
                if tx is not None:
                    self._set_trailers(tx.request, ev)
                    tx.request.end = ts
                    tx.request_done = True
                    if tx.wants_switch and tx in self._pending:
                        # bytes after an Upgrade/CONNECT request may not be HTTP/1: wait
                        # for the response before parsing them
                        self._switch_c2s_offset = self._total[0] - len(leftover)
                        side.conn = None
                        side.started = False
                        self._held_c2s = bytearray()
                        self._held_c2s_ts = ts if leftover else None
                        self._hold_c2s(leftover, ts, out)
                        return
                self._new_side_conn(side, h11.SERVER, leftover, ts)

    def _on_request(self, ev: Any, start: float, out: list[Event]) -> None:
        self._count += 1
        side = self._req
        fixed, side.repaired, side.head = side.repaired, None, None
        msg = HttpMessage(start=start, version="HTTP/" + ev.http_version.decode("ascii"),
                          method=as_text(ev.method, 64),
                          target=as_text(ev.target, self.max_target_chars))
        if fixed is not None:   # report what the client sent, not h11's stand-ins
            msg.method = as_text(fixed.method, 64)
            msg.target = as_text(fixed.shown_target, self.max_target_chars)
            msg.version = as_text(fixed.version, 64)
        if side.odd_target:
            msg.target_not_ascii = True
            side.odd_target = False
        self._set_headers(msg, ev.headers.raw_items())
        lower = {n.lower() for n, _ in ev.headers}
        msg.chunked = b"transfer-encoding" in lower and _is_chunked(ev.headers)
        tx = Transaction(self._count, msg, h11_request=ev,
                         wants_switch=ev.method == b"CONNECT" or b"upgrade" in lower)
        if fixed is not None:
            tx.problem = "; ".join(fixed.problems)
            tx.http09 = fixed.http09
        self._req.tx = tx
        if self.resyncing is not None and self._resync_tx is None:
            self._resync_tx = tx
            tx.resync = {"client_skipped": self._resync_skipped[0],
                         "server_skipped": self._resync_skipped[1]}
        if len(self._pending) >= self.max_pipelined:
            self._stop(out, Problem(C2S, "overflow", f"more than {self.max_pipelined} "
                                    "requests waiting for responses", start),
                       note="too many pipelined requests")
            return
        self._pending.append(tx)
        if len(self._pending) == 1 and self._resp.conn is None:
            if self._prime_response_side(tx, start, out):
                self._release_held_s2c(start, out)

    def _hold_c2s(self, data: bytes, ts: float, out: list[Event]) -> None:
        held = self._held_c2s
        assert held is not None
        if not data:
            return
        if self._held_c2s_ts is None:
            self._held_c2s_ts = ts
        if len(held) + len(data) > self.max_held:
            self._stop(out, Problem(C2S, "overflow", "client kept sending while a protocol "
                                    "switch was undecided", ts), note="buffer overflow")
            return
        held.extend(data)
