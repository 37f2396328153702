"""The sans-I/O HTTP/1.x decoder: both directions' bytes in, transactions out.

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
``lenient.py`` and parsed by h11 again, once: the transaction shows what the client
sent and says what was wrong in ``problem``. An answer without a status line to such a
request is an HTTP/0.9 body, read to the close. Plain messages skip h11 altogether
(``fast.py``, the same grammar, checked against h11 by the tests).

The decoder is put together from mixins over one state (``state.py``): the client's half
(``requests.py``), the server's half (``responses.py``) and the resynchronisation after a
gap (``resync.py``). It imports nothing from the framework (no kitchen, flows, dumplings,
scapy, sockets or asyncio): only the stdlib, h11 and this package's modules, so it can be
used and tested on its own, as h11 is.
"""

from __future__ import annotations

import h11

from .events import C2S, S2C, Event, Problem, Side
from .requests import RequestSide
from .resync import Resync
from .responses import ResponseSide


class Http1Decoder(RequestSide, ResponseSide, Resync):
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


    # -- public API -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests whose response has not ended yet."""
        return len(self._pending)

    def feed(self, direction: Side | str, data: bytes, timestamp: float) -> list[Event]:
        """Bytes seen in ``direction`` (a ``Side``, or the kitchen's ``Direction``: the
        same values) at capture time ``timestamp``; returns the events they complete."""
        out: list[Event] = []
        if not data:
            return out
        server = direction == S2C
        self._total[server] += len(data)
        if self.stopped:
            self.skipped[server] += len(data)
            return out
        try:
            if self.resyncing is not None and self.resyncing[server]:
                self._resync_feed(server, data, timestamp, out)
            elif server:
                self._feed_responses(data, timestamp, out)
            else:
                self._feed_requests(data, timestamp, out)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not take the chef down
            self._stop(out, Problem(S2C if server else C2S, "internal_error",
                                    f"{type(exc).__name__}: {exc}", timestamp))
        return out

    def gap(self, direction: Side | str, size: int, timestamp: float | None) -> list[Event]:
        """``size`` bytes in ``direction`` were lost for good (seen at ``timestamp``)."""
        out: list[Event] = []
        server = direction == S2C
        if self.stopped:
            self.skipped[server] += size
            return out
        if self.resyncing is not None and server and not self.resyncing[0]:
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
            self.skipped[server] += size
            self._resync_skipped[server] += size
            return out
        side = S2C if server else C2S
        out.append(Problem(side, "gap", f"{size} bytes lost in {side}; "
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
