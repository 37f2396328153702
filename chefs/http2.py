"""HTTP/2 over cleartext TCP (h2c): frames, HPACK header blocks and per-stream exchanges.

``Http2Decoder`` is sans-I/O: the chef feeds it each direction's reassembled bytes and gets
events back. It follows one connection from its start, either from the prior-knowledge
client preface or from an HTTP/1.1 ``Upgrade: h2c`` exchange (the HTTP/1.1 request becomes
stream 1). HPACK is stateful across the whole connection, so there is one ``hpack``
decoder per direction, and any loss of bytes (a capture gap, a header block that fails to
decode, framing that makes no sense) stops decoding of the connection for good: guessing on
would only produce wrong headers. Streams still open at that point are reported incomplete.

Joining mid-connection (the capture began while the connection was open, which for
long-lived gRPC channels is the usual case): each direction starts at its first captured
chunk made of whole frames. HPACK state from before the capture is unknown, so a header
block that refers to a table entry made before it cannot be decoded; it is reported as
unknown (``headers_unknown``), never guessed, and that direction's HPACK decoder starts
afresh: entries made from then on are the same in both tables (RFC 7541 numbers dynamic
entries from the newest), so later blocks that refer only to them decode exactly. Streams
already open at the join are not reported as exchanges (their start was not seen).

``Http2Chef`` turns the events into one dumpling per finished stream (request/response
headers, trailers, DATA sizes, reset, latency), optional per-frame dumplings
(``--chef-option Http2Chef.frames=true``) and one connection summary when the flow ends.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Protocol

import h11
import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, PriorityFrame, PushPromiseFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame)
from pydantic import Field

from netdumplings.chef import CloseReason, Direction, FlowChefOptions, StreamChef

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

FRAME_NAMES = {
    0x0: "DATA", 0x1: "HEADERS", 0x2: "PRIORITY", 0x3: "RST_STREAM", 0x4: "SETTINGS",
    0x5: "PUSH_PROMISE", 0x6: "PING", 0x7: "GOAWAY", 0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION", 0xA: "ALTSVC", 0xC: "ORIGIN", 0x10: "PRIORITY_UPDATE",
}
ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM", 0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM", 0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}
SETTING_NAMES = {
    0x1: "HEADER_TABLE_SIZE", 0x2: "ENABLE_PUSH", 0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE", 0x5: "MAX_FRAME_SIZE", 0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL", 0x9: "NO_RFC7540_PRIORITIES",
}
#: A peer may grow the HPACK table via SETTINGS; more than this is refused (memory bound).
MAX_HPACK_TABLE = 1 << 20
#: Captured chunks tried for a frame boundary when joining mid-connection.
SYNC_TRIES = 64
#: Cap on frame-size lists and header values kept per stream, so one stream stays small.
MAX_FRAME_SIZES_KEPT = 512
MAX_HEADER_VALUE_CHARS = 2048
MAX_INFORMATIONAL_KEPT = 4
#: Bytes of an HTTP/1.1 upgrade request/response head we are willing to buffer.
MAX_HTTP1_HEAD = 32 * 1024


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"0x{code:x}")


def show_bytes(data: bytes, limit: int) -> dict[str, Any]:
    """JSON-able view of some bytes: text when printable UTF-8, else hex; capped."""
    cut = data[:limit]
    out: dict[str, Any] = {"length": len(data)}
    text = _printable(cut)
    if text is None and len(data) > limit:
        # a multi-byte character cut in two at the limit still counts as text
        text = next((t for k in (1, 2, 3) if (t := _printable(cut[:-k])) is not None), None)
    if text is not None:
        out["text"] = text
    else:
        out["hex"] = cut.hex()
    if len(data) > limit:
        out["truncated"] = True
    return out


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None


def _text(value: bytes) -> str:
    s = value.decode("utf-8", "backslashreplace")
    if len(s) > MAX_HEADER_VALUE_CHARS:
        s = s[:MAX_HEADER_VALUE_CHARS] + f"...[{len(value)} bytes]"
    return s


# -- events --------------------------------------------------------------------------


class BodySink(Protocol):
    """Receives one direction's DATA of one stream; ``length`` counts every byte fed."""

    length: int

    def feed(self, data: bytes) -> None: ...


class BodyPreview:
    """Default body sink: counts bytes and keeps the first ``limit`` of them."""

    __slots__ = ("limit", "length", "head")

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.length = 0
        self.head = bytearray()

    def feed(self, data: bytes) -> None:
        self.length += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]


@dataclass
class Http2Stream:
    """One request/response exchange on one stream id."""

    stream_id: int
    start: float | None
    request: BodySink
    response: BodySink
    request_headers: list[tuple[str, str]] | None = None
    response_headers: list[tuple[str, str]] | None = None
    informational: list[list[tuple[str, str]]] = field(default_factory=list)
    request_trailers: list[tuple[str, str]] | None = None
    response_trailers: list[tuple[str, str]] | None = None
    request_data_frames: list[int] = field(default_factory=list)
    response_data_frames: list[int] = field(default_factory=list)
    request_data_frame_count: int = 0
    response_data_frame_count: int = 0
    client_ended: bool = False
    server_ended: bool = False
    reset: dict[str, Any] | None = None
    response_start: float | None = None
    end: float | None = None
    pushed_by: int | None = None
    upgraded: bool = False
    #: carried inside an HTTP CONNECT tunnel (the flow's first request was a CONNECT)
    tunnel: bool = False
    #: A header block of this stream referred to HPACK state from before the capture.
    headers_unknown: bool = False

    def header(self, name: str, which: str = "request") -> str | None:
        headers = self.request_headers if which == "request" else self.response_headers
        for n, v in headers or ():
            if n == name:
                return v
        return None

    @property
    def latency(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)


@dataclass
class FrameEvent:
    direction: Direction
    timestamp: float | None
    type: int
    name: str
    stream_id: int
    length: int
    flags: list[str]
    info: dict[str, Any]


@dataclass
class StreamEnded:
    stream: Http2Stream
    complete: bool
    reason: str           # end_stream, rst_stream, or why it was cut short


@dataclass
class DecodeError:
    direction: Direction | None
    timestamp: float | None
    message: str
    fatal: bool           # True: decoding of the connection stopped


@dataclass
class Joined:
    """Decoding of a connection already open when the capture began starts here."""

    direction: Direction
    timestamp: float | None
    skipped: int          # captured bytes dropped before the first frame boundary


Event = FrameEvent | StreamEnded | DecodeError | Joined


class _Side:
    """Parser state of one direction."""

    def __init__(self, max_header_list_size: int) -> None:
        self.buf = bytearray()
        self.phase = "start"         # start -> (http1) -> frames
        self.hpack = hpack.Decoder(max_header_list_size=max_header_list_size)
        self.frame_ts: float | None = None
        # a DATA frame whose body is being streamed
        self.data_frame: DataFrame | None = None
        self.data_length = 0
        self.data_left = 0
        self.data_pad: int | None = None
        self.data_seen = 0           # body bytes of the DATA frame consumed so far
        self.skip_left = 0           # bytes of an oversized non-header frame to discard
        # a header block waiting for CONTINUATION frames
        self.block: bytearray | None = None
        self.block_frame: Frame | None = None
        self.settings: dict[str, int] = {}
        self.frames: dict[str, int] = {}
        self.h11: h11.Connection | None = None
        self.max_header_list_size = max_header_list_size
        # joining mid-connection: the table may lack entries made before the capture
        self.hpack_partial = False
        self.sync_tries = 0
        self.skipped = 0

    def fresh_hpack(self) -> None:
        """Forget the table: it may be out of step after a block that could not decode."""
        self.hpack = hpack.Decoder(max_header_list_size=self.max_header_list_size)
        self.hpack.max_allowed_table_size = MAX_HPACK_TABLE


class Http2Decoder:
    """Decode one HTTP/2 connection, both directions; see the module docstring.

    ``feed(direction, data, timestamp)`` returns events: ``FrameEvent`` for every frame
    (header blocks decoded on the frame that completes them), ``StreamEnded`` when a
    stream finishes (or is cut short), ``DecodeError`` for anything that does not parse.
    """

    def __init__(self, *, max_frame_size: int = 1 << 20, max_header_list_size: int = 65536,
                 max_streams: int = 1000,
                 body_sink: Callable[[Http2Stream | None, Direction], BodySink] | None = None,
                 midstream: bool = False) -> None:
        self.max_frame_size = max_frame_size
        self.max_header_block = max(max_header_list_size * 2, 16384)
        self.max_streams = max_streams
        self._sink = body_sink or (lambda stream, direction: BodyPreview())
        self.sides = {C2S: _Side(max_header_list_size), S2C: _Side(max_header_list_size)}
        self.streams: dict[int, Http2Stream] = {}
        self.stopped: str | None = None
        self.upgraded = False
        #: the client asked for an HTTP CONNECT tunnel (how gRPC clients use a proxy): h2
        #: inside it is decoded after the 2xx; anything else (TLS) is let go quietly
        self.tunnel = False
        self.not_http2 = False
        self.preface_seen = False
        self.goaway: dict[str, Any] | None = None
        self.streams_completed = 0
        self.streams_incomplete = 0
        self.errors = 0
        #: exceptions the decoder's own safety net caught (bugs, not bad input)
        self.internal_errors: list[Exception] = []
        self._highest_stream = 0
        # Streams recently ended by RST_STREAM. The peer may have sent frames before it
        # saw the reset (RFC 9113 5.4.2, 6.4): grpcio's server sends its trailers after
        # the client cancelled or hit its deadline. Those are normal, not errors.
        self._reset_ids: deque[int] = deque(maxlen=128)
        #: streams the client reset before any answer, still open for a late one
        self._awaiting_late: set[int] = set()
        self._events: list[Event] = []
        #: Joined mid-connection, at a frame boundary (``midstream``: the capture began
        #: after the connection did, so each side starts by looking for one).
        self.joined = False
        self.header_blocks_unknown = 0
        self.frames_of_earlier_streams = 0   # frames of streams opened before the capture
        if midstream:
            for side in self.sides.values():
                side.phase = "sync"

    # -- public ---------------------------------------------------------------------------

    def feed(self, direction: Direction, data: bytes, timestamp: float | None = None
             ) -> list[Event]:
        if self.stopped or not data:
            return []
        side = self.sides[direction]
        if not side.buf:
            side.frame_ts = timestamp
        side.buf += data
        try:
            self._run(direction, side, timestamp)
        except Exception as exc:  # a decoder bug must not take the kitchen down
            self.internal_errors.append(exc)   # the chef shell reports it as a chef error
            self._stop(direction, timestamp, f"internal decoder error: {type(exc).__name__}: {exc}")
        return self._take()

    def gap(self, direction: Direction, size: int, timestamp: float | None = None
            ) -> list[Event]:
        """Bytes were lost: the HPACK state cannot be trusted any more, so stop here."""
        if not self.stopped:
            self._stop(direction, timestamp,
                       f"{size} bytes lost in {direction}; HPACK state lost, decoding stopped")
        return self._take()

    def close(self, reason: str = "closed", timestamp: float | None = None) -> list[Event]:
        """The connection ended: report streams that never finished."""
        if not self.stopped:
            for direction, side in self.sides.items():
                held = len(side.buf) + (len(side.h11.trailing_data[0]) if side.h11 else 0)
                if side.phase != "frames" and held:
                    # a preface or upgrade head cut short, or bytes h11 was still waiting
                    # on for a line end: without this they vanished without a word
                    self._error(direction, timestamp, f"connection ended before HTTP/2 "
                                                      f"framing began ({held} bytes undecoded)")
        self._flush_open(reason, timestamp)
        return self._take()

    @property
    def settings(self) -> dict[str, dict[str, int]]:
        return {"client": dict(self.sides[C2S].settings), "server": dict(self.sides[S2C].settings)}

    # -- plumbing ---------------------------------------------------------------------------

    def _take(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def _error(self, direction: Direction | None, ts: float | None, message: str) -> None:
        self.errors += 1
        self._events.append(DecodeError(direction, ts, message, False))

    def _stop(self, direction: Direction | None, ts: float | None, message: str) -> None:
        self.errors += 1
        self.stopped = message
        self._events.append(DecodeError(direction, ts, message, True))
        for side in self.sides.values():
            side.buf = bytearray()
            side.block = None
            side.h11 = None
        self._flush_open("decoding stopped", ts)

    def _flush_open(self, reason: str, ts: float | None) -> None:
        for stream in list(self.streams.values()):
            if stream.reset is not None:   # reset by the client, no answer came
                self._finish(stream, ts, complete=True, reason="rst_stream")
            else:
                self._finish(stream, ts, complete=False, reason=reason)

    def _finish_reset_before(self, sid: int) -> None:
        """The server answers stream ``sid``: streams the client reset earlier, still
        waiting for a late answer, will get none."""
        for earlier in sorted(i for i in self._awaiting_late if i < sid):
            stream = self.streams.get(earlier)
            if stream is not None:
                self._finish(stream, stream.end, complete=True, reason="rst_stream")

    def _finish(self, stream: Http2Stream, ts: float | None, complete: bool, reason: str) -> None:
        self.streams.pop(stream.stream_id, None)
        self._awaiting_late.discard(stream.stream_id)
        if stream.end is None:
            stream.end = ts
        if complete:
            self.streams_completed += 1
        else:
            self.streams_incomplete += 1
        self._events.append(StreamEnded(stream, complete, reason))

    def _new_stream(self, stream_id: int, ts: float | None) -> Http2Stream:
        if len(self.streams) >= self.max_streams:
            oldest = next(iter(self.streams.values()))
            self._error(None, ts, f"more than {self.max_streams} open streams; "
                                  f"stream {oldest.stream_id} reported early")
            self._finish(oldest, ts, complete=False, reason="too many open streams")
        stream = Http2Stream(stream_id, ts, None, None)  # type: ignore[arg-type]
        stream.tunnel = self.tunnel
        stream.request = self._sink(stream, C2S)
        stream.response = self._sink(stream, S2C)
        self.streams[stream_id] = stream
        self._highest_stream = max(self._highest_stream, stream_id)
        return stream

    def _maybe_done(self, stream: Http2Stream, ts: float | None) -> None:
        if stream.client_ended and stream.server_ended:
            self._finish(stream, ts, complete=True,
                         reason="rst_stream" if stream.reset is not None else "end_stream")

    # -- the per-direction state machine ---------------------------------------------------

    def _run(self, direction: Direction, side: _Side, ts: float | None) -> None:
        if side.phase == "sync":
            self._sync(direction, side, ts)
        if side.phase == "start":
            self._start(direction, side, ts)
        if side.phase == "http1":
            self._http1(direction, side, ts)
        if side.phase == "preface":
            self._preface(direction, side, ts)
        if side.phase == "frames" and not self.stopped:
            self._frames(direction, side, ts)

    def _start(self, direction: Direction, side: _Side, ts: float | None) -> None:
        buf = bytes(side.buf[:24])
        if direction is C2S:
            if len(buf) < 4 and PREFACE.startswith(buf):
                # "P", "PR", "PRI" may still become POST, PUT, PATCH...: deciding now made a
                # request split after its first bytes fail as a bad preface
                return
            if PREFACE.startswith(buf) or buf.startswith(PREFACE):
                side.phase = "preface"
            elif _looks_like_request(buf):
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

    def _sync(self, direction: Direction, side: _Side, ts: float | None) -> None:
        """Mid-connection: begin at a chunk that is whole frames (or at the connection's
        real start, when the capture happens to begin there), else drop it (counted)."""
        buf = bytes(side.buf)
        if (direction is C2S and (PREFACE.startswith(buf[:24]) or buf.startswith(PREFACE)
                                  or _looks_like_request(buf))) or \
                (direction is S2C and buf.startswith(b"HTTP/")):
            side.phase = "start"
            return
        if _whole_frames(buf, self.max_frame_size):
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

    def _preface(self, direction: Direction, side: _Side, ts: float | None) -> None:
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

    def _http1(self, direction: Direction, side: _Side, ts: float | None) -> None:
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

    def _upgrade_request(self, direction: Direction, req: h11.Request, ts: float | None) -> None:
        if req.method == b"CONNECT":
            self.tunnel = True
            return
        headers = [(n.decode("latin-1").lower(), _text(v)) for n, v in req.headers]
        upgrade = " ".join(v for n, v in headers if n == "upgrade").lower()
        if "h2c" not in upgrade:
            self._stop(direction, ts, "HTTP/1.1 request without Upgrade: h2c; not HTTP/2")
            return
        self.upgraded = True
        host = next((v for n, v in headers if n == "host"), "")
        stream = self._new_stream(1, ts)
        stream.upgraded = True
        stream.client_ended = True                  # the body, if any, is the HTTP/1.1 body
        stream.request_headers = [(":method", _text(req.method)), (":path", _text(req.target)),
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

    def _frames(self, direction: Direction, side: _Side, ts: float | None) -> None:
        buf = side.buf
        pos = 0
        try:
            while not self.stopped:
                if side.skip_left:
                    n = min(side.skip_left, len(buf) - pos)
                    side.skip_left -= n
                    pos += n
                    if side.skip_left:
                        break
                    continue
                if side.data_frame is not None:
                    pos = self._data_body(direction, side, buf, pos, ts)
                    if side.data_frame is not None:
                        break
                    continue
                if len(buf) - pos < 9:
                    break
                frame, length = Frame.parse_frame_header(memoryview(bytes(buf[pos:pos + 9])))
                if isinstance(frame, DataFrame):
                    if side.block is not None:
                        self._stop(direction, ts, "DATA frame inside a header block")
                        return
                    pos += 9
                    side.data_frame, side.data_length = frame, length
                    side.data_left, side.data_seen = length, 0
                    side.data_pad = None if "PADDED" in frame.flags else 0
                    continue
                if length > self.max_frame_size:
                    name = FRAME_NAMES.get(frame.type or 0, f"0x{frame.type:x}")
                    if isinstance(frame, (HeadersFrame, ContinuationFrame, PushPromiseFrame)):
                        self._stop(direction, ts, f"{name} frame of {length} bytes is over the "
                                                  f"{self.max_frame_size} byte cap")
                        return
                    self._error(direction, ts, f"{name} frame of {length} bytes skipped")
                    side.skip_left = length
                    pos += 9
                    continue
                if len(buf) - pos < 9 + length:
                    break
                body = memoryview(bytes(buf[pos + 9:pos + 9 + length]))
                try:
                    frame.parse_body(body)
                except (HyperframeError, ValueError) as exc:
                    pos += 9 + length
                    if isinstance(frame, (HeadersFrame, ContinuationFrame, PushPromiseFrame)):
                        self._stop(direction, ts, f"malformed header frame: {exc}")
                        return
                    self._error(direction, ts, f"malformed {type(frame).__name__}: {exc}")
                    continue
                self._handle(direction, side, frame, length, ts)
                pos += 9 + length
                side.frame_ts = ts
        finally:
            if not self.stopped:
                del buf[:pos]

    def _data_body(self, direction: Direction, side: _Side, buf: bytearray, pos: int,
                   ts: float | None) -> int:
        """Stream a DATA frame's body without buffering it whole."""
        frame = side.data_frame
        assert frame is not None
        if side.data_pad is None:
            if pos >= len(buf):
                return pos
            side.data_pad = buf[pos]
            pos += 1
            side.data_left -= 1
            side.data_seen += 1
            if side.data_pad > side.data_left:
                self._stop(direction, ts, "DATA padding longer than the frame")
                return pos
        n = min(side.data_left, len(buf) - pos)
        payload_end = side.data_length - side.data_pad       # offset where padding starts
        usable = max(0, min(side.data_seen + n, payload_end) - side.data_seen)
        if usable:
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                sink = stream.request if direction is C2S else stream.response
                sink.feed(bytes(buf[pos:pos + usable]))
        pos += n
        side.data_left -= n
        side.data_seen += n
        if side.data_left == 0:
            side.data_frame = None
            self._count(side, "DATA")
            self._on_data(direction, frame, payload_end - (1 if "PADDED" in frame.flags else 0),
                          side.data_length, ts)
            side.frame_ts = ts
        return pos

    # -- frame handling ---------------------------------------------------------------

    @staticmethod
    def _count(side: _Side, name: str) -> None:
        side.frames[name] = side.frames.get(name, 0) + 1

    def _emit(self, direction: Direction, ts: float | None, frame: Frame, length: int,
              info: dict[str, Any]) -> None:
        ftype = frame.type or 0
        self._events.append(FrameEvent(direction, ts, ftype,
                                       FRAME_NAMES.get(ftype, f"0x{ftype:x}"),
                                       frame.stream_id, length, sorted(frame.flags), info))

    def _on_data(self, direction: Direction, frame: DataFrame, size: int, length: int,
                 ts: float | None) -> None:
        info: dict[str, Any] = {"data_length": size}
        stream = self.streams.get(frame.stream_id)
        if frame.stream_id == 0:
            self._error(direction, ts, "DATA frame on stream 0")
        elif stream is None:
            info["unknown_stream"] = True
            if self.joined:
                self.frames_of_earlier_streams += 1
        else:
            if direction is C2S:
                stream.request_data_frame_count += 1
                if len(stream.request_data_frames) < MAX_FRAME_SIZES_KEPT:
                    stream.request_data_frames.append(size)
            else:
                stream.response_data_frame_count += 1
                if len(stream.response_data_frames) < MAX_FRAME_SIZES_KEPT:
                    stream.response_data_frames.append(size)
        self._emit(direction, ts, frame, length, info)
        if stream is not None and "END_STREAM" in frame.flags:
            self._end_side(stream, direction, ts)

    def _end_side(self, stream: Http2Stream, direction: Direction, ts: float | None) -> None:
        if direction is C2S:
            stream.client_ended = True
        else:
            stream.server_ended = True
        stream.end = ts
        self._maybe_done(stream, ts)

    def _handle(self, direction: Direction, side: _Side, frame: Frame, length: int,
                ts: float | None) -> None:
        name = FRAME_NAMES.get(frame.type or 0, f"0x{frame.type:x}")
        self._count(side, name)
        if side.block is not None and not isinstance(frame, ContinuationFrame):
            self._stop(direction, ts, f"{name} frame inside a header block (CONTINUATION expected)")
            return
        info: dict[str, Any] = {}
        if isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            if frame.stream_id == 0:
                self._stop(direction, ts, f"{name} frame on stream 0")
                return
            if isinstance(frame, HeadersFrame) and "PRIORITY" in frame.flags:
                info["priority"] = {"depends_on": frame.depends_on, "weight": frame.stream_weight,
                                    "exclusive": bool(frame.exclusive)}
            if isinstance(frame, PushPromiseFrame):
                info["promised_stream_id"] = frame.promised_stream_id
            side.block = bytearray(frame.data)
            side.block_frame = frame
            if "END_HEADERS" in frame.flags:
                self._header_block(direction, side, info, ts)
        elif isinstance(frame, ContinuationFrame):
            if side.block is None or side.block_frame is None \
                    or side.block_frame.stream_id != frame.stream_id:
                self._stop(direction, ts, "CONTINUATION without a header block to continue")
                return
            side.block += frame.data
            if len(side.block) > self.max_header_block:
                self._stop(direction, ts, f"header block over {self.max_header_block} bytes")
                return
            if "END_HEADERS" in frame.flags:
                self._header_block(direction, side, info, ts)
        elif isinstance(frame, PriorityFrame):
            info = {"depends_on": frame.depends_on, "weight": frame.stream_weight,
                    "exclusive": bool(frame.exclusive)}
        elif isinstance(frame, RstStreamFrame):
            info = {"error_code": frame.error_code, "error": error_name(frame.error_code)}
        elif isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                info["settings"] = self._apply_settings(direction, frame)
        elif isinstance(frame, PingFrame):
            info = {"opaque_data": bytes(frame.opaque_data).hex()}
        elif isinstance(frame, GoAwayFrame):
            info = {"last_stream_id": frame.last_stream_id, "error_code": frame.error_code,
                    "error": error_name(frame.error_code),
                    "debug_data": show_bytes(bytes(frame.additional_data), 256)}
            self.goaway = {"by": "client" if direction is C2S else "server", **info}
        elif isinstance(frame, WindowUpdateFrame):
            info = {"increment": frame.window_increment}
        if self.stopped:
            return
        self._emit(direction, ts, frame, length, info)
        if isinstance(frame, RstStreamFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                if stream.reset is None:
                    stream.reset = {"by": "client" if direction is C2S else "server", **info}
                stream.end = ts
                self._reset_ids.append(frame.stream_id)
                if (direction is C2S and stream.response_headers is None
                        and not stream.server_ended and not stream.headers_unknown):
                    # The server may have answered before it saw the reset (RFC 9113
                    # 5.4.2, 6.4), and its :status is what the stream got: the stream is
                    # reported when that response head (or the server's END_STREAM or
                    # RST_STREAM, a later stream's response, the close) comes.
                    self._awaiting_late.add(frame.stream_id)
                    return
                self._finish(stream, ts, complete=True, reason="rst_stream")

    def _apply_settings(self, direction: Direction, frame: SettingsFrame) -> dict[str, int]:
        named = {SETTING_NAMES.get(k, f"0x{k:x}"): v for k, v in frame.settings.items()}
        self.sides[direction].settings.update(named)
        if "HEADER_TABLE_SIZE" in named:
            # the peer's encoder may now grow its table up to this size
            other = self.sides[direction.reverse].hpack
            other.max_allowed_table_size = min(named["HEADER_TABLE_SIZE"], MAX_HPACK_TABLE)
        return named

    def _header_block(self, direction: Direction, side: _Side, info: dict[str, Any],
                      ts: float | None) -> None:
        block, frame = side.block, side.block_frame
        side.block = side.block_frame = None
        assert block is not None and frame is not None
        unknown = False
        try:
            raw = side.hpack.decode(bytes(block), raw=True)
        except Exception as exc:  # hpack raises its own errors and a few builtins
            if not side.hpack_partial:
                self._stop(direction, ts, f"HPACK decoding failed: {type(exc).__name__}: {exc}")
                return
            # Joined mid-connection: the block refers to state from before the capture.
            # Say so, and start the table afresh so that no later block is decoded wrong.
            side.fresh_hpack()
            self.header_blocks_unknown += 1
            unknown, raw = True, []
        headers = [(_text(n), _bin_value(v) if n.endswith(b"-bin") and v[:1] == b"\0"
                    else _text(v)) for n, v in raw]
        info["headers"] = None if unknown else [list(h) for h in headers]
        end_stream = "END_STREAM" in frame.flags
        if isinstance(frame, PushPromiseFrame):
            if frame.promised_stream_id in self.streams:
                self._error(direction, ts, f"PUSH_PROMISE reuses stream {frame.promised_stream_id}")
                return
            pushed = self._new_stream(frame.promised_stream_id, ts)
            pushed.request_headers = headers
            pushed.pushed_by = frame.stream_id
            pushed.client_ended = True
            return
        sid = frame.stream_id
        stream = self.streams.get(sid)
        if stream is None and sid in self._reset_ids:
            return     # sent before the peer saw our RST_STREAM (HPACK state is updated)
        if stream is None and self.joined and (
                direction is S2C or sid <= self._highest_stream
                or (not unknown and not any(n == ":method" for n, _ in headers))):
            # a response to, or trailers of, a stream opened before the capture began
            self.frames_of_earlier_streams += 1
            return
        if direction is C2S:
            if stream is None:
                if sid <= self._highest_stream and sid % 2 == 1:
                    self._error(direction, ts, f"HEADERS on closed stream {sid}")
                    return
                stream = self._new_stream(sid, side.frame_ts)
            stream.headers_unknown |= unknown
            if stream.request_headers is None:
                stream.request_headers = headers
            else:
                stream.request_trailers = headers
        else:
            if stream is None:
                if sid <= self._highest_stream:
                    self._error(direction, ts, f"HEADERS on closed stream {sid}")
                    return
                stream = self._new_stream(sid, ts)   # a request we never saw
            stream.headers_unknown |= unknown
            status = next((v for n, v in headers if n == ":status"), None)
            if stream.response_headers is None and status is not None and status.startswith("1") \
                    and len(status) == 3:
                if len(stream.informational) < MAX_INFORMATIONAL_KEPT:
                    stream.informational.append(headers)
            elif stream.response_headers is None:
                stream.response_headers = headers
                stream.response_start = ts
            else:
                stream.response_trailers = headers
            if self._awaiting_late:
                self._finish_reset_before(sid)
            if stream.reset is not None and stream.response_headers is not None:
                # the late answer to a stream the client reset: nothing more is read
                self._finish(stream, stream.end, complete=True, reason="rst_stream")
                return
        if end_stream:
            self._end_side(stream, direction, ts)


def _bin_value(value: bytes) -> str:
    """A gRPC binary header sent as "true binary": NUL, then the raw bytes.

    grpc-core peers that both announce SETTINGS 0xFE03 send ``-bin`` metadata this way
    instead of base64; shown as raw text it came out as NULs and escapes. It is shown here
    in the form every gRPC peer understands, unpadded base64 (gRPC over HTTP/2 spec)."""
    return _text(base64.b64encode(value[1:]).rstrip(b"="))


def _whole_frames(data: bytes, max_frame_size: int) -> bool:
    """Whether ``data`` is one or more whole HTTP/2 frames of known types (the R bit of
    each stream id clear), ending exactly at its end: what a segment boundary that is also
    a frame boundary looks like. Random bytes rarely pass (types, lengths adding up)."""
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < 9:
            return False
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] not in FRAME_NAMES or data[pos + 5] & 0x80 or length > max_frame_size:
            return False
        pos += 9 + length
    return pos == n and n > 0


def _looks_like_request(buf: bytes) -> bool:
    """An HTTP/1.x request line is starting (method token, then a space)."""
    head = buf[:16]
    sp = head.find(b" ")
    token = head if sp < 0 else head[:sp]
    return 0 < len(token) <= 12 and token.isalpha() and token.isupper() and (sp > 0 or len(head) < 13)


def looks_like_h2c(data: bytes) -> bool:
    """Cheap test on a flow's first client bytes: the h2c preface, or an upgrade request."""
    if len(data) >= 4 and PREFACE.startswith(data[:len(PREFACE)]):
        return True
    if data.startswith(PREFACE):
        return True
    if data.startswith(b"CONNECT "):   # gRPC through a proxy: h2 inside the tunnel
        return True
    if _looks_like_request(data):
        head = data[:MAX_HTTP1_HEAD].split(b"\r\n\r\n", 1)[0].lower()
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip() == b"upgrade" and b"h2c" in value:
                return True
    return False


# -- the chef --------------------------------------------------------------------------


class Http2Chef(StreamChef):
    """HTTP/2 cleartext (h2c) exchanges, one dumpling per stream; see the module docstring.

    Flows are followed on ``ports`` or when their first client bytes are the h2c preface or
    an HTTP/1.1 request with ``Upgrade: h2c``.
    """

    class Options(FlowChefOptions):
        #: Also send one dumpling per HTTP/2 frame (perisco-style views).
        frames: bool = False
        #: Body bytes shown per direction of a stream (text or hex).
        body_preview: int = Field(256, ge=0, le=65536)
        #: Open streams kept per connection; the oldest is reported early beyond this.
        max_streams: int = Field(1000, ge=1, le=100_000)
        #: Largest non-DATA frame buffered (DATA is streamed whatever its size).
        max_frame_size: int = Field(1 << 20, ge=16384, le=(1 << 24) - 1)

    default_ports: ClassVar[tuple[int, ...]] = ()
    options: Options

    def detect(self, flow: Any, direction: Direction, data: bytes) -> bool:
        return direction is C2S and looks_like_h2c(data)

    def new_flow_state(self, flow: Any) -> Http2Decoder:
        limit = self.options.body_preview
        return Http2Decoder(max_frame_size=self.options.max_frame_size,
                            max_streams=self.options.max_streams,
                            body_sink=lambda stream, direction: BodyPreview(limit),
                            midstream=not getattr(flow, "roles_known", True))

    # -- flow events -----------------------------------------------------------------

    def on_data(self, flow: Any, direction: Direction, data: bytes, timestamp: float) -> Any:
        return self._run(flow, lambda dec: dec.feed(direction, data, timestamp))

    def on_gap(self, flow: Any, direction: Direction, size: int) -> Any:
        return self._run(flow, lambda dec: dec.gap(direction, size, self.now))

    def on_close(self, flow: Any, reason: CloseReason) -> Any:
        yield from self._run(flow, lambda dec: dec.close(f"connection closed ({reason})",
                                                         self.now))
        try:
            summary = self.connection_payload(flow, self.flow_state(flow), reason)
        except Exception:
            self.logger.exception("connection summary failed on %r", flow)
            return
        if summary is not None:
            yield summary

    def _run(self, flow: Any, step: Callable[[Http2Decoder], list[Event]]) -> Iterator[Any]:
        decoder: Http2Decoder = self.flow_state(flow)
        try:
            events = step(decoder)
        except Exception as exc:  # never let bad input escape the chef
            self.report_error(f"decoder failed on {flow!r}", exc)
            decoder.stopped = decoder.stopped or f"internal error: {exc}"
            events = [DecodeError(None, self.now, f"internal error: {type(exc).__name__}", True)]
        while decoder.internal_errors:
            self.report_error(f"decoder failed on {flow!r}", decoder.internal_errors.pop(0))
        for event in events:
            try:
                payload = self.event_payload(flow, decoder, event)
            except Exception:
                self.logger.exception("payload building failed on %r", flow)
                continue
            if payload is not None:
                yield payload

    # -- payloads ------------------------------------------------------------------------

    def _base(self, flow: Any, direction: Direction, timestamp: float | None) -> dict[str, Any]:
        return {"flow": flow.describe(), "src": flow.src(direction), "dst": flow.dst(direction),
                "direction": str(direction), "timestamp": timestamp}

    def event_payload(self, flow: Any, decoder: Http2Decoder, event: Event) -> dict[str, Any] | None:
        if isinstance(event, StreamEnded):
            return self.stream_payload(flow, event)
        if isinstance(event, FrameEvent):
            return self.frame_payload(flow, event) if self.options.frames else None
        if isinstance(event, Joined):
            label = flow.label(event.direction)
            skipped = f", {event.skipped} bytes skipped" if event.skipped else ""
            return {**self._base(flow, event.direction, event.timestamp), "kind": "joined",
                    "protocol": "http2", "skipped": event.skipped,
                    "summary": f"{label}  HTTP/2 JOINED mid-connection at a frame boundary "
                               f"(connection opened before the capture{skipped})"}
        if isinstance(event, DecodeError):
            direction = event.direction or C2S
            self.logger.info("%s: %s", flow.label(direction), event.message)
            return {**self._base(flow, direction, event.timestamp), "kind": "error",
                    "protocol": "http2", "error": event.message, "fatal": event.fatal,
                    "summary": f"{flow.label(direction)}  HTTP/2 error: {event.message}"}
        return None

    def frame_payload(self, flow: Any, event: FrameEvent) -> dict[str, Any]:
        parts = [event.name, f"stream={event.stream_id}", f"len={event.length}"]
        if event.flags:
            parts.append("flags=" + ",".join(event.flags))
        for key, value in event.info.items():
            if key == "headers":
                parts.extend(f"{n}={v}" for n, v in value[:8])
            elif key == "settings":
                parts.extend(f"{n}={v}" for n, v in value.items())
            elif not isinstance(value, (dict, list)):
                parts.append(f"{key}={value}")
        return {**self._base(flow, event.direction, event.timestamp), "kind": "frame",
                "frame_type": event.name, "stream_id": event.stream_id, "length": event.length,
                "flags": event.flags, **event.info,
                "summary": f"{flow.label(event.direction)}  " + " ".join(parts)}

    def stream_payload(self, flow: Any, event: StreamEnded) -> dict[str, Any] | None:
        s = event.stream
        status_text = s.header(":status", "response")
        try:
            status: int | None = int(status_text) if status_text is not None else None
        except ValueError:
            status = None
        method, path = s.header(":method"), s.header(":path")
        latency = s.latency if event.complete else None   # a cut-short stream has no end
        payload = {
            **self._base(flow, C2S, s.start), "kind": "stream", "stream_id": s.stream_id,
            "method": method, "path": path, "authority": s.header(":authority"),
            "scheme": s.header(":scheme"), "status": status,
            "content_type": s.header("content-type", "response"),
            "request_headers": _pairs(s.request_headers),
            "response_headers": _pairs(s.response_headers),
            "informational_headers": [_pairs(h) for h in s.informational],
            "request_trailers": _pairs(s.request_trailers),
            "response_trailers": _pairs(s.response_trailers),
            "request_body_length": s.request.length,
            "response_body_length": s.response.length,
            "request_data_frames": s.request_data_frames,
            "response_data_frames": s.response_data_frames,
            "request_data_frame_count": s.request_data_frame_count,
            "response_data_frame_count": s.response_data_frame_count,
            "request_end_stream": s.client_ended, "response_end_stream": s.server_ended,
            "reset": s.reset, "pushed_by": s.pushed_by, "upgraded": s.upgraded,
            "complete": event.complete, "end_reason": event.reason,
            "latency": latency, "headers_unknown": s.headers_unknown, "tunnel": s.tunnel,
            "time_to_response_headers": (s.response_start - s.start
                                         if s.response_start is not None and s.start is not None
                                         else None),
        }
        if self.options.body_preview:
            for key, sink in (("request_body", s.request), ("response_body", s.response)):
                if isinstance(sink, BodyPreview) and sink.length:
                    view = show_bytes(bytes(sink.head), self.options.body_preview)
                    view["length"] = sink.length
                    if sink.length > len(sink.head):
                        view["truncated"] = True
                    payload[key] = view
        outcome = str(status) if status is not None else "no response"
        if s.reset:
            outcome += f" RST_STREAM {s.reset['error']} by {s.reset['by']}"
        if not event.complete:
            outcome += f" incomplete ({event.reason})"
        lat = f" {latency * 1000:.1f}ms" if latency is not None else ""
        push = f" pushed by {s.pushed_by}" if s.pushed_by is not None else ""
        payload["summary"] = (f"{flow.label(C2S)}  HTTP/2 {method or '?'} {path or '?'} -> "
                              f"{outcome} {s.response.length}B{lat} (stream {s.stream_id}{push})")
        return payload

    def connection_payload(self, flow: Any, decoder: Http2Decoder, reason: CloseReason
                           ) -> dict[str, Any] | None:
        if decoder.not_http2 or not (decoder.preface_seen or decoder.upgraded
                                     or decoder.stopped or decoder.joined):
            return None
        frames = {str(d): dict(side.frames) for d, side in decoder.sides.items()}
        total = sum(sum(f.values()) for f in frames.values())
        settings = decoder.settings
        stopped = f", decoding stopped: {decoder.stopped}" if decoder.stopped else ""
        if decoder.tunnel:
            stopped = " (in a CONNECT tunnel)" + stopped
        return {**self._base(flow, C2S, self.now), "kind": "connection",
                "close_reason": str(reason), "upgraded": decoder.upgraded,
                "tunnel": decoder.tunnel, "client_preface": decoder.preface_seen,
                "client_settings": settings["client"], "server_settings": settings["server"],
                "frames": frames, "streams_completed": decoder.streams_completed,
                "streams_incomplete": decoder.streams_incomplete, "goaway": decoder.goaway,
                "errors": decoder.errors, "stopped": decoder.stopped,
                "joined_mid_connection": decoder.joined,
                "header_blocks_unknown": decoder.header_blocks_unknown,
                "frames_of_earlier_streams": decoder.frames_of_earlier_streams,
                "summary": (f"{flow.label(C2S)}  HTTP/2 connection {reason}: "
                            f"{decoder.streams_completed} streams, {total} frames{stopped}")}


def _pairs(headers: list[tuple[str, str]] | None) -> list[list[str]] | None:
    return None if headers is None else [[n, v] for n, v in headers]
