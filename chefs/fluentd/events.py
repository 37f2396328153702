"""What ``FluentdForwardDecoder`` returns: one ``FluentdMessage`` per forward-protocol message
(or an ``error`` / ``unknown`` report). Plain dataclasses, stdlib only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Kinds of message the decoder reports.
EVENT_MODES = ("Message", "Forward", "PackedForward", "CompressedPackedForward")


@dataclass
class FluentdMessage:
    """One decoded forward-protocol message (or an ``error`` / ``unknown`` report)."""

    kind: str
    offset: int
    size: int
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    tag: str | None = None
    #: (time, record) pairs kept (at most ``max_events``); ``event_count`` is the real count
    entries: list[tuple[Any, Any]] = field(default_factory=list)
    event_count: int = 0
    option: Any = None
    #: handshake / ack / error fields, already JSON-able
    fields: dict[str, Any] = field(default_factory=dict)
    #: problems inside an otherwise usable message (bad entries, cut decompression)
    problems: list[str] = field(default_factory=list)
