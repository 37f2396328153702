"""``GrpcChef``: ``Http2Chef`` with a body sink that splits each call's DATA into gRPC
messages (``decoder.GrpcMessages``) and one dumpling per gRPC call (``payload``) instead
of one per HTTP/2 stream; no frame dumplings, no connection summary."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from netdumplings.kitchen.chef import Direction, FlowChefOptions

from ..http2.chef import Http2Chef
from ..http2.decoder import Http2Decoder
from ..http2.events import FrameEvent, StreamEnded
from .decoder import Budget, GrpcMessages
from .payload import call_payload, plain_stream_payload

C2S = Direction.CLIENT_TO_SERVER


class GrpcChef(Http2Chef):
    """gRPC over HTTP/2 (h2c): one dumpling per call, with its service, method, status,
    metadata and messages (decoded generically as protobuf, no .proto needed)."""

    class Options(FlowChefOptions):
        #: Bytes kept (and decoded) of each message.
        max_message_bytes: int = Field(65536, ge=0, le=16 << 20)
        #: Messages kept in detail per direction of a call (all are counted).
        max_messages: int = Field(32, ge=0, le=10_000)
        #: Message bytes kept at once per connection, over all its open calls.
        max_connection_bytes: int = Field(4 << 20, ge=0, le=1 << 30)
        #: Decode messages generically as protobuf.
        protobuf: bool = True
        protobuf_max_depth: int = Field(8, ge=1, le=64)
        protobuf_max_fields: int = Field(256, ge=1, le=10_000)
        #: Characters of string/bytes values shown.
        max_string: int = Field(256, ge=0, le=65536)
        max_streams: int = Field(1000, ge=1, le=100_000)
        max_frame_size: int = Field(1 << 20, ge=16384, le=(1 << 24) - 1)
        #: Also report HTTP/2 streams that are not gRPC (as Http2Chef would).
        non_grpc: bool = False

    default_ports: ClassVar[tuple[int, ...]] = (50051,)
    options: Options  # type: ignore[assignment]

    def new_flow_state(self, flow: Any) -> Http2Decoder:
        o = self.options
        budget = Budget(o.max_connection_bytes)
        return Http2Decoder(
            max_frame_size=o.max_frame_size, max_streams=o.max_streams,
            body_sink=lambda stream, direction: GrpcMessages(o.max_message_bytes,
                                                             o.max_messages, budget),
            midstream=not getattr(flow, "roles_known", True))

    def event_payload(self, flow: Any, decoder: Http2Decoder, event: Any) -> Any:
        if isinstance(event, FrameEvent):
            return None
        if isinstance(event, StreamEnded):
            try:
                ctype = event.stream.header("content-type") or \
                    event.stream.header("content-type", "response") or ""
                if not ctype.startswith("application/grpc") and not (
                        not ctype and event.stream.headers_unknown):
                    # (headers not decodable after joining mid-connection: on a gRPC
                    # port, still a call, with what is known of it)
                    return self._plain_stream(flow, event) if self.options.non_grpc else None
                return self.call_payload(flow, event)
            finally:
                for sink in (event.stream.request, event.stream.response):
                    if isinstance(sink, GrpcMessages):
                        sink.release()
        payload = super().event_payload(flow, decoder, event)
        if payload is not None:
            payload["protocol"] = "grpc"
        return payload

    def _plain_stream(self, flow: Any, event: StreamEnded) -> dict[str, Any]:
        return plain_stream_payload(flow, C2S, event)

    def connection_payload(self, flow: Any, decoder: Http2Decoder, reason: Any) -> None:
        return None

    def call_payload(self, flow: Any, event: StreamEnded) -> dict[str, Any]:
        return call_payload(flow, C2S, event, self.options)
