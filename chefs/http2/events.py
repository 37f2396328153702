"""What ``Http2Decoder`` hands back: the side a byte came from, streams and events.

Plain dataclasses and one enum, no framework types, so that anything that feeds the
decoder (the chef shell, a test, a script reading a file) can read its events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class Side(str, enum.Enum):
    """Which peer sent the bytes. The values are the kitchen's direction names, so its
    ``Direction`` members (a str enum with the same values) are accepted where a side is
    asked for, and a side compares equal to the direction of the same name."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"

    @property
    def reverse(self) -> Side:
        return (Side.SERVER_TO_CLIENT if self is Side.CLIENT_TO_SERVER
                else Side.CLIENT_TO_SERVER)

    def __str__(self) -> str:  # messages and JSON show the plain value
        return self.value


C2S = Side.CLIENT_TO_SERVER
S2C = Side.SERVER_TO_CLIENT
#: A side by its value: how ``feed`` turns what it is given (a Side, the kitchen's
#: Direction, the plain string) into a Side with one dict lookup.
SIDES: dict[str, Side] = {side.value: side for side in Side}


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
    direction: Side
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
    direction: Side | None
    timestamp: float | None
    message: str
    fatal: bool           # True: decoding of the connection stopped


@dataclass
class Joined:
    """Decoding of a connection already open when the capture began starts here."""

    direction: Side
    timestamp: float | None
    skipped: int          # captured bytes dropped before the first frame boundary


Event = FrameEvent | StreamEnded | DecodeError | Joined
