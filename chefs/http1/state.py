"""The HTTP/1.x decoder's state and the bookkeeping both directions share.

``DecoderState`` holds everything one connection's decoder knows (the options, each side's
parser, the requests waiting for responses, what was skipped); ``requests.py``,
``responses.py`` and ``resync.py`` each add one part of the decoding as a mixin over it, and
``decoder.py`` puts them together as ``Http1Decoder``. Imports: the stdlib, h11 and this
package's ``events``, ``fast`` and ``lenient`` modules only (no framework: see the package).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import h11

from .events import MAX_VALUE_CHARS, Event, HttpMessage, Problem, Transaction, as_text
from .lenient import Repaired

MAX_HEADERS_SHOWN = 100
MAX_CHUNK_SIZES = 64
MAX_INFORMATIONAL = 8
#: Longest start line held across segments while resynchronising after a gap. Each new
#: segment rescans what is held, so fed in small pieces the cost grows with its square:
#: at max_header_bytes (64 KB) one line fed a byte at a time took ~7 s. Servers refuse
#: request lines this long anyway (nginx and Apache stop at 8 KB).
MAX_RESYNC_LINE = 8192


class _SideState:
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


def _is_chunked(headers: Any) -> bool:
    return any(n == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers)


class DecoderState:
    """One connection's decoder state (options, both sides' parsers, waiting requests) and
    the helpers every part of the decoding uses. The options are the keyword arguments,
    each described where it is kept."""

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
        self._req = _SideState()
        self._resp = _SideState()
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

    if TYPE_CHECKING:   # the parts the mixins give each other (see Http1Decoder's bases)
        def _new_side_conn(self, side: _SideState, role: Any, leftover: bytes,
                           ts: float) -> None: ...

        def _feed_requests(self, data: bytes, ts: float, out: list[Event]) -> None: ...

        def _feed_responses(self, data: bytes, ts: float, out: list[Event]) -> None: ...

        def _prime_response_side(self, tx: Transaction, ts: float,
                                 out: list[Event]) -> bool: ...

        def _release_held_s2c(self, ts: float, out: list[Event]) -> None: ...
