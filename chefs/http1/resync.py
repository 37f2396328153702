"""Where the HTTP/1.x decoder starts again after a gap in the capture (bytes lost for good).

Conservative on purpose, because pairing a response with the wrong request is worse than
saying nothing: client bytes are skipped up to a request line at a line start, server
bytes up to a status line at a line start that follows such a request (the rules are
spelled out in ``Http1Decoder``'s docstring). A start line cut by a segment end is held
(at most ``MAX_RESYNC_LINE`` bytes) until the next segment says what it is. Imports: the
stdlib and this package's modules only.
"""

from __future__ import annotations

import re

from .events import Event
from .state import MAX_RESYNC_LINE, DecoderState, _SideState


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


class Resync(DecoderState):
    """Skipping to the next request line (and its response's status line) after a gap."""

    def _start_resync(self, out: list[Event]) -> None:
        """Report what was waiting, forget both directions' state, look for message starts."""
        self._flush_pending(out, "gap")
        # bytes held back and never decoded count as skipped
        dropped = [len(self._held_c2s or b""), len(self._held_s2c)]
        self._req = _SideState()
        self._resp = _SideState()
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

    def _resync_feed(self, i: bool, data: bytes, ts: float,
                     out: list[Event]) -> None:
        """Bytes of one side (``i``: the server's) while that side looks for a start line."""
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
