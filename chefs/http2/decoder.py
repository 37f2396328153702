"""``Http2Decoder``: one HTTP/2 cleartext (h2c) connection, both directions, bytes in and
events out (sans-I/O: no sockets, no capture, no kitchen; usable on its own, as h11 is).

It follows one connection from its start, either from the prior-knowledge client preface
or from an HTTP/1.1 ``Upgrade: h2c`` exchange (the HTTP/1.1 request becomes stream 1).
HPACK is stateful across the whole connection, so there is one ``hpack`` decoder per
direction, and any loss of bytes (a capture gap, a header block that fails to decode,
framing that makes no sense) stops decoding of the connection for good: guessing on would
only produce wrong headers. Streams still open at that point are reported incomplete.

Joining mid-connection (``midstream=True``: the capture began while the connection was
open, which for long-lived gRPC channels is the usual case): each direction starts at its
first captured chunk made of whole frames. HPACK state from before the capture is
unknown, so a header block that refers to a table entry made before it cannot be decoded;
it is reported as unknown (``headers_unknown``), never guessed, and that direction's HPACK
decoder starts afresh: entries made from then on are the same in both tables (RFC 7541
numbers dynamic entries from the newest), so later blocks that refer only to them decode
exactly. Streams already open at the join are not reported as exchanges (their start was
not seen).

This module holds the decoder's public face, its stream bookkeeping and the framing loop;
how decoding begins is in ``handshake``, what each frame does in ``frames``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, HeadersFrame,
                              PushPromiseFrame)

from .events import (C2S, S2C, SIDES, BodyPreview, BodySink, DecodeError, Event, Http2Stream,
                     Side, StreamEnded)
from .frames import FrameHandling
from .handshake import Handshake
from .names import FRAME_NAMES
from .state import SideState


class Http2Decoder(Handshake, FrameHandling):
    """Decode one HTTP/2 connection, both directions; see the module docstring.

    ``feed(side, data, timestamp)`` returns events: ``FrameEvent`` for every frame
    (header blocks decoded on the frame that completes them), ``StreamEnded`` when a
    stream finishes (or is cut short), ``DecodeError`` for anything that does not parse.
    """

    def __init__(self, *, max_frame_size: int = 1 << 20, max_header_list_size: int = 65536,
                 max_streams: int = 1000,
                 body_sink: Callable[[Http2Stream | None, Side], BodySink] | None = None,
                 midstream: bool = False) -> None:
        self.max_frame_size = max_frame_size
        self.max_header_block = max(max_header_list_size * 2, 16384)
        self.max_streams = max_streams
        self._sink = body_sink or (lambda stream, direction: BodyPreview())
        self.sides = {C2S: SideState(max_header_list_size), S2C: SideState(max_header_list_size)}
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

    def feed(self, direction: Side | str, data: bytes, timestamp: float | None = None
             ) -> list[Event]:
        """Bytes ``direction`` sent (a ``Side``, or its value: the kitchen's ``Direction``
        is one), in order; ``timestamp`` is when they were seen (seconds, or None)."""
        if self.stopped or not data:
            return []
        direction = SIDES[direction]
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

    def gap(self, direction: Side | str, size: int, timestamp: float | None = None
            ) -> list[Event]:
        """Bytes were lost: the HPACK state cannot be trusted any more, so stop here."""
        direction = SIDES[direction]
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

    def _error(self, direction: Side | None, ts: float | None, message: str) -> None:
        self.errors += 1
        self._events.append(DecodeError(direction, ts, message, False))

    def _stop(self, direction: Side | None, ts: float | None, message: str) -> None:
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

    def _run(self, direction: Side, side: SideState, ts: float | None) -> None:
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


    def _frames(self, direction: Side, side: SideState, ts: float | None) -> None:
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

    def _data_body(self, direction: Side, side: SideState, buf: bytearray, pos: int,
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

