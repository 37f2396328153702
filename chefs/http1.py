"""HTTP/1.x request/response transactions, seen passively from both directions.

Parser choice: **h11**. It is pure Python (already a dependency, no C build), sans-I/O by
design, strict about framing (Content-Length vs chunked, HEAD/204/304 bodies, 1xx, CONNECT
and Upgrade switches) and it bounds the bytes it buffers for an incomplete head
(``max_incomplete_event_size``), which is exactly what a sniffer fed hostile bytes needs.
httptools would be faster, but its callback API hides body framing decisions we need to
mirror per request (HEAD, CONNECT) and it is a C extension.

h11 models *one endpoint*, while a sniffer watches *both*. So each flow runs two h11
connections: a SERVER-role one fed the client's bytes (it yields requests) and a CLIENT-role
one fed the server's bytes (it yields responses). The client-role connection is told about
each request (``send(Request)``, output discarded) so h11 applies the request-dependent
framing rules. A fresh h11 connection is started for every message, seeded with the bytes
left over from the previous one: that is what lets us follow pipelining (requests parsed
ahead of their responses) without h11's one-request-at-a-time state machine stalling.
Responses are matched to requests in order (HTTP/1.1 has no other correlation).

After a gap in the capture (bytes lost for good) the decoder resynchronises conservatively:
it forgets both directions' state, skips client bytes up to the next request line at a line
start, and skips server bytes up to the next status line at a line start that follows such a
request (see ``Http1Decoder``). The first transaction after a gap says so (``resync``).
A gap in the server's bytes after that, while its response is still being looked for,
does not discard the request found.

h11 is strict as a peer should be; a sniffer must be as lenient as the servers it watches.
A request head h11 refuses but a server would answer (``GET /`` with no version, a target
left out, ``HTTP/1.``, HTTP/1.1 without ``Host``, malformed header lines) is repaired by
``http1_lenient`` and parsed by h11 again, once: the transaction shows what the client
sent and says what was wrong in ``problem``. An answer without a status line to such a
request is an HTTP/0.9 body, read to the close. Plain messages skip h11 altogether
(``http1_fast``, the same grammar, checked against h11 by the tests).
"""

from __future__ import annotations

import re
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import h11
from pydantic import Field

from netdumplings.chef import CloseReason, Direction, FlowChefOptions, StreamChef
from netdumplings.flows import Flow

from .http1_fast import (_DATA_EV, _EOM_EV, _HEAD_EV, _INFO_EV, _KINDS, _WAIT, _FastData,
                         _FastRequest, _kind, _Message, _prime)
from .http1_lenient import Repaired, looks_like_status_line, repair_request_head

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: Key in ``flow.state`` set when a flow leaves HTTP/1 (101 Switching Protocols or a
#: successful CONNECT), so another chef (e.g. the HTTP/2 chef for ``h2c``) can take over.
UPGRADE_STATE_KEY = "http1.upgrade"

#: A request line, as the first client bytes of a flow on a port we do not follow.
REQUEST_LINE = re.compile(rb"^[A-Z]+ \S+ HTTP/1\.[01]\r\n")
_H2_PREFACE = b"PRI * HTTP/2.0\r\n"

MAX_HEADERS_SHOWN = 100
MAX_VALUE_CHARS = 1024
MAX_CHUNK_SIZES = 64
MAX_INFORMATIONAL = 8
#: Longest start line held across segments while resynchronising after a gap. Each new
#: segment rescans what is held, so fed in small pieces the cost grows with its square:
#: at max_header_bytes (64 KB) one line fed a byte at a time took ~7 s. Servers refuse
#: request lines this long anyway (nginx and Apache stop at 8 KB).
MAX_RESYNC_LINE = 8192



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
    #: what h11 refused in the request and the decoder read past (see http1_lenient)
    problem: str | None = None
    #: the request line had no version: the response may be a bare HTTP/0.9 body
    http09: bool = False


@dataclass
class Problem:
    """Something the decoder could not parse or did not see; unless ``stopped`` is False
    the flow's decoding stopped. A gap does not stop it: the decoder resynchronises."""

    direction: Direction
    kind: str            # protocol_error | gap | overflow | unmatched_response | truncated | not_http1
    message: str
    timestamp: float | None
    stopped: bool = True


Event = Transaction | Problem


class _Side:
    """One direction's parser state: the current h11 connection and message timing."""

    __slots__ = ("conn", "started", "start_ts", "last_ts", "tx", "line", "odd_target",
                 "head", "head_size", "repaired", "raw09")

    def __init__(self) -> None:
        self.conn: h11.Connection | None = None
        self.started = False
        self.start_ts: float | None = None
        self.last_ts: float | None = None
        self.tx: Transaction | None = None   # message being parsed on this side
        #: requests: the bytes given to ``conn`` while its request line is not complete
        #: (None: complete, or not watched); see Http1Decoder._receive_request
        self.line: bytes | bytearray | None = None
        self.odd_target = False              # that line's target was percent-encoded
        #: requests: the bytes given to ``conn`` for this message until its head is parsed,
        #: to read past what h11 refuses (None: head parsed, or too long to keep)
        self.head: list[bytes] | None = None
        self.head_size = 0
        self.repaired: Repaired | None = None   # this request's head was repaired
        #: responses: an HTTP/0.9 answer (no status line) is being read, up to the close
        self.raw09 = False


class Http1Decoder:
    """Sans-I/O HTTP/1.x decoder for one TCP connection, fed both directions.

    ``feed`` / ``gap`` / ``close`` / ``expire`` return lists of ``Transaction`` and
    ``Problem`` events. After a protocol error, an overflow or a protocol switch the decoder
    stops and only counts the bytes it skips (``skipped``).

    After a gap (bytes lost for good) it reports a ``gap`` problem (``stopped=False``) and
    the requests still waiting (incomplete or unanswered, ``note="gap"``), forgets both
    directions' parser state and resynchronises, conservatively, because pairing a response
    with the wrong request is worse than saying nothing:

    * client bytes are skipped up to a request line (``METHOD SP target SP HTTP/1.0|1.1
      CRLF``, METHOD in uppercase letters) at a line start: the start of a segment or right
      after a CRLF. Parsing restarts there.
    * server bytes are skipped up to a status line (``HTTP/1.x SP 3DIGIT SP``) at a line
      start, accepted only while such a resynchronised request is waiting for its response
      and began (capture time) no later than those bytes. Server bytes arriving while no
      request waits are skipped, so the rest of a response whose request was lost in the
      gap is not paired with the next request.

    Skipped bytes (and the bytes of further gaps while resynchronising, which start it
    over) are counted in ``skipped``; the first transaction after the gap carries them in
    ``resync``. What stays ambiguous: with pipelining, requests wholly lost in the gap may
    have responses still to come after a later request's bytes, and those would be paired
    with the later requests. A request line inside a body that happens to start a segment
    or line is taken for a request; a parse error there stops the decoder as usual. And a
    gap is only known once bytes after it arrive, so requests seen in between are reported
    with the gap (``note="gap"``) even when they were captured whole.

    A request-target with raw bytes 0x80-0xFF (raw UTF-8 from sloppy clients and scanners;
    RFC 9112 and h11 allow only visible ASCII there, but most servers accept it) does not
    stop decoding: those bytes are percent-encoded (``/caf\\xc3\\xa9`` becomes
    ``/caf%C3%A9``) before either parser sees the request line, and the request is marked
    ``target_not_ascii``. Any other illegal request line is still a protocol error. The
    resynchronisation after a gap does not restart at such a request line.
    """

    def __init__(self, *, body_preview: int = 256, max_header_bytes: int = 65536,
                 max_pipelined: int = 64, max_held: int = 65536, fast: bool = True,
                 max_target_chars: int = 8192,
                 max_value_chars: int = MAX_VALUE_CHARS) -> None:
        #: parse plain messages without h11 (False: h11 for every message, the reference)
        self.fast = fast
        #: characters of a request-target / header value shown (longer ones are cut)
        self.max_target_chars = max_target_chars
        self.max_value_chars = max_value_chars
        self.body_preview = body_preview
        self.max_header_bytes = max_header_bytes
        self.max_pipelined = max_pipelined
        self.max_held = max_held
        self._req = _Side()
        self._resp = _Side()
        self._pending: deque[Transaction] = deque()   # requests whose response is not done
        self._held_s2c = bytearray()       # server bytes before any request to pair them with
        self._held_s2c_ts: float | None = None
        self._held_c2s: bytearray | None = None  # client bytes while a switch is undecided
        self._held_c2s_ts: float | None = None
        self._count = 0
        self._total = [0, 0]                # bytes seen per direction (c2s, s2c)
        self._switch_c2s_offset = 0
        self.stopped: str | None = None
        self.skipped = [0, 0]               # bytes ignored (stopped or resyncing), per direction
        #: after a gap: per direction (c2s, s2c), still looking for where messages start
        self.resyncing: list[bool] | None = None
        self._resync_skipped = [0, 0]       # since the gap, per direction
        self._resync_tx: Transaction | None = None   # first request after the gap
        self._scan_held = [b"", b""]        # a possible start line cut by a segment end
        self._scan_ts: list[float | None] = [None, None]
        self._scan_cr = [False, False]      # the last skipped byte was a CR
        #: set on 101 / CONNECT 2xx: protocol and the byte offsets where HTTP/1 ends
        self.switched: dict[str, Any] | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> list[Event]:
        out: list[Event] = []
        if not data:
            return out
        self._total[direction is S2C] += len(data)
        if self.stopped:
            self.skipped[direction is S2C] += len(data)
            return out
        try:
            if self.resyncing is not None and self.resyncing[direction is S2C]:
                self._resync_feed(direction, data, timestamp, out)
            elif direction is C2S:
                self._feed_requests(data, timestamp, out)
            else:
                self._feed_responses(data, timestamp, out)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not take the chef down
            self._stop(out, Problem(direction, "internal_error",
                                    f"{type(exc).__name__}: {exc}", timestamp))
        return out

    def gap(self, direction: Direction, size: int, timestamp: float | None) -> list[Event]:
        out: list[Event] = []
        if self.stopped:
            self.skipped[direction is S2C] += size
            return out
        if self.resyncing is not None and direction is S2C and not self.resyncing[0]:
            # the client side has found where requests start again: the requests found
            # since stay (a second gap, in the other direction, must not discard them);
            # the search for their responses' status line just goes on past the loss
            lost = size + len(self._scan_held[1])
            self._scan_held[1], self._scan_ts[1], self._scan_cr[1] = b"", None, False
            self.skipped[1] += lost
            self._resync_skipped[1] += lost
            tx = self._resync_tx
            if tx is not None and tx.resync is not None:
                tx.resync["server_skipped"] = self._resync_skipped[1]
            return out
        if self.resyncing is not None:
            # still resynchronising after an earlier gap: start over, quietly
            self._start_resync(out)
            self.skipped[direction is S2C] += size
            self._resync_skipped[direction is S2C] += size
            return out
        out.append(Problem(direction, "gap", f"{size} bytes lost in {direction}; "
                           "resynchronising at the next request", timestamp, stopped=False))
        self._resync_skipped = [0, 0]
        self._start_resync(out)
        return out

    def close(self, reason: str, clean: bool, timestamp: float | None) -> list[Event]:
        """The connection ended. ``clean`` (a FIN) lets a response without a length end
        here; otherwise such a response is reported as incomplete."""
        out: list[Event] = []
        if self.stopped:
            return out
        for i, held in enumerate(self._scan_held):
            self.skipped[i] += len(held)   # a start line cut by the end: never decoded
        resp = self._resp
        if resp.raw09 and resp.tx is not None and resp.tx.response is not None:
            tx = resp.tx
            self._finish(tx, resp.last_ts or timestamp or 0.0, out)
            if not clean:
                tx.outcome, tx.note = "incomplete", f"connection closed ({reason})"
            resp.raw09, resp.tx, resp.conn = False, None, None
        if clean and resp.conn is not None and resp.tx is not None and resp.tx.response:
            try:
                resp.conn.receive_data(b"")
                # the body ended with its last byte, not with the FIN
                self._pump_responses(resp.last_ts or timestamp or 0.0, out)
            except h11.RemoteProtocolError:
                pass  # body shorter than announced: reported below as incomplete
        if self.stopped:
            return out
        if self._req.started and self._req.tx is None:
            out.append(Problem(C2S, "truncated", "connection closed inside a request head",
                               timestamp, stopped=False))
        if self._held_s2c:
            out.append(Problem(S2C, "unmatched_response",
                               f"{len(self._held_s2c)} server bytes without a request",
                               timestamp, stopped=False))
        self._flush_pending(out, f"connection closed ({reason})")
        self.stopped = "closed"
        return out

    def expire(self, now: float, timeout: float) -> list[Event]:
        """Report requests whose response has not started ``timeout`` s after they were
        sent. They stay queued so a late response still pairs with the right request."""
        out: list[Event] = []
        for tx in self._pending:
            if tx.timeout_reported or tx.response is not None or tx.informational:
                continue
            sent = tx.request.end if tx.request.end is not None else tx.request.start
            if sent is not None and now - sent >= timeout:
                tx.timeout_reported = True
                out.append(self._snapshot(tx, "no_response", f"no response after {timeout:g}s"))
        return out

    # -- client -> server ---------------------------------------------------------------

    def _parser(self, role: Any) -> Any:
        """A parser for one side's next message (fast path or h11 alone)."""
        if self.fast:
            return _Message(role, self.max_header_bytes)
        return h11.Connection(role, max_incomplete_event_size=self.max_header_bytes)

    def _new_side_conn(self, side: _Side, role: Any, leftover: bytes, ts: float) -> None:
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

    def _receive_request(self, side: _Side, data: bytes) -> None:
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

    # -- server -> client ---------------------------------------------------------------

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

    # -- shared ---------------------------------------------------------------------------

    def _set_headers(self, msg: HttpMessage, raw: list[tuple[bytes, bytes]]) -> None:
        msg.headers_total = len(raw)
        limit = self.max_value_chars
        msg.headers = [[as_text(n, 256), as_text(v, limit)] for n, v in raw[:MAX_HEADERS_SHOWN]]

    def _set_trailers(self, msg: HttpMessage, ev: Any) -> None:
        # A chunked body may end with trailer fields (RFC 9112 7.1.2: checksums, gRPC-web
        # status, Server-Timing); h11 hands them over on EndOfMessage and they were dropped.
        raw = ev.headers.raw_items() if getattr(ev, "headers", None) else None
        if raw:
            limit = self.max_value_chars
            msg.trailers = [[as_text(n, 256), as_text(v, limit)]
                            for n, v in raw[:MAX_HEADERS_SHOWN]]

    def _add_body(self, msg: HttpMessage, ev: Any) -> None:
        n = len(ev.data)
        msg.body_length += n
        room = self.body_preview - len(msg.body_preview)
        if room > 0:
            msg.body_preview.extend(ev.data[:room])
        if msg.chunked:
            # Chunks are told apart by h11's chunk_end, not chunk_start: h11 loses
            # chunk_start when a segment ends right after a chunk-size line (the data then
            # comes as a continuation), so chunk_start made the sizes depend on how TCP cut
            # the stream. A Data that ends a chunk is always flagged chunk_end.
            if not msg.chunk_open:
                msg.chunk_open = 1 if len(msg.chunk_sizes) < MAX_CHUNK_SIZES else 2
                if msg.chunk_open == 1:
                    msg.chunk_sizes.append(0)
            if msg.chunk_open == 1:
                msg.chunk_sizes[-1] += n
            if getattr(ev, "chunk_end", False):
                msg.chunk_open = 0

    def _snapshot(self, tx: Transaction, outcome: str, note: str) -> Transaction:
        """A report of ``tx`` as it stands, without disturbing the live one."""
        return Transaction(tx.index, tx.request, tx.response, list(tx.informational),
                           outcome=outcome, note=note, wants_switch=tx.wants_switch,
                           request_done=tx.request_done, problem=tx.problem,
                           http09=tx.http09,
                           resync=dict(tx.resync) if tx.resync is not None else None)

    def _flush_pending(self, out: list[Event], why: str) -> None:
        while self._pending:
            tx = self._pending.popleft()
            if tx.timeout_reported and tx.response is None:
                continue  # already reported as unanswered
            started = tx.response is not None or bool(tx.informational)
            if not started and self._resp.tx is tx and self._resp.started:
                started = True
            tx.outcome = "incomplete" if started or not tx.request_done else "no_response"
            tx.note = why
            out.append(tx)

    def _stop(self, out: list[Event], problem: Problem, note: str | None = None) -> None:
        out.append(problem)
        self._flush_pending(out, note or problem.kind)
        self.stopped = problem.kind
        self._req.conn = self._resp.conn = None
        self._held_s2c.clear()
        self._held_c2s = None
        self.resyncing = None
        self._scan_held = [b"", b""]

    # -- resynchronising after a gap --------------------------------------------------------

    def _start_resync(self, out: list[Event]) -> None:
        """Report what was waiting, forget both directions' state, look for message starts."""
        self._flush_pending(out, "gap")
        # bytes held back and never decoded count as skipped
        dropped = [len(self._held_c2s or b""), len(self._held_s2c)]
        self._req = _Side()
        self._resp = _Side()
        self._held_s2c.clear()
        self._held_s2c_ts = None
        self._held_c2s = None
        self._held_c2s_ts = None
        self.resyncing = [True, True]
        self._resync_tx = None
        for i, held in enumerate(self._scan_held):
            self.skipped[i] += len(held) + dropped[i]
            self._resync_skipped[i] += len(held) + dropped[i]
        self._scan_held = [b"", b""]
        self._scan_ts = [None, None]
        self._scan_cr = [False, False]

    def _resync_feed(self, direction: Direction, data: bytes, ts: float,
                     out: list[Event]) -> None:
        i = direction is S2C
        held = self._scan_held[i]
        if i:
            first = self._resync_tx
            if (not self._pending or self._pending[0] is not first or first is None
                    or first.request.start is None or first.request.start > ts):
                # no request after the gap waits for an answer: these bytes answer a request
                # we did not see (or nothing), so they are skipped, not held
                self._resync_skip(i, held + data if held else data)
                return
            search, partial = _RESYNC_STATUS, _RESYNC_STATUS_PARTIAL
        else:
            search, partial = _RESYNC_REQUEST, _RESYNC_REQUEST_PARTIAL
        buf = held + data if held else data
        # a line starts at the start of a segment (or held bytes) and right after a CRLF,
        # also one cut between two segments
        prefix = b"\r" if (not held and self._scan_cr[i] and buf[:1] == b"\n") else b"\r\n"
        scan = prefix + buf
        m = search.search(scan)
        if m is None:
            start = scan.rfind(b"\r\n") + 2 - len(prefix)
            tail = buf[start:]
            if (tail and len(tail) <= min(self.max_header_bytes, MAX_RESYNC_LINE)
                    and partial.fullmatch(tail) is not None):
                # a start line may continue in the next segment
                self._scan_ts[i] = self._scan_ts[i] if (held and start == 0) else ts
                self._scan_held[i] = bytes(tail)
                self._resync_skip(i, buf[:start])
            else:
                self._scan_held[i] = b""
                self._resync_skip(i, buf)
            return
        pos = m.start() + 2 - len(prefix)
        held_ts = self._scan_ts[i]
        self._scan_held[i] = b""
        self._scan_ts[i] = None
        self._resync_skip(i, buf[:pos])
        self.resyncing[i] = False  # type: ignore[index]
        if i:
            self.resyncing = None   # the client side found its start first
            self._resync_tx = None
            feed = self._feed_responses
        else:
            feed = self._feed_requests
        if held and pos == 0:
            # the start line began in an earlier segment: it started then
            feed(held, held_ts if held_ts is not None else ts, out)
            if not self.stopped:
                feed(buf[len(held):], ts, out)
        else:
            feed(buf[pos:], ts, out)

    def _resync_skip(self, i: int, skipped: bytes) -> None:
        if skipped:
            self.skipped[i] += len(skipped)
            self._resync_skipped[i] += len(skipped)
            self._scan_cr[i] = skipped[-1:] == b"\r"
            tx = self._resync_tx
            if i and tx is not None and tx.resync is not None:
                tx.resync["server_skipped"] = self._resync_skipped[1]


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


def _is_chunked(headers: Any) -> bool:
    return any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers)


def _prefixes(*parts: bytes) -> re.Pattern[bytes]:
    """A regex matching any non-empty prefix of ``parts`` (regexes) in sequence."""
    rx = b""
    for part in reversed(parts):
        rx = part + (b"(?:" + rx + b")?" if rx else b"")
    return re.compile(rx)


# Where decoding may restart after a gap (searched with "\r\n" in front: a line start).
# Stricter than the grammar on purpose: a false start costs more than a late one.
_RESYNC_REQUEST = re.compile(rb"\r\n[A-Z]{1,20} [\x21-\x7e]+ HTTP/1\.[01]\r\n")
_RESYNC_REQUEST_PARTIAL = _prefixes(rb"[A-Z]{1,20}", b" ", rb"[\x21-\x7e]+", b" ", b"H", b"T",
                                    b"T", b"P", b"/", b"1", rb"\.", b"[01]", b"\r")
_RESYNC_STATUS = re.compile(rb"\r\nHTTP/1\.[01] [1-5][0-9][0-9] ")
_RESYNC_STATUS_PARTIAL = _prefixes(b"H", b"T", b"T", b"P", b"/", b"1", rb"\.", b"[01]", b" ",
                                   b"[1-5]", b"[0-9]", b"[0-9]")

# -- the chef ---------------------------------------------------------------------------


class Http1Chef(StreamChef):
    """HTTP/1.x: one dumpling per request/response transaction, with latency.

    Transactions are matched in order per connection; a request left unanswered is reported
    after ``response_timeout`` seconds of capture time (from the interval poke) and at
    connection close. A request h11 refuses but a server would still answer (no version
    or no target on the request line, ``HTTP/1.``, no ``Host``, malformed header lines) is
    decoded with its response (also an HTTP/0.9 answer without a status line) and says
    what was wrong in ``"problem"``. Other decoding problems give an ``"event": "error"``
    dumpling and stop that connection's decoding. A gap in the capture gives an
    ``"event": "error"`` dumpling of kind ``gap`` too, but decoding resynchronises at the
    next request line (and its response): the first transaction after the gap has
    ``"resync"``, the bytes each side skipped.
    """

    default_ports: ClassVar[tuple[int, ...]] = (80, 8000, 8080)
    #: Several workers: the interval handler only reports the requests of the worker's own
    #: flows that waited too long, so it runs per worker (no totals to merge).
    shard: ClassVar[str | None] = "flows"

    class Options(FlowChefOptions):
        #: seconds (capture time) to wait for a response before reporting the request
        response_timeout: float = Field(30.0, gt=0)
        #: body bytes shown per message (lengths are always reported in full)
        body_preview: int = Field(256, ge=0, le=65536)
        #: largest request/response head accepted, in bytes
        max_header_bytes: int = Field(65536, ge=1024, le=1 << 20)
        #: requests that may wait for their responses on one connection
        max_pipelined: int = Field(64, ge=1, le=10000)
        #: characters of a request-target shown; a longer one is cut and its size given
        max_target_chars: int = Field(8192, ge=16, le=1 << 20, description=(
            "characters of a request-target shown; a longer one is cut and its size given"))
        #: characters of a header (or trailer) value shown; longer ones are cut likewise
        max_value_chars: int = Field(MAX_VALUE_CHARS, ge=16, le=1 << 20, description=(
            "characters of a header or trailer value shown; a longer one is cut likewise"))

    def __init__(self, kitchen: Any = None, **options: Any) -> None:
        super().__init__(kitchen, **options)
        self.counts: Counter[str] = Counter()
        self._waiting: weakref.WeakValueDictionary[int, Flow] = weakref.WeakValueDictionary()

    def detect(self, flow: Flow, direction: Direction, data: bytes) -> bool:
        return direction is C2S and REQUEST_LINE.match(data) is not None

    def new_flow_state(self, flow: Flow) -> Http1Decoder:
        o = self.options
        return Http1Decoder(body_preview=o.body_preview,  # type: ignore[attr-defined]
                            max_header_bytes=o.max_header_bytes,  # type: ignore[attr-defined]
                            max_pipelined=o.max_pipelined,  # type: ignore[attr-defined]
                            max_target_chars=o.max_target_chars,  # type: ignore[attr-defined]
                            max_value_chars=o.max_value_chars)  # type: ignore[attr-defined]

    def on_data(self, flow: Flow, direction: Direction, data: bytes,
                timestamp: float) -> Iterator[dict[str, Any]]:
        decoder: Http1Decoder = self.flow_state(flow)
        events = decoder.feed(direction, data, timestamp)
        if decoder.pending:
            self._waiting[flow.id] = flow
        yield from self._payloads(flow, decoder, events)

    def on_gap(self, flow: Flow, direction: Direction, size: int) -> Iterator[dict[str, Any]]:
        decoder: Http1Decoder = self.flow_state(flow)
        yield from self._payloads(flow, decoder, decoder.gap(direction, size, self.now))

    def on_close(self, flow: Flow, reason: CloseReason) -> Iterator[dict[str, Any]]:
        decoder: Http1Decoder = self.flow_state(flow)
        self._waiting.pop(flow.id, None)
        events = decoder.close(str(reason), reason is CloseReason.FIN, flow.last_seen)
        yield from self._payloads(flow, decoder, events)

    def interval_handler(self, interval: float | None = None) -> Iterator[dict[str, Any]]:
        now = self.now
        if now is None:
            return
        timeout = self.options.response_timeout  # type: ignore[attr-defined]
        for flow_id, flow in list(self._waiting.items()):
            decoder = flow.state.get(self.name)
            if not isinstance(decoder, Http1Decoder) or not decoder.pending or decoder.stopped:
                self._waiting.pop(flow_id, None)
                continue
            yield from self._payloads(flow, decoder, decoder.expire(now, timeout))

    # -- payloads ---------------------------------------------------------------------

    def _payloads(self, flow: Flow, decoder: Http1Decoder,
                  events: list[Event]) -> Iterator[dict[str, Any]]:
        for ev in events:
            if isinstance(ev, Problem):
                self.counts[ev.kind] += 1
                if ev.kind == "not_http1":
                    self.logger.debug("%s: %s", flow.label(), ev.message)
                    continue
                if ev.kind == "internal_error":   # a decoder bug, not bad input: count it
                    self.report_error(f"{flow.label(ev.direction)}: decoder failed: "
                                      f"{ev.message}")
                self.logger.info("%s: %s: %s", flow.label(ev.direction), ev.kind, ev.message)
                yield self._problem_payload(flow, ev)
            else:
                self.counts["transactions"] += 1
                self.counts[ev.outcome] += 1
                if ev.resync is not None:
                    self.counts["resync"] += 1
                if ev.upgrade is not None and decoder.switched is not None:
                    flow.state[UPGRADE_STATE_KEY] = dict(decoder.switched, by=self.name)
                yield transaction_payload(flow, ev)

    def _problem_payload(self, flow: Flow, ev: Problem) -> dict[str, Any]:
        stop = "; stopped decoding" if ev.stopped else ""
        return {
            "event": "error",
            "flow": flow.describe(),
            "src": flow.src(ev.direction),
            "dst": flow.dst(ev.direction),
            "direction": str(ev.direction),
            "timestamp": ev.timestamp,
            "kind": ev.kind,
            "message": ev.message,
            "summary": _one_line(f"{flow.label(ev.direction)}  HTTP/1 {ev.kind.upper()} "
                                 f"{ev.message}{stop}"),
        }


def _message_fields(msg: HttpMessage | None, prefix: str) -> dict[str, Any]:
    if msg is None:
        return {f"{prefix}_headers": None, f"{prefix}_body_length": None}
    out: dict[str, Any] = {
        f"{prefix}_headers": msg.headers,
        f"{prefix}_body_length": msg.body_length,
    }
    if msg.headers_total > len(msg.headers):
        out[f"{prefix}_headers_total"] = msg.headers_total
    if msg.trailers is not None:
        out[f"{prefix}_trailers"] = msg.trailers
    if msg.body_preview:
        out[f"{prefix}_body"] = as_text(bytes(msg.body_preview), 4 * len(msg.body_preview))
    return out


def transaction_payload(flow: Flow, tx: Transaction) -> dict[str, Any]:
    """The dumpling payload of one transaction (the keys the printer and dashboard use)."""
    req, resp = tx.request, tx.response
    latency = None
    if req.start is not None and resp is not None and resp.end is not None:
        latency = max(0.0, resp.end - req.start)
    payload: dict[str, Any] = {
        "event": "transaction",
        "flow": flow.describe(),
        "src": flow.client_str,
        "dst": flow.server_str,
        "direction": str(C2S),
        "timestamp": req.start,
        "index": tx.index,
        "outcome": tx.outcome,
        "method": req.method,
        "host": req.header("Host"),
        "path": req.target,
        "version": req.version,
        "request_chunked": req.chunked,
        **_message_fields(req, "request"),
        "status": resp.status if resp else None,
        "reason": resp.reason if resp else None,
        "response_version": resp.version if resp else None,
        **_message_fields(resp, "response"),
        "content_type": resp.header("Content-Type") if resp else None,
        "chunked": resp.chunked if resp else None,
        "latency": latency,
    }
    if resp is not None and resp.chunked:
        payload["chunk_sizes"] = resp.chunk_sizes
    if tx.informational:
        payload["informational"] = tx.informational
    if tx.upgrade is not None:
        payload["upgrade"] = tx.upgrade
    if tx.note:
        payload["note"] = tx.note
    if tx.late:
        payload["late"] = True
    if req.target_not_ascii:
        payload["target_not_ascii"] = True
    if tx.problem:
        payload["problem"] = tx.problem
    if tx.resync is not None:
        payload["resync"] = dict(tx.resync)
    payload["summary"] = _one_line(_summary(flow, tx, latency))
    return payload


def _one_line(text: str, limit: int = 400) -> str:
    """Printers show one line per dumpling: no line breaks, bounded length."""
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _summary(flow: Flow, tx: Transaction, latency: float | None) -> str:
    req, resp = tx.request, tx.response
    target = req.target if len(req.target) <= 120 else req.target[:117] + "..."
    line = f"{flow.label(C2S)}  {req.method} {target} -> "
    if resp is not None and resp.status is None and resp.version == "HTTP/0.9":
        line += f"HTTP/0.9 response {resp.body_length}B"
    elif resp is None or resp.status is None:
        line += "(no response"
        line += f": {tx.note})" if tx.note else ")"
        return line + (f" (problem: {tx.problem})" if tx.problem else "")
    else:
        line += f"{resp.status} {resp.reason}".rstrip()
    if resp.status is None:
        pass
    elif tx.upgrade is not None:
        line += f" UPGRADE {tx.upgrade}"
    else:
        line += f" {resp.body_length}B"
    if latency is not None:
        line += f" {latency * 1000:.1f}ms"
    if tx.outcome != "complete" and tx.outcome != "upgraded":
        line += f" ({tx.outcome}{': ' + tx.note if tx.note else ''})"
    if tx.late:
        line += " (late)"
    if req.target_not_ascii:
        line += " (target not ASCII)"
    if tx.problem:
        line += f" (problem: {tx.problem})"
    if tx.resync is not None:
        line += (f" (after a gap: skipped {tx.resync['client_skipped']}B client, "
                 f"{tx.resync['server_skipped']}B server)")
    return line
