"""How a connection's decoding begins, per direction: the client preface, an HTTP/1.1
``Upgrade: h2c`` exchange (read with h11; the request becomes stream 1), an HTTP
``CONNECT`` tunnel (h2 after the 2xx; anything else in it is let go quietly), or, when the
capture began mid-connection, the first chunk that is whole frames.

A mixin of ``Http2Decoder``: its methods use the decoder's state and its ``_stop``,
``_error`` and ``_new_stream``; kept apart so that each module has one job.
"""

from __future__ import annotations

import base64

import h11
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import SettingsFrame

from .detect import looks_like_request, whole_frames
from .events import C2S, S2C, Joined, Side
from .names import MAX_HTTP1_HEAD, PREFACE, SYNC_TRIES
from .state import SideState
from .text import header_text

class Handshake:
    """The phases before framing: start, sync, http1, preface."""

    def _start(self, direction: Side, side: SideState, ts: float | None) -> None:
        buf = bytes(side.buf[:24])
        if direction is C2S:
            if len(buf) < 4 and PREFACE.startswith(buf):
                # "P", "PR", "PRI" may still become POST, PUT, PATCH...: deciding now made a
                # request split after its first bytes fail as a bad preface
                return
            if PREFACE.startswith(buf) or buf.startswith(PREFACE):
                side.phase = "preface"
            elif looks_like_request(buf):
                side.phase = "http1"
                side.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HTTP1_HEAD)
            else:
                self._stop(direction, ts, "no HTTP/2 client preface or HTTP/1.1 upgrade request")
        else:
            if b"HTTP/".startswith(buf[:5]) and len(buf) < 5:
                return                              # not enough bytes to tell yet
            if buf.startswith(b"HTTP/"):
                side.phase = "http1"
                conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HTTP1_HEAD)
                # h11 only accepts a 101 (or a CONNECT's 2xx) after it has sent that request
                if self.tunnel:
                    conn.send(h11.Request(method="CONNECT", target="x:1", headers=[("Host", "x:1")]))
                else:
                    conn.send(h11.Request(method="GET", target="/", headers=[
                        ("Host", "x"), ("Upgrade", "h2c"), ("Connection", "Upgrade")]))
                conn.send(h11.EndOfMessage())
                side.h11 = conn
            else:
                side.phase = "frames"

    def _sync(self, direction: Side, side: SideState, ts: float | None) -> None:
        """Mid-connection: begin at a chunk that is whole frames (or at the connection's
        real start, when the capture happens to begin there), else drop it (counted)."""
        buf = bytes(side.buf)
        if (direction is C2S and (PREFACE.startswith(buf[:24]) or buf.startswith(PREFACE)
                                  or looks_like_request(buf))) or \
                (direction is S2C and buf.startswith(b"HTTP/")):
            side.phase = "start"
            return
        if whole_frames(buf, self.max_frame_size):
            side.phase = "frames"
            side.hpack_partial = True
            side.fresh_hpack()
            self.joined = True
            self._events.append(Joined(direction, ts, side.skipped))
            return
        side.skipped += len(buf)
        side.buf.clear()
        side.sync_tries += 1
        if side.sync_tries >= SYNC_TRIES:
            self._stop(direction, ts, f"joined mid-connection, but no HTTP/2 frame boundary "
                                      f"in {SYNC_TRIES} chunks ({side.skipped} bytes)")

    def _preface(self, direction: Side, side: SideState, ts: float | None) -> None:
        n = min(len(side.buf), len(PREFACE))
        if side.buf[:n] != PREFACE[:n]:
            if self.tunnel:   # a tunnel of something else (TLS, mostly): not ours, quietly
                self.not_http2 = True
                self.stopped = "the CONNECT tunnel does not carry cleartext HTTP/2"
                for other in self.sides.values():
                    other.buf, other.h11 = bytearray(), None
                return
            self._stop(direction, ts, "bad HTTP/2 client preface")
            return
        if n == len(PREFACE):
            del side.buf[:n]
            self.preface_seen = True
            side.phase = "frames"

    def _http1(self, direction: Side, side: SideState, ts: float | None) -> None:
        """Skip the HTTP/1.1 Upgrade: h2c request (or the 101 response) with h11."""
        conn = side.h11
        assert conn is not None
        conn.receive_data(bytes(side.buf))
        side.buf.clear()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return
                if event is h11.PAUSED:
                    break
                if isinstance(event, h11.Request):
                    self._upgrade_request(direction, event, ts)
                    if self.stopped:
                        return
                elif isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        break
                elif isinstance(event, h11.Response):
                    if self.tunnel and 200 <= event.status_code < 300:
                        continue   # the tunnel is open: h2 (or not) follows
                    if self.tunnel:
                        self.not_http2 = True
                        self.stopped = f"CONNECT refused: HTTP/1.1 {event.status_code}"
                        return
                    self._stop(direction, ts, f"h2c upgrade refused: HTTP/1.1 {event.status_code};"
                                              " the connection stays HTTP/1.1")
                    return
                elif isinstance(event, h11.Data):
                    stream = self.streams.get(1)
                    if stream is not None:
                        stream.request.feed(bytes(event.data))
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as exc:
            self._stop(direction, ts, f"bad HTTP/1.1 upgrade exchange: {exc}")
            return
        rest, _closed = conn.trailing_data
        side.h11 = None
        side.buf = bytearray(rest)
        side.phase = "preface" if direction is C2S else "frames"

    def _upgrade_request(self, direction: Side, req: h11.Request, ts: float | None) -> None:
        if req.method == b"CONNECT":
            self.tunnel = True
            return
        headers = [(n.decode("latin-1").lower(), header_text(v)) for n, v in req.headers]
        upgrade = " ".join(v for n, v in headers if n == "upgrade").lower()
        if "h2c" not in upgrade:
            self._stop(direction, ts, "HTTP/1.1 request without Upgrade: h2c; not HTTP/2")
            return
        self.upgraded = True
        host = next((v for n, v in headers if n == "host"), "")
        stream = self._new_stream(1, ts)
        stream.upgraded = True
        stream.client_ended = True                  # the body, if any, is the HTTP/1.1 body
        stream.request_headers = [(":method", header_text(req.method)),
                                  (":path", header_text(req.target)),
                                  (":scheme", "http"), (":authority", host)] + [
            (n, v) for n, v in headers if n != "host"]
        for n, v in headers:
            if n == "http2-settings":
                try:
                    raw = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
                    settings = SettingsFrame(0)
                    settings.parse_body(memoryview(raw))
                    self._apply_settings(direction, settings)
                except (ValueError, HyperframeError):
                    self._error(direction, ts, "undecodable HTTP2-Settings header")
