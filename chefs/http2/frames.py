"""What each whole HTTP/2 frame does to the connection: header blocks decoded with hpack
(CONTINUATION joined, PUSH_PROMISE opening a pushed stream, trailers, 1xx kept apart),
DATA counted per stream, RST_STREAM (and the answer that may cross it), SETTINGS (the
peer's HPACK table size), GOAWAY, PING, PRIORITY, WINDOW_UPDATE; one ``FrameEvent`` each.

A mixin of ``Http2Decoder``, like ``handshake``; kept apart so that each module has one job.
"""

from __future__ import annotations

from typing import Any

from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, PriorityFrame, PushPromiseFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame)

from .events import C2S, S2C, FrameEvent, Http2Stream, Side
from .names import (FRAME_NAMES, MAX_FRAME_SIZES_KEPT, MAX_HPACK_TABLE, MAX_INFORMATIONAL_KEPT,
                    SETTING_NAMES, error_name)
from .state import SideState
from .text import bin_value, header_text, show_bytes

class FrameHandling:
    """Frame by frame, once the frame is whole (DATA: once its body has streamed by)."""

    @staticmethod
    def _count(side: SideState, name: str) -> None:
        side.frames[name] = side.frames.get(name, 0) + 1

    def _emit(self, direction: Side, ts: float | None, frame: Frame, length: int,
              info: dict[str, Any]) -> None:
        ftype = frame.type or 0
        self._events.append(FrameEvent(direction, ts, ftype,
                                       FRAME_NAMES.get(ftype, f"0x{ftype:x}"),
                                       frame.stream_id, length, sorted(frame.flags), info))

    def _on_data(self, direction: Side, frame: DataFrame, size: int, length: int,
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

    def _end_side(self, stream: Http2Stream, direction: Side, ts: float | None) -> None:
        if direction is C2S:
            stream.client_ended = True
        else:
            stream.server_ended = True
        stream.end = ts
        self._maybe_done(stream, ts)

    def _handle(self, direction: Side, side: SideState, frame: Frame, length: int,
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

    def _apply_settings(self, direction: Side, frame: SettingsFrame) -> dict[str, int]:
        named = {SETTING_NAMES.get(k, f"0x{k:x}"): v for k, v in frame.settings.items()}
        self.sides[direction].settings.update(named)
        if "HEADER_TABLE_SIZE" in named:
            # the peer's encoder may now grow its table up to this size
            other = self.sides[direction.reverse].hpack
            other.max_allowed_table_size = min(named["HEADER_TABLE_SIZE"], MAX_HPACK_TABLE)
        return named

    def _header_block(self, direction: Side, side: SideState, info: dict[str, Any],
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
        headers = [(header_text(n), bin_value(v) if n.endswith(b"-bin") and v[:1] == b"\0"
                    else header_text(v)) for n, v in raw]
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

